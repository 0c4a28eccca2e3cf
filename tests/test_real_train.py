"""Real-tier training on SmolLM2-135M-Instruct (CPU): GRPO+AIR steps on real meta-groups complete and move the
weights (slow: ~100 s a step on 2 shared cores), plus fast checks of the study table."""

from __future__ import annotations

import json
import time

import pytest
import torch
from _messages import raises_with

from air_align.real.config import StudyConfig
from air_align.real.study import render_study, study_row
from air_align.real.train import train_real, train_rows


def test_study_row_and_table():
    results = {
        "slices": {
            "test_id": {"label": "ID", "acc": 0.5, "acc_group": 0.25, "over_refusal": {"rate": 0.5, "n": 2}},
            "test_ood": {"label": "OOD", "acc": 0.4, "acc_group": 0.0, "over_refusal": {"rate": 1.0, "n": 2}},
        }
    }
    audit = {
        "family_acc": {"anchor": {"acc": 0.75, "n": 4}},
        "flip_vs_plain": {"a": {"flip": 0.5}, "b": {"flip": 0.0}},
        "seconds": 3.0,
    }
    row = study_row("GRPO+AIR", audit, results, {"steps": 2, "seconds_per_step": 30.0, "train_seconds": 61.0})
    # over-refusal pooled over slices: (0.5*2 + 1.0*2) / 4 = 0.75; mean flip (0.5 + 0.0) / 2 = 0.25
    assert row["over_refusal"] == 0.75 and row["mean_flip"] == 0.25
    assert (row["ID_acc"], row["OOD_acc_group"], row["anchor_acc"], row["steps"]) == (0.5, 0.0, 0.75, 2)
    text = render_study([row], {"domain": "safety", "model": "m"}, "(table)")
    assert "| GRPO+AIR | 2 | 30.0 | 50.0% | 25.0% | 40.0% | 0.0% | 75.0% | 75.0% | 25.0% |" in text


def test_unknown_method_fails_before_any_work():
    with raises_with(ValueError, "unknown method 'dpo'", "choose one of grpo, grpo+vrex"):
        train_real(StudyConfig(), "dpo", "/tmp/unused", rows=[])


@pytest.mark.slow
def test_smollm2_grpo_air_cpu_steps_complete_and_move_weights(tmp_path):
    from air_align.models import load_model

    torch.set_num_threads(2)
    # 16 real safety intents (AdvBench/HarmBench + benign), 1 anchor + 2 open variants per meta-group, short templates
    config = StudyConfig(
        domain="safety",
        n_intents=16,
        anchors=1,
        opens=2,
        max_template_chars=400,
        max_steps=2,
        time_budget_s=None,
        num_generations=3,  # K = 3 (paper §4)
        groups_per_step=1,  # 1 meta-group × 3 prompts × K = 9 completions a step
        max_completion_length=24,
        learning_rate=1e-4,
        invariance_coef=0.05,
        use_lora=True,
        device="cpu",
    )
    rows = train_rows(config)
    assert any(r["split"] == "train" for r in rows)
    start = time.time()
    out = train_real(config, "grpo+air", tmp_path / "grpo+air", rows=rows)
    total = time.time() - start
    assert out["steps"] == 2 and len(out["step_seconds"]) == 2
    logs = [h for h in out["log_history"] if "loss" in h]
    assert len(logs) == 2
    assert all("invariance/aux_loss" in h for h in logs), logs[0].keys()
    assert all(any(k.startswith("rewards/") for k in h) for h in logs)
    base, _ = load_model("smollm2-135m")
    trained = dict(out["model"].named_parameters())
    moved = [n for n, p in base.named_parameters() if n in trained and not torch.equal(p, trained[n].detach())]
    assert moved, "no weight changed after 2 GRPO+AIR steps with LoRA merged"
    (tmp_path / "timing.json").write_text(json.dumps({k: out[k] for k in ("step_seconds", "seconds_per_step")}))
    print(
        f"\nSmolLM2-135M GRPO+AIR on CPU: step seconds {out['step_seconds']}, median after the first "
        f"{out['seconds_per_step']} s, total with set-up {total:.0f} s, {len(moved)} weight tensors moved"
    )


@pytest.mark.slow
def test_gpu_study_script_cpu_smoke_with_tiny_model(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        OUT=str(tmp_path / "study"),
        MODEL="tiny",
        DOMAIN="math",
        DEVICE="cpu",
        STEPS="1",
        N_INTENTS="16",
        AUDIT_TOKENS="2",
    )
    proc = subprocess.run(["bash", "scripts/gpu_study.sh"], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [r["model"] for r in study["rows"]] == ["base", "GRPO", "GRPO + AIR", "GRPO + V-REx"]
    assert all(r["steps"] == 1 for r in study["rows"][1:])
    for name in ("base", "grpo", "grpo+air", "grpo+vrex"):
        assert (tmp_path / "study" / name / "audit.json").exists(), name
    assert "| GRPO + AIR | 1 |" in (tmp_path / "study" / "study.md").read_text()
