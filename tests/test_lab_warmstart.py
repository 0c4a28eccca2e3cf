"""The warm start: saved and loadable by path, cached by recipe and world, and measurably context-dependent.

The fast test trains the smoke preset's short recipe (the reproduce and runner tests reuse it) and checks what
robustly holds that early. The slow test runs the default recipe for every built-in world and checks the premise the
lab rests on: anchors right (both of them, maths included), open variants swayed where a family is triggered, and an
informative Acc_group (neither 0 nor 1 by construction) for every label, in distribution and out of it.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from air_align.lab import world
from air_align.lab.presets import PRESETS
from air_align.lab.spec import load_world
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.lab.warmstart import (
    Recipe,
    load_warm_start,
    measure_context_dependence,
    sft_pair,
    train_warm_start,
    warm_start,
)

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


def test_recipe_defaults_are_per_kind_and_leave_safety_and_morality_keys_alone():
    # maths trains longer and is at recipe version 3 (its checking thought); the others keep 20 epochs, version 2
    assert (Recipe(world="math").epochs, Recipe(world="math").version) == (40, 3)
    assert (Recipe(world="safety").epochs, Recipe(world="safety").version) == (20, 2)
    # the cache keys of the safety and morality warm starts, pinned: a change of key retrains every cached warm start
    # (they changed once since the maths change, when the SFT's thread count joined the recipe)
    assert Recipe(world="safety").key() == "8d9909d0aa83"
    assert Recipe(world="morality").key() == "ae96e4c5b9af"
    assert Recipe(world="math", epochs=40, version=3).key() == Recipe(world="math").key()


TINY = {"epochs": 1, "open_per_intent": 1, "mc_copies": 1, "hidden_size": 32, "num_heads": 2}
"""A warm start small enough to train three times in a test (a few seconds each)."""


def test_the_same_recipe_and_seed_give_the_same_weights_bit_for_bit_and_another_seed_another_model(tmp_path):
    recipe = Recipe(world="safety", seed=1, **TINY)
    assert Recipe(world="safety", seed=2, **TINY).key() != recipe.key()  # the seed and the threads are in the key
    assert Recipe(world="safety", seed=1, threads=2, **TINY).key() != recipe.key()
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's thread count is not the recipe's: the SFT runs on recipe.threads
    try:
        first = warm_start(recipe, root=tmp_path / "a")
        assert torch.get_num_threads() == 2  # and the caller's count is restored
    finally:
        torch.set_num_threads(before)
    second = warm_start(recipe, root=tmp_path / "b")  # trained again from scratch, in another cache
    a, _ = load_warm_start(first)
    b, _ = load_warm_start(second)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # every tensor, bit for bit
    other, _, _ = train_warm_start(Recipe(world="safety", seed=2, **TINY))
    so = dict(other.named_parameters())
    assert all(not torch.equal(sa[k], so[k]) for k in so)  # another seed: every parameter differs
    with pytest.raises(ValueError, match="warm-start seed -1"):
        Recipe(world="safety", seed=-1)
    with pytest.raises(ValueError, match="warm-start threads 0"):
        Recipe(world="safety", threads=0)


def test_maths_sft_anchors_are_drawn_afresh_and_right():
    """Every SFT draw of a maths anchor shows the sum or a number 1-2 above / below it, and its target's thought and
    answer are right for the prompt it was drawn with (checked here by re-reading the numbers from the text)."""
    spec = load_world("math")
    rng = random.Random(0)
    anchors = [r for r in world.build_rows(spec, seed=0, splits=("train",)) if r["role"] == "anchor"]
    prompts = set()
    for row in anchors[:20]:
        for _ in range(10):
            prompt, target = sft_pair(spec, row, rng)
            prompts.add(prompt)
            value = world.intent_of(spec, row).answer
            words = prompt.split()
            if row["context"] == "mc":  # "what is a op b ? A o1 B o2 . ..."
                o1, o2 = int(words[words.index("A") + 1]), int(words[words.index("B") + 1])
                assert o1 < o2 and value in (o1, o2) and 1 <= o2 - o1 <= 2
                answer, checked = ("A" if o1 == value else "B"), o2
            else:  # "true or false : a op b is s"
                shown = int(words[-1])
                assert shown - value in (0, 1, 2)
                answer, checked = ("true" if shown == value else "false"), shown
            thought = f"{checked} minus {value} is {checked - value}"
            assert target.endswith(f"{thought} </think> <answer> {answer} </answer>"), (prompt, target)
    assert len(prompts) > 60  # 20 anchors x 10 draws: orders, statements and wrong numbers vary


@pytest.fixture(scope="module")
def default_warm_starts(tmp_path_factory):
    """The default recipe's warm start of every built-in world, measured on its test rows (trained once each)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("lab-default-warm")
    out = {}
    for name in world.DOMAINS:
        recipe = Recipe(world=name)
        model, tokenizer = load_warm_start(warm_start(recipe, root=root))
        rows = world.build_rows(name, seed=recipe.world_seed, splits=("test_id", "test_ood"))
        out[name] = measure_context_dependence(model, tokenizer, rows)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", world.DOMAINS)
def test_default_warm_start_answers_both_anchors(name, default_warm_starts):
    # maths: measured 0.98 / 1.00 (seed 0) and 1.00 / 1.00 (seed 1) on 2026-11-29; 0.48 / 0.38 before the checking
    # thought (docs/lab.md §5)
    m = default_warm_starts[name]
    assert m["families"]["anchor:mc"] >= 0.9 and m["families"]["anchor:tf"] >= 0.9, m["families"]


# The maths world's open variants met the context-dependence premise once only the wrappers that *show* a decoy push
# towards it (docs/lab.md §5: with every wrapper pushing, the warm start invented decoys on plain questions too and
# untriggered prompts were right only 0.63-0.77 of the time; now 0.93, measured 2026-11-29 with 40 epochs).
@pytest.mark.slow
@pytest.mark.parametrize("name", world.DOMAINS)
def test_default_warm_start_is_context_dependent_with_an_informative_acc_group(name, default_warm_starts):
    m = default_warm_starts[name]
    assert m["anchor"] >= 0.9, m["families"]
    assert m["open_untriggered"] >= 0.85 and m["open_untriggered"] - m["open_triggered"] >= 0.25, m
    # in distribution, every label's Acc_group is informative (neither 0 nor 1 by construction); the held-out
    # families are stronger (docs/lab.md §2), so out of distribution it is lower still
    in_dist = {k: v for k, v in m["acc_group"].items() if k.startswith("test_id/")}
    assert in_dist and all(0.02 <= v <= 0.7 for v in in_dist.values()), m["acc_group"]
    for key, value in m["acc_group"].items():
        if key.startswith("test_ood/"):
            assert value <= m["acc_group"][key.replace("test_ood", "test_id")] + 0.05, m["acc_group"]
