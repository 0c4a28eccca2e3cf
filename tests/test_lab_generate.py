"""Generated worlds (docs/lab.md, "Generated worlds"): valid specs across kinds and seeds, byte-identical for a seed,
different across seeds, drawn from the documented distribution (calibrated rewards, trigger shares, vocabulary from
the word bank), and the ``air-align lab world`` command with its errors."""

from __future__ import annotations

import pytest
import yaml
from _messages import assert_error

from air_align.cli import main
from air_align.lab import generate as G
from air_align.lab import spec as S
from air_align.lab import world
from air_align.lab.calibration import world_calibration
from air_align.lab.spec import KINDS, load_world, with_judge

SEEDS = range(5)


@pytest.mark.parametrize("kind", KINDS)
def test_generated_worlds_load_and_are_byte_identical_per_seed(kind, tmp_path):
    texts = {}
    for seed in SEEDS:
        path = G.write_world(kind, seed, tmp_path / f"{kind}-{seed}.yaml")
        spec = load_world(path)  # validated as any world file is
        assert (spec.kind, spec.name) == (kind, f"gen-{kind}-{seed}")
        assert path.read_bytes() == G.world_yaml(kind, seed).encode()  # the same seed, the same bytes
        texts[seed] = path.read_text()
        assert len(world.build_rows(spec, seed=0)) > 0
    # different seeds, different worlds (the name aside: the body differs)
    bodies = {seed: yaml.safe_load(t) | {"name": "", "description": ""} for seed, t in texts.items()}
    assert len({yaml.safe_dump(b) for b in bodies.values()}) == len(SEEDS)


def test_the_draw_does_not_depend_on_the_process_hash_seed(tmp_path):
    import os
    import subprocess
    import sys

    code = "from air_align.lab.generate import world_yaml; print(world_yaml('morality', 7), end='')"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": h},
        ).stdout
        for h in ("1", "2")
    }
    assert outs == {G.world_yaml("morality", 7)}


@pytest.mark.parametrize("kind", KINDS)
def test_generated_worlds_follow_the_documented_distribution(kind):
    bank = G.word_bank()[kind]
    for seed in SEEDS:
        spec = load_world_dict(kind, seed)
        values = spec.feature_values()
        n = len(values)
        assert n % 2 == 0
        # susceptibilities: a permutation of the even grid, so no sway logit is ever exactly 0
        assert sorted(spec.intents.susceptibility.values()) == G.susceptibility_grid(n, G.STEP[kind])
        assert all(spec.sway_logit(f, v) != 0 for f in spec.families for v in values)
        for sway in {f.sway for f in spec.families}:
            ids = [f for f in spec.families if f.sway == sway and not f.ood]
            oods = [f for f in spec.families if f.sway == sway and f.ood]
            top_id = max(sum(spec.triggered(f, v) for v in values) for f in ids)
            top_ood = max(sum(spec.triggered(f, v) for v in values) for f in oods)
            # the strongest ID family triggers on 58-75 % of the words, the OOD one on more, never on all
            assert G.ID_SHARE[0] * n - 0.5 <= top_id <= G.ID_SHARE[1] * n + 0.5, (seed, sway, top_id)
            assert top_id < top_ood <= n - 1, (seed, sway, top_id, top_ood)
        names = [f.name for f in spec.families]
        bank_names = {
            e["name"]
            for key in ("plain", "comply", "refuse", "excuse", "condemn", "neutral", "decoy")
            for e in bank.get(key, [])
        }
        assert set(names) <= bank_names and len(set(names)) == len(names)
        if kind == "math":
            # only wrappers that show the decoy sway; the others never do
            assert all(("{d}" in f.template) == (f.strength > G.NEVER) for f in spec.families)
            continue
        if kind == "morality":
            # six families a direction (two held out), each swaying on some words: with 2-5, some never swaying, the
            # morality warm starts learned no feature word (Acc_group 0 on both labels; docs/lab.md §7)
            assert all(0 < spec.sway_rate(f) < 1 for f in spec.families), seed
            for sway in S.SWAYS[kind]:
                fams = [f for f in spec.families if f.sway == sway]
                assert (len(fams), sum(f.ood for f in fams)) == (G.MORALITY_FAMILIES, 2), (seed, sway)
        label_words = {w for ws in spec.intents.labels.values() for w in ws}
        assert label_words.isdisjoint(values)
        assert len(world.intents(spec)) >= G.MIN_INTENTS
        assert spec.rewards == G.CALIBRATED_REWARDS[kind]
        assert spec.judge.noise in (0.75, 1.0, 1.25, 1.5) and spec.warm_start.p_hack in (0.05, 0.1, 0.15)


def load_world_dict(kind: str, seed: int):
    from air_align.lab.spec import spec_from_dict

    return spec_from_dict(G.generate_world(kind, seed))


def test_the_word_bank_keeps_a_kinds_slots_disjoint():
    bank = G.word_bank()
    for kind, keys in {
        "safety": ("verbs", "harmful", "benign"),
        "morality": ("wrong", "fine", "things", "persons"),
    }.items():
        words = [w for k in keys for w in bank[kind][k]]
        assert len(words) == len(set(words)), kind
        assert all(" " not in w for w in words)


@pytest.mark.parametrize("kind", ("safety", "morality"))
@pytest.mark.parametrize("cue", (1.0, 4.0))
def test_generated_worlds_are_calibrated_in_both_regimes(kind, cue):
    for seed in (0, 1):
        table = world_calibration(with_judge(load_world_dict(kind, seed), cue_strength=cue))
        assert table["calibrated"], (seed, table["verdicts"])


def test_lab_world_command_writes_the_spec_and_refuses_bad_input(tmp_path, capsys):
    out = tmp_path / "worlds" / "s3.yaml"
    assert main(["lab", "world", "--kind", "safety", "--seed", "3", "--out", str(out)]) == 0
    assert out.read_text() == G.world_yaml("safety", 3)
    assert "world gen-safety-3" in capsys.readouterr().out
    assert main(["lab", "world", "--kind", "safety", "--seed", "3", "--out", str(out)]) == 0  # same bytes: fine
    # another world over it: refused, the file untouched
    assert main(["lab", "world", "--kind", "safety", "--seed", "4", "--out", str(out)]) == 2
    assert_error(capsys.readouterr().err, str(out), "exists with other content", "pass --overwrite")
    assert out.read_text() == G.world_yaml("safety", 3)
    assert main(["lab", "world", "--kind", "safety", "--seed", "4", "--out", str(out), "--overwrite"]) == 0
    assert out.read_text() == G.world_yaml("safety", 4)
    assert main(["lab", "world", "--kind", "math", "--seed", "-1", "--out", str(tmp_path / "m.yaml")]) == 2
    assert_error(capsys.readouterr().err, "seed -1", "a whole number >= 0")
    assert not (tmp_path / "m.yaml").exists()
    assert main(["lab", "world", "--kind", "math", "--seed", "1", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    with pytest.raises(ValueError, match="world kind 'chess'"):
        G.generate_world("chess", 1)
