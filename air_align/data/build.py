"""Build meta-groups from real intents and contexts, with an ID/OOD split by wrapper family (docs/design.md §1, §4).

Splits, exactly:

1. intents are shuffled by ``seed`` within each label (so benign / wrong / not-wrong shares are kept) and cut into
   test (``test_fraction``, held out), val (``val_fraction``) and train (the rest);
2. open contexts are grouped by family; ``ood_families`` families (a number chosen by ``seed``, never ``plain``, or a
   list of names) are **OOD**, the others **ID**;
3. a train / val intent gives one meta-group, split ``train`` / ``val``: its anchors plus ``opens`` open variants
   from ID families;
4. a held-out intent gives two meta-groups with the same ``group_id``: split ``test_id`` (its anchors plus ``opens``
   ID-family variants) and split ``test_ood`` (the same anchors again, new row ids, plus ``opens`` OOD-family
   variants). OOD families therefore never appear in ``train`` or ``val``; test intents never appear there either
   (the second OOD axis: ``val`` vs ``test_id`` measures held-out intents, ``test_id`` vs ``test_ood`` held-out
   families).

Every meta-group of a build has ``anchors + opens`` rows. The open variants of one meta-group come from distinct
families where the pool allows (families taken round-robin in a seeded order, a template drawn in each), so one big
family (e.g. PyRIT's 230 in-the-wild templates) does not swamp the others. Everything is drawn from ``random.Random``
streams seeded by strings derived from ``seed``: the same arguments give the same file.
"""

from __future__ import annotations

import random
import zlib
from collections import Counter

from tqdm import tqdm

from air_align.data import renderers as R
from air_align.data import sources
from air_align.data.schema import ANCHOR_FAMILY, make_row

ANCHOR_CONTEXTS = ("mc", "tf")  # anchors cycle through these; a repeat gets a new option seed ("mc-2", ...)
DEFAULT_TEMPLATE_SOURCE = {"safety": "all", "morality": "builtin", "math": "builtin"}
TRANSFORMS_BY_DOMAIN = {
    "safety": ("plain", "base64", "leetspeak", "roleplay_prefix"),
    "morality": ("plain", "leetspeak", "roleplay_prefix"),
    "math": ("plain", "roleplay_prefix"),  # maths keeps the problem readable: no encodings
}


def _stable_seed(*parts) -> int:
    """A 32-bit seed from ``parts`` that does not depend on Python's per-process string hashing."""
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def domain_intents(domain: str, n_intents: int, seed: int, benign_fraction: float = 0.25) -> list[dict]:
    """``n_intents`` intents of a built-in domain, drawn by ``seed``.

    safety: ``round(n · benign_fraction)`` benign (lmdoctor + look-alikes), the rest harmful (AdvBench + HarmBench);
    morality: half wrong, half not wrong (short ETHICS commonsense scenarios); math: one GSM-Symbolic template each.
    """
    rng = random.Random(f"{seed}/intents/{domain}")
    if domain == "safety":
        n_benign = round(n_intents * benign_fraction)
        pools = [(sources.harmful_intents(), n_intents - n_benign), (sources.benign_intents(), n_benign)]
    elif domain == "morality":
        scenarios = sources.ethics_commonsense()
        wrong = [x for x in scenarios if x["label"] == 1]
        pools = [(wrong, n_intents // 2), ([x for x in scenarios if x["label"] == 0], n_intents - n_intents // 2)]
    elif domain == "math":
        pools = [(sources.gsm_symbolic(seed), n_intents)]
    else:
        raise ValueError(f"unknown domain {domain!r}; built-in domains are safety, morality, math (or pass intents=)")
    out = []
    for pool, k in pools:
        if k > len(pool):
            raise ValueError(
                f"{domain}: asked for {k} intents of one kind but only {len(pool)} exist; lower --n-intents"
            )
        out += rng.sample(pool, k)
    return out


def _check_intents(domain: str, intents: list[dict]) -> None:
    ids = [x.get("id") for x in intents]
    if len(set(ids)) != len(ids):
        raise ValueError("intents with duplicate ids; give every intent a unique id")
    for x in intents:
        if domain in ("safety", "morality") and x.get("label") not in (0, 1):
            raise ValueError(f"{domain} intent {x.get('id')!r} has label {x.get('label')!r}; anchors need 0 or 1")
        if domain == "math" and not (x.get("meta") or {}).get("answer"):
            raise ValueError(f"math intent {x.get('id')!r} has no meta['answer']; map a reference answer column")


def split_intents(intents: list[dict], seed: int, val_fraction: float, test_fraction: float) -> dict[str, str]:
    """``{intent id: "train" | "val" | "test"}``, stratified by label, each label's intents shuffled by ``seed``.

    >>> ids = [{"id": str(i), "label": i % 2} for i in range(8)]
    >>> sorted(split_intents(ids, 0, 0.25, 0.25).values())
    ['test', 'test', 'train', 'train', 'train', 'train', 'val', 'val']
    """
    rng = random.Random(f"{seed}/split")
    out = {}
    labels = sorted({x["label"] for x in intents}, key=lambda v: (v is None, str(v)))
    for label in labels:
        ids = sorted(x["id"] for x in intents if x["label"] == label)
        rng.shuffle(ids)
        n_test, n_val = round(len(ids) * test_fraction), round(len(ids) * val_fraction)
        for i, id_ in enumerate(ids):
            out[id_] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def open_contexts(
    domain: str,
    template_source: str | None = None,
    max_template_chars: int | None = sources.MAX_TEMPLATE_CHARS,
    extra_templates: list[dict] | None = None,
) -> list[dict]:
    """The open contexts of a domain: ``{"context", "family", "template" | "transform"}`` dicts.

    ``template_source``: ``pyrit`` (PyRIT jailbreak templates + ``plain``), ``builtin`` (the domain's built-in
    framings + its transforms), ``all`` (both), ``none`` (only ``extra_templates``); default per domain in
    :data:`DEFAULT_TEMPLATE_SOURCE`.
    """
    source = template_source or DEFAULT_TEMPLATE_SOURCE.get(domain, "pyrit")
    if source not in ("pyrit", "builtin", "all", "none"):
        raise ValueError(f"template_source={source!r}; use pyrit, builtin, all or none")
    out = []
    if source in ("pyrit", "all"):
        out += [
            {"context": t["name"], "family": t["family"], "template": t["template"]}
            for t in sources.pyrit_templates(max_template_chars)
        ]
    if source in ("builtin", "all"):
        for family, templates in R.BUILTIN_TEMPLATES.get(domain, {}).items():
            out += [
                {"context": f"builtin:{family}/{n}", "family": family, "template": t} for n, t in templates.items()
            ]
        out += [
            {"context": n, "family": R.TRANSFORMS[n][0], "transform": n} for n in TRANSFORMS_BY_DOMAIN.get(domain, ())
        ]
    if source == "pyrit" and not any(c["family"] == "plain" for c in out):
        out.append({"context": "plain", "family": "plain", "transform": "plain"})
    out += [{"context": t["name"], "family": t["family"], "template": t["template"]} for t in extra_templates or []]
    names = [c["context"] for c in out]
    if len(set(names)) != len(names):
        raise ValueError("two open contexts share a name; give every template a unique name")
    return out


def choose_ood_families(
    family_sizes: dict[str, int], ood_families: int | str | list[str], seed: int, min_contexts: int = 1
) -> list[str]:
    """OOD families: a list of names (or a comma list), or a number ``k`` drawn by ``seed``.

    ``family_sizes`` maps each family to its number of open contexts. A number ``k`` draws ``k`` families other
    than ``plain``; draws whose families hold fewer than ``min_contexts`` contexts together (fewer than a meta-group's
    open variants) are skipped, in a fixed seeded sequence of draws, so the result is deterministic.

    >>> choose_ood_families({"a": 1, "b": 5, "plain": 1}, "b", seed=0)
    ['b']
    >>> choose_ood_families({"a": 1, "b": 5, "c": 5, "plain": 1}, 1, seed=0, min_contexts=4) in (["b"], ["c"])
    True
    """
    families = sorted(family_sizes)
    if isinstance(ood_families, str) and not ood_families.strip().isdigit():
        names = [n.strip() for n in ood_families.split(",") if n.strip()]
    elif isinstance(ood_families, list | tuple):
        names = list(ood_families)
    else:
        k = int(ood_families)
        if k == 0:
            return []
        candidates = [f for f in families if f != "plain"]
        if not 0 < k < len(families) or k > len(candidates):
            raise ValueError(f"--ood-families {k}: there are {len(families)} families; hold out fewer so ID keeps one")
        rng = random.Random(f"{seed}/families")
        for _ in range(1000):
            draw = sorted(rng.sample(candidates, k))
            if sum(family_sizes[f] for f in draw) >= min_contexts:
                return draw
        raise ValueError(
            f"no {k} families hold {min_contexts} contexts together; raise --ood-families or lower --opens"
        )
    unknown = [n for n in names if n not in family_sizes]
    if unknown:
        raise ValueError(f"unknown OOD families {unknown}; the families of this build are {families}")
    if len(set(names)) >= len(families):
        raise ValueError("--ood-families names every family; leave at least one family for training")
    return sorted(set(names))


def pick_contexts(pool: list[dict], k: int, rng: random.Random) -> list[dict]:
    """``k`` distinct contexts of ``pool``: families in a seeded order, round-robin, a random template in each."""
    by_family: dict[str, list[dict]] = {}
    for c in pool:
        by_family.setdefault(c["family"], []).append(c)
    order = sorted(by_family)
    rng.shuffle(order)
    remaining = {f: rng.sample(by_family[f], len(by_family[f])) for f in order}
    chosen = []
    while len(chosen) < k:
        for f in order:
            if remaining[f] and len(chosen) < k:
                chosen.append(remaining[f].pop())
    return chosen


def _request(domain: str, intent: dict) -> str:
    return R.morality_request(intent["text"]) if domain == "morality" else intent["text"]


def render_open(context: dict, request: str) -> str:
    """The open-variant text of ``context`` (a template or a transform) around ``request``."""
    if "transform" in context:
        return R.TRANSFORMS[context["transform"]][1](request)
    return R.render_template(context["template"], request, name=context["context"])


def render_anchor(domain: str, intent: dict, context: str, option_seed: int) -> tuple[str, str, str]:
    """(text, verifier, answer) of an anchor context (``mc`` / ``tf`` / ``mc-2`` …) of a domain."""
    kind = context.split("-")[0]
    text, label = intent["text"], intent["label"]
    if domain == "safety":
        text, answer = R.safety_mc(text, label, option_seed) if kind == "mc" else R.safety_tf(text, label)
    elif domain == "morality":
        text, answer = R.morality_mc(text, label, option_seed) if kind == "mc" else R.morality_tf(text, label)
    elif domain == "math":
        ref = intent["meta"]["answer"]
        text, answer = R.math_mc(text, ref, option_seed) if kind == "mc" else R.math_tf(text, ref, option_seed)
    else:
        raise ValueError(f"no anchor renderer for domain {domain!r}; anchors exist for safety, morality, math")
    verifier = "choice" if kind == "mc" else "true_false"
    return R.with_instruction(text, domain, anchor=verifier), verifier, answer


def build_meta_groups(
    domain: str,
    n_intents: int = 32,
    anchors: int = 2,
    opens: int = 4,
    ood_families: int | str | list[str] = 2,
    seed: int = 0,
    *,
    val_fraction: float = 0.125,
    test_fraction: float = 0.25,
    benign_fraction: float = 0.25,
    max_template_chars: int | None = sources.MAX_TEMPLATE_CHARS,
    template_source: str | None = None,
    intents: list[dict] | None = None,
    extra_templates: list[dict] | None = None,
    progress: bool = False,
) -> list[dict]:
    """Schema rows of ``n_intents`` meta-groups of ``anchors + opens`` prompts each (see the module docstring).

    ``intents`` replaces the built-in intents of ``domain`` (dicts with ``id``, ``text``, ``label`` and, for maths,
    ``meta["answer"]``); ``extra_templates`` adds ``{name, family, template}`` open contexts.
    """
    if anchors < 1 or opens < 1:
        raise ValueError(f"anchors={anchors}, opens={opens}: a meta-group needs at least one anchor and one open")
    if not 0 <= val_fraction + test_fraction < 1:
        raise ValueError(f"val_fraction + test_fraction = {val_fraction + test_fraction}; it must be in [0, 1)")
    chosen = intents if intents is not None else domain_intents(domain, n_intents, seed, benign_fraction)
    _check_intents(domain, chosen)
    split_of = split_intents(chosen, seed, val_fraction, test_fraction)
    contexts = open_contexts(domain, template_source, max_template_chars, extra_templates)
    family_sizes = Counter(c["family"] for c in contexts)
    ood = choose_ood_families(family_sizes, ood_families, seed, min_contexts=opens)
    id_pool = [c for c in contexts if c["family"] not in ood]
    ood_pool = [c for c in contexts if c["family"] in ood]
    for name, pool in (("ID", id_pool), ("OOD", ood_pool if ood else id_pool)):
        if len(pool) < opens:
            raise ValueError(f"only {len(pool)} {name} open contexts for --opens {opens}; lower --opens or change OOD")
    anchor_contexts = anchor_context_names(anchors)
    rows = []
    for intent in tqdm(chosen, desc=f"build {domain}", disable=not progress):
        group_id = f"{domain}/{intent['id']}"
        part = split_of[intent["id"]]
        rng = random.Random(f"{seed}/opens/{intent['id']}")
        plan = [("test_id", id_pool), ("test_ood", ood_pool)] if part == "test" else [(part, id_pool)]
        for split, pool in plan:
            if not pool:
                continue
            provenance = intent_provenance(intent, seed)
            prefix = f"{group_id}/{split}"
            rows += [anchor_row(domain, intent, c, split, seed, provenance, prefix) for c in anchor_contexts]
            rows += [open_row(domain, intent, c, split, provenance, prefix) for c in pick_contexts(pool, opens, rng)]
    return rows


def anchor_context_names(anchors: int) -> list[str]:
    """Context ids of ``anchors`` anchors: ``mc``, ``tf``, then ``mc-2``, ``tf-2``, …

    >>> anchor_context_names(3)
    ['mc', 'tf', 'mc-2']
    """
    return [
        ANCHOR_CONTEXTS[i % len(ANCHOR_CONTEXTS)] + (f"-{i // len(ANCHOR_CONTEXTS) + 1}" if i >= 2 else "")
        for i in range(anchors)
    ]


def intent_provenance(intent: dict, seed: int, **extra) -> dict:
    """The ``meta`` every row of an intent carries: source, intent id, build seed, the intent's own meta."""
    meta = {"source": intent.get("source", "user"), "intent_id": intent["id"], "build_seed": seed, **extra}
    meta.update(intent.get("meta") or {})
    return meta


def _intent_fields(domain: str, intent: dict, split: str) -> dict:
    group_id = f"{domain}/{intent['id']}"
    return {"group_id": group_id, "domain": domain, "label": intent["label"], "intent": intent["text"], "split": split}


def anchor_row(domain: str, intent: dict, context: str, split: str, seed: int, meta: dict, id_prefix: str) -> dict:
    """The anchor row ``g(z, context)`` of an intent; options are shuffled by a seed derived from (seed, intent,
    context) and recorded in ``meta["option_seed"]``."""
    option_seed = _stable_seed(seed, intent["id"], context)
    text, verifier, answer = render_anchor(domain, intent, context, option_seed)
    return make_row(
        id=f"{id_prefix}/{context}",
        role="anchor",
        context=context,
        family=ANCHOR_FAMILY,
        content=text,
        verifier=verifier,
        answer=answer,
        meta={**meta, "option_seed": option_seed},
        **_intent_fields(domain, intent, split),
    )


def open_row(domain: str, intent: dict, context: dict, split: str, meta: dict, id_prefix: str) -> dict:
    """The open row ``g(z, context)`` of an intent under an open context (template or transform)."""
    math = domain == "math"
    return make_row(
        id=f"{id_prefix}/{context['context']}",
        role="open",
        context=context["context"],
        family=context["family"],
        content=R.with_instruction(render_open(context, _request(domain, intent)), domain),
        verifier="math" if math else "judge",
        answer=intent["meta"]["answer"] if math else None,
        meta=meta,
        **_intent_fields(domain, intent, split),
    )
