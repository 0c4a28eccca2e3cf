"""The generated worlds' options (docs/lab.md §7, "Shared cues", "Unsaturated anchors"): valid and reproducible specs,
each world its control plus the option, the claimed effect on the world and on the warm start's SFT data, and bad
values refused by the spec validation with their key path and fix."""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections import Counter

import pytest
import yaml

from air_align.cli import main
from air_align.configs import to_dict
from air_align.lab import generate as G
from air_align.lab import world
from air_align.lab.spec import KINDS, SWAYS, WorldSpecError, has_phrase, load_world, sft_key, spec_from_dict
from air_align.lab.warmstart import Recipe, sft_pair

SEEDS = range(4)


def _spec(kind, seed, **options):
    return spec_from_dict(G.generate_world(kind, seed, **options))


def _without_cues(data: dict) -> dict:
    """A cue world's mapping with its cues taken out of the templates (and its name, description, cues dropped)."""
    cues = data.get("cues", {})
    families = []
    for f in data["families"]:
        cue = cues.get(f["sway"])
        template = f["template"][len(cue) + 1 :] if cue and f["template"].startswith(f"{cue} ") else f["template"]
        families.append({**f, "template": template})
    return {k: v for k, v in data.items() if k not in ("name", "description", "cues")} | {"families": families}


@pytest.mark.parametrize("kind", KINDS)
def test_a_shared_cue_world_is_its_control_plus_one_phrase_per_direction_in_every_swaying_family(kind, tmp_path):
    for seed in SEEDS:
        control, cued = G.generate_world(kind, seed), G.generate_world(kind, seed, shared_cue=True)
        assert cued["name"] == f"gen-{kind}-{seed}-cue"
        # the same draw: intents, strengths, splits, judge, rewards and the warm start are the control's
        assert _without_cues(cued) == {k: v for k, v in control.items() if k not in ("name", "description")}
        spec = spec_from_dict(cued)
        assert set(spec.cues) == set(SWAYS[kind])
        values = spec.feature_values()
        for sway, phrase in spec.cues.items():
            swaying = [f for f in spec.families if f.sway == sway and any(spec.triggered(f, v) for v in values)]
            # the cue is shared across the split: by ID and OOD families alike, each of which sways
            assert any(not f.ood for f in swaying) and any(f.ood for f in swaying), (seed, sway)
            for f in spec.families:
                assert has_phrase(f.template, phrase) == (f in swaying), (seed, f)
        # reproducible, byte for byte, and the file loads as any world does
        path = G.write_world(kind, seed, tmp_path / f"{kind}-{seed}.yaml", shared_cue=True)
        assert path.read_text() == G.world_yaml(kind, seed, shared_cue=True)
        assert load_world(path) == spec
    # other seeds draw other cues too (not one phrase for every world)
    assert len({tuple(_spec(kind, s, shared_cue=True).cues.values()) for s in range(8)}) > 1


@pytest.mark.parametrize("kind", ("safety", "morality"))
def test_unsaturated_anchors_spread_the_accuracy_over_the_feature_words_from_low_to_one(kind):
    for seed in SEEDS:
        control, spec = _spec(kind, seed), _spec(kind, seed, anchor_accuracy=0.6)
        assert spec.name == f"gen-{kind}-{seed}-acc60"
        accuracy = spec.warm_start.anchor_accuracy
        values = spec.feature_values()
        assert set(accuracy) == set(values)
        n = len(values)
        assert sorted(accuracy.values()) == pytest.approx([0.6 + 0.4 * i / (n - 1) for i in range(n)], abs=1e-4)
        # the rest is the control's draw; the warm start (its cache key) is not
        data, base = to_dict(spec), to_dict(control)
        assert {k for k in data if data[k] != base.get(k)} == {"name", "description", "warm_start"}
        assert data["warm_start"]["p_hack"] == base["warm_start"]["p_hack"]
        assert sft_key(spec) != sft_key(control)
    # independent of the susceptibilities: over seeds, not one ordering
    spec = _spec(kind, 0, anchor_accuracy=0.6)
    order = sorted(spec.feature_values(), key=lambda v: spec.intents.susceptibility[v])
    assert [spec.warm_start.anchor_accuracy[v] for v in order] != sorted(spec.warm_start.anchor_accuracy.values())


@pytest.mark.parametrize("kind", ("safety", "morality"))
def test_the_sft_anchor_draws_are_right_at_the_intents_accuracy(kind):
    """Each SFT draw of an anchor believes the other label with probability 1 − accuracy of its intent's feature word
    (its thought states the other label, its answer follows from it): the share of right draws per word matches its
    accuracy (binomial, about 400 draws a word, within 4 s.d.: a bound for all ten-odd words of a world at once)."""
    spec = _spec(kind, 1, anchor_accuracy=0.6)
    rng = random.Random(0)
    intents = {it.key: it for it in world.intents(spec)}
    anchors = [r for r in world.build_rows(spec, seed=0, splits=("train",)) if r["role"] == "anchor"]
    per_word = Counter(intents[r["meta"]["intent_key"]].feature for r in anchors)
    by_word: dict[str, list[bool]] = {}
    for row in anchors:
        intent = intents[row["meta"]["intent_key"]]
        for _ in range(400 // per_word[intent.feature] + 1):
            prompt, target = sft_pair(spec, row, rng)
            answer = target.split("<answer>")[1].split()[0]
            right = _right_answer(spec, row, intent, prompt)
            by_word.setdefault(intent.feature, []).append(answer == right)
            # a wrong answer comes with the thought of the other label: a belief, not a slip of the letter
            believed = intent.label if answer == right else 1 - intent.label
            assert target.startswith(f"<think> {THOUGHT[kind][believed]} </think>"), (prompt, target)
    for word, flags in by_word.items():
        q = spec.warm_start.anchor_accuracy[word]
        sd = (q * (1 - q) / len(flags)) ** 0.5
        assert abs(statistics.mean(flags) - q) <= 4 * sd + 1e-9, (word, q, statistics.mean(flags), len(flags))
    # without the option every draw is right, and the draws are those of before (no extra random numbers)
    plain = _spec(kind, 1)
    a, b = random.Random(5), random.Random(5)
    rows = [r for r in world.build_rows(plain, seed=0, splits=("train",))][:40]
    first = [sft_pair(plain, r, a) for r in rows]
    assert first == [sft_pair(plain, r, b) for r in rows]
    assert all(
        t.split("<answer>")[1].split()[0] == _right_answer(plain, r, world.intent_of(plain, r), p)
        for r, (p, t) in zip(rows, first, strict=True)
        if r["role"] == "anchor"
    )


THOUGHT = {"safety": {1: "this is harmful", 0: "this is safe"}, "morality": {1: "this was wrong", 0: "this was fine"}}


def _right_answer(spec, row, intent, prompt: str) -> str:
    """The right answer of an anchor prompt as drawn (re-read from its text: the option order is drawn afresh)."""
    words = prompt.split()
    if row["context"] == "mc":
        correct = spec.anchors.options[intent.label][0]
        return "A" if words[words.index("A") + 1] == correct else "B"
    return "true" if intent.label == 1 else "false"


def test_the_options_are_refused_with_their_key_path_and_fix(tmp_path):
    data = G.generate_world("morality", 0, shared_cue=True, anchor_accuracy=0.6)
    data["cues"]["dance"] = "let us dance ,"  # not a morality sway
    data["cues"]["condemn"] = "never said ,"  # carried by no family
    excuse = data["cues"]["excuse"]
    families = data["families"]
    first_condemn = next(i for i, f in enumerate(families) if f["sway"] == "condemn")
    last = len(families) - 1
    assert families[last]["sway"] == "condemn"
    families[last]["template"] = f"{excuse} {families[last]['template']}"  # a condemn family with the excuse cue
    word = data["intents"]["slots"]["thing"][0]
    data["warm_start"]["anchor_accuracy"][word] = 0.3
    data["warm_start"]["anchor_accuracy"]["spaceship"] = 0.9
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(WorldSpecError) as err:
        load_world(path)
    text = str(err.value)
    for expected in (
        "cues.dance: 'dance' is not a morality sway; choose from ('excuse', 'condemn')",
        f"cues.condemn: family {families[first_condemn]['name']!r} (families[{first_condemn}]) sways on some feature "
        "words but its template lacks the cue 'never said ,'; add the phrase to its template, or remove cues.condemn",
        f"cues.excuse: family {families[last]['name']!r} (families[{last}]) of sway 'condemn' carries the cue "
        f"'{excuse}' too",
        f"warm_start.anchor_accuracy: '{word}': 0.3 is outside [0.5, 1]",
        "give each feature word's accuracy in [0.5, 1]",
        "warm_start.anchor_accuracy.spaceship: not a value of the feature slot",
    ):
        assert expected in text, (expected, text)
    maths = to_dict(load_world("math"))
    maths["warm_start"] = {"anchor_accuracy": {"3": 0.7}}
    with pytest.raises(WorldSpecError, match="warm_start.anchor_accuracy: a maths anchor's answer follows from its"):
        spec_from_dict(maths)
    with pytest.raises(ValueError, match="unsaturated anchors are for safety and morality worlds"):
        G.generate_world("math", 0, anchor_accuracy=0.6)
    for bad, message in (
        (0.3, "use a number in [0.5, 1)"),
        (1.0, "use a number in [0.5, 1)"),
        (0.615, "give it in whole percent"),
    ):
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
            G.generate_world("safety", 0, anchor_accuracy=bad)


def test_lab_world_command_writes_the_options_and_refuses_a_bad_accuracy(tmp_path, capsys):
    out = tmp_path / "w.yaml"
    args = ["lab", "world", "--kind", "morality", "--seed", "2", "--shared-cue", "--anchor-accuracy", "0.7"]
    assert main([*args, "--out", str(out)]) == 0
    assert out.read_text() == G.world_yaml("morality", 2, shared_cue=True, anchor_accuracy=0.7)
    assert "--shared-cue --anchor-accuracy 0.7" in out.read_text().splitlines()[0]  # the header names the command
    assert "world gen-morality-2-cue-acc70" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    with pytest.raises(SystemExit) as code:  # a usage error, as every number option's (air_align.cli.options)
        main(["lab", "world", "--kind", "safety", "--seed", "2", "--anchor-accuracy", "0.4", "--out", str(bad)])
    assert code.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("air-align lab world: error: argument --anchor-accuracy: 0.4") and "[0.5, 1)" in last
    assert not bad.exists()
    # inside the range, a share that is not a whole percent is refused by the generator, naming the fix
    assert (
        main(["lab", "world", "--kind", "safety", "--seed", "2", "--anchor-accuracy", "0.655", "--out", str(bad)]) == 2
    )
    assert "0.655" in capsys.readouterr().err and not bad.exists()


def test_the_warm_start_recipe_keys_of_worlds_without_the_options_are_unchanged():
    # the new spec fields are left out of a spec's mapping when empty, so no existing cache key moves
    assert Recipe(world="safety").key() == "8d9909d0aa83"
    assert "cues" not in to_dict(load_world("safety")) and "anchor_accuracy" not in to_dict(load_world("math"))


def test_the_command_line_sets_the_model_width_of_the_warm_start_and_so_the_policy():
    import argparse

    from air_align.cli.lab import _preset
    from air_align.lab.presets import PRESETS

    def args(width):
        return argparse.Namespace(
            preset="units-smoke", world=None, seeds=None, warm_seeds=None, max_steps=None, workers=None, width=width
        )

    wide = _preset(args(384))
    assert wide.warm == {**PRESETS["units-smoke"].warm, "hidden_size": 384}
    assert Recipe(world="safety", **wide.warm).key() != Recipe(world="safety", **PRESETS["units-smoke"].warm).key()
    assert _preset(args(None)).warm == PRESETS["units-smoke"].warm
    for bad in (2, 390):
        with pytest.raises(ValueError, match=f"--width {bad}: use a multiple of the model's 4 attention heads"):
            _preset(args(bad))


def test_the_v3_presets_pool_worlds_with_an_option_apart_from_their_controls(tmp_path):
    from air_align.lab.presets import PRESETS, units

    cells = units(PRESETS["v3-e3"], tmp_path / "e3")
    groups = {c.group for c in cells if not c.group.startswith("tune-")}
    assert groups == {"gen-safety/main", "gen-safety-cue/main", "gen-morality/main", "gen-morality-cue/main"}
    for cell in cells:
        spec = load_world(cell.world)
        assert bool(spec.cues) == ("-cue" in cell.group or cell.group.startswith("tune-")), cell
        assert spec.name.endswith("-cue") == bool(spec.cues)
    # every compared unit has 2 warm starts; the cue world and its control share the draw (seed) and the tuning world
    compared = [c for c in cells if not c.group.startswith("tune-")]
    assert len(compared) == 2 * 2 * 4 * 2 and {c.warm_seed for c in compared} == {0, 1}
    assert {c.lambda_from for c in compared} == {"gen-safety-100-cue/main", "gen-morality-100-cue/main"}
    assert PRESETS["v3-e3-wide"].warm == {"hidden_size": 384}
    for cell in units(PRESETS["v3-e4"], tmp_path / "e4"):
        accuracy = load_world(cell.world).warm_start.anchor_accuracy
        assert min(accuracy.values()) == 0.6 and max(accuracy.values()) == 1.0, cell
    main_cells = units(PRESETS["v3-main"], tmp_path / "main")
    e1 = [c for c in units(PRESETS["v3-e1"], tmp_path / "e1") if c.regime == "main"]
    assert main_cells == tuple(dataclasses.replace(c, world=c.world.replace("/e1/", "/main/")) for c in e1)
    with pytest.raises(ValueError, match="generated-world tag 'wide'"):
        G.world_options("wide")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``trained(kind, **options)``: the warm start of generated world 0 with those options and its rows (trained
    once per module, 1 torch thread), ``recipe`` overriding the default recipe."""
    import torch

    from air_align.lab.warmstart import load_warm_start, warm_start

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("gen-warm")
    cache: dict = {}

    def get(kind: str, recipe: dict | None = None, **options):
        key = (kind, tuple(sorted((recipe or {}).items())), tuple(sorted(options.items())))
        if key not in cache:
            path = G.write_world(kind, 0, root / f"{G.world_name(kind, 0, **options)}.yaml", **options)
            model, tokenizer = load_warm_start(warm_start(Recipe(world=str(path), **(recipe or {})), root=root))
            cache[key] = (model, tokenizer, load_world(path))
        return cache[key]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_a_generated_worlds_warm_start_has_an_informative_acc_group_on_every_label(kind, trained):
    """The premise of a generated world, as of a hand-made one: anchors right, open variants right where no family
    is triggered and swayed where one is, and in distribution a meta-group right under every family on some intents
    of every label. Generated morality worlds failed it at generator version 1 (Acc_group 0 on both labels: every
    family swayed on every thing or on none; docs/lab.md §7, "Their warm starts")."""
    from air_align.lab.warmstart import measure_context_dependence

    model, tokenizer, spec = trained(kind)
    m = measure_context_dependence(model, tokenizer, world.build_rows(spec, seed=0, splits=("test_id", "test_ood")))
    assert m["anchor"] >= 0.9, m["families"]
    assert m["open_untriggered"] >= 0.8 and m["open_untriggered"] - m["open_triggered"] >= 0.25, m
    in_dist = {k: v for k, v in m["acc_group"].items() if k.startswith("test_id/")}
    assert in_dist and all(0.02 <= v <= 0.8 for v in in_dist.values()), m["acc_group"]


@pytest.mark.slow
def test_an_unsaturated_anchor_worlds_warm_start_tracks_each_words_anchor_accuracy(trained):
    """At the `v3-e4` recipe (40 epochs), the warm start's probability of the right anchor response per feature word
    follows the word's accuracy in the SFT data (measured 2026-12-04 on a trial draw: 0.75-0.76 at 0.60-0.64,
    0.93-0.94 at 0.91-1.00, Pearson 0.95; at 20 epochs it was 0.80 on every word, the accuracies' mean), and greedy
    decoding gets the anchors right on only part of the intents, within the 60-100 % the world is for (0.76 on this
    draw, 1.00 on the trial draw)."""
    from air_align.lab.presets import PRESETS
    from air_align.lab.warmstart import anchor_right_probability, measure_context_dependence

    model, tokenizer, spec = trained("safety", PRESETS["v3-e4"].warm, anchor_accuracy=0.6)
    rows = world.build_rows(spec, seed=0, splits=("test_id",))
    keys = {it.key: it.feature for it in world.intents(spec)}
    by_word: dict[str, list[float]] = {}
    for key, p in anchor_right_probability(model, tokenizer, rows).items():
        by_word.setdefault(keys[key], []).append(p)
    pairs = sorted((spec.warm_start.anchor_accuracy[w], statistics.mean(ps)) for w, ps in by_word.items())
    accuracy, learned = zip(*pairs, strict=True)
    assert statistics.correlation(accuracy, learned) >= 0.8, pairs
    assert statistics.mean(learned[-3:]) - statistics.mean(learned[:3]) >= 0.1, pairs
    assert 0.6 <= measure_context_dependence(model, tokenizer, rows)["anchor"] <= 1.0
