"""Replication units (docs/lab.md, "Generated worlds" and "Warm-start seeds"): a preset's cells and generated worlds
× its warm-start seeds, and the runs ``reproduce`` builds from them — unit product, names and run keys; the
``units-smoke`` preset end to end (slow)."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from air_align.lab import reproduce as R
from air_align.lab.generate import world_yaml
from air_align.lab.presets import PRESETS, STRESS, Cell, Preset, units
from air_align.lab.reproduce import main_runs, warm_name
from air_align.lab.runs import Training

GRID = Preset(
    "units-test",
    cells=(Cell("safety", "hack"), STRESS),
    generated=(("morality", 2), ("math", 1)),
    warm_seeds=(0, 3),
    methods=("grpo", "grpo+air"),
    seeds=(0, 1, 2),
    lambdas=(0.1,),
    training=Training(max_steps=2),
)


def test_units_are_the_product_of_worlds_regimes_and_warm_starts(tmp_path):
    cells = units(GRID, tmp_path)
    worlds = tmp_path / "worlds"
    assert (worlds / "gen-morality-2.yaml").read_text() == world_yaml("morality", 2)
    assert (worlds / "gen-math-1.yaml").read_text() == world_yaml("math", 1)
    # (2 hand-named cells + morality under main and hack + maths under main only) × 2 warm starts
    assert [c.name for c in cells] == [
        "safety/hack",
        "safety@w3/hack",
        "safety/stress",
        "safety@w3/stress",
        "gen-morality-2/main",
        "gen-morality-2@w3/main",
        "gen-morality-2/hack",
        "gen-morality-2@w3/hack",
        "gen-math-1/main",
        "gen-math-1@w3/main",
    ]
    # warm starts of one world pool into its comparison, generated worlds into their kind's
    assert [c.group for c in cells][::2] == [
        "safety/hack",
        "safety/stress",
        "gen-morality/main",
        "gen-morality/hack",
        "gen-math/main",
    ]
    assert all(cells[i].group == cells[i + 1].group for i in range(0, len(cells), 2))
    # the stress cell takes λ from the hack cell of its own warm start
    assert [c.lambda_from for c in cells if c.regime == "stress"] == ["safety/hack", "safety@w3/hack"]
    assert units(GRID, tmp_path) == cells  # rewriting the same worlds: the same units
    assert [c.name for c in units(PRESETS["units-smoke"], tmp_path)] == ["gen-safety-0/hack", "gen-safety-0@w1/hack"]
    # a unit's warm start is named by its world and warm seed; seed 0 keeps the world's name
    assert warm_name(cells[0]) == "safety" and warm_name(cells[1]) == "safety@w3"


def test_a_units_runs_are_methods_by_seeds_with_keys_that_name_world_and_warm_start(tmp_path):
    cells = units(GRID, tmp_path)
    warm = {warm_name(c): f"/cache/warmstart-{warm_name(c)}" for c in cells}
    lambdas = {c.name: 0.1 for c in cells}
    runs = main_runs(GRID, cells, lambdas, warm)
    stress = len(STRESS.methods) * 3 * 2  # the stress cell runs its own two methods
    assert len(runs) == (len(cells) - 2) * 2 * 3 + stress
    names = [r.name() for r in runs]
    keys = [json.dumps(r.key(), sort_keys=True) for r in runs]
    assert len(set(names)) == len(runs) and len(set(keys)) == len(runs)  # every run its own directory and key
    assert {r.extra["cell"] for r in runs} == {c.group for c in cells}  # the records' cell: the pooled comparison
    by = {(r.extra["unit"], r.method, r.seed): r for r in runs}
    a, b = by["gen-morality-2/main", "grpo+air", 1], by["gen-morality-2@w3/main", "grpo+air", 1]
    assert (a.warm_seed, b.warm_seed) == (0, 3)
    assert a.warm_start != b.warm_start and a.key()["warm_seed"] != b.key()["warm_seed"]
    assert (
        "gen-morality-2" in a.key()["world"]
        and a.name() == "main-gen-morality-2-cue_strength1.0-grpo+air-lam0.1-seed1"
    )
    assert b.name() == "main-gen-morality-2-w3-cue_strength1.0-grpo+air-lam0.1-seed1"
    # another generator seed is another world: another spec in the key
    other = units(dataclasses.replace(GRID, generated=(("morality", 3),)), tmp_path)
    c = main_runs(GRID, other[4:5], {other[4].name: 0.1}, {warm_name(other[4]): "/w"})[0]
    assert c.key()["world_spec"] != a.key()["world_spec"]


def test_reproduce_gives_each_unit_a_warm_start_of_its_seed(tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def fake_warm_starts(recipes, **kwargs):
        seen.update(recipes)
        raise Stop

    monkeypatch.setattr(R, "warm_starts", fake_warm_starts)
    with pytest.raises(Stop):
        R.reproduce(GRID, tmp_path, progress=False)
    assert {name: r.seed for name, r in seen.items()} == {
        "safety": 0,
        "safety@w3": 3,
        str(tmp_path / "worlds" / "gen-morality-2.yaml"): 0,
        str(tmp_path / "worlds" / "gen-morality-2.yaml") + "@w3": 3,
        str(tmp_path / "worlds" / "gen-math-1.yaml"): 0,
        str(tmp_path / "worlds" / "gen-math-1.yaml") + "@w3": 3,
    }
    assert len({r.key() for r in seen.values()}) == len(seen)  # six warm starts, six cache keys
    with pytest.raises(ValueError, match="warm_seeds"):
        units(dataclasses.replace(GRID, warm={"seed": 1}), tmp_path)


def test_the_command_line_sets_warm_starts_and_world_files_replace_generated_worlds():
    from air_align.cli.lab import _preset

    args = argparse.Namespace(preset="units-smoke", world=None, seeds=None, warm_seeds=3, max_steps=None, workers=None)
    assert _preset(args).warm_seeds == (0, 1, 2)
    args = argparse.Namespace(
        preset="replicate", world=["safety"], seeds=None, warm_seeds=None, max_steps=None, workers=None
    )
    preset = _preset(args)
    assert preset.generated == () and [c.name for c in preset.cells] == ["safety/main", "safety/hack"]
    with pytest.raises(ValueError, match="--warm-seeds 0"):
        _preset(argparse.Namespace(preset="quick", world=None, seeds=None, warm_seeds=0, max_steps=None, workers=None))


@pytest.mark.slow
def test_units_smoke_runs_every_unit_from_its_own_warm_start_and_resumes(tmp_path):
    out, warm_root = tmp_path / "grid", tmp_path / "warm"
    results = R.reproduce(PRESETS["units-smoke"], out, progress=False, warm_root=warm_root)
    assert results["units"] == ["gen-safety-0/hack", "gen-safety-0@w1/hack"]
    assert sorted((r["cell"], r["method"], r["warm_seed"]) for r in results["runs"]) == [
        ("gen-safety/hack", "grpo", 0),
        ("gen-safety/hack", "grpo", 1),
        ("gen-safety/hack", "grpo+air", 0),
        ("gen-safety/hack", "grpo+air", 1),
    ]
    # one comparison over two units (the two warm starts), paired by unit and seed
    verdict = results["comparisons"]["gen-safety/hack"]["grpo+air"]["test_ood"]
    assert verdict["n_units"] == 2 and len(verdict["units"]) == 2
    assert "## gen-safety/hack (λ = 0.1)" in results["table"]
    warm = {w["warm_seed"]: w["warm_start"] for w in results["worlds"].values()}
    assert len(warm) == 2 and warm[0] != warm[1]
    assert len(list((out / "runs").iterdir())) == 4
    again = R.reproduce(PRESETS["units-smoke"], out, progress=False, warm_root=warm_root)
    assert again["resumed_runs"] == 4 and again["runs"] == results["runs"]
