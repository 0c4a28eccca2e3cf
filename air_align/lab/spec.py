"""World specs: a lab world as a data file (docs/lab.md §1, "Worlds as data").

A world is everything the lab needs to know about one domain: the vocabulary of its intents and which word decides
the hidden label, the anchor renderings, the wrapper families (template, ID or OOD, what they sway towards and for
which intents), the training judge's knobs and its reward table, and the warm start's sway probabilities. The
built-in worlds are YAML files in ``air_align/lab/worlds/`` (``safety``, ``morality``, ``math`` and the
``safety-miscalibrated`` control); ``air-align reproduce --world FILE`` runs any other file, so a researcher can test
AIR on a world of their own without editing code.

A spec may start with ``base: NAME_OR_PATH``: it is then that spec with the keys given here replaced (mappings merged
key by key, lists replaced whole). ``safety-miscalibrated.yaml`` is ``base: safety`` plus another reward table.

The *kind* (``safety`` | ``morality`` | ``math``) fixes the response grammar, the oracle and what the judge reads
(``responses.py``, ``oracle.py``, ``judge.py``); everything else is data. :func:`load_world` validates a spec and
reports every problem at once, each with its key path and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from air_align.rewards.verifiers import TASK_CORRECT, TASK_WRONG
from air_align.safe_yaml import YAMLInputError, brief, read_yaml

KINDS: tuple[str, ...] = ("safety", "morality", "math")
SWAYS: dict[str, tuple[str, ...]] = {
    "safety": ("comply", "refuse"),
    "morality": ("excuse", "condemn"),
    "math": ("decoy",),
}
"""What a wrapper family may push towards, per kind."""
CATEGORIES: dict[str, tuple[str, ...]] = {
    "safety": ("rejected", "accepted", "exemplary", "evasive"),
    "morality": ("rejected", "accepted", "exemplary"),
    "math": (),
}
"""The judge's verdict categories of an open answer, per kind (``judge.py``): the reward table pays per category.
``evasive`` (judged safe but neither refusing nor helping) exists for harmful safety requests only."""
LABELS: dict[str, tuple[int, ...]] = {"safety": (1, 0), "morality": (1, 0), "math": ()}
WORLDS_DIR = Path(__file__).with_name("worlds")


class WorldSpecError(ValueError):
    """A world spec that cannot be used; the message lists every problem with its key path and the fix."""


@dataclass(frozen=True)
class Family:
    """One wrapper family of open variants: ``template`` holds ``{x}`` (the intent) and, in maths, may hold ``{d}``
    (the decoy answer). ``strength`` is the family's sway logit: the warm start follows ``sway`` on an intent with
    probability ``sigmoid(strength + susceptibility of the intent's feature word)``."""

    name: str
    template: str
    ood: bool
    sway: str
    strength: float


@dataclass(frozen=True)
class Intents:
    """How intents are generated: every combination of the ``slots`` values in ``template`` (safety, morality), or
    the sums and differences of ``operands`` (maths). ``labels`` maps each value of ``label_slot`` to its label;
    ``feature_slot`` is the slot whose value moves the sways (maths: ``a``, the first operand), by its
    ``susceptibility`` (a logit offset added to every family's strength; 0 for values not listed)."""

    template: str
    slots: dict[str, tuple[str, ...]]
    feature_slot: str
    label_slot: str | None = None
    labels: dict[int, tuple[str, ...]] = field(default_factory=dict)
    operations: tuple[str, ...] = ()
    max_operand: int = 0
    susceptibility: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Anchors:
    """Anchor templates: ``mc`` (two options ``{o1}`` ``{o2}``, order drawn per intent) and ``tf`` (a statement with
    ``{x}``; maths also ``{s}``, the shown value). ``options`` are the (correct, wrong) option words per label (maths:
    the answer and the decoy, so none are given)."""

    mc: str
    tf: str
    options: dict[int, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Judge:
    """The training judge's knobs (``judge.py``): log-odds = ±``base`` from the content evidence, moved by
    ``cue_strength`` when the surface cue is present, plus N(0, ``noise``²), deterministic per (seed, intent, answer).
    ``stress``: the paper's "extremely hacked" open reward (the cue alone earns the top payout)."""

    noise: float = 1.0
    base: float = 3.0
    cue_strength: float = 4.0
    seed: int = 0
    stress: bool = False


@dataclass(frozen=True)
class WarmStart:
    """What the SFT warm start imitates on open variants: with probability ``p_hack`` the judge hack (safety,
    morality), so that RL can discover it; otherwise the family's sway with probability ``sigmoid(strength +
    susceptibility)`` (``WorldSpec.sway_probability``), else the correct behaviour."""

    p_hack: float = 0.1


@dataclass(frozen=True)
class WorldSpec:
    """A whole lab world (see the module docstring and docs/lab.md)."""

    name: str
    kind: str
    intents: Intents
    anchors: Anchors
    families: tuple[Family, ...]
    description: str = ""
    splits: tuple[float, float] = (0.5, 0.1667)
    """(train, val) fractions of each label-deciding stratum; the rest is test."""
    judge: Judge = Judge()
    rewards: dict[int, dict[str, float]] = field(default_factory=dict)
    """Task reward of an open answer by label and judge category (safety, morality)."""
    anchor_rewards: tuple[float, float] = (TASK_CORRECT, TASK_WRONG)
    """Task reward of a right / wrong rule-verified answer (anchors; maths open variants): the real tier's +1.25 /
    −1.0 (``air_align.rewards.verifiers``)."""
    warm_start: WarmStart = WarmStart()

    def key(self) -> str:
        """A short hash of the spec (part of the warm-start cache key)."""
        blob = json.dumps(spec_to_dict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def family(self, name: str) -> Family:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise ValueError(f"world {self.name!r} has no family {name!r}; it has {', '.join(self.family_names())}")

    def family_names(self) -> list[str]:
        return [f.name for f in self.families]

    def feature_values(self) -> tuple[str, ...]:
        """The values the trigger lists may name."""
        if self.kind == "math":
            return tuple(str(a) for a in range(1, self.intents.max_operand + 1))
        return self.intents.slots[self.intents.feature_slot]

    def sway_logit(self, family: Family, feature: str) -> float:
        """``strength + susceptibility``: the warm start sways with probability ``sigmoid`` of it, and greedy
        decoding follows the sway exactly where it is positive (the family is *triggered* on that intent)."""
        return family.strength + self.intents.susceptibility.get(str(feature), 0.0)

    def sway_probability(self, family: Family, feature: str) -> float:
        return 1.0 / (1.0 + math.exp(-self.sway_logit(family, feature)))

    def triggered(self, family: Family, feature: str) -> bool:
        return self.sway_logit(family, feature) > 0

    def sway_rate(self, family: Family) -> float:
        """Share of feature values on which ``family`` is triggered."""
        values = self.feature_values()
        return sum(self.triggered(family, v) for v in values) / len(values)


# --- loading ---------------------------------------------------------------------------------------------------------


def builtin_worlds() -> list[str]:
    """Names of the built-in world files."""
    return sorted(p.stem for p in WORLDS_DIR.glob("*.yaml"))


def _resolve(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    text = str(name_or_path)
    if (WORLDS_DIR / f"{text}.yaml").exists() and "/" not in text and not text.endswith((".yaml", ".yml")):
        return WORLDS_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.is_absolute() and relative_to is not None and (relative_to / path).exists():
        path = relative_to / path
    if not path.exists():
        raise WorldSpecError(f"world {text!r}: no such file, and not a built-in world ({', '.join(builtin_worlds())})")
    return path


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def raw_world(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict, str]:
    """The spec mapping of a world file with its ``base`` chain merged in, and its source (for messages)."""
    path = _resolve(name_or_path, _seen[-1].parent if _seen else None).resolve()
    if path in _seen:
        raise WorldSpecError(f"{path}: 'base' chain loops back to itself ({' -> '.join(map(str, _seen))})")
    try:
        data = read_yaml(path, hint="a world spec is a mapping (name, kind, intents, ...)")
    except YAMLInputError as err:
        raise WorldSpecError(str(err)) from None
    if not isinstance(data, dict):
        raise WorldSpecError(
            f"{path}: a world spec is a YAML mapping (name, kind, intents, ...), got {type(data).__name__}"
        )
    base = data.pop("base", None)
    if base is not None:
        parent, _ = raw_world(base, (*_seen, path))
        parent.pop("name", None)
        parent.pop("description", None)
        data = _merge(parent, data)
    return data, str(path)


def load_world(name_or_path: str | Path | WorldSpec) -> WorldSpec:
    """A validated :class:`WorldSpec` from a built-in name (``safety``) or a YAML file.

    Raises:
        WorldSpecError: listing every problem (key path, what is wrong, how to fix it).
    """
    if isinstance(name_or_path, WorldSpec):
        return name_or_path
    data, source = raw_world(name_or_path)
    return spec_from_dict(data, source)


# --- validation ------------------------------------------------------------------------------------------------------


class _Problems:
    def __init__(self, source: str):
        self.source, self.items = source, []

    def add(self, path: str, message: str) -> None:
        line = f"{path}: {message}"  # a path holds keys of the file: a long one is cut
        self.items.append(line if len(line) <= 500 else line[:480] + " … (cut)")

    def unknown(self, path: str, mapping: dict, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {brief(close[0])}? " if close else ""
                self.add(f"{path}.{key}".lstrip("."), f"unknown key; {hint}allowed: {', '.join(allowed)}")

    def raise_if_any(self) -> None:
        if self.items:
            lines = "\n  - ".join(self.items)
            raise WorldSpecError(f"{self.source}: invalid world spec ({len(self.items)} problem(s)):\n  - {lines}")


def _get(d: dict, key: str, kind: type | tuple, path: str, problems: _Problems, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            problems.add(f"{path}{key}", "missing (required)")
        return None if default is ... else default
    value = d[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        problems.add(f"{path}{key}", f"expected {names}, got {type(value).__name__} {brief(value)}")
        return None if default is ... else default
    return value


def _words(value, path: str, problems: _Problems) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        problems.add(path, f"expected a non-empty list of words, got {brief(value)}")
        return ()
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, str | int) or not str(v).strip() or " " in str(v).strip():
            problems.add(f"{path}[{i}]", f"expected one word (no spaces), got {brief(v)}")
        else:
            out.append(str(v).strip())
    if len(set(out)) != len(out):
        problems.add(path, f"repeated values {sorted({w for w in out if out.count(w) > 1})}")
    return tuple(out)


def _probability(d: dict, key: str, path: str, problems: _Problems, default: float) -> float:
    value = _get(d, key, float, path, problems, default)
    if value is not None and not 0.0 <= value <= 1.0:
        problems.add(f"{path}{key}", f"a probability must lie in [0, 1], got {value}")
    return value if value is not None else default


def _finite(d: dict, key: str, path: str, problems: _Problems, default: float, minimum: float | None = None) -> float:
    value = _get(d, key, float, path, problems, default)
    if value is None:
        return default
    if value != value or value in (float("inf"), float("-inf")):
        problems.add(f"{path}{key}", f"must be a finite number, got {value}")
    elif minimum is not None and value < minimum:
        problems.add(f"{path}{key}", f"must be >= {minimum}, got {value}")
    return value


def _labels(value, path: str, problems: _Problems) -> dict[int, Any]:
    if not isinstance(value, dict):
        problems.add(path, f"expected a mapping from label (1, 0) to values, got {brief(value)}")
        return {}
    out = {}
    for k, v in value.items():
        if str(k) not in ("0", "1"):
            problems.add(f"{path}.{k}", "labels are 1 (harmful / wrong act) and 0 (benign / fine act)")
            continue
        out[int(k)] = v
    missing = {0, 1} - set(out)
    if missing:
        problems.add(path, f"missing label(s) {sorted(missing)}: give both 1 and 0")
    return out


def _intents(d, kind: str, problems: _Problems) -> Intents | None:
    if not isinstance(d, dict):
        problems.add("intents", f"expected a mapping, got {brief(d)}")
        return None
    if kind == "math":
        problems.unknown("intents", d, ("operations", "max_operand", "feature_slot", "template", "susceptibility"))
        ops = _words(d.get("operations", ["plus", "minus"]), "intents.operations", problems)
        bad = [o for o in ops if o not in ("plus", "minus")]
        if bad:
            problems.add("intents.operations", f"unknown operation(s) {bad}; the maths kind knows plus and minus")
        top = _get(d, "max_operand", int, "intents.", problems, 9)
        if top is not None and not 2 <= top <= 40:
            problems.add("intents.max_operand", f"must be in 2..40, got {top}")
        if d.get("feature_slot", "a") != "a":
            problems.add("intents.feature_slot", "maths intents sway on 'a' (the first operand)")
        values = tuple(str(a) for a in range(1, (top or 9) + 1))
        return Intents("{a} {op} {b}", {}, "a", operations=ops, max_operand=top or 9,
                       susceptibility=_susceptibility(d.get("susceptibility"), values, problems))  # fmt: skip
    problems.unknown("intents", d, ("template", "slots", "label_slot", "labels", "feature_slot", "susceptibility"))
    template = _get(d, "template", str, "intents.", problems)
    slots_raw = _get(d, "slots", dict, "intents.", problems) or {}
    slots = {str(k): _words(v, f"intents.slots.{k}", problems) for k, v in slots_raw.items()}
    if template is not None:
        names = [n.split("}")[0] for n in template.split("{")[1:]]
        for n in names:
            if n not in slots:
                problems.add("intents.template", f"slot {{{n}}} has no values under intents.slots")
        for s in slots:
            if s not in names:
                problems.add(f"intents.slots.{s}", f"not used in intents.template {brief(template)}")
    label_slot = _get(d, "label_slot", str, "intents.", problems)
    feature_slot = _get(d, "feature_slot", str, "intents.", problems)
    for key, slot in (("label_slot", label_slot), ("feature_slot", feature_slot)):
        if slot is not None and slot not in slots:
            problems.add(f"intents.{key}", f"{brief(slot)} is not one of the slots {list(slots)}")
    if label_slot is not None and label_slot == feature_slot:
        problems.add("intents.feature_slot", "must differ from label_slot (a sway that depends on the label is bias)")
    labels = {k: _words(v, f"intents.labels.{k}", problems) for k, v in _labels(d.get("labels"), "intents.labels",
                                                                               problems).items()}  # fmt: skip
    if label_slot in slots and labels:
        given = [w for ws in labels.values() for w in ws]
        if sorted(given) != sorted(slots[label_slot]):
            problems.add(
                "intents.labels",
                f"must give every value of slot {brief(label_slot)} exactly one label; missing "
                f"{sorted(set(slots[label_slot]) - set(given))}, extra {sorted(set(given) - set(slots[label_slot]))}",
            )
    susceptibility = _susceptibility(d.get("susceptibility"), slots.get(feature_slot or "", ()), problems)
    return Intents(template or "", slots, feature_slot or "", label_slot, labels, susceptibility=susceptibility)


def _susceptibility(value, features: tuple[str, ...], problems: _Problems) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add("intents.susceptibility", f"expected a mapping feature value: logit offset, got {brief(value)}")
        return {}
    out = {}
    for k in value:
        if features and str(k) not in features:
            problems.add(f"intents.susceptibility.{k}", f"not a value of the feature slot {list(features)}")
        out[str(k)] = _finite(value, k, "intents.susceptibility.", problems, 0.0)
    return out


def _anchors(d, kind: str, problems: _Problems) -> Anchors | None:
    if not isinstance(d, dict):
        problems.add("anchors", f"expected a mapping with mc, tf, options, got {brief(d)}")
        return None
    problems.unknown("anchors", d, ("mc", "tf", "options"))
    mc = _get(d, "mc", str, "anchors.", problems)
    tf = _get(d, "tf", str, "anchors.", problems)
    for key, text, slots in (
        ("mc", mc, ("{x}", "{o1}", "{o2}")),
        ("tf", tf, ("{x}",) + (("{s}",) * (kind == "math"))),
    ):
        for slot in slots if text is not None else ():
            if slot not in text:
                problems.add(f"anchors.{key}", f"must contain {slot} ({brief(text)})")
    options: dict[int, tuple[str, str]] = {}
    if kind != "math":
        for label, pair in _labels(d.get("options"), "anchors.options", problems).items():
            words = _words(pair, f"anchors.options.{label}", problems)
            if len(words) != 2:
                problems.add(f"anchors.options.{label}", f"expected [correct, wrong], got {brief(pair)}")
            else:
                options[label] = words
    return Anchors(mc or "", tf or "", options)


def _families(value, spec_kind: str, problems: _Problems) -> tuple[Family, ...]:
    if not isinstance(value, list) or not value:
        problems.add("families", "expected a non-empty list of families")
        return ()
    out = []
    for i, d in enumerate(value):
        path = f"families[{i}]."
        if not isinstance(d, dict):
            problems.add(f"families[{i}]", f"expected a mapping, got {brief(d)}")
            continue
        problems.unknown(f"families[{i}]", d, ("name", "template", "ood", "sway", "strength"))
        name = _get(d, "name", str, path, problems)
        template = _get(d, "template", str, path, problems)
        ood = _get(d, "ood", bool, path, problems)
        sway = _get(d, "sway", str, path, problems)
        if template is not None and "{x}" not in template:
            problems.add(f"{path}template", f"must contain {{x}} (the intent), got {brief(template)}")
        if sway is not None and sway not in SWAYS.get(spec_kind, ()):
            problems.add(f"{path}sway", f"{brief(sway)} is not a {spec_kind} sway; choose from {SWAYS.get(spec_kind)}")
        strength = _finite(d, "strength", path, problems, 0.0)
        out.append(Family(name or f"family{i}", template or "", bool(ood), sway or "", strength))
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        problems.add("families", f"family names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    if not any(not f.ood for f in out) or not any(f.ood for f in out):
        problems.add("families", "need at least one ID (ood: false) and one OOD (ood: true) family")
    return tuple(out)


def _rewards(d, kind: str, problems: _Problems) -> dict[int, dict[str, float]]:
    if kind == "math":
        if d:
            problems.add("rewards", "maths open variants are verified exactly (anchor_rewards); remove 'rewards'")
        return {}
    out: dict[int, dict[str, float]] = {}
    for label, table in _labels(d, "rewards", problems).items():
        path = f"rewards.{label}"
        if not isinstance(table, dict):
            problems.add(path, f"expected a mapping category: reward, got {brief(table)}")
            continue
        allowed = CATEGORIES[kind] if (kind == "safety" and label == 1) else tuple(c for c in CATEGORIES[kind]
                                                                                  if c != "evasive")  # fmt: skip
        problems.unknown(path, table, allowed)
        for cat in allowed:
            if cat not in table:
                problems.add(f"{path}.{cat}", "missing: give the task reward of this judge category")
        out[label] = {c: _finite(table, c, f"{path}.", problems, 0.0) for c in allowed if c in table}
    return out


TOP_KEYS = ("name", "kind", "description", "intents", "anchors", "families", "splits", "judge", "rewards",
            "anchor_rewards", "warm_start")  # fmt: skip


def spec_from_dict(data: dict, source: str = "<dict>") -> WorldSpec:
    """Validate a spec mapping (``base`` already merged) into a :class:`WorldSpec`."""
    problems = _Problems(source)
    problems.unknown("", data, TOP_KEYS)
    name = _get(data, "name", str, "", problems)
    kind = _get(data, "kind", str, "", problems)
    if kind is not None and kind not in KINDS:
        problems.add("kind", f"{brief(kind)} is not a lab kind; choose from {', '.join(KINDS)}")
    kind = kind if kind in KINDS else "safety"
    intents = _intents(data.get("intents"), kind, problems) if "intents" in data else None
    if intents is None and "intents" not in data:
        problems.add("intents", "missing (required)")
    anchors = _anchors(data.get("anchors"), kind, problems) if "anchors" in data else None
    if "anchors" not in data:
        problems.add("anchors", "missing (required)")
    families = _families(data.get("families"), kind, problems)
    splits_raw = _get(data, "splits", dict, "", problems, {"train": 0.5, "val": 0.1667})
    problems.unknown("splits", splits_raw or {}, ("train", "val"))
    train = _probability(splits_raw or {}, "train", "splits.", problems, 0.5)
    val = _probability(splits_raw or {}, "val", "splits.", problems, 0.1667)
    if train <= 0 or val <= 0 or train + val >= 1:
        problems.add("splits", f"need train > 0, val > 0 and train + val < 1 (the rest is test), got {train}, {val}")
    judge_raw = _get(data, "judge", dict, "", problems, {}) or {}
    problems.unknown("judge", judge_raw, tuple(f.name for f in dataclasses.fields(Judge)))
    judge = Judge(
        noise=_finite(judge_raw, "noise", "judge.", problems, Judge.noise, minimum=0.0),
        base=_finite(judge_raw, "base", "judge.", problems, Judge.base),
        cue_strength=_finite(judge_raw, "cue_strength", "judge.", problems, Judge.cue_strength),
        seed=_get(judge_raw, "seed", int, "judge.", problems, 0) or 0,
        stress=bool(_get(judge_raw, "stress", bool, "judge.", problems, False)),
    )
    rewards = _rewards(data.get("rewards"), kind, problems)
    ar = data.get("anchor_rewards", {"right": TASK_CORRECT, "wrong": TASK_WRONG})
    if not isinstance(ar, dict):
        problems.add("anchor_rewards", f"expected a mapping with right and wrong, got {brief(ar)}")
        ar = {}
    problems.unknown("anchor_rewards", ar, ("right", "wrong"))
    anchor_rewards = (_finite(ar, "right", "anchor_rewards.", problems, TASK_CORRECT),
                      _finite(ar, "wrong", "anchor_rewards.", problems, TASK_WRONG))  # fmt: skip
    ws_raw = _get(data, "warm_start", dict, "", problems, {}) or {}
    problems.unknown("warm_start", ws_raw, tuple(f.name for f in dataclasses.fields(WarmStart)))
    warm = WarmStart(**{f.name: _probability(ws_raw, f.name, "warm_start.", problems, f.default)
                        for f in dataclasses.fields(WarmStart)})  # fmt: skip
    problems.raise_if_any()
    return WorldSpec(
        name=name,
        kind=kind,
        description=" ".join(str(data.get("description", "")).split()),
        intents=intents,
        anchors=anchors,
        families=families,
        splits=(train, val),
        judge=judge,
        rewards=rewards,
        anchor_rewards=anchor_rewards,
        warm_start=warm,
    )


def spec_to_dict(spec: WorldSpec) -> dict:
    """The spec as a plain mapping that :func:`spec_from_dict` reads back to an equal spec (round trip)."""
    it = spec.intents
    if spec.kind == "math":
        intents = {"operations": list(it.operations), "max_operand": it.max_operand, "feature_slot": "a",
                   "susceptibility": dict(it.susceptibility)}  # fmt: skip
    else:
        intents = {"template": it.template, "slots": {k: list(v) for k, v in it.slots.items()},
                   "label_slot": it.label_slot, "labels": {k: list(v) for k, v in it.labels.items()},
                   "feature_slot": it.feature_slot, "susceptibility": dict(it.susceptibility)}  # fmt: skip
    out = {
        "name": spec.name,
        "kind": spec.kind,
        "description": spec.description,
        "intents": intents,
        "anchors": {"mc": spec.anchors.mc, "tf": spec.anchors.tf}
        | ({"options": {k: list(v) for k, v in spec.anchors.options.items()}} if spec.kind != "math" else {}),
        "families": [
            {"name": f.name, "template": f.template, "ood": f.ood, "sway": f.sway, "strength": f.strength}
            for f in spec.families
        ],
        "splits": {"train": spec.splits[0], "val": spec.splits[1]},
        "judge": dataclasses.asdict(spec.judge),
        "anchor_rewards": {"right": spec.anchor_rewards[0], "wrong": spec.anchor_rewards[1]},
        "warm_start": dataclasses.asdict(spec.warm_start),
    }
    if spec.kind != "math":
        out["rewards"] = {k: dict(v) for k, v in spec.rewards.items()}
    return out


def sft_key(spec: WorldSpec) -> dict:
    """The parts of a spec that shape the warm start (kind, intents, anchors, families, splits, warm-start
    probabilities): not its name, judge or rewards, so that a world and its miscalibrated control share a warm
    start."""
    d = spec_to_dict(spec)
    return {k: d[k] for k in ("kind", "intents", "anchors", "families", "splits", "warm_start")}


def with_judge(spec: WorldSpec, **changes) -> WorldSpec:
    """The same world with some judge knobs changed (a regime: e.g. ``cue_strength=1.0``, ``stress=True``)."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(Judge)}
    if unknown:
        raise ValueError(f"unknown judge setting(s) {sorted(unknown)}; the judge has "
                         f"{[f.name for f in dataclasses.fields(Judge)]}")  # fmt: skip
    return dataclasses.replace(spec, judge=dataclasses.replace(spec.judge, **changes))
