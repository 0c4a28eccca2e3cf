"""A two-step ``reproduce`` run with the real trainer writes a valid results.json, table and plot."""

from __future__ import annotations

import json

import torch

from air_align.lab.reproduce import METHODS, PRESETS, paper_table, reproduce, summarise


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


def test_two_step_reproduce_writes_valid_results(tmp_path, tmp_path_factory):
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
