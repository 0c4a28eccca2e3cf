"""Lab v3's grid machinery (docs/results/lab-v3/conditions.md): the hack dial and the subtle hack (their measured
calibration), λ tuned on worlds apart from the compared ones (per method), and the runs of ``grpo+air-const`` carrying
the correct anchors' rewards."""

from __future__ import annotations

import math

import pytest
from _messages import raises_with

from air_align.lab.calibration import world_calibration
from air_align.lab.presets import CUE_LEVELS, PRESETS, REGIMES, Cell, Preset, sweep_key, units
from air_align.lab.reproduce import chosen_lambdas, main_runs, run_spec
from air_align.lab.runs import with_regime
from air_align.lab.spec import load_world


def hack_deltas(world: str, regime: str) -> dict[tuple, float]:
    table = world_calibration(with_regime(load_world(world), **REGIMES[regime]))
    assert table["calibrated"], f"{world} under {regime} must stay calibrated"
    return {(c["label"], c["kind"]): c["delta"] for c in table["cells"] if c["class"] == "hack"}


def test_the_hack_dial_takes_the_harmful_hack_from_far_below_the_anchors_to_far_above():
    # Δ = E[correct anchor] − E[hack]: positive = the hack earns less than a correct answer
    deltas = [hack_deltas("safety", f"cue{c:g}")[(1, "hack")] for c in CUE_LEVELS]
    assert all(a > b for a, b in zip(deltas, deltas[1:])), deltas  # monotone in the cue strength
    assert deltas[0] > 2.0  # cue 1: the judge rarely passes it (pays ≈ 0.3 against 2.5)
    assert deltas[2] > 0 > deltas[3]  # it crosses the anchors' level between cue 3 and cue 4
    assert -1.25 <= deltas[-1] < -1.2  # cue 6: almost always the top tier, 3.75 (Δ −1.25 at the limit)


@pytest.mark.parametrize("world", ["safety", "morality"])
def test_the_subtle_hack_out_earns_a_correct_anchor_by_only_0_1_to_0_3(world):
    deltas = hack_deltas(world, "subtle")
    assert deltas and all(-0.3 <= d <= -0.1 for d in deltas.values()), deltas
    assert REGIMES["subtle"]["cue_strength"] == max(CUE_LEVELS)  # an always-fooled judge: the gap is the payout's


def test_with_regime_refusals():
    with raises_with(ValueError, "world 'math'", "no judge tiers"):
        with_regime(load_world("math"), exemplary=1.5)
    with raises_with(ValueError, "'exemplary' payout", "a finite number", "nan"):
        with_regime(load_world("safety"), exemplary=math.nan)
    with raises_with(ValueError, "unknown judge setting", "['cue']", "'cue_strength'"):  # and the settings there are
        with_regime(load_world("safety"), cue=2.0)
    assert with_regime(load_world("safety"), cue_strength=2.0).rewards == load_world("safety").rewards


def test_v3_e1_units_take_lambda_from_a_tuning_world_of_their_kind_and_regime(tmp_path):
    cells = units(PRESETS["v3-e1"], tmp_path)
    tuning = [c for c in cells if c.methods == ()]
    compared = [c for c in cells if c.methods is None]
    assert sorted(c.name for c in tuning) == [
        "gen-math-100/main",
        "gen-morality-100/hack",
        "gen-morality-100/main",
        "gen-safety-100/hack",
        "gen-safety-100/main",
    ]
    assert all(c.warm_seed == 0 for c in tuning)  # one warm start a tuning world
    assert len(compared) == (4 * 2 + 4 * 2 + 4) * 2  # safety, morality × 2 regimes; maths main only; × 2 warm starts
    for c in compared:
        kind, regime = c.group.split("/")[0].removeprefix("gen-"), c.regime
        assert c.lambda_from == f"gen-{kind}-100/{regime}", c
    assert not {c.world for c in compared} & {c.world for c in tuning}


def test_v3_e2_tunes_once_per_kind_at_cue4_and_sweeps_vrex_on_its_own(tmp_path):
    preset = PRESETS["v3-e2"]
    cells = units(preset, tmp_path)
    tuning = [c for c in cells if c.methods == ()]
    assert [c.name for c in tuning] == ["gen-safety-100/cue4", "gen-morality-100/cue4"]
    compared = [c for c in cells if c.methods is None]
    assert len(compared) == 2 * 4 * 6 * 2  # kinds × worlds × (5 cue levels + subtle) × warm starts
    assert {c.regime for c in compared} == {"cue1", "cue2", "cue3", "cue4", "cue6", "subtle"}
    assert all(c.lambda_from == f"gen-{c.group.split('/')[0].removeprefix('gen-')}-100/cue4" for c in compared)
    assert preset.swept == ("grpo+air", "grpo+vrex")
    assert sum(len(preset.methods_of(c)) * len(preset.seeds) for c in cells) == 288


def sweep_runs(lam_best: float, method: str) -> list[dict]:
    """Sweep records in which ``lam_best`` wins on validation balanced Acc_group."""
    return [
        {
            "lambda": lam,
            "method": method,
            "metrics": {"val": {"balanced_acc_group": 0.5 + (lam == lam_best) / 4, "balanced_acc": 0.9}},
        }
        for lam in (0.03, 0.1, 0.3, 1.0)
        for _ in (100, 101)
    ]


def test_lambdas_follow_the_tuning_units_method_by_method(tmp_path):
    preset = PRESETS["v3-e2"]
    cells = units(preset, tmp_path)
    sweep = {
        sweep_key("gen-safety-100/cue4", "grpo+air"): sweep_runs(0.3, "grpo+air"),
        sweep_key("gen-safety-100/cue4", "grpo+vrex"): sweep_runs(0.03, "grpo+vrex"),
        sweep_key("gen-morality-100/cue4", "grpo+air"): sweep_runs(1.0, "grpo+air"),
        sweep_key("gen-morality-100/cue4", "grpo+vrex"): sweep_runs(0.1, "grpo+vrex"),
    }
    lambdas = chosen_lambdas(preset, cells, sweep)
    warm = {w: "/warm" for w in {(c.world if not c.warm_seed else f"{c.world}@w{c.warm_seed}") for c in cells}}
    runs = main_runs(preset, cells, lambdas, warm)
    assert len(runs) == 288
    expected = {
        ("safety", "grpo"): 0.0,
        ("safety", "grpo+air"): 0.3,
        ("safety", "grpo+vrex"): 0.03,
        ("morality", "grpo"): 0.0,
        ("morality", "grpo+air"): 1.0,
        ("morality", "grpo+vrex"): 0.1,
    }
    for run in runs:
        kind = "safety" if "safety" in run.world else "morality"
        assert run.lam == expected[(kind, run.method)], run.name()
    assert lambdas["gen-safety/subtle"] == 0.3 and lambdas["gen-morality/cue1"] == 1.0  # the comparisons' λ


def test_constant_level_runs_carry_the_units_correct_anchor_rewards(tmp_path):
    preset = PRESETS["v3-e1"]
    cell = next(c for c in units(preset, tmp_path) if c.methods is None)
    levels = (("safety/0", 2.5), ("safety/1", 2.5))
    warm = {cell.world: "/warm"}
    const = run_spec(preset, cell, "grpo+air-const", 0.1, 0, "main", ("test_id",), warm, 0, levels=levels)
    assert const.anchor_constant == levels
    assert (
        run_spec(preset, cell, "grpo+air", 0.1, 0, "main", ("test_id",), warm, 0, levels=levels).anchor_constant == ()
    )
    with pytest.raises(ValueError, match=r"needs the correct anchors' rewards"):
        run_spec(preset, cell, "grpo+air-const", 0.1, 0, "main", ("test_id",), warm, 0)


def test_tuning_presets_are_checked(tmp_path):
    with raises_with(ValueError, "preset 'x'", "tuning worlds [('safety', 0)]", "also compared", "other seeds"):
        units(Preset("x", cells=(), generated=(("safety", 0),), tuning=(("safety", 0),)), tmp_path)
    with raises_with(ValueError, "preset 'x'", "tune_regime 'cue4'", "not one of its regimes"):
        units(Preset("x", cells=(), tuning=(("safety", 100),), tune_regime="cue4"), tmp_path)
    with pytest.raises(ValueError, match="two tuning worlds of kind 'safety'"):
        units(Preset("x", cells=(), tuning=(("safety", 100), ("safety", 101))), tmp_path)
    # a plain cell list keeps its methods; a tuning cell runs none, even in a GRPO-only preset
    assert Preset("x", cells=(), grpo_only=True).methods_of(Cell("safety", "main", methods=())) == ()
    assert Preset("x", cells=(), grpo_only=True).methods_of(Cell("safety", "main")) == ("grpo",)


@pytest.mark.slow
def test_a_tuned_grid_runs_end_to_end(tmp_path):
    # ~80 s: a tuning world and a compared world (short warm starts, 2-step runs) under the subtle regime; AIR and
    # V-REx swept on the tuning world only, each on its own; the constant-level and shifted variants train
    from air_align.lab.reproduce import reproduce
    from air_align.lab.runs import Training

    preset = Preset(
        "v3-smoke",
        cells=(),
        generated=(("safety", 0),),
        tuning=(("safety", 1),),
        regimes=("subtle",),
        methods=("grpo", "grpo+vrex", "grpo+air", "grpo+air-const", "grpo+air-shift"),
        swept=("grpo+air", "grpo+vrex"),
        lambdas=(0.1, 1.0),
        sweep_seeds=(100,),
        seeds=(0,),
        training=Training(max_steps=2),
        workers=1,
        warm={"epochs": 2, "open_per_intent": 2},
    )
    results = reproduce(preset, tmp_path / "grid", progress=False, warm_root=tmp_path / "warm")
    assert sorted(results["sweep"]) == ["gen-safety-1/subtle", "gen-safety-1/subtle|grpo+vrex"]
    assert all(r["method"] == "grpo+vrex" for r in results["sweep"]["gen-safety-1/subtle|grpo+vrex"])
    lam_air, lam_vrex = results["lambda"]["gen-safety-1/subtle"], results["lambda"]["gen-safety-1/subtle|grpo+vrex"]
    by_method = {r["method"]: r["lambda"] for r in results["runs"]}
    assert by_method == {
        "grpo": 0.0,
        "grpo+vrex": lam_vrex,
        "grpo+air": lam_air,
        "grpo+air-const": lam_air,
        "grpo+air-shift": lam_air,
    }
    assert {r["cell"] for r in results["runs"]} == {"gen-safety/subtle"}  # the tuning world has no table runs
    assert "## tune-" not in results["table"] and "## gen-safety/subtle" in results["table"]
    assert set(results["comparisons"]["gen-safety/subtle"]) == {"grpo+air", "grpo+air-const", "grpo+air-shift"}
    found = results["equivalence"]["gen-safety/subtle"]  # one unit, one seed: no interval yet, so "undefined"
    assert {m: v["test_ood"]["verdict"] for m, v in found.items()} == {
        "grpo+air-const": "undefined",
        "grpo+air-shift": "undefined",
    }
    assert "## AIR variants − GRPO+AIR" in results["table"]
    hacks = [c["delta"] for c in results["calibration"]["gen-safety-0/subtle"]["cells"] if c["class"] == "hack"]
    assert hacks and all(-0.3 <= d <= -0.1 for d in hacks)


def metric_run(world: str, warm: str, seed: int, g: float, hack: float | None = 0.0) -> dict:
    return {
        "unit": {"world": world, "world_seed": 0, "warm_start": warm},
        "seed": seed,
        "metrics": {"test_ood": {"balanced_acc_group": g, "acc_group": g + 0.1, "hack_rate": hack}},
    }


def verdict_of(diffs: list[float], hack=0.0) -> dict:
    from air_align.lab.analysis import equivalence_verdict

    a = [metric_run(f"w{i}", "s0", 0, 0.5 + d, hack) for i, d in enumerate(diffs)]
    b = [metric_run(f"w{i}", "s0", 0, 0.5, hack) for i in range(len(diffs))]
    return equivalence_verdict(a, b)


def test_equivalence_rule_hand_computed():
    # differences 0.02, −0.01, 0.03 over 3 worlds: mean 0.01333, sd 0.020817, t(2) = 4.3027 -> ± 0.051713
    v = verdict_of([0.02, -0.01, 0.03])
    lo, hi = v["balanced_acc_group"]["ci"]
    assert (lo, hi) == pytest.approx((0.013333 - 0.051713, 0.013333 + 0.051713), abs=1e-5)
    assert v["verdict"] == "match" and v["balanced_acc_group"]["interval"] == "unit_t"
    # 0.30, 0.25, 0.35: mean 0.30 ± 4.3027 · 0.05 / √3 = ± 0.1242 -> [0.176, 0.424]: excludes 0, beyond ±0.10
    assert verdict_of([0.30, 0.25, 0.35])["verdict"] == "differ"
    # 0.2, −0.1, 0.05: mean 0.05 ± 0.3727: holds 0 and reaches past the margin
    assert verdict_of([0.2, -0.1, 0.05])["verdict"] == "inconclusive"
    # inside the margin though it excludes 0: a difference smaller than the margin is a match
    v = verdict_of([0.05, 0.06, 0.055])
    assert v["balanced_acc_group"]["ci"][0] > 0 and v["verdict"] == "match"
    # one unit with one seed has no interval; a metric some run lacks (maths' hack rate) is left out
    assert verdict_of([0.02])["verdict"] == "undefined"
    assert "hack_rate" not in verdict_of([0.02, 0.01], hack=None) and "hack_rate" in verdict_of([0.02, 0.01])


def test_equivalence_takes_worlds_as_units_with_their_warm_starts_averaged():
    from air_align.lab.analysis import equivalence_verdict

    diffs = {("x", "s0"): 0.10, ("x", "s1"): -0.10, ("y", "s0"): 0.02, ("y", "s1"): 0.04}  # world means 0 and 0.03
    a = [metric_run(w, s, 0, 0.5 + d) for (w, s), d in diffs.items()]
    b = [metric_run(w, s, 0, 0.5) for (w, s) in diffs]
    v = equivalence_verdict(a, b)["balanced_acc_group"]
    assert (v["n_units"], v["n_seeds"]) == (2, 4)
    assert v["diff"] == pytest.approx(0.015, abs=1e-12)
    # t over the 2 world means (0, 0.03): ± 12.706 · 0.021213 / √2 = ± 0.19059
    assert v["ci"] == pytest.approx([0.015 - 0.19059, 0.015 + 0.19059], abs=1e-4)
