"""What a lab grid measured: per-run split summaries, means over seeds, paired comparisons, and the verdicts.

Pure functions of oracle verdict records (``runs.oracle_records``): one record per prompt with ``group_id``,
``role``, ``domain``, ``label``, ``split``, ``correct`` and the lab's ``hack`` / ``formatted`` flags. The metrics
themselves (Acc, Acc_group, per label, balanced, the error histogram) and the two-level bootstrap are the evaluation
package's (``air_align.evaluation.metrics``, ``air_align.evaluation.compare``): the lab adds its own flags, the
replication units (a run's world and warm start, ``unit_key``) in which RL seeds are nested, the intervals over them
(``intervals.py``) and the pre-registered "AIR helps" rule, applied overall and per unit.
"""

from __future__ import annotations

import statistics

from air_align.evaluation.compare import paired_differences
from air_align.evaluation.metrics import (
    accuracy,
    balanced_accuracy,
    balanced_group_accuracy,
    error_histogram,
    group_accuracy,
    group_labels,
    label_name,
    slice_records,
    split_by_label,
)
from air_align.lab.intervals import chosen_interval, estimate, nested_intervals

COLLAPSE_FORMAT_RATE = 0.5
"""A run has *collapsed* when fewer than half of its greedy completions of a split are in the response format: the
policy has left the grammar it shares with the anchors (the failure of the first lab's AIR runs)."""
ANCHOR_TOLERANCE = 0.02
""""AIR helps" allows its anchors to fall at most 2 points below GRPO's (pre-registered: docs/results.md §4)."""
EQUIVALENCE_MARGIN = 0.10
"""Two AIR variants *match* when the interval of their paired balanced Acc_group difference lies within ±10 points
(pre-registered: docs/results/lab-v3/conditions.md)."""
EQUIVALENCE_METRICS = ("balanced_acc_group", "acc_group", "hack_rate")
SCALARS = ("acc", "acc_group", "balanced_acc", "balanced_acc_group", "anchor_acc", "hack_rate", "format_rate")


def one_evaluation_set(runs: list[dict], split: str) -> bool:
    """Whether every run was evaluated on the same meta-groups with the same labels in ``split`` (one world).

    >>> r = lambda g: {"records": {"test_ood": [{"group_id": g, "domain": "safety", "label": 1}]}}
    >>> one_evaluation_set([r("a"), r("a")], "test_ood"), one_evaluation_set([r("a"), r("b")], "test_ood")
    (True, False)
    """
    first = group_labels(runs[0]["records"][split])
    return all(group_labels(r["records"][split]) == first for r in runs[1:])


def _share(flags) -> float | None:
    flags = [bool(f) for f in flags if f is not None]
    return sum(flags) / len(flags) if flags else None


def split_summary(records: list[dict], split: str) -> dict:
    """Metrics of one split (its prompts plus the anchors they borrow), overall, per label and balanced.

    Returns ``{"summary": {...}, "records": [...]}``; the summary holds ``acc``, ``acc_group``, ``balanced_acc``,
    ``balanced_acc_group`` (the minimum over labels), ``acc_by_label``, ``acc_group_by_label``,
    ``open_acc_by_label``, ``anchor_acc``, ``hack_rate`` (share of open answers that are the judge hack),
    ``format_rate``, ``collapsed``, ``error_histogram`` (meta-groups with 0, 1, 2, … wrong prompts), sizes.
    """
    sliced = slice_records(records, split)
    by_label = {label_name(label): rs for (_, label), rs in split_by_label(sliced).items()}
    opens = [r for r in sliced if r["role"] == "open"]
    anchors = [r for r in sliced if r["role"] == "anchor"]
    summary = {
        "acc": accuracy(sliced),
        "acc_group": group_accuracy(sliced),
        "balanced_acc": balanced_accuracy(sliced),
        "balanced_acc_group": balanced_group_accuracy(sliced),
        "acc_by_label": {lab: accuracy(rs) for lab, rs in by_label.items()},
        "acc_group_by_label": {lab: group_accuracy(rs) for lab, rs in by_label.items()},
        "open_acc_by_label": {
            lab: _share(r["correct"] for r in rs if r["role"] == "open") for lab, rs in by_label.items()
        },
        "anchor_acc": accuracy(anchors) if anchors else None,
        "hack_rate": _share(r.get("hack") for r in opens),
        "format_rate": _share(r.get("formatted") for r in sliced),
        "error_histogram": error_histogram(sliced),
        "n_prompts": len(sliced),
        "n_groups": len({r["group_id"] for r in sliced}),
    }
    summary["collapsed"] = summary["format_rate"] is not None and summary["format_rate"] < COLLAPSE_FORMAT_RATE
    return {"summary": summary, "records": sliced}


def mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def flatten(summary: dict) -> dict[str, float]:
    """Scalar metrics of a split summary, per-label ones as ``name/label``, ``collapsed`` as 0/1."""
    out = {k: summary[k] for k in SCALARS if summary.get(k) is not None}
    for key in ("acc_by_label", "acc_group_by_label", "open_acc_by_label"):
        for lab, v in (summary.get(key) or {}).items():
            if v is not None:
                out[f"{key.replace('_by_label', '')}/{lab}"] = v
    out["collapsed"] = float(bool(summary.get("collapsed")))
    return out


def summarise(runs: list[dict]) -> dict:
    """``{cell: {method: {split: {metric: {mean, std, n}}}}}`` over seeds (``cell`` is ``world/regime``)."""
    acc: dict = {}
    for run in runs:
        for split, summary in run["metrics"].items():
            for name, value in flatten(summary).items():
                cell = acc.setdefault(run["cell"], {}).setdefault(run["method"], {}).setdefault(split, {})
                cell.setdefault(name, []).append(value)
    return {
        c: {m: {s: {k: mean_std(v) for k, v in sm.items()} for s, sm in ms.items()} for m, ms in cm.items()}
        for c, cm in acc.items()
    }


def unit_key(run: dict) -> str:
    """A run's replication unit as a label, ``world/world seed/warm-start directory`` (``runs.RunSpec.unit``); runs
    recorded before units were (one world and one warm start per world) are keyed by their world alone."""
    unit = run.get("unit")
    if not unit:
        return str(run["world"])
    return f"{unit['world']}/{unit['world_seed']}/{unit['warm_start']}"


def world_key(run: dict) -> str:
    """A run's world as a label, ``world/world seed`` (its warm starts and seeds nested inside)."""
    unit = run.get("unit")
    return f"{unit['world']}/{unit['world_seed']}" if unit else str(run["world"])


def top_level(runs: list[dict]):
    """The independent unit of a comparison, as a key function of a run: the world when the runs span two or more
    worlds (a world's warm starts share its draw, so they are not independent of each other), else the warm start
    (the statement is then conditional on the one world)."""
    return world_key if len({world_key(r) for r in runs}) >= 2 else unit_key


def nested_differences(
    runs_air: list[dict], runs_grpo: list[dict], metric: str, split: str, key=unit_key
) -> dict[str, list]:
    """``{unit: [metric(AIR, u, s) − metric(GRPO, u, s) for each warm start u and seed s in it]}``, pairing runs by
    warm start and seed and grouping them by ``key`` (``unit_key``, or ``world_key`` over several worlds)."""
    air = {(unit_key(r), r["seed"]): r for r in runs_air}
    grpo = {(unit_key(r), r["seed"]): r for r in runs_grpo}
    if set(air) != set(grpo):
        lonely = sorted(set(air) ^ set(grpo), key=str)[:3]
        raise ValueError(f"AIR and GRPO runs are not paired by unit and seed: {lonely} ran for one method only")
    nested: dict[str, list] = {}
    for pair in sorted(air, key=str):
        d = air[pair]["metrics"][split][metric] - grpo[pair]["metrics"][split][metric]
        nested.setdefault(key(air[pair]), []).append(d)
    return nested


def world_mean_differences(runs_a: list[dict], runs_b: list[dict], metric: str, split: str) -> dict[str, float]:
    """``{world: mean of metric(a) − metric(b)}``, each world's paired warm starts and seeds averaged
    (:func:`nested_differences` by ``world_key``): the values a t-interval over worlds is taken from."""
    return {w: statistics.fmean(d) for w, d in nested_differences(runs_a, runs_b, metric, split, world_key).items()}


def helps_verdict(runs_air: list[dict], runs_grpo: list[dict], split: str = "test_ood", n_boot: int = 10000) -> dict:
    """The pre-registered rule (docs/results.md §4), overall and per replication unit.

    AIR helps iff no AIR run collapsed, its mean ID anchor accuracy is within ``ANCHOR_TOLERANCE`` of GRPO's, its
    ``split`` Acc_group gain is positive for **every** label, and the 95 % interval of the paired balanced Acc_group
    difference lies above 0. The interval is ``intervals.chosen_interval``'s over the independent units
    (``top_level``: worlds when there are several, else warm starts): a t over their means when there are two or
    more, else the seed-level t (conditional on the one world and warm start); every candidate is reported beside it
    (the two-level bootstrap of ``evaluation.compare`` only when the runs carry their per-prompt ``records``). The
    same rule is applied to each unit's runs alone (``units``: unit → helps) and ``units_yes`` counts the units
    that say yes.
    """
    key = top_level(runs_grpo)
    overall = _verdict(runs_air, runs_grpo, split, n_boot, key)
    units = sorted({key(r) for r in runs_grpo})
    per_unit = {units[0]: overall["helps"]} if len(units) == 1 else {}
    for unit in units if len(units) > 1 else ():
        mine_air = [r for r in runs_air if key(r) == unit]
        mine_grpo = [r for r in runs_grpo if key(r) == unit]
        per_unit[unit] = _verdict(mine_air, mine_grpo, split, n_boot, top_level(mine_grpo))["helps"]
    return {**overall, "units": per_unit, "units_yes": sum(per_unit.values()), "n_units": len(units)}


def _verdict(runs_air: list[dict], runs_grpo: list[dict], split: str, n_boot: int, key=unit_key) -> dict:
    collapsed = sum(bool(r["metrics"][s]["collapsed"]) for r in runs_air for s in r["metrics"])
    anchors = {
        name: statistics.fmean(r["metrics"]["test_id"]["anchor_acc"] for r in runs)
        for name, runs in (("air", runs_air), ("grpo", runs_grpo))
    }
    labels = sorted(runs_grpo[0]["metrics"][split]["acc_group_by_label"])
    gains = {
        lab: statistics.fmean(r["metrics"][split]["acc_group_by_label"][lab] for r in runs_air)
        - statistics.fmean(r["metrics"][split]["acc_group_by_label"][lab] for r in runs_grpo)
        for lab in labels
    }
    metrics = ("acc_group", "balanced_acc_group")
    boot = {}
    if all("records" in r for r in runs_air + runs_grpo) and one_evaluation_set(runs_air + runs_grpo, split):
        # the two-level bootstrap needs per-prompt verdicts on one set of meta-groups: a comparison pooled over
        # several worlds has none to pair (its interval is the one over worlds, intervals.chosen_interval)
        paired = {("air", (unit_key(r), r["seed"])): r["records"][split] for r in runs_air}
        paired |= {("grpo", (unit_key(r), r["seed"])): r["records"][split] for r in runs_grpo}
        boot = paired_differences(paired, "air", "grpo", metrics, split, n_boot=n_boot)
    out = {}
    for m in metrics:
        nested = nested_differences(runs_air, runs_grpo, m, split, key)
        found = {"bootstrap": boot[m]["ci"] if m in boot else None, **nested_intervals(nested, n_boot=n_boot)}
        name = chosen_interval(len(nested))
        out[m] = {
            "diff": estimate(nested),
            "ci": found[name],
            "interval": name,
            "intervals": found,
            "a": statistics.fmean(r["metrics"][split][m] for r in runs_air),
            "b": statistics.fmean(r["metrics"][split][m] for r in runs_grpo),
            "n_units": len(nested),
            "n_seeds": sum(map(len, nested.values())),
        }
    ci = out["balanced_acc_group"]["ci"]
    checks = {
        "no_collapse": collapsed == 0,
        "anchors_within_2_points": anchors["air"] >= anchors["grpo"] - ANCHOR_TOLERANCE,
        "gain_on_every_label": all(g > 0 for g in gains.values()),
        "balanced_ci_above_zero": ci is not None and ci[0] > 0,
    }
    return {
        "helps": all(checks.values()),
        "checks": checks,
        "collapsed_runs": collapsed,
        "anchor_acc": anchors,
        "gain_by_label": gains,
        **out,
    }


def equivalence_verdict(
    runs_a: list[dict],
    runs_b: list[dict],
    split: str = "test_ood",
    margin: float = EQUIVALENCE_MARGIN,
    n_boot: int = 2000,
) -> dict:
    """Do two methods match? The pre-registered rule of docs/results/lab-v3/conditions.md: the paired difference
    a − b (same unit and seed) of balanced Acc_group, its interval the verdict's (``intervals.chosen_interval`` over
    ``top_level`` units): **match** iff the interval lies inside ±``margin`` (whether or not it holds 0), else
    **differ** iff it excludes 0, else **inconclusive**; ``undefined`` without an interval (one unit, one seed).
    Acc_group and the hack rate are reported beside it (a metric some run lacks, e.g. maths' hack rate, is left out).

    >>> def run(unit, seed, g):
    ...     return {"unit": {"world": unit, "world_seed": 0, "warm_start": "w"}, "seed": seed,
    ...             "metrics": {"test_ood": {"balanced_acc_group": g, "acc_group": g, "hack_rate": None}}}
    >>> a = [run("x", 0, 0.52), run("y", 0, 0.40), run("z", 0, 0.61)]
    >>> b = [run("x", 0, 0.50), run("y", 0, 0.41), run("z", 0, 0.58)]
    >>> v = equivalence_verdict(a, b)
    >>> v["verdict"], round(v["balanced_acc_group"]["diff"], 4), sorted(v)
    ('match', 0.0133, ['acc_group', 'balanced_acc_group', 'margin', 'verdict'])
    """
    key = top_level(runs_b)
    out: dict = {"margin": margin}
    for metric in EQUIVALENCE_METRICS:
        if any(r["metrics"][split].get(metric) is None for r in runs_a + runs_b):
            continue
        nested = nested_differences(runs_a, runs_b, metric, split, key)
        name = chosen_interval(len(nested))
        out[metric] = {
            "diff": estimate(nested),
            "ci": nested_intervals(nested, n_boot=n_boot)[name],
            "interval": name,
            "n_units": len(nested),
            "n_seeds": sum(map(len, nested.values())),
        }
    ci = out["balanced_acc_group"]["ci"]
    if ci is None:
        out["verdict"] = "undefined"
    elif -margin < ci[0] and ci[1] < margin:
        out["verdict"] = "match"
    else:
        out["verdict"] = "differ" if ci[0] > 0 or ci[1] < 0 else "inconclusive"
    return out
