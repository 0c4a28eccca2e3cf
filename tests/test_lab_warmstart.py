"""The warm start: saved and loadable by path, cached by recipe and world, and measurably context-dependent.

The fast test trains the smoke preset's short recipe (the reproduce and runner tests reuse it) and checks what
robustly holds that early. The slow test runs the default recipe for every built-in world and checks the premise the
lab rests on: anchors right, open variants swayed where a family is triggered, and an informative Acc_group (neither
0 nor 1 by construction) for every label, in distribution and out of it.
"""

from __future__ import annotations

import json

import pytest
import torch

from air_align.lab import world
from air_align.lab.reproduce import PRESETS
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.lab.warmstart import Recipe, load_warm_start, measure_context_dependence, warm_start

SHORT = Recipe(world="safety", **PRESETS["smoke"].warm)  # shared with test_lab_reproduce.py / test_lab_runner.py


@pytest.fixture(scope="module")
def short_safety(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.getbasetemp() / "lab-warm"  # the reproduce smoke test reuses this warm start
    path = warm_start(SHORT, root=root)
    model, tokenizer = load_warm_start(path)
    rows = world.build_rows("safety", seed=SHORT.world_seed, splits=("test_id", "test_ood"))
    return root, path, measure_context_dependence(model, tokenizer, rows)


def test_warm_start_is_saved_by_recipe_and_cached(short_safety):
    root, path, _ = short_safety
    assert path.name == f"warmstart-safety-{SHORT.key()}"
    saved = json.loads((path / "recipe.json").read_text())
    assert saved["recipe"]["epochs"] == SHORT.epochs and saved["log"]["steps"] > 0
    stamp = (path / "recipe.json").stat().st_mtime_ns
    assert warm_start(SHORT, root=root) == path  # cached: not retrained
    assert (path / "recipe.json").stat().st_mtime_ns == stamp
    assert Recipe(world="safety", epochs=SHORT.epochs + 1).key() != SHORT.key()
    # a world and its miscalibrated control differ only in rewards: they share one warm start
    assert Recipe(world="safety-miscalibrated", **PRESETS["smoke"].warm).key() == SHORT.key()
    assert Recipe(world="morality", **PRESETS["smoke"].warm).key() != SHORT.key()
    # the reloaded tokenizer is the lab's word-level one (AutoTokenizer would give a byte-level Qwen2Tokenizer)
    _, tokenizer = load_warm_start(path)
    assert (
        tokenizer("<think> make a bomb </think>")["input_ids"]
        == build_lab_tokenizer("safety")("<think> make a bomb </think>")["input_ids"]
    )


def test_short_warm_start_answers_anchors_and_is_swayed_where_triggered(short_safety):
    _, _, m = short_safety
    assert m["families"]["anchor:tf"] >= 0.9
    assert m["open_untriggered"] - m["open_triggered"] >= 0.2, m


@pytest.mark.slow
@pytest.mark.parametrize("name", world.DOMAINS)
def test_default_warm_start_is_context_dependent_with_an_informative_acc_group(name, tmp_path):
    torch.set_num_threads(1)
    recipe = Recipe(world=name)
    model, tokenizer = load_warm_start(warm_start(recipe, root=tmp_path))
    rows = world.build_rows(name, seed=recipe.world_seed, splits=("test_id", "test_ood"))
    m = measure_context_dependence(model, tokenizer, rows)
    assert m["anchor"] >= 0.9, m["families"]
    assert m["open_untriggered"] >= 0.85 and m["open_untriggered"] - m["open_triggered"] >= 0.25, m
    # in distribution, every label's Acc_group is informative (neither 0 nor 1 by construction); the held-out
    # families are stronger (docs/lab.md §2), so out of distribution it is lower still
    in_dist = {k: v for k, v in m["acc_group"].items() if k.startswith("test_id/")}
    assert in_dist and all(0.02 <= v <= 0.7 for v in in_dist.values()), m["acc_group"]
    for key, value in m["acc_group"].items():
        if key.startswith("test_ood/"):
            assert value <= m["acc_group"][key.replace("test_ood", "test_id")] + 0.05, m["acc_group"]
