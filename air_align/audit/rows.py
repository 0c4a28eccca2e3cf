"""Rows for an audit (``air-align audit``): every intent rendered as its anchors and **one open variant of every
wrapper family**, ID and OOD alike, a template drawn in each family by seed (docs/design.md §4, §5).

Built from ``air_align.data.build``'s pieces (intents, open contexts, the ID/OOD family choice, renderers), so
families are marked ID / OOD exactly as ``air-align data build`` with the same ``--seed`` and ``--ood-families``
assigns them. Every intent gets two meta-groups sharing its ``group_id``: ``test_id`` (its anchors + one variant per
ID family) and ``test_ood`` (one variant per OOD family; the evaluation borrows the anchors). The audit itself (its
metrics and report) is ``air_align.audit.run``.
"""

from __future__ import annotations

import random
from collections import Counter

from air_align.data import build as B


def audit_rows(
    domain: str,
    n_intents: int = 12,
    seed: int = 0,
    *,
    anchors: int = 2,
    ood_families: int | str = 2,
    min_ood_contexts: int = 4,
    benign_fraction: float = 0.25,
    max_template_chars: int | None = 2000,
    template_source: str | None = None,
    intent_split: str | None = None,
    val_fraction: float = 0.125,
    test_fraction: float = 0.25,
) -> list[dict]:
    """Schema rows for an audit: per intent, ``anchors`` anchors + one open variant of every family.

    OOD families are those ``air_align.data.build.build_meta_groups`` holds out for the same ``seed`` and
    ``ood_families`` (with its default ``opens`` = ``min_ood_contexts``). The template of a family is drawn by
    ``random.Random(f"{seed}/audit/{intent id}/{family}")``. ``intent_split`` (``train`` | ``val`` | ``test``) keeps
    only the intents that a build with the same ``n_intents``, ``seed`` and fractions puts in that part: the study
    audits trained models on the held-out ``test`` intents.
    """
    intents = B.domain_intents(domain, n_intents, seed, benign_fraction)
    if intent_split is not None:
        part = B.split_intents(intents, seed, val_fraction, test_fraction)
        intents = [x for x in intents if part[x["id"]] == intent_split]
        if not intents:
            raise ValueError(f"no {intent_split!r} intents among {n_intents}; raise n_intents or the fraction")
    contexts = B.open_contexts(domain, template_source, max_template_chars)
    by_family: dict[str, list[dict]] = {}
    for c in contexts:
        by_family.setdefault(c["family"], []).append(c)
    ood = set(B.choose_ood_families(Counter(c["family"] for c in contexts), ood_families, seed, min_ood_contexts))
    anchor_contexts = B.anchor_context_names(anchors)
    rows = []
    for intent in intents:
        group_id = f"{domain}/{intent['id']}"
        meta = B.intent_provenance(intent, seed, audit=True)
        for context in anchor_contexts:
            rows.append(B.anchor_row(domain, intent, context, "test_id", seed, meta, f"{group_id}/anchor"))
        for family in sorted(by_family):
            context = random.Random(f"{seed}/audit/{intent['id']}/{family}").choice(by_family[family])
            split = "test_ood" if family in ood else "test_id"
            rows.append(B.open_row(domain, intent, context, split, meta, f"{group_id}/open"))
    return rows
