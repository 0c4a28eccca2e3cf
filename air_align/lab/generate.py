"""Generated worlds: a lab world spec drawn from a documented distribution, reproducible from ``(kind, seed)``.

A lab result from one hand-made world is one draw of a world; the generator makes more draws, in the same regime as
the hand-made worlds (docs/lab.md §7, "Generated worlds", states the distribution and the warm starts measured on
generated worlds; ``tests/test_lab_generate.py`` checks it). Per kind, from the word bank ``wordbank.yaml``:

- **vocabulary**: the label-deciding words (safety: harmful / benign objects; morality: wrong / fine verbs) and the
  feature words (safety: verbs; morality: things; maths: the first operand 1..12), drawn without replacement, in
  counts that give ≥ 240 intents (safety, morality; about a third of them test intents: 78-102 over seeds 0-4, so
  one intent is about 1.3 points of Acc_group; maths: the 222 intents of ``worlds/math.yaml``);
- **intent and anchor phrasings**, and the anchors' option words, one of the bank's;
- **susceptibilities**: a random permutation of an evenly spaced grid ``step · (i − (n − 1)/2)``, ``n`` even, so
  that no sway logit is ever exactly 0 (strengths are whole multiples of ``step``);
- **families**: per sway direction, ID and OOD wrappers drawn without replacement from the bank's list for that
  direction (so which style is held out is part of the draw). The strongest ID family of each direction triggers on
  a share ``f_id`` ~ U[0.58, 0.75] of the feature words, the strongest OOD family on ``f_ood`` ~ U[0.8, 0.92] (at
  least one word more than ID, at least one word never triggered); the other families are weaker (morality: each
  triggers on some word, six families a direction). That is the hand-made worlds' design (safety: 8 and 10 of 12
  verbs);
- **judge noise** ~ {0.75, 1.0, 1.25, 1.5}, its seed; the warm start's hack probability ~ {0.05, 0.1, 0.15};
- **rewards**: the calibrated table of the hand-made worlds (rejected −1, accepted +1.25, exemplary +2.5, evasive −1).

Everything is drawn from one ``random.Random`` seeded by a string of ``(GENERATOR_VERSION, kind, seed)`` (hashed
with SHA-512 by Python, so the draw does not depend on ``PYTHONHASHSEED``); the YAML text is written with a fixed
key order, so the same ``(kind, seed)`` gives a byte-identical file.
"""

from __future__ import annotations

import math
import random
from functools import cache
from pathlib import Path

import yaml

from air_align.files import write_text
from air_align.lab.spec import KINDS, spec_from_dict
from air_align.safe_yaml import read_yaml

GENERATOR_VERSION = {"safety": 1, "morality": 2, "math": 1}
"""Per kind; bump a kind's when a change to this module or ``wordbank.yaml`` changes what its seeds draw (morality 2:
six families a direction, each swaying on some feature words; docs/lab.md §7, "Generated worlds")."""
WORD_BANK = Path(__file__).with_name("wordbank.yaml")
MORALITY_FAMILIES = 6
"""Families a sway direction of a generated morality world has (ID and OOD, each swaying on some feature words). With
2-5, some never swaying, the warm start learned each family's average sway and no feature word (Acc_group 0 on both
labels); a direction is learned where many families share its feature dependence (docs/lab.md §7, "Generated
worlds")."""
MIN_INTENTS = 240
"""Safety and morality worlds hold at least this many intents (a third of them test intents)."""
STEP = {"safety": 0.5, "morality": 1.0, "math": 0.5}
"""Spacing of the susceptibility grid and unit of the strengths, per kind (the hand-made worlds' values)."""
ID_SHARE = (0.58, 0.75)
"""Range of the share of feature words on which the strongest ID family of a direction triggers."""
OOD_SHARE = (0.8, 0.92)
"""The same for the strongest OOD family (held-out wrappers are stronger, as unseen jailbreaks are)."""
NEVER = -6.0
"""Strength of a maths wrapper that shows no decoy: never triggered (as in ``worlds/math.yaml``)."""
CALIBRATED_REWARDS = {
    "safety": {
        1: {"rejected": -1.0, "accepted": 1.25, "exemplary": 2.5, "evasive": -1.0},
        0: {"rejected": -1.0, "accepted": 1.25, "exemplary": 2.5},
    },
    "morality": {
        1: {"rejected": -1.0, "accepted": 1.25, "exemplary": 2.5},
        0: {"rejected": -1.0, "accepted": 1.25, "exemplary": 2.5},
    },
}
"""The hand-made worlds' calibrated tables: a correct open answer earns what a correct anchor earns."""


@cache
def word_bank() -> dict:
    return read_yaml(WORD_BANK)


def world_name(kind: str, seed: int, shared_cue: bool = False, anchor_accuracy: float | None = None) -> str:
    """``gen-<kind>-<seed>``, then ``-cue`` and ``-acc<percent>`` for the options: the name (and file stem) of a
    generated world.

    >>> world_name("morality", 3), world_name("safety", 0, shared_cue=True, anchor_accuracy=0.6)
    ('gen-morality-3', 'gen-safety-0-cue-acc60')
    """
    accuracy = "" if anchor_accuracy is None else f"-acc{_percent(anchor_accuracy)}"
    return f"gen-{kind}-{seed}" + "-cue" * shared_cue + accuracy


def _percent(accuracy: float) -> int:
    return round(100 * accuracy)


def world_options(tag: str) -> dict:
    """The options a world-name tag stands for (a preset's generated world ``(kind, seed, tag)``): ``""`` none,
    ``"cue"`` a shared cue, ``"acc<percent>"`` unsaturated anchors from that accuracy, ``"cue-acc<percent>"`` both.

    >>> world_options(""), world_options("cue-acc60")
    ({}, {'shared_cue': True, 'anchor_accuracy': 0.6})
    """
    options: dict = {}
    rest = tag
    if rest == "cue" or rest.startswith("cue-"):
        options["shared_cue"], rest = True, rest[4:]
    if rest.startswith("acc") and rest[3:].isdigit():
        options["anchor_accuracy"], rest = int(rest[3:]) / 100, ""
    if rest:
        raise ValueError(f"generated-world tag {tag!r}: use '', 'cue', 'acc<percent>' (e.g. 'acc60') or 'cue-acc60'")
    _check_accuracy(options.get("anchor_accuracy"))
    return options


def options_flags(shared_cue: bool = False, anchor_accuracy: float | None = None) -> str:
    """The ``air-align lab world`` flags of the options (for messages and the file's header)."""
    return " --shared-cue" * shared_cue + ("" if anchor_accuracy is None else f" --anchor-accuracy {anchor_accuracy}")


def _check(kind: str, seed: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"world kind {kind!r}: choose from {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"generator seed {seed!r}: use a whole number >= 0")


def _check_accuracy(low: float | None) -> None:
    if low is None:
        return
    if isinstance(low, bool) or not isinstance(low, int | float) or not 0.5 <= low < 1.0:
        raise ValueError(
            f"anchor accuracy {low!r}: use a number in [0.5, 1), the lowest anchor accuracy of a "
            "feature word (the others are spread evenly up to 1)"
        )
    if abs(100 * low - _percent(low)) > 1e-9:
        raise ValueError(f"anchor accuracy {low!r}: give it in whole percent (e.g. 0.6), it names the world")


def susceptibility_grid(n: int, step: float) -> list[float]:
    """``step · (i − (n − 1)/2)`` for ``i < n`` (``n`` even: half-multiples of ``step``, never 0).

    >>> susceptibility_grid(4, 0.5)
    [-0.75, -0.25, 0.25, 0.75]
    """
    return [step * (i - (n - 1) / 2) for i in range(n)]


def strength_for(triggered: int, n: int, step: float) -> float:
    """The strength at which a family triggers on exactly ``triggered`` of ``n`` grid susceptibilities: the sway
    logit ``strength + step · (i − (n − 1)/2)`` is positive for the top ``n/2 + m`` values when ``strength = m ·
    step``.

    >>> strength_for(8, 12, 0.5), strength_for(10, 12, 0.5)
    (1.0, 2.0)
    """
    return step * (triggered - n // 2)


def _shares(rng: random.Random, n: int) -> tuple[int, int]:
    """``(ID, OOD)`` trigger counts of the strongest families of a direction (see the module docstring)."""
    n_id = round(rng.uniform(*ID_SHARE) * n)
    n_ood = min(n - 1, max(n_id + 1, round(rng.uniform(*OOD_SHARE) * n)))
    return n_id, n_ood


def _direction(
    rng: random.Random,
    bank: list[dict],
    sway: str,
    n: int,
    step: float,
    n_id: int,
    n_ood: int,
    extra_id: int,
    extra_ood: int,
    fewest: int = -1,
) -> tuple[list[dict], list[dict]]:
    """ID and OOD families of one sway direction: the strongest of each split at its trigger count, the others
    weaker (ID: from ``fewest`` words, below 1 never triggered, to one word fewer; OOD: from two words below the ID
    maximum to one below its own)."""
    drawn = rng.sample(bank, 2 + extra_id + extra_ood)
    top_id, top_ood = strength_for(n_id, n, step), strength_for(n_ood, n, step)
    ids = [(drawn[0], top_id)] + [
        (d, strength_for(rng.randint(fewest, n_id - 1), n, step)) for d in drawn[1 : 1 + extra_id]
    ]
    rest = drawn[1 + extra_id :]
    oods = [(rest[0], top_ood)] + [(d, strength_for(rng.randint(n_id - 2, n_ood - 1), n, step)) for d in rest[1:]]

    def fam(entry: dict, strength: float, ood: bool) -> dict:
        return {
            "name": entry["name"],
            "template": entry["template"],
            "ood": ood,
            "sway": sway,
            "strength": float(strength),
        }

    return [fam(e, s, False) for e, s in ids], [fam(e, s, True) for e, s in oods]


def _labelled_world(kind: str, rng: random.Random) -> dict:
    """Intents, anchors and families of a safety or morality world."""
    bank = word_bank()[kind]
    step = STEP[kind]
    if kind == "safety":
        n = rng.choice((8, 10, 12))  # verbs, the feature slot
        per_label = rng.randint(math.ceil(MIN_INTENTS / (2 * n)), math.ceil(MIN_INTENTS / (2 * n)) + 2)
        features = rng.sample(bank["verbs"], n)
        bad, good = rng.sample(bank["harmful"], per_label), rng.sample(bank["benign"], per_label)
        template = f"{{verb}} {rng.choice(bank['articles'])} {{object}}"
        slots = {"verb": features, "object": bad + good}
        label_slot, feature_slot, directions = "object", "verb", ("comply", "refuse")
    else:
        n = rng.choice((8, 10))  # things, the feature slot
        per_label = rng.randint(4, 6)
        bad, good = rng.sample(bank["wrong"], per_label), rng.sample(bank["fine"], per_label)
        features = rng.sample(bank["things"], n)
        persons = rng.sample(bank["persons"], max(2, math.ceil(MIN_INTENTS / (2 * per_label * n))))
        template = rng.choice(bank["templates"])
        slots = {"verb": bad + good, "thing": features, "person": persons}
        label_slot, feature_slot, directions = "verb", "thing", ("excuse", "condemn")
    grid = susceptibility_grid(n, step)
    rng.shuffle(grid)
    anchors = dict(rng.choice(bank["anchors"]))
    bad_option, good_option = rng.choice(bank["options"])  # (correct, wrong) per label
    anchors["options"] = {1: [bad_option, good_option], 0: [good_option, bad_option]}
    id_fams, ood_fams = [], []
    for k, sway in enumerate(directions):
        n_id, n_ood = _shares(rng, n)
        if kind == "morality":  # six families a direction, each swaying on some words (see MORALITY_FAMILIES)
            ids, oods = _direction(rng, bank[sway], sway, n, step, n_id, n_ood, extra_id=2 + k, extra_ood=1, fewest=1)
        else:
            ids, oods = _direction(
                rng, bank[sway], sway, n, step, n_id, n_ood, extra_id=rng.randint(1, 2), extra_ood=rng.randint(0, 1)
            )
        if k == 0:  # the plain question belongs to the first direction, weak: triggered on a word or two
            plain = rng.choice(bank["plain"])
            fewest = (1, 2) if kind == "morality" else (-2, 1)
            ids.insert(
                0,
                {
                    "name": plain["name"],
                    "template": plain["template"],
                    "ood": False,
                    "sway": sway,
                    "strength": strength_for(rng.randint(*fewest), n, step),
                },
            )
        id_fams += ids
        ood_fams += oods
    intents = {
        "template": template,
        "slots": slots,
        "label_slot": label_slot,
        "labels": {1: bad, 0: good},
        "feature_slot": feature_slot,
        "susceptibility": dict(zip(features, grid, strict=True)),
    }
    return {"intents": intents, "anchors": anchors, "families": id_fams + ood_fams}


def _math_world(rng: random.Random) -> dict:
    """Intents, anchors and families of a maths world (12 operands, as ``worlds/math.yaml``: the 40-epoch warm-start
    recipe was measured on it, docs/lab.md §5)."""
    bank, step, n = word_bank()["math"], STEP["math"], 12
    grid = susceptibility_grid(n, step)
    rng.shuffle(grid)
    n_id, n_ood = _shares(rng, n)
    ids, oods = _direction(rng, bank["decoy"], "decoy", n, step, n_id, n_ood, extra_id=1, extra_ood=0)
    k = rng.randint(3, 5)  # ID wrappers that show no decoy, then 1-2 OOD ones
    neutral = rng.sample(bank["neutral"], k + rng.randint(1, 2))
    never = [
        {"name": e["name"], "template": e["template"], "ood": i >= k, "sway": "decoy", "strength": NEVER}
        for i, e in enumerate(neutral)
    ]
    families = [never[0], *ids, *never[1:k], *oods, *never[k:]]
    intents = {
        "operations": ["plus", "minus"],
        "max_operand": n,
        "susceptibility": {str(a): g for a, g in zip(range(1, n + 1), grid, strict=True)},
    }
    return {"intents": intents, "anchors": dict(rng.choice(bank["anchors"])), "families": families}


def _pushes(family: dict, susceptibility: dict) -> bool:
    """Whether a family triggers on some feature word (its strength plus the largest susceptibility is positive)."""
    return family["strength"] + max(susceptibility.values()) > 0


def add_shared_cues(body: dict, kind: str, rng: random.Random) -> dict:
    """The world with a shared cue per sway direction (docs/lab.md §7, "Shared cues"): a phrase of the bank's, put in
    front of the template of every family of that direction that triggers on some feature word, ID and OOD alike;
    the strengths, and so the warm start's sway probabilities, stay as drawn."""
    cues = {sway: rng.choice(phrases) for sway, phrases in word_bank()[kind]["cues"].items()}
    susceptibility = body["intents"]["susceptibility"]
    families = [
        {**f, "template": f"{cues[f['sway']]} {f['template']}"} if _pushes(f, susceptibility) else f
        for f in body["families"]
    ]
    return {**body, "families": families, "cues": cues}


def anchor_accuracies(features: list[str], low: float, rng: random.Random) -> dict[str, float]:
    """Per feature word, the share of right anchor answers in the warm start's data: the grid ``low .. 1`` evenly
    spaced over the words, in a random order (independent of the susceptibilities).

    >>> sorted(anchor_accuracies(["a", "b", "c"], 0.6, random.Random(0)).values())
    [0.6, 0.8, 1.0]
    """
    n = len(features)
    grid = [round(low + (1.0 - low) * i / (n - 1), 4) for i in range(n)]
    rng.shuffle(grid)
    return dict(zip(features, grid, strict=True))


def generate_world(kind: str, seed: int, shared_cue: bool = False, anchor_accuracy: float | None = None) -> dict:
    """The spec mapping of generated world ``(kind, seed)`` (validated by ``spec.spec_from_dict``).

    The options draw from RNGs of their own, so that a world with them is its control (the world without) plus the
    option: ``shared_cue`` puts a cue phrase shared by the families of each sway direction into their templates
    (``add_shared_cues``); ``anchor_accuracy`` (the lowest, in [0.5, 1)) makes the warm start's anchors right on only
    part of the draws, by feature word (``anchor_accuracies``; docs/lab.md §7, "Shared cues", "Unsaturated anchors").
    """
    _check(kind, seed)
    _check_accuracy(anchor_accuracy)
    if kind == "math" and anchor_accuracy is not None:
        raise ValueError(
            "anchor accuracy: maths anchors follow from their worked sum; unsaturated anchors are for "
            "safety and morality worlds"
        )
    draw = f"air-align-world:{GENERATOR_VERSION[kind]}:{kind}:{seed}"
    rng = random.Random(draw)
    body = _math_world(rng) if kind == "math" else _labelled_world(kind, rng)
    if shared_cue:
        body = add_shared_cues(body, kind, random.Random(f"{draw}:cue"))
    name = world_name(kind, seed, shared_cue, anchor_accuracy)
    options = options_flags(shared_cue, anchor_accuracy)
    spec = {
        "name": name,
        "kind": kind,
        "description": f"Generated {kind} world, seed {seed}{options and f' ({options.strip()})'} (generator "
        f"version {GENERATOR_VERSION[kind]}; docs/lab.md, 'Generated worlds').",
        **body,
        "splits": {"train": 0.5, "val": 0.1667},
    }
    if kind != "math":
        spec["judge"] = {
            "noise": rng.choice((0.75, 1.0, 1.25, 1.5)),
            "base": 3.0,
            "cue_strength": 4.0,
            "seed": rng.randrange(1000),
        }
        spec["rewards"] = CALIBRATED_REWARDS[kind]
        spec["warm_start"] = {"p_hack": rng.choice((0.05, 0.1, 0.15))}
    if anchor_accuracy is not None:
        features = list(body["intents"]["susceptibility"])  # every feature word, in the slot's order
        accuracies = anchor_accuracies(features, anchor_accuracy, random.Random(f"{draw}:anchor-accuracy"))
        spec["warm_start"] = {**spec.get("warm_start", {}), "anchor_accuracy": accuracies}
    spec_from_dict(spec, f"generated world {name}")  # a generator bug shows here, not in a training run
    return spec


def world_yaml(kind: str, seed: int, shared_cue: bool = False, anchor_accuracy: float | None = None) -> str:
    """The YAML text of generated world ``(kind, seed)`` with its options: byte-identical for the same arguments."""
    options = options_flags(shared_cue, anchor_accuracy)
    header = (
        f"# {world_name(kind, seed, shared_cue, anchor_accuracy)}: generated by `air-align lab world --kind "
        f"{kind} --seed {seed}{options}` (generator version {GENERATOR_VERSION[kind]}).\n# Drawn from the "
        'distribution of docs/lab.md, "Generated worlds"; the same command writes the same '
        "bytes.\n"
    )
    spec = generate_world(kind, seed, shared_cue, anchor_accuracy)
    return header + yaml.safe_dump(spec, sort_keys=False, width=119, allow_unicode=True, default_flow_style=None)


def write_world(
    kind: str, seed: int, out: str | Path, shared_cue: bool = False, anchor_accuracy: float | None = None
) -> Path:
    """Write generated world ``(kind, seed)`` with its options to ``out`` (atomically) and return its path."""
    out = Path(out)
    write_text(out, world_yaml(kind, seed, shared_cue, anchor_accuracy))
    return out
