"""``air-align audit``: a model's context invariance *before* any training, on real meta-groups (DESIGN.md §3, §5).

For every intent of a domain the audit renders the anchors and **one open variant per wrapper family** (every
family, ID and OOD alike, a template drawn in each by seed), generates greedily, scores anchors by rule and open
variants by the evaluation judge (``air_align.evaluation``), and adds what an audit asks beyond Acc / Acc_group:
per-family flip rates against the plain request, failures given right anchors, over-refusal per family, and the
anchors' position bias (definitions in ``air_align.real.audit_metrics``).

Rows come from ``air_align.data.build``'s pieces (intents, open contexts, the ID/OOD family choice, renderers), so
families are marked ID / OOD exactly as ``air-align data build`` with the same ``--seed`` and ``--ood-families``
assigns them. Every intent gets two meta-groups sharing its ``group_id``: ``test_id`` (its anchors + one variant per
ID family) and ``test_ood`` (one variant per OOD family; the evaluation borrows the anchors). Anchors are generated
once.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

# Known weaknesses of each evaluation judge, printed in every report (notes/offline-data.md, docs/evaluation.md).
JUDGE_CAVEATS = {
    "oracle-label": "keyword heuristic against the intent's oracle label: refusal = a phrase such as \"I'm sorry\" "
    'or "I cannot" anywhere in the answer (misfires on "I\'m sorry for the confusion, but …" followed by '
    "compliance, and misses refusals worded otherwise); morality = the first wrong / not-wrong / yes / no phrase. "
    "Not an oracle: read the completions before trusting a number.",
    "none": "open variants are not scored: only anchors (and maths, by rule) count.",
    "model": "a YES/NO log-odds judge built on a language model; a frozen small model (SmolLM2-135M) is a weak judge "
    "with its own position and yes-bias.",
}
MATH_NOTE = "maths open variants are scored by math_verify against the reference answer: no judge is involved."


def judge_caveat(judge: str, domain: str) -> str:
    """The report's sentence on the judge's weaknesses."""
    if domain == "math":
        return MATH_NOTE
    return JUDGE_CAVEATS.get(judge.split(":")[0], "a user-supplied judge: its accuracy is unknown.")


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
    from air_align.data import build as B

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


def audit_summary(rows: list[dict], records: list[dict], scored: list[dict]) -> dict:
    """The audit-specific numbers (see ``audit_metrics``) from the rows and the evaluation's records/completions."""
    from air_align.real import audit_metrics as M

    split_of = {}
    for r in rows:
        split_of.setdefault(r["family"], "anchor" if r["role"] == "anchor" else r["split"])
    return {
        "families": {f: {"test_id": "ID", "test_ood": "OOD"}.get(s, s) for f, s in sorted(split_of.items())},
        "flip_vs_plain": M.flip_rates(records),
        "fails_given_right_anchors": M.fails_given_right_anchors(records),
        "over_refusal_by_family": M.over_refusal_by_family(records),
        "anchor_bias": M.anchor_bias(scored, {r["id"]: r["context"] for r in rows}),
        "tagged_share": M.tagged_share(scored),
        "family_acc": _family_acc(records),
    }


def _family_acc(records: list[dict]) -> dict[str, dict]:
    counts: dict[str, list[int]] = {}
    for r in records:
        if r["correct"] is not None:
            c = counts.setdefault(r["family"], [0, 0])
            c[0] += int(r["correct"])
            c[1] += 1
    return {f: {"acc": k / n, "n": n} for f, (k, n) in sorted(counts.items())}


def run_audit(
    model,
    tokenizer,
    rows: list[dict],
    out_dir: str | Path,
    *,
    judge: str = "oracle-label",
    max_new_tokens: int = 96,
    batch_size: int = 24,
    seed: int = 0,
    n_boot: int = 1000,
    tags: dict | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate ``rows`` with ``air_align.evaluation.evaluate`` and add the audit section.

    Writes, in ``out_dir``: the evaluation's results.json / records.jsonl / completions.jsonl / report.md / plots,
    plus ``audit.json``, ``flip_rates.png`` and an audit section at the end of report.md. Returns
    ``{"results": ..., "audit": ...}``.
    """
    from air_align.evaluation.evaluate import evaluate
    from air_align.evaluation.scoring import eval_verdict
    from air_align.files import read_jsonl, write_json, write_text
    from air_align.real.audit_report import plot_flip_rates, render_audit

    out = Path(out_dir)
    domain = rows[0]["domain"]
    tags = {"method": "audit", "judge": judge, **(tags or {})}
    start = time.time()
    results = evaluate(
        model,
        tokenizer,
        rows,
        verdict=eval_verdict(judge),
        splits=("test_id", "test_ood"),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        n_boot=n_boot,
        dispersion=False,
        out_dir=out,
        tags=tags,
        progress=progress,
    )
    summary = audit_summary(rows, read_jsonl(out / "records.jsonl"), read_jsonl(out / "completions.jsonl"))
    summary.update(
        domain=domain,
        judge=judge,
        judge_caveat=judge_caveat(judge, domain),
        n_intents=len({r["group_id"] for r in rows}),
        n_prompts=len(rows),
        seconds=round(time.time() - start, 1),
        config={"max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed},
        tags=tags,
    )
    write_json(out / "audit.json", summary)
    plot_flip_rates(summary, out / "flip_rates.png")
    report = out / "report.md"
    text = report.read_text(encoding="utf-8") + "\n\n" + render_audit(summary, results)
    write_text(report, text)
    return {"results": results, "audit": summary}
