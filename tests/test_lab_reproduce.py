"""A two-step ``reproduce`` run with the real trainer writes a valid results.json, table and plot."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from air_align.lab.reproduce import PRESETS, paper_table, reproduce, summarise
from air_align.training.methods import METHODS


def test_summarise_and_table_by_hand():
    runs = [
        {"domain": "safety", "method": "grpo", "metrics": {"test_id": {"acc": 0.5, "acc_group": 0.0}}},
        {"domain": "safety", "method": "grpo", "metrics": {"test_id": {"acc": 1.0, "acc_group": 0.5}}},
    ]
    s = summarise(runs)["safety"]["grpo"]["test_id"]
    # mean (0.5 + 1.0) / 2 = 0.75; population std |1.0 - 0.5| / 2 = 0.25
    assert s["acc"] == {"mean": 0.75, "std": 0.25, "n": 2}
    table = paper_table(summarise(runs), ("safety",), ("grpo",))
    assert "| ID | GRPO | 75.0 ± 25.0 / 25.0 ± 25.0 |" in table
    assert "| OOD | GRPO | — |" in table


def test_two_step_reproduce_writes_valid_results_and_resumes(tmp_path, tmp_path_factory, monkeypatch):
    torch.set_num_threads(1)
    preset = PRESETS["smoke"]  # safety, GRPO and GRPO+AIR, 1 seed, 2 steps, short warm start
    warm_root = tmp_path_factory.getbasetemp() / "lab-warm"  # shared with test_lab_warmstart.py
    results = reproduce(preset, tmp_path / "out", progress=False, warm_root=warm_root)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["table"] == results["table"]
    assert (tmp_path / "out" / "table.md").exists() and (tmp_path / "out" / "ood_acc_group.png").exists()
    assert {(r["method"], r["seed"]) for r in saved["runs"]} == {("grpo", 0), ("grpo+air", 0)}
    assert saved["lambda"]["safety"] == {"grpo+air": 0.5}
    for run in saved["runs"]:
        assert set(run["metrics"]) == {"test_id", "test_ood"}
        for split in ("test_id", "test_ood"):
            m = run["metrics"][split]
            assert 0.0 <= m["acc_group"] <= m["acc"] <= 1.0  # all-correct groups are rarer than correct prompts
        assert METHODS[run["method"]]
    assert set(saved["summary"]["safety"]) == {"warm start", "grpo", "grpo+air"}
    assert "| OOD | GRPO + AIR |" in saved["table"]

    # Resume: a second call into the same directory reuses every finished run and trains nothing.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr("air_align.lab.reproduce.train_one", no_training)
    again = reproduce(preset, tmp_path / "out", progress=False, warm_root=warm_root)
    assert again["runs"] == results["runs"] and again["table"] == results["table"]
    assert results["resumed_runs"] == 0 and again["resumed_runs"] == len(again["runs"])
    # ... but a changed setup is not mistaken for a finished run
    with pytest.raises(AssertionError, match="retrained"):
        reproduce(dataclasses.replace(preset, max_steps=3), tmp_path / "out", progress=False, warm_root=warm_root)


def _trained_params(tmp_path, warm, method, preset):
    from air_align.lab import world
    from air_align.lab.reproduce import train_one

    rows = world.build_rows("safety", seed=0, splits=("train",))
    model, _, _ = train_one(warm, rows, method, 0.05, 0, preset, tmp_path / method)
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_gspo_equals_grpo_on_policy_and_differs_off_policy(tmp_path, tmp_path_factory):
    """With one optimiser step per generation batch every importance ratio is 1, so the token-level (GRPO) and
    sequence-level (GSPO) surrogates have the same gradient; with ``num_iterations = 2`` the second step reuses the
    batch off-policy and the two must differ. This is why the presets use ``num_iterations = 2``."""
    from air_align.lab.warmstart import Recipe, load_warm_start, warm_start

    torch.set_num_threads(1)
    warm = warm_start(Recipe(domain="safety", epochs=10), root=tmp_path_factory.getbasetemp() / "lab-warm")
    base = dataclasses.replace(PRESETS["smoke"], groups_per_step=1)
    start = torch.cat([p.detach().flatten() for p in load_warm_start(warm)[0].parameters()])
    on_policy = dataclasses.replace(base, max_steps=1, num_iterations=1)
    grpo, gspo = (_trained_params(tmp_path / "on", warm, m, on_policy) for m in ("grpo+air", "gspo+air"))
    # Adam's first step is about lr·sign(g): compare L2 norms (a float-rounding difference in a gradient entry near
    # Adam's ε can move that one entry visibly, but not the norm).
    moved = (grpo - start).norm().item()
    assert moved > 1e-3  # the step did something
    same = (grpo - gspo).norm().item()
    off_policy = dataclasses.replace(base, max_steps=2, num_iterations=2)
    grpo, gspo = (_trained_params(tmp_path / "off", warm, m, off_policy) for m in ("grpo+air", "gspo+air"))
    apart = (grpo - gspo).norm().item()
    print(f"moved {moved:.3g}  on-policy GRPO-GSPO {same:.3g}  off-policy {apart:.3g}")
    assert same < 1e-3 * moved
    assert apart > 1e-2 * moved


def test_lambda_plot_and_choice_from_a_sweep(tmp_path):
    from air_align.lab.reproduce import choose_lambda, plot_sweep

    runs = [{"lambda": lam, "seed": seed, "metrics": {"val": {"acc": acc, "acc_group": grp}}}
            for lam, seed, acc, grp in [(0.01, 0, 0.6, 0.1), (0.01, 1, 0.6, 0.3), (0.1, 0, 0.9, 0.0),
                                        (0.1, 1, 0.9, 0.3)]]  # fmt: skip
    # mean Acc_group: λ=0.01 → 0.2, λ=0.1 → 0.15; Acc_group decides before Acc
    assert choose_lambda(runs) == 0.01
    plot_sweep({"safety": {"grpo+air": runs}}, {"safety": {"grpo+air": 0.01}}, tmp_path / "lambda_sweep.png")
    assert (tmp_path / "lambda_sweep.png").stat().st_size > 1000
    plot_sweep({}, {}, tmp_path / "none.png")  # no sweep (a fixed λ): nothing to draw
    assert not (tmp_path / "none.png").exists()


def test_cli_lists_every_preset():
    from air_align.lab.cli import PRESET_NAMES

    assert PRESET_NAMES == tuple(PRESETS)  # the CLI keeps its own copy so that --help imports no torch
