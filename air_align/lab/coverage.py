"""The coverage check behind the lab's choice of interval (``air-align lab coverage``; docs/results.md §6).

A 95 % interval of AIR − GRPO earns its name if, when the two methods do not differ, it contains 0 about 95 % of the
time. This module makes null comparisons and counts, for each candidate of ``intervals.CANDIDATES``, how often the
interval of the balanced OOD Acc_group difference contains 0:

1. **A hierarchical model with a known zero effect** (:class:`Model`). A test set of meta-groups with fixed
   difficulties (two labels); per unit (a world with its warm start) a main effect on every run's logit and an
   AIR − GRPO effect ``τ`` per label that is ``+τ/2`` for one method and ``−τ/2`` for the other with ``τ`` symmetric
   about 0 — so over units the two methods have the same distribution and the population difference is exactly 0,
   while one unit's difference need not be; per seed a shared effect (same data order for both methods) and a
   per-run effect; each meta-group all-right with the resulting probability. The defaults follow the audit of lab
   v2: warm starts that move a method's Acc_group by ~25 points (``unit_sd`` 1 logit), seed spreads of 8–27 points
   (``run_sd``), and a unit-to-unit spread of the AIR − GRPO difference of ~15 points (a world where the difference
   was +0.4 and another where it was +16.7). Scenarios: the lab's unit counts (the v2 grid: 1 unit × 5 seeds; a
   generated-worlds preset: 3 or 6 units × 3 seeds; the ``replicate`` preset: 4 worlds × 2 warm starts × 3 seeds, its
   warm starts nested in their worlds), with and without the unit-level effect.
2. **Null comparisons from a committed grid**: GRPO against GRPO with other seeds (per cell, the seeds shuffled and
   paired), with the cells in which GRPO's metric varies as units. Per-run metrics only, so the two-level bootstrap
   (which needs per-prompt verdicts) is not among them.

Pure functions of their seed: the same call gives the same figures.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from air_align.evaluation.compare import paired_differences
from air_align.lab.analyse import read_results
from air_align.lab.intervals import CANDIDATES, nested_intervals


@dataclass(frozen=True)
class Model:
    """The synthetic lab (logit scale); see the module docstring."""

    units: int = 1
    seeds: int = 5
    groups_per_label: int = 48
    label_means: tuple[float, ...] = (0.0, -1.0)
    """Mean logit of a meta-group being all right, per label (~50 % and ~30 % before the other effects)."""
    group_sd: float = 1.5
    """Spread of the meta-groups' difficulties (fixed: one test set)."""
    unit_sd: float = 1.0
    """A unit's main effect per label (the same for both methods)."""
    effect_sd: float = 0.9
    """A unit's AIR − GRPO effect per label, τ ~ N(0, effect_sd²), split ±τ/2 (0: the methods are equal per unit)."""
    shared_seed_sd: float = 0.3
    """A seed's effect shared by both methods of a unit (same warm start and data order)."""
    run_sd: float = 0.5
    """Each run's own effect per label."""
    warm_starts: int = 1
    """Warm starts per unit (world); with more than one, each draws its own main effect and AIR − GRPO effect."""
    warm_sd: float = 1.0
    """A warm start's main effect within its world (used when ``warm_starts`` > 1)."""
    warm_effect_sd: float = 0.5
    """A warm start's AIR − GRPO effect within its world, split ±/2 (used when ``warm_starts`` > 1)."""


REPLICATE = Model(units=4, warm_starts=2, seeds=3)
"""The ``replicate`` preset's comparison: 4 generated worlds × 2 warm starts × 3 RL seeds."""
SCENARIOS: tuple[tuple[str, Model, str, int], ...] = (
    ("v2 grid: 1 unit × 5 seeds, no unit effect", Model(units=1, seeds=5, effect_sd=0.0), "world", 0),
    ("v2 grid: 1 unit × 5 seeds, units differ", Model(units=1, seeds=5), "world", 1),
    ("3 units × 3 seeds, units differ", Model(units=3, seeds=3), "world", 2),
    ("6 units × 3 seeds, units differ", Model(units=6, seeds=3), "world", 3),
    ("6 units × 3 seeds, no unit effect", Model(units=6, seeds=3, effect_sd=0.0), "world", 4),
    ("4 worlds × 2 warm starts × 3 seeds, worlds and warm starts differ: units = worlds", REPLICATE, "world", 5),
    ("the same comparisons, units = the 8 warm starts (as if independent)", REPLICATE, "warm", 5),
)
"""(name, model, the level taken as the unit, seed offset): the last two rows analyse the same comparisons."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def simulate(model: Model, rng: np.random.Generator, difficulty: np.ndarray) -> tuple[list[dict], list[dict]]:
    """One null comparison: ``(runs_a, runs_b)``, each run ``{world, seed, metrics, records}`` on ``test_ood``.

    ``difficulty``: ``(labels, groups_per_label)`` logits of the test set's meta-groups."""
    n_labels, n_groups = difficulty.shape
    runs: dict[str, list[dict]] = {"a": [], "b": []}
    for u, w in ((u, w) for u in range(model.units) for w in range(model.warm_starts)):
        if w == 0:
            world_main = rng.normal(0.0, model.unit_sd, n_labels)
            world_tau = rng.normal(0.0, model.effect_sd, n_labels)
        main, tau = world_main, world_tau
        if model.warm_starts > 1:  # one warm start: no draw, so the one-warm-start scenarios keep their figures
            main = main + rng.normal(0.0, model.warm_sd, n_labels)
            tau = tau + rng.normal(0.0, model.warm_effect_sd, n_labels)
        for s in range(model.seeds):
            shared = rng.normal(0.0, model.shared_seed_sd, n_labels)
            for method, sign in (("a", 0.5), ("b", -0.5)):
                logit = difficulty + (main + shared + sign * tau + rng.normal(0.0, model.run_sd, n_labels))[:, None]
                right = rng.random((n_labels, n_groups)) < _sigmoid(logit)
                per_label = right.mean(axis=1)
                records = [
                    {
                        "id": f"{lab}-{g}",
                        "group_id": f"{lab}-{g}",
                        "role": "open",
                        "domain": "lab",
                        "label": lab,
                        "split": "test_ood",
                        "correct": bool(right[lab, g]),
                    }
                    for lab in range(n_labels)
                    for g in range(n_groups)
                ]
                metrics = {"acc_group": float(right.mean()), "balanced_acc_group": float(per_label.min())}
                runs[method].append(
                    {
                        "world": f"unit{u}",
                        "warm": w,
                        "seed": s,
                        "metrics": {"test_ood": metrics},
                        "records": {"test_ood": records},
                    }
                )
    return runs["a"], runs["b"]


def _unit(run: dict, level: str) -> str:
    return run["world"] if level == "world" else f"{run['world']}/w{run['warm']}"


def _nested(runs_a: list[dict], runs_b: list[dict], level: str, metric: str = "balanced_acc_group") -> dict:
    nested: dict[str, list[float]] = {}
    for a, b in zip(runs_a, runs_b, strict=True):
        d = a["metrics"]["test_ood"][metric] - b["metrics"]["test_ood"][metric]
        nested.setdefault(_unit(a, level), []).append(d)
    return nested


def _tally(found: list[dict]) -> dict:
    """Per candidate: share of the null comparisons whose interval contains 0, and the mean width (in points)."""
    out = {}
    for name in CANDIDATES:
        cis = [f[name] for f in found if f.get(name) is not None]
        if not cis:
            out[name] = None
            continue
        covered = sum(lo <= 0.0 <= hi for lo, hi in cis)
        share = covered / len(cis)
        out[name] = {
            "coverage": share,
            "mc_se": math.sqrt(share * (1 - share) / len(cis)),
            "n": len(cis),
            "mean_width": 100 * statistics.fmean(hi - lo for lo, hi in cis),
        }
    return out


def model_coverage(model: Model, sims: int, seed: int = 0, n_boot: int = 1000, level: str = "world") -> dict:
    """Coverage of every candidate over ``sims`` null comparisons of ``model``, and the spreads they had (points):
    ``unit_spread``, the SD over units of a unit's true-ish mean difference; ``seed_spread``, the SD over seeds
    within a unit."""
    rng = np.random.default_rng(seed)
    difficulty = np.stack([rng.normal(m, model.group_sd, model.groups_per_label) for m in model.label_means])
    found, unit_means, seed_sds = [], [], []
    for i in range(sims):
        runs_a, runs_b = simulate(model, rng, difficulty)
        nested = _nested(runs_a, runs_b, level)
        intervals = nested_intervals(nested, n_boot=n_boot, seed=i)
        paired = {("a", (r["world"], r["warm"], r["seed"])): r["records"]["test_ood"] for r in runs_a}
        paired |= {("b", (r["world"], r["warm"], r["seed"])): r["records"]["test_ood"] for r in runs_b}
        boot = paired_differences(paired, "a", "b", ("balanced_acc_group",), n_boot=n_boot, seed=i)
        found.append({**intervals, "bootstrap": boot["balanced_acc_group"]["ci"]})
        unit_means += [statistics.fmean(ds) for ds in nested.values()]
        seed_sds += [statistics.stdev(ds) for ds in nested.values() if len(ds) > 1]
    spreads = {"unit_spread": 100 * statistics.pstdev(unit_means), "seed_spread": 100 * statistics.fmean(seed_sds)}
    return {"model": asdict(model), "sims": sims, "coverage": _tally(found), **spreads}


def grid_null(results: dict, sims: int, seed: int = 0, split: str = "test_ood", metric: str = "acc_group") -> dict:
    """GRPO against GRPO with other seeds in a committed grid's ``results.json``: per cell in which GRPO's
    ``metric`` varies over seeds, the seeds shuffled and paired two by two; coverage of the per-run-metric candidates
    for one cell at a time (1 unit) and for all those cells as units."""
    by_cell: dict[str, dict[int, float]] = {}
    for run in results["runs"]:
        if run["method"] == "grpo":
            by_cell.setdefault(run["cell"], {})[run["seed"]] = run["metrics"][split][metric]
    cells = sorted(c for c, v in by_cell.items() if len(v) >= 4 and len(set(v.values())) > 1)
    if not cells:
        raise ValueError(
            f"no cell of the grid has 4 or more GRPO seeds whose {split} {metric} varies; a null from GRPO against "
            "GRPO needs them: pass --grid with a grid that has them (the v2 full grid has 5 seeds a cell)"
        )
    rng = np.random.default_rng(seed)
    one, many = [], []
    for i in range(sims):
        nested = {}
        for cell in cells:
            values = [by_cell[cell][s] for s in rng.permutation(sorted(by_cell[cell]))]
            nested[cell] = [values[k] - values[k + 1] for k in range(0, len(values) - 1, 2)]
            one.append(nested_intervals({cell: nested[cell]}, n_boot=1000, seed=i))
        many.append(nested_intervals(nested, n_boot=1000, seed=i))
    pairs = {c: len(by_cell[c]) // 2 for c in cells}
    return {
        "split": split,
        "metric": metric,
        "cells": cells,
        "pairs_per_cell": pairs,
        "sims": sims,
        "one_cell": _tally(one),
        "all_cells": _tally(many),
    }


def coverage_report(sims: int = 1000, seed: int = 0, grid: str | Path | None = None) -> dict:
    """Every scenario of ``SCENARIOS`` (and ``grid_null`` of ``grid``'s results.json when given; read and checked
    before anything is simulated)."""
    results = None
    if grid is not None:
        path = Path(grid)
        results = read_results(path)
        if not isinstance(results, dict) or "runs" not in results:
            raise ValueError(f"{path}: not a lab grid's results.json (no 'runs'); give `air-align reproduce`'s")
        grid_null(results, sims=1)  # a grid without a usable cell stops here, before minutes of simulation
    report = {"sims": sims, "seed": seed, "scenarios": {}}
    for name, model, level, offset in SCENARIOS:
        report["scenarios"][name] = {
            **model_coverage(replace(model), sims, seed=seed + offset, level=level),
            "level": level,
        }
    if results is not None:
        report["grid"] = {"path": str(grid), **grid_null(results, sims, seed=seed)}
    return report


def _cell(c: dict | None) -> str:
    if c is None:
        return "—"
    return f"{100 * c['coverage']:.1f} ± {100 * c['mc_se']:.1f} (width {c['mean_width']:.0f})"


def render(report: dict) -> str:
    """The report as Markdown tables: coverage % ± its Monte-Carlo SE, and the mean interval width in points."""
    head = "| null comparisons | " + " | ".join(CANDIDATES) + " |"
    lines = [
        f"Nominal 95 % intervals of a null Δ balanced Acc_group: % containing 0 ± MC SE (mean width, points); "
        f"{report['sims']} comparisons each, seed {report['seed']}.",
        "",
        head,
        "|" + "---|" * (len(CANDIDATES) + 1),
    ]
    for name, s in report["scenarios"].items():
        spread = f" (unit spread {s['unit_spread']:.0f}, seed spread {s['seed_spread']:.0f})"
        lines.append(f"| {name}{spread} | " + " | ".join(_cell(s["coverage"][c]) for c in CANDIDATES) + " |")
    if "grid" in report:
        g = report["grid"]
        what = f"GRPO vs GRPO, {g['split']} {g['metric']}, {g['path']}"
        lines.append(
            f"| {what}: one cell at a time | " + " | ".join(_cell(g["one_cell"][c]) for c in CANDIDATES) + " |"
        )
        lines.append(
            f"| {what}: {len(g['cells'])} cells as units | "
            + " | ".join(_cell(g["all_cells"][c]) for c in CANDIDATES)
            + " |"
        )
    return "\n".join(lines)
