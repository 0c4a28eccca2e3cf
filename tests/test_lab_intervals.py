"""Intervals of AIR − GRPO with seeds nested in units: hand-computed t-intervals, the hierarchical bootstrap, the
verdict overall and per unit, and the coverage check's direction (docs/results.md §6)."""

from __future__ import annotations

import math
import statistics

import pytest
from _messages import assert_error

from air_align.lab.analysis import helps_verdict, nested_differences
from air_align.lab.coverage import Model, model_coverage
from air_align.lab.intervals import hier_bootstrap, nested_intervals, t_interval, t_quantile


def test_t_quantiles_match_the_table():
    # Student's t, two-sided 95 % and 90 % (any printed table)
    assert [round(t_quantile(0.95, df), 3) for df in (1, 3, 5, 10, 30)] == [12.706, 3.182, 2.571, 2.228, 2.042]
    assert [round(t_quantile(0.90, df), 3) for df in (1, 2, 7)] == [6.314, 2.920, 1.895]


def test_t_interval_by_hand():
    values = [0.1, 0.3, 0.2, 0.4]  # mean 0.25, sd 0.1291, se 0.0645, t(3) 3.1824
    lo, hi = t_interval(values)
    half = 3.182446 * statistics.stdev(values) / 2
    assert lo == pytest.approx(0.25 - half, abs=1e-6) and hi == pytest.approx(0.25 + half, abs=1e-6)


def test_hierarchical_bootstrap_draws_units_then_seeds():
    # one unit at +1 and one at -1, no spread within: every draw is (k/2)(+1) + (1 - k/2)(-1), k units of the first
    ci = hier_bootstrap({"a": [1.0, 1.0, 1.0], "b": [-1.0, -1.0, -1.0]}, n_boot=4000, seed=1)
    assert ci == [-1.0, 1.0]
    # all spread within units: the interval lies inside the seeds' range and is narrower than it
    lo, hi = hier_bootstrap({"a": [0.0, 1.0, 2.0], "b": [0.0, 1.0, 2.0]}, n_boot=4000, seed=1)
    assert 0.0 < lo < 1.0 < hi < 2.0
    assert hier_bootstrap({"a": [0.0, 1.0]}, n_boot=200, seed=3) == hier_bootstrap(
        {"a": [0.0, 1.0]}, n_boot=200, seed=3
    )


def _run(unit: str, method: str, seed: int, by_label: tuple[float, float], anchors: float = 1.0) -> dict:
    m = {
        "acc_group": sum(by_label) / 2,
        "balanced_acc_group": min(by_label),
        "acc_group_by_label": {"0": by_label[0], "1": by_label[1]},
        "anchor_acc": anchors,
        "collapsed": False,
    }
    return {"world": unit, "seed": seed, "method": method, "metrics": {"test_ood": m, "test_id": m}}


def test_the_verdict_uses_units_and_counts_the_units_that_agree():
    # three units × two seeds; AIR gains 0.2, 0.3 (unit a), 0.15, 0.15 (b), 0.0, 0.05 (c) on both labels
    gains = {"a": (0.2, 0.3), "b": (0.15, 0.15), "c": (0.0, 0.05)}
    grpo = [_run(u, "grpo", s, (0.4, 0.5)) for u in gains for s in (0, 1)]
    air = [_run(u, "grpo+air", s, (0.4 + g[s], 0.5 + g[s])) for u, g in gains.items() for s in (0, 1)]
    nested = nested_differences(air, grpo, "balanced_acc_group", "test_ood")
    assert {u: [round(d, 9) for d in ds] for u, ds in nested.items()} == {
        "a": [0.2, 0.3],
        "b": [0.15, 0.15],
        "c": [0.0, 0.05],
    }
    v = helps_verdict(air, grpo, "test_ood", n_boot=500)
    b = v["balanced_acc_group"]
    means = [0.25, 0.15, 0.025]
    half = t_quantile(0.95, 2) * statistics.stdev(means) / math.sqrt(3)  # 4.303 × 0.1127 / √3 = 0.280
    centre = statistics.fmean(means)
    assert b["interval"] == "unit_t" and b["n_units"] == 3 and b["n_seeds"] == 6
    assert b["diff"] == pytest.approx(centre) and b["ci"] == pytest.approx([centre - half, centre + half])
    assert b["intervals"]["seed_t"][0] > 0 > b["ci"][0]  # the six seeds alone would call it; the three units do not
    assert v["helps"] is False and v["checks"] == {
        "no_collapse": True,
        "anchors_within_2_points": True,
        "gain_on_every_label": True,
        "balanced_ci_above_zero": False,
    }
    # per unit, the seed-level t of its two seeds: a [-0.39, +0.89], b [+0.15, +0.15] (the seeds agree exactly),
    # c [-0.29, +0.34]
    assert v["units"] == {"a": False, "b": True, "c": False} and v["units_yes"] == 1 and v["n_units"] == 3
    assert nested_intervals({"b": nested["b"]})["seed_t"] == pytest.approx([0.15, 0.15])


def test_unpaired_runs_are_refused():
    grpo = [_run("a", "grpo", 0, (0.4, 0.5)), _run("a", "grpo", 1, (0.4, 0.5))]
    air = [_run("a", "grpo+air", 0, (0.5, 0.5))]
    with pytest.raises(ValueError, match="not paired by unit and seed"):
        nested_differences(air, grpo, "acc_group", "test_ood")


def test_coverage_direction_on_a_small_simulation():
    # units that differ in their true AIR − GRPO difference: seeds of one unit cannot see it ...
    one = model_coverage(Model(units=1, seeds=5), sims=80, seed=0, n_boot=400)["coverage"]
    assert one["seed_t"]["coverage"] < 0.85 and one["unit_t"] is None
    # ... an interval over six units does
    six = model_coverage(Model(units=6, seeds=3), sims=80, seed=0, n_boot=400)["coverage"]
    assert six["unit_t"]["coverage"] >= 0.9 > six["seed_t"]["coverage"]


def test_coverage_refuses_a_grid_without_a_null_before_simulating(capsys):
    from pathlib import Path

    from air_align.cli import main

    grid = Path(__file__).parent / "data" / "lab-grid-smoke" / "results.json"  # 3 seeds: too few for two pairs
    assert main(["lab", "coverage", "--sims", "10", "--grid", str(grid)]) == 2
    err = capsys.readouterr().err
    assert_error(err, "no cell of the grid", "4 or more GRPO seeds", "pass --grid")  # and the fix


def test_warm_starts_of_one_world_are_nested_in_it_when_a_comparison_spans_worlds():
    # worlds x and y, two warm starts each, one seed: AIR gains +0.1 / +0.3 (x) and +0.2 / +0.0 (y) on both labels
    gains = {("x", "w0"): 0.1, ("x", "w1"): 0.3, ("y", "w0"): 0.2, ("y", "w1"): 0.0}

    def run(world, warm, method, by_label):
        r = _run(world, method, 0, by_label)
        return {**r, "unit": {"world": world, "world_seed": 0, "warm_start": warm}}

    grpo = [run(w, s, "grpo", (0.4, 0.5)) for w, s in gains]
    air = [run(w, s, "grpo+air", (0.4 + g, 0.5 + g)) for (w, s), g in gains.items()]
    b = helps_verdict(air, grpo, "test_ood", n_boot=200)
    v = b["balanced_acc_group"]
    # units are the worlds: means 0.2 (x) and 0.1 (y); t(1) over them
    half = t_quantile(0.95, 1) * statistics.stdev([0.2, 0.1]) / math.sqrt(2)
    assert v["n_units"] == 2 and v["n_seeds"] == 4 and set(b["units"]) == {"x/0", "y/0"}
    assert v["ci"] == pytest.approx([0.15 - half, 0.15 + half])
    # one world alone: its warm starts are its units
    x = helps_verdict(air[:2], grpo[:2], "test_ood", n_boot=200)
    assert x["n_units"] == 2 and set(x["units"]) == {"x/0/w0", "x/0/w1"}
