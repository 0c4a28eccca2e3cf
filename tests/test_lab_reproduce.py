"""The lab grid: a two-step ``reproduce`` with the real trainer writes valid results and resumes; GSPO equals GRPO
on-policy and differs off-policy; λ is chosen by the pre-registered rule; the "AIR helps" verdict on hand cases."""

from __future__ import annotations

import dataclasses
import json
import statistics

import pytest
import torch

from air_align.lab.analyse import check
from air_align.lab.presets import PRESETS
from air_align.lab.reproduce import choose_lambda, reproduce
from air_align.lab.runs import RunSpec, Training, build_run_trainer
from air_align.lab.warmstart import Recipe, load_warm_start, warm_start
from air_align.training.methods import METHODS


def test_two_step_reproduce_writes_valid_results_and_resumes(tmp_path, tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)
    preset = PRESETS["smoke"]  # safety (hack regime), GRPO and GRPO+AIR, 1 seed, 2 steps, short warm start
    warm_root = tmp_path_factory.getbasetemp() / "lab-warm"  # shared with test_lab_warmstart.py
    results = reproduce(preset, tmp_path / "out", progress=False, warm_root=warm_root)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["table"] == results["table"]
    assert (tmp_path / "out" / "table.md").exists() and (tmp_path / "out" / "ood_acc_group.png").exists()
    assert {(r["method"], r["seed"], r["cell"]) for r in saved["runs"]} == {
        ("grpo", 0, "safety/hack"),
        ("grpo+air", 0, "safety/hack"),
    }
    assert saved["lambda"] == {"safety/hack": 0.1}
    for run in saved["runs"]:
        assert set(run["metrics"]) == {"test_id", "test_ood"} and "records" not in run
        for split in ("test_id", "test_ood"):
            m = run["metrics"][split]
            assert 0.0 <= m["balanced_acc_group"] <= m["acc_group"] <= m["acc"] <= 1.0
            assert set(m["acc_group_by_label"]) == {"0", "1"}
        assert run["method"] in METHODS
    assert set(saved["summary"]["safety/hack"]) == {"grpo", "grpo+air"}
    verdict = saved["comparisons"]["safety/hack"]["grpo+air"]["test_ood"]
    assert set(verdict["checks"]) == {
        "no_collapse",
        "anchors_within_2_points",
        "gain_on_every_label",
        "balanced_ci_above_zero",
    }
    assert "| OOD | GRPO + AIR |" in saved["table"] and "AIR − GRPO" in saved["table"]
    assert saved["worlds"]["safety"]["metrics"]["metrics"]["test_id"]["anchor_acc"] is not None
    assert len(saved["code_hashes"]) == 1 and all(r["code"]["hash"] == saved["code_hashes"][0] for r in saved["runs"])
    assert check(tmp_path / "out") == []  # the grid's table rebuilds exactly from results.json and outcomes.json.gz

    # Resume: a second call into the same directory reuses every finished run and trains nothing.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr("air_align.lab.runner._work", no_training)
    again = reproduce(preset, tmp_path / "out", progress=False, warm_root=warm_root)
    assert again["runs"] == results["runs"] and again["table"].split("\n", 1)[1] == results["table"].split("\n", 1)[1]
    assert results["resumed_runs"] == 0 and again["resumed_runs"] == len(again["runs"])
    # ... but a changed setup is not mistaken for a finished run
    changed = dataclasses.replace(preset, training=Training(max_steps=3))
    with pytest.raises(AssertionError, match="retrained"):
        reproduce(changed, tmp_path / "out", progress=False, warm_root=warm_root)


def _trained_params(tmp_path, warm, method, training):
    from air_align.lab import world

    run = RunSpec(world="safety", method=method, lam=0.05, seed=0, warm_start=str(warm), training=training)
    model, tokenizer = load_warm_start(warm)
    rows = world.build_rows("safety", seed=0, splits=("train",))
    trainer = build_run_trainer(run, model, tokenizer, rows, tmp_path / method)
    trainer.train()
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_gspo_equals_grpo_on_policy_and_differs_off_policy(tmp_path, tmp_path_factory):
    """With one optimiser step per generation batch every importance ratio is 1, so the token-level (GRPO) and
    sequence-level (GSPO) surrogates have the same gradient; with ``num_iterations = 2`` the second step reuses the
    batch off-policy and the two must differ. This is why the presets use ``num_iterations = 2``."""
    torch.set_num_threads(1)
    root = tmp_path_factory.getbasetemp() / "lab-warm"
    warm = warm_start(Recipe(world="safety", **PRESETS["smoke"].warm), root=root)
    start = torch.cat([p.detach().flatten() for p in load_warm_start(warm)[0].parameters()])
    on_policy = Training(max_steps=1, num_iterations=1, groups_per_step=1, learning_rate=1e-3)
    grpo, gspo = (_trained_params(tmp_path / "on", warm, m, on_policy) for m in ("grpo+air", "gspo+air"))
    # Adam's first step is about lr·sign(g): compare L2 norms (a float-rounding difference in a gradient entry near
    # Adam's ε can move that one entry visibly, but not the norm).
    moved = (grpo - start).norm().item()
    assert moved > 1e-3  # the step did something
    same = (grpo - gspo).norm().item()
    off_policy = Training(max_steps=2, num_iterations=2, groups_per_step=1, learning_rate=1e-3)
    grpo, gspo = (_trained_params(tmp_path / "off", warm, m, off_policy) for m in ("grpo+air", "gspo+air"))
    apart = (grpo - gspo).norm().item()
    print(f"moved {moved:.3g}  on-policy GRPO-GSPO {same:.3g}  off-policy {apart:.3g}")
    assert same < 1e-3 * moved
    assert apart > 1e-2 * moved


def test_lambda_choice_and_plot_from_a_sweep(tmp_path):
    from air_align.lab.report import _plot_sweep

    runs = [
        {"lambda": lam, "seed": seed, "metrics": {"val": {"balanced_acc": acc, "balanced_acc_group": grp}}}
        for lam, seed, acc, grp in [(0.01, 0, 0.6, 0.1), (0.01, 1, 0.6, 0.3), (0.1, 0, 0.9, 0.0), (0.1, 1, 0.9, 0.3)]
    ]
    # mean balanced Acc_group: λ=0.01 → 0.2, λ=0.1 → 0.15; Acc_group decides before Acc
    assert choose_lambda(runs) == 0.01
    _plot_sweep({"safety/hack": runs}, {"safety/hack": 0.01}, tmp_path / "lambda_sweep.png")
    assert (tmp_path / "lambda_sweep.png").stat().st_size > 1000
    _plot_sweep({}, {}, tmp_path / "none.png")  # no sweep (a fixed λ): nothing to draw
    assert not (tmp_path / "none.png").exists()


def test_cli_lists_every_preset_and_forward():
    from air_align.cli.lab import FORWARD_NAMES, PRESET_NAMES
    from air_align.lab.presets import FORWARDS

    assert PRESET_NAMES == tuple(PRESETS)  # the CLI keeps its own copy so that --help imports no torch
    assert FORWARD_NAMES == FORWARDS


def test_the_regime_calibration_trains_plain_grpo_only_even_for_worlds_given_on_the_command_line():
    import argparse

    from air_align.cli.lab import _preset
    from air_align.lab.presets import Cell

    args = argparse.Namespace(
        preset="regimes", world=["safety", "math"], seeds=None, warm_seeds=None, max_steps=None, workers=None
    )
    preset = _preset(args)
    assert [c.name for c in preset.cells] == ["safety/main", "safety/hack", "math/main"]
    assert all(preset.methods_of(c) == ("grpo",) for c in preset.cells)
    assert PRESETS["regimes"].methods_of(Cell("safety", "main", methods=("grpo+air",))) == ("grpo",)
    assert PRESETS["full"].methods_of(Cell("safety", "main")) == PRESETS["full"].methods


def test_lambda_choice_ties_exactly_equal_means_to_the_smaller_lambda():
    # the full grid's safety/hack sweep: per-seed val scores (balanced Acc_group, balanced Acc) whose means are equal
    # in exact arithmetic, (2/3 + 7/8) / 2 = (23/24 + 7/12) / 2 = 37/48 and (23/24 + 63/64) / 2 = (191/192 + 91/96) / 2
    # = 373/384, but differ in the last bit as floats; the rule then takes the smaller λ
    seeds = {
        0.1: [(0.6666666666666666, 0.9583333333333334), (0.875, 0.984375)],
        0.3: [(0.9583333333333334, 0.9947916666666666), (0.5833333333333334, 0.9479166666666666)],
    }
    runs = [
        {"lambda": lam, "metrics": {"val": {"balanced_acc_group": g, "balanced_acc": a}}}
        for lam, v in seeds.items()
        for g, a in v
    ]
    means = {lam: statistics.fmean(g for g, _ in v) for lam, v in seeds.items()}
    assert means[0.3] > means[0.1]  # the float noise the rule must not read as a win
    assert choose_lambda(runs) == 0.1


@pytest.mark.parametrize("forward", ["preset", "fast", "trl"])
def test_the_forward_option_changes_the_forwards_and_nothing_else(forward):
    import argparse

    from air_align.cli.lab import _preset
    from air_align.lab.presets import TRL_FORWARD

    for name in ("full", "quick"):
        args = argparse.Namespace(
            preset=name, world=None, seeds=None, warm_seeds=None, max_steps=7, workers=None, forward=forward
        )
        training = _preset(args).training
        expected = {"preset": PRESETS[name].training, "fast": Training(), "trl": TRL_FORWARD}[forward]
        assert training == dataclasses.replace(expected, max_steps=7)
    assert PRESETS["full"].training == TRL_FORWARD and PRESETS["quick"].training == Training()
