"""The audit (``air-align audit``): rows (one variant of every family, ID/OOD as the build assigns), audit metrics
on hand-computed cases, and an end-to-end audit with the tiny model (seconds)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from air_align.audit.metrics import (
    anchor_bias,
    fails_given_right_anchors,
    flip_rates,
    over_refusal_by_family,
)
from air_align.audit.rows import audit_rows
from air_align.audit.run import audit_summary, judge_caveat
from air_align.cli import main
from air_align.data.build import build_meta_groups, choose_ood_families, open_contexts


def test_audit_rows_one_variant_per_family_and_build_ood_split():
    rows = audit_rows("morality", n_intents=4, seed=0)
    families = Counter(c["family"] for c in open_contexts("morality"))
    ood = set(choose_ood_families(families, 2, seed=0, min_contexts=4))
    assert len(ood) == 2 and "plain" not in ood
    by_group = {}
    for r in rows:
        by_group.setdefault(r["group_id"], []).append(r)
    assert len(by_group) == 4
    for group in by_group.values():
        anchors = [r for r in group if r["role"] == "anchor"]
        opens = [r for r in group if r["role"] == "open"]
        assert [a["context"] for a in anchors] == ["mc", "tf"]
        assert all(a["split"] == "test_id" and a["verifier"] in ("choice", "true_false") for a in anchors)
        assert sorted(o["family"] for o in opens) == sorted(families)  # every family exactly once
        for o in opens:
            assert o["split"] == ("test_ood" if o["family"] in ood else "test_id")
            assert o["verifier"] == "judge" and o["label"] in (0, 1)
    assert len({r["id"] for r in rows}) == len(rows)


def test_audit_ood_families_are_the_builds():
    # data build with the same seed, --ood-families 2 and --opens 4 holds out the same families.
    built = build_meta_groups("morality", n_intents=16, seed=3)
    build_ood = {r["family"] for r in built if r["split"] == "test_ood" and r["role"] == "open"}
    audit = audit_rows("morality", n_intents=16, seed=3)
    audit_ood = {r["family"] for r in audit if r["split"] == "test_ood"}
    assert build_ood and build_ood <= audit_ood and len(audit_ood) == 2
    # intent_split="test" keeps exactly the build's held-out intents
    test_intents = {r["group_id"] for r in built if r["split"] == "test_id"}
    held_out = audit_rows("morality", n_intents=16, seed=3, intent_split="test")
    assert {r["group_id"] for r in held_out} == test_intents and len(test_intents) == 4  # 16 * 0.25


def _rec(group, role, family, correct, label=1, refused=None):
    return {
        "group_id": group,
        "role": role,
        "family": family,
        "correct": correct,
        "label": label,
        "refused": refused,
        "domain": "safety",
    }


def test_flip_and_fails_given_anchors_hand_computed():
    records = [
        # intent a: anchors right; plain right, dan wrong (broken), b64 right
        _rec("a", "anchor", "anchor", True),
        _rec("a", "anchor", "anchor", True),
        _rec("a", "open", "plain", True),
        _rec("a", "open", "dan", False),
        _rec("a", "open", "b64", True),
        # intent b: one anchor wrong; plain wrong, dan right (fixed), b64 wrong
        _rec("b", "anchor", "anchor", True),
        _rec("b", "anchor", "anchor", False),
        _rec("b", "open", "plain", False),
        _rec("b", "open", "dan", True),
        _rec("b", "open", "b64", False),
        # intent c: anchors right; plain right, dan wrong (broken), b64 unscored
        _rec("c", "anchor", "anchor", True),
        _rec("c", "anchor", "anchor", True),
        _rec("c", "open", "plain", True),
        _rec("c", "open", "dan", False),
        _rec("c", "open", "b64", None),
    ]
    flips = flip_rates(records)
    # dan: a broken, b fixed, c broken -> flip 3/3, broken 2/3, fixed 1/3
    assert flips["dan"] == pytest.approx({"flip": 1.0, "broken": 2 / 3, "fixed": 1 / 3, "n": 3})
    # b64: a same (right/right), b same (wrong/wrong), c unscored -> 0 of 2
    assert flips["b64"] == {"flip": 0.0, "broken": 0.0, "fixed": 0.0, "n": 2}
    assert "plain" not in flips
    fails = fails_given_right_anchors(records)
    # intents with all anchors right: a, c. dan wrong in both -> 2/2; plain right in both -> 0/2; b64 a only -> 0/1
    assert fails == {"b64": {"rate": 0.0, "n": 1}, "dan": {"rate": 1.0, "n": 2}, "plain": {"rate": 0.0, "n": 2}}


def test_over_refusal_and_anchor_bias():
    records = [
        _rec("a", "open", "plain", False, label=0, refused=True),
        _rec("b", "open", "plain", True, label=0, refused=False),
        _rec("c", "open", "plain", True, label=1, refused=True),  # harmful: not over-refusal
        _rec("a", "open", "dan", True, label=0, refused=False),
    ]
    assert over_refusal_by_family(records) == {"dan": {"rate": 0.0, "n": 1}, "plain": {"rate": 0.5, "n": 2}}
    lines = [
        {"id": "m1", "role": "anchor", "answer": "B", "correct": False, "details": {"parsed": "A"}},
        {"id": "m2", "role": "anchor", "answer": "A", "correct": True, "details": {"parsed": "A"}},
        {"id": "m3", "role": "anchor", "answer": "B", "correct": True, "details": {"parsed": "B"}},
        {"id": "m4", "role": "anchor", "answer": "B", "correct": False, "details": {"parsed": None}},
        {"id": "t1", "role": "anchor", "answer": "true", "correct": True, "details": {"parsed": "true"}},
        {"id": "t2", "role": "anchor", "answer": "false", "correct": False, "details": {"parsed": "true"}},
        {"id": "o1", "role": "open", "answer": None, "correct": True, "details": {}},
    ]
    contexts = {"m1": "mc", "m2": "mc", "m3": "mc-2", "m4": "mc", "t1": "tf", "t2": "tf", "o1": "plain"}
    bias = anchor_bias(lines, contexts)
    # mc: 4 anchors, 3 parsed; 'A' in 2 of 3 parsed; right answer 'A' in 1 of 4; 2 of 4 correct
    assert bias["mc"] == pytest.approx({"n": 4, "parsed": 0.75, "first": 2 / 3, "first_correct": 0.25, "acc": 0.5})
    # tf: 2 anchors, both parsed 'true'; right answer 'true' in 1 of 2; 1 of 2 correct
    assert bias["tf"] == {"n": 2, "parsed": 1.0, "first": 1.0, "first_correct": 0.5, "acc": 0.5}


def test_audit_summary_marks_families():
    rows = [
        {"id": "g/a", "group_id": "g", "role": "anchor", "family": "anchor", "context": "mc", "split": "test_id"},
        {"id": "g/p", "group_id": "g", "role": "open", "family": "plain", "context": "plain", "split": "test_id"},
        {"id": "g/d", "group_id": "g", "role": "open", "family": "dan", "context": "x", "split": "test_ood"},
    ]
    records = [_rec("g", "anchor", "anchor", True), _rec("g", "open", "plain", True), _rec("g", "open", "dan", False)]
    summary = audit_summary(rows, records, [])
    assert summary["families"] == {"anchor": "anchor", "dan": "OOD", "plain": "ID"}
    assert summary["family_acc"]["dan"] == {"acc": 0.0, "n": 1}
    assert summary["flip_vs_plain"]["dan"]["broken"] == 1.0
    assert "math_verify" in judge_caveat("oracle-label", "math") and "keyword" in judge_caveat(
        "oracle-label", "safety"
    )


def test_audit_cli_tiny_model_end_to_end(tmp_path):
    out = tmp_path / "audit"
    code = main(
        [
            "audit",
            "--model",
            "tiny",
            "--domain",
            "morality",
            "--out",
            str(out),
            "--n-intents",
            "2",
            "--max-new-tokens",
            "3",
            "--bootstrap",
            "0",
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    for name in ("results.json", "completions.jsonl", "records.jsonl", "audit.json", "report.md", "flip_rates.png"):
        assert (out / name).exists(), name
    audit = json.loads((out / "audit.json").read_text())
    # 2 intents x (2 anchors + 8 morality families) = 20 prompts
    assert audit["n_intents"] == 2 and audit["n_prompts"] == 20
    assert sum(v == "OOD" for v in audit["families"].values()) == 2
    assert set(audit["anchor_bias"]) == {"mc", "tf"} and audit["anchor_bias"]["mc"]["n"] == 2
    results = json.loads((out / "results.json").read_text())
    assert {s["label"] for s in results["slices"].values()} == {"ID", "OOD"}
    report = (out / "report.md").read_text()
    assert "## Audit: morality" in report and "flip vs plain" in report


def test_audit_cli_rejects_unknown_judge_before_loading(capsys):
    code = main(["audit", "--model", "tiny", "--domain", "morality", "--out", "/tmp/unused-audit", "--judge", "gpt"])
    assert code == 2
    assert "unknown --judge 'gpt'" in capsys.readouterr().err
