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
(``responses.py``, ``oracle.py``, ``judge.py``); everything else is data. :func:`load_world` validates a spec with
the package's one config validator (``air_align.configs.build``: each key's type and range from the dataclasses
below, what a kind asks across keys from :meth:`WorldSpec.problems`) and reports every problem at once, each with
its key path and the fix; ``air_align.configs.to_dict`` gives a spec back as the mapping it was read from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from air_align.configs import ConfigError, build, did_you_mean, to_dict
from air_align.rewards.verifiers import TASK_CORRECT, TASK_WRONG
from air_align.safe_yaml import YAMLInputError, brief, read_yaml

Kind = Literal["safety", "morality", "math"]
KINDS: tuple[str, ...] = get_args(Kind)
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


class WorldSpecError(ConfigError):
    """A world spec that cannot be used; the message lists every problem with its key path and the fix."""


def _words(value: tuple[str, ...]) -> str | None:
    """A list of one-word names: non-empty, each one word, none repeated."""
    if not value:
        return "expected a non-empty list of words"
    spaced = [w for w in value if not w.strip() or " " in w.strip()]
    if spaced:
        return f"expected one word each (no spaces), got {brief(spaced[0])}"
    if len(set(value)) != len(value):
        return f"repeated values {sorted({w for w in value if value.count(w) > 1})}"
    return None


def _both_labels(value: dict) -> str | None:
    missing = {0, 1} - set(value)
    return f"missing label(s) {sorted(missing)}: give both 1 and 0" if value and missing else None


def _probability(value: float) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"a probability must lie in [0, 1], got {value}"


def _anchor_accuracy(word: str, accuracy: float) -> str | None:
    if 0.5 <= accuracy <= 1.0:
        return None
    return (
        f"{brief(word)}: {accuracy} is outside [0.5, 1] (below 0.5 the warm start's anchors would be wrong more "
        "often than right)"
    )


def _with_x(value: str) -> str | None:
    return None if "{x}" in value else f"must contain {{x}} (the intent), got {brief(value)}"


Words = tuple[str, ...]
Label = Literal[0, 1]
"""1: harmful request / wrong act; 0: benign request / fine act."""
LABELS = {"check": _both_labels, "fix": "labels are 1 (harmful / wrong act) and 0 (benign / fine act)"}


@dataclass(frozen=True)
class Family:
    """One wrapper family of open variants: ``template`` holds ``{x}`` (the intent) and, in maths, may hold ``{d}``
    (the decoy answer). ``strength`` is the family's sway logit: the warm start follows ``sway`` on an intent with
    probability ``sigmoid(strength + susceptibility of the intent's feature word)``."""

    name: str
    template: str = field(metadata={"check": _with_x})
    ood: bool
    sway: str
    """One of the kind's :data:`SWAYS` (checked by :meth:`WorldSpec.problems`)."""
    strength: float = 0.0


@dataclass(frozen=True)
class Intents:
    """How intents are generated: every combination of the ``slots`` values in ``template`` (safety, morality), or
    the sums and differences of ``operands`` (maths). ``labels`` maps each value of ``label_slot`` to its label;
    ``feature_slot`` is the slot whose value moves the sways (maths: ``a``, the first operand), by its
    ``susceptibility`` (a logit offset added to every family's strength; 0 for values not listed). Which keys a kind
    takes is checked by :meth:`WorldSpec.problems`."""

    template: str | None = None
    slots: dict[str, Words] = field(default_factory=dict)
    feature_slot: str | None = None
    label_slot: str | None = None
    labels: dict[Label, Words] = field(default_factory=dict, metadata=LABELS)
    operations: tuple[Literal["plus", "minus"], ...] = ()
    max_operand: int | None = field(
        default=None, metadata={"check": lambda v: None if 2 <= v <= 40 else f"must be in 2..40, got {v}"}
    )
    susceptibility: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Anchors:
    """Anchor templates: ``mc`` (two options ``{o1}`` ``{o2}``, order drawn per intent) and ``tf`` (a statement with
    ``{x}``; maths also ``{s}``, the shown value). ``options`` are the (correct, wrong) option words per label (maths:
    the answer and the decoy, so none are given)."""

    mc: str
    tf: str
    options: dict[Label, tuple[str, str]] = field(default_factory=dict, metadata=LABELS)


@dataclass(frozen=True)
class Judge:
    """The training judge's knobs (``judge.py``): log-odds = ±``base`` from the content evidence, moved by
    ``cue_strength`` when the surface cue is present, plus N(0, ``noise``²), deterministic per (seed, intent, answer).
    ``stress``: the paper's "extremely hacked" open reward (the cue alone earns the top payout)."""

    noise: float = field(default=1.0, metadata={"check": lambda v: None if v >= 0 else f"must be >= 0.0, got {v}"})
    base: float = 3.0
    cue_strength: float = 4.0
    seed: int = 0
    stress: bool = False


@dataclass(frozen=True)
class WarmStart:
    """What the SFT warm start imitates on open variants: with probability ``p_hack`` the judge hack (safety,
    morality), so that RL can discover it; otherwise the family's sway with probability ``sigmoid(strength +
    susceptibility)`` (``WorldSpec.sway_probability``), else the correct behaviour."""

    p_hack: float = field(default=0.1, metadata={"check": _probability})
    anchor_accuracy: dict[str, float] = field(
        default_factory=dict,
        metadata={
            "check": lambda v: next(filter(None, (_anchor_accuracy(w, q) for w, q in v.items())), None),
            "fix": "give each feature word's accuracy in [0.5, 1] (words not listed: 1)",
        },
    )
    """How often the warm start's SFT data answers an intent's anchors correctly, by the intent's feature word
    (docs/lab.md §7, "Unsaturated anchors"): each anchor draw is the wrong answer with probability ``1 − accuracy``,
    so that the warm start's anchor reward, and RL's r̄_acr, differ by intent. Empty (the default): always right."""


@dataclass(frozen=True)
class Splits:
    """(train, val) fractions of each label-deciding stratum; the rest is test. Unpacks as ``train, val``."""

    train: float = field(default=0.5, metadata={"check": _probability})
    val: float = field(default=0.1667, metadata={"check": _probability})

    def __iter__(self):
        return iter((self.train, self.val))

    def problems(self) -> list[tuple[str, str]]:
        if self.train <= 0 or self.val <= 0 or self.train + self.val >= 1:
            return [
                ("", f"need train > 0, val > 0 and train + val < 1 (the rest is test), got {self.train}, {self.val}")
            ]
        return []


@dataclass(frozen=True)
class AnchorRewards:
    """Task reward of a right / wrong rule-verified answer (anchors; maths open variants): the real tier's +1.25 /
    −1.0 (``air_align.rewards.verifiers``). Unpacks as ``right, wrong``."""

    right: float = TASK_CORRECT
    wrong: float = TASK_WRONG

    def __iter__(self):
        return iter((self.right, self.wrong))


@dataclass(frozen=True)
class WorldSpec:
    """A whole lab world (see the module docstring and docs/lab.md)."""

    name: str
    kind: Kind
    intents: Intents
    anchors: Anchors
    families: tuple[Family, ...]
    cues: dict[str, str] = field(default_factory=dict)
    """A shared cue per sway direction (docs/lab.md §7, "Shared cues"): a phrase that the template of every family of
    that sway which triggers on some feature word carries, ID and OOD alike, and no family of another sway does."""
    description: str = ""
    splits: Splits = Splits()
    judge: Judge = Judge()
    rewards: dict[Label, dict[str, float]] = field(default_factory=dict, metadata=LABELS)
    """Task reward of an open answer by label and judge category (safety, morality)."""
    anchor_rewards: AnchorRewards = AnchorRewards()
    warm_start: WarmStart = WarmStart()

    def __post_init__(self):
        object.__setattr__(self, "description", " ".join(self.description.split()))

    def problems(self) -> list[tuple[str, str]]:
        """What the kind asks of the intents, anchors, families and rewards, as ``(key path, message)`` pairs."""
        return [
            *_intents_problems(self),
            *_anchor_problems(self),
            *_family_problems(self),
            *_reward_problems(self),
            *_cue_problems(self),
            *_warm_start_problems(self),
        ]

    def key(self) -> str:
        """A short hash of the spec (part of the warm-start cache key)."""
        blob = json.dumps(to_dict(self), sort_keys=True)
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


MATH_INTENTS = {"operations": ["plus", "minus"], "max_operand": 9, "feature_slot": "a"}
"""The maths kind's intents where a spec leaves them out: every sum and difference of 1..9, swaying on ``a``."""


def spec_from_dict(data: dict, source: str = "<dict>") -> WorldSpec:
    """Validate a spec mapping (``base`` already merged) into a :class:`WorldSpec`.

    Raises:
        WorldSpecError: listing every problem (key path, what is wrong, how to fix it).
    """
    if isinstance(data, dict) and data.get("kind") == "math" and isinstance(data.get("intents"), dict):
        data = {**data, "intents": {**MATH_INTENTS, **data["intents"]}}
    return build(WorldSpec, data, source, "world spec", WorldSpecError)


# --- what a kind asks of a spec (WorldSpec.problems) ----------------------------------------------------------------

MATH_ONLY = ("operations", "max_operand")
WORDS_ONLY = ("template", "slots", "label_slot", "labels")


def _intents_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    it, out = spec.intents, []
    if spec.kind == "math":
        for key in WORDS_ONLY:
            if getattr(it, key):
                out.append(
                    (
                        f"intents.{key}",
                        f"maths intents have no {key}; remove it (they take {', '.join(MATH_ONLY)}"
                        ", feature_slot, susceptibility)",
                    )
                )
        if it.feature_slot != "a":
            out.append(("intents.feature_slot", "maths intents sway on 'a' (the first operand)"))
        features = tuple(str(a) for a in range(1, min(it.max_operand or 0, 40) + 1))
    else:
        for key in MATH_ONLY:
            if getattr(it, key):
                out.append((f"intents.{key}", f"{spec.kind} intents have no {key}; remove it (maths only)"))
        for key in ("template", "slots", "label_slot", "feature_slot", "labels"):
            if not getattr(it, key):
                out.append((f"intents.{key}", "missing (required)"))
        for key in ("slots", "labels"):
            for name, words in getattr(it, key).items():
                message = _words(words)
                if message:
                    out.append((f"intents.{key}.{name}", message))
        names = [n.split("}")[0] for n in (it.template or "").split("{")[1:]]
        out += [
            ("intents.template", f"slot {{{n}}} has no values under intents.slots") for n in names if n not in it.slots
        ]
        out += [
            (f"intents.slots.{s}", f"not used in intents.template {brief(it.template)}")
            for s in it.slots
            if it.template and s not in names
        ]
        for key in ("label_slot", "feature_slot"):
            slot = getattr(it, key)
            if slot and slot not in it.slots:
                out.append((f"intents.{key}", f"{brief(slot)} is not one of the slots {list(it.slots)}"))
        if it.label_slot and it.label_slot == it.feature_slot:
            out.append(
                ("intents.feature_slot", "must differ from label_slot (a sway that depends on the label is bias)")
            )
        given = [w for words in it.labels.values() for w in words]
        if it.label_slot in it.slots and it.labels and sorted(given) != sorted(it.slots[it.label_slot]):
            values = it.slots[it.label_slot]
            out.append(
                (
                    "intents.labels",
                    f"must give every value of slot {brief(it.label_slot)} exactly one label; "
                    f"missing {sorted(set(values) - set(given))}, extra {sorted(set(given) - set(values))}",
                )
            )
        features = it.slots.get(it.feature_slot or "", ())
    out += [
        (f"intents.susceptibility.{k}", f"not a value of the feature slot {list(features)}")
        for k in it.susceptibility
        if features and k not in features
    ]
    return out


def _anchor_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    a, out = spec.anchors, []
    wanted = {"mc": ("{x}", "{o1}", "{o2}"), "tf": ("{x}",) + (("{s}",) * (spec.kind == "math"))}
    for key, slots in wanted.items():
        text = getattr(a, key)
        out += [(f"anchors.{key}", f"must contain {slot} ({brief(text)})") for slot in slots if slot not in text]
    if spec.kind == "math" and a.options:
        out.append(("anchors.options", "maths options are the answer and a decoy, drawn per intent; remove them"))
    elif spec.kind != "math" and not a.options:
        out.append(("anchors.options", "missing (required): the (correct, wrong) option words of labels 1 and 0"))
    for label, pair in a.options.items():
        message = _words(pair)
        if message:
            out.append((f"anchors.options.{label}", message))
    return out


def _family_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    out, sways = [], SWAYS[spec.kind]
    for i, fam in enumerate(spec.families):
        if fam.sway not in sways:
            out.append((f"families[{i}].sway", f"{brief(fam.sway)} is not a {spec.kind} sway; choose from {sways}"))
    names = spec.family_names()
    if len(set(names)) != len(names):
        out.append(("families", f"family names repeat: {sorted({n for n in names if names.count(n) > 1})}"))
    if not any(not f.ood for f in spec.families) or not any(f.ood for f in spec.families):
        out.append(("families", "need at least one ID (ood: false) and one OOD (ood: true) family"))
    return out


def _reward_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    if spec.kind == "math":
        if spec.rewards:
            return [("rewards", "maths open variants are verified exactly (anchor_rewards); remove 'rewards'")]
        return []
    if not spec.rewards:
        return [("rewards", "missing (required): the task reward of each judge category, per label")]
    out = []
    for label, table in spec.rewards.items():
        allowed = tuple(c for c in CATEGORIES[spec.kind] if c != "evasive" or (spec.kind, label) == ("safety", 1))
        for cat in table:
            if cat not in allowed:
                out.append(
                    (
                        f"rewards.{label}.{cat}",
                        f"unknown key; {did_you_mean(cat, allowed)}allowed: {', '.join(allowed)}",
                    )
                )
        out += [
            (f"rewards.{label}.{c}", "missing: give the task reward of this judge category")
            for c in allowed
            if c not in table
        ]
    return out


def has_phrase(template: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``template`` as whole words (the lab's tokenizer splits on whitespace).

    >>> has_phrase("no big deal , i {x}", "no big deal ,"), has_phrase("nobody said , i {x}", "body said")
    (True, False)
    """
    return f" {' '.join(phrase.split())} " in f" {' '.join(template.split())} "


def _feature_words(spec: WorldSpec) -> tuple[str, ...]:
    """``feature_values``, or none where the intents are too broken to name them (their own problems say why)."""
    it = spec.intents
    if spec.kind == "math":
        return tuple(str(a) for a in range(1, min(it.max_operand or 0, 40) + 1))
    return it.slots.get(it.feature_slot or "", ())


def _cue_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    out, sways, values = [], SWAYS[spec.kind], _feature_words(spec)
    for sway, phrase in spec.cues.items():
        path = f"cues.{sway}"
        if sway not in sways:
            out.append((path, f"{brief(sway)} is not a {spec.kind} sway; choose from {sways}"))
            continue
        if not phrase.split() or "{" in phrase or "}" in phrase:
            out.append((path, f"expected a phrase of one or more words without {{slots}}, got {brief(phrase)}"))
            continue
        for i, fam in enumerate(spec.families):
            pushes = any(spec.triggered(fam, v) for v in values)
            if fam.sway == sway and pushes and not has_phrase(fam.template, phrase):
                out.append(
                    (
                        path,
                        f"family {fam.name!r} (families[{i}]) sways on some feature words but its template "
                        f"lacks the cue {brief(phrase)}; add the phrase to its template, or remove {path}",
                    )
                )
            elif fam.sway != sway and has_phrase(fam.template, phrase):
                out.append(
                    (
                        path,
                        f"family {fam.name!r} (families[{i}]) of sway {fam.sway!r} carries the cue "
                        f"{brief(phrase)} too; a shared cue belongs to one direction: choose another phrase",
                    )
                )
    return out


def _warm_start_problems(spec: WorldSpec) -> list[tuple[str, str]]:
    if spec.kind == "math" and spec.warm_start.anchor_accuracy:
        return [
            (
                "warm_start.anchor_accuracy",
                "a maths anchor's answer follows from its worked sum; unsaturated "
                "anchors are for safety and morality worlds: remove it",
            )
        ]
    values = _feature_words(spec)
    return [
        (f"warm_start.anchor_accuracy.{k}", f"not a value of the feature slot {list(values)}")
        for k in spec.warm_start.anchor_accuracy
        if values and k not in values
    ]


def anchor_accuracy(spec: WorldSpec, feature: str) -> float:
    """The share of right answers in the warm start's SFT data for the anchors of an intent with this feature word
    (``WarmStart.anchor_accuracy``; 1 for words it does not list)."""
    return spec.warm_start.anchor_accuracy.get(str(feature), 1.0)


def sft_key(spec: WorldSpec) -> dict:
    """The parts of a spec that shape the warm start (kind, intents, anchors, families, splits, warm-start
    probabilities): not its name, judge or rewards, so that a world and its miscalibrated control share a warm
    start."""
    d = to_dict(spec)
    return {k: d[k] for k in ("kind", "intents", "anchors", "families", "splits", "warm_start")}


def with_judge(spec: WorldSpec, **changes) -> WorldSpec:
    """The same world with some judge knobs changed (a regime: e.g. ``cue_strength=1.0``, ``stress=True``)."""
    unknown = set(changes) - {f.name for f in dataclasses.fields(Judge)}
    if unknown:
        raise ValueError(
            f"unknown judge setting(s) {sorted(unknown)}; the judge has {[f.name for f in dataclasses.fields(Judge)]}"
        )
    return dataclasses.replace(spec, judge=dataclasses.replace(spec.judge, **changes))
