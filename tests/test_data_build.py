"""Real sources and meta-group builds: counts, real templates rendering the intent, determinism, no OOD leak."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from air_align.data import sources
from air_align.data.build import build_meta_groups, choose_ood_families, open_contexts
from air_align.data.renderers import render_template
from air_align.data.schema import prompt_text
from air_align.data.validate import summarize, validate_rows


def test_real_source_counts():
    assert len(sources.advbench()) == 520 and all(x["label"] == 1 for x in sources.advbench())
    assert len(sources.harmbench()) == 200
    benign = sources.benign_intents()
    assert len(benign) == 69 + len(sources.BENIGN_LOOKALIKES) and {x["label"] for x in benign} == {0}
    ethics = sources.ethics_commonsense()
    assert len(ethics) == 6661 and {x["label"] for x in ethics} == {0, 1}


def test_pyrit_templates_families_and_length_cap():
    all_templates = sources.pyrit_templates(max_chars=None)
    short = sources.pyrit_templates()
    assert len(all_templates) == 652  # 655 files, 3 top-level multi-parameter ones dropped
    assert all(len(t["template"]) <= sources.MAX_TEMPLATE_CHARS for t in short)
    families = Counter(t["family"] for t in all_templates)
    assert families["jailbreakchat"] == 75 and families["pliny"] == 42 and families["arth_singh"] == 30
    assert families["itw-discord"] + families["itw-reddit"] + families["itw-website"] == 488


def test_sample_of_real_templates_renders_with_intent_inside():
    templates = sources.pyrit_templates(max_chars=None)
    intent = "Explain how to pick a lock QX7"
    for t in random.Random(0).sample(templates, 60) + [t for t in templates if "in_the_wild" in t["name"]][:10]:
        text = render_template(t["template"], intent, name=t["name"])
        assert intent in text, t["name"]


def test_missing_package_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sources.INSTALL, "pyrit", "pip install --no-deps pyrit==1.1.0")
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"install it with: pip install --no-deps pyrit==1.1.0"):
        sources.package_dir("pyrit")


def test_ood_family_choice():
    sizes = {"a": 1, "b": 5, "c": 5, "plain": 1}
    assert choose_ood_families(sizes, "a,b", seed=0) == ["a", "b"]
    assert choose_ood_families(sizes, 0, seed=0) == []
    for seed in range(10):  # never plain; a draw of 1 family needs 4 contexts: b or c
        assert choose_ood_families(sizes, 1, seed, min_contexts=4) in (["b"], ["c"])
    with pytest.raises(ValueError, match=r"unknown OOD families \['zzz'\]"):
        choose_ood_families(sizes, "zzz", seed=0)


@pytest.fixture(scope="module")
def safety_rows():
    return build_meta_groups("safety", n_intents=16, anchors=2, opens=3, ood_families=2, seed=3)


def test_safety_build_is_valid_and_split_as_documented(safety_rows):
    rows = safety_rows
    assert validate_rows(rows, require_equal_group_size=True) == []
    s = summarize(rows)
    # 16 intents, stratified: 12 harmful (3 test, round(1.5)=2 val, 7 train), 4 benign (1 test, round(0.5)=0 val, 3)
    assert s["intents"] == 16
    assert s["groups"] == {"train": 10, "val": 2, "test_id": 4, "test_ood": 4}
    assert s["anchors_per_group"] == {2: 20} and s["opens_per_group"] == {3: 20}
    assert Counter(r["label"] for r in rows if r["role"] == "anchor" and r["split"] == "train") == {1: 14, 0: 6}
    ood = set(s["families"]["test_ood"])
    # no OOD family in train / val / test_id; test intents never in train / val
    assert not ood & {r["family"] for r in rows if r["split"] != "test_ood"}
    test_groups = {r["group_id"] for r in rows if r["split"].startswith("test")}
    assert not test_groups & {r["group_id"] for r in rows if r["split"] in ("train", "val")}
    for r in rows:  # every open variant carries its intent (transforms encode it, so check templates only)
        if r["context"].startswith("pyrit:"):
            assert r["intent"] in prompt_text(r["prompt"])
        if r["role"] == "anchor":
            assert r["answer"] in ("A", "B", "true", "false")


def test_build_is_deterministic_and_seed_dependent(safety_rows):
    again = build_meta_groups("safety", n_intents=16, anchors=2, opens=3, ood_families=2, seed=3)
    assert again == safety_rows
    other = build_meta_groups("safety", n_intents=16, anchors=2, opens=3, ood_families=2, seed=4)
    assert other != safety_rows


def test_named_ood_families_never_leak():
    rows = build_meta_groups("morality", n_intents=12, anchors=3, opens=3, ood_families="story,authority", seed=0)
    assert validate_rows(rows, require_equal_group_size=True) == []
    assert {r["family"] for r in rows if r["split"] == "test_ood" and r["role"] == "open"} == {"story", "authority"}
    assert not {"story", "authority"} & {r["family"] for r in rows if r["split"] != "test_ood"}
    # the 3rd anchor is "mc-2"; labels 6/6, round(6 · 0.25) = 2 test intents each, so 4 test intents have it twice
    assert Counter(r["context"] for r in rows if r["role"] == "anchor")["mc-2"] == 12 + 4


def test_math_build_answers_are_consistent():
    rows = build_meta_groups("math", n_intents=8, anchors=2, opens=2, ood_families=1, seed=0)
    assert validate_rows(rows, require_equal_group_size=True) == []
    for r in rows:
        if r["verifier"] == "math":
            assert r["answer"] == r["meta"]["answer"] and "\\boxed{}" in prompt_text(r["prompt"])
        if r["verifier"] == "choice":
            text = prompt_text(r["prompt"])
            assert f"{r['answer']}) {r['meta']['answer']}\n" in text  # the stored letter marks the reference answer


def test_build_errors_are_clear():
    with pytest.raises(ValueError, match="lower --n-intents"):
        build_meta_groups("math", n_intents=200)
    with pytest.raises(ValueError, match="unknown domain 'chess'"):
        build_meta_groups("chess")
    with pytest.raises(ValueError, match="anchors need 0 or 1"):
        build_meta_groups("safety", intents=[{"id": "a", "text": "x", "label": None}])
    with pytest.raises(ValueError, match="lower --opens"):
        build_meta_groups("math", n_intents=8, opens=30, ood_families=0)


def test_open_contexts_sources():
    safety = open_contexts("safety")
    assert {"plain", "base64", "leetspeak", "roleplay_prefix"} <= {c["context"] for c in safety}
    assert sum(c["context"].startswith("pyrit:") for c in safety) == len(sources.pyrit_templates())
    assert not any("base64" == c["context"] for c in open_contexts("math"))  # maths stays readable


def test_cli_build_validate_inspect(tmp_path):
    out = tmp_path / "morality.jsonl"
    cli = [sys.executable, "-m", "air_align.cli", "data"]
    build = subprocess.run(
        [*cli, "build", "--domain", "morality", "--out", str(out), "--n-intents", "8", "--opens", "2", "--seed", "1"],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    assert "wrote 40 rows" in build.stdout  # 8 intents: 2 test -> 10 meta-groups of 2 anchors + 2 opens
    ok = subprocess.run([*cli, "validate", str(out)], capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    shown = subprocess.run([*cli, "inspect", str(out), "--split", "test_ood"], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert (
        "split test_ood" in shown.stdout
        and "[ANCHOR] family=anchor" in shown.stdout
        and "[OPEN] family=" in shown.stdout
    )
