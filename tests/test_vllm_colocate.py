"""AIRTrainer with vLLM colocated on a real model (SmolLM2-135M-Instruct), in the vLLM environment: ``make test-vllm``.

Two runs of ``tests/_vllm_colocate_run.py`` (λ = 0 and λ = 0.5, same seed, 2 optimiser steps each, subprocesses):
the weights reach vLLM, Δ and the aux loss are logged, TRL's vLLM importance-sampling ratio reaches the loss and the
aux term's weight, λ changes the trained weights, and gradient checkpointing is on when requested. Minutes of vLLM
start-up per run (docs/scaling.md, "Installing with vLLM"), so marked ``vllm`` and out of the default run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vLLM is not installed here; `make test-vllm` builds .venv-vllm with it (docs/scaling.md)",
    ),
]

REPO = Path(__file__).resolve().parents[1]
RUNNER = Path(__file__).resolve().parent / "_vllm_colocate_run.py"
COEF = 0.5  # large against the toy rewards' scale, so one step's aux gradient moves the weights visibly


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(coef: float, out_dir: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    # each run is a one-process torch.distributed group (vLLM's external launcher): its own rendezvous port, as the
    # two runs go side by side and TRL's default is 29500 for both
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    log_path = out_dir.parent / f"{out_dir.name}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), str(coef), str(out_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    return proc, log_path


def finish(proc: subprocess.Popen, log_path: Path, out_dir: Path) -> dict:
    try:
        proc.wait(timeout=3600)
    finally:
        if proc.poll() is None:
            proc.kill()
    tail = log_path.read_text()[-6000:]
    assert proc.returncode == 0 and (out_dir / "result.json").exists(), tail
    return json.loads((out_dir / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{λ: (result, weights path)}`` of the two runs, side by side (each about 10 minutes on a busy 2-core box)."""
    root = tmp_path_factory.mktemp("vllm")
    started = {coef: start(coef, root / f"coef{coef}") for coef in (0.0, COEF)}
    out = {}
    try:
        for coef, (proc, log_path) in started.items():
            result = finish(proc, log_path, root / f"coef{coef}")
            print(f"λ={coef}: build {result['seconds']['build']:.0f} s, steps at {result['seconds']['steps']} s")
            out[coef] = result, root / f"coef{coef}" / "weights.pt"
    finally:
        for proc, _ in started.values():  # one run failed: do not leave the other running
            if proc.poll() is None:
                proc.kill()
    return out


def step_logs(result: dict) -> list[dict]:
    """The per-step training logs (one per optimiser step with logging_steps=1)."""
    return [entry for entry in result["log_history"] if "invariance/aux_loss" in entry]


def test_two_optimiser_steps_ran(runs):
    for result, _ in runs.values():
        assert result["global_step"] == 2
        assert len(step_logs(result)) == 2
        assert len(result["completion_ids"]) == 2  # one generation batch per step, each from vLLM
        assert all(len(batch) == 9 for batch in result["completion_ids"])


def test_weights_reach_vllm(runs):
    """vLLM's log-probs of a fixed completion move after step 1, to the trainer's step-1 values."""
    probe = runs[COEF][0]["probe"]

    def gaps(a, b):
        return [abs(x - y) for x, y in zip(a, b)]

    # vLLM holds the float32 checkpoint in bfloat16 (its CPU default): the reference is the trainer's model with its
    # weights rounded to bfloat16, so that before_gap is the two engines' kernels alone
    before = gaps(probe["vllm_before"], probe["hf_before"]["bf16_weights"])
    moved = gaps(probe["vllm_after"], probe["vllm_before"])
    after = gaps(probe["vllm_after"], probe["hf_step1"]["bf16_weights"])
    stale = gaps(probe["hf_step1"]["bf16_weights"], probe["hf_before"]["bf16_weights"])  # vLLM without the sync
    print(f"max gaps: before {max(before):.3f}, vLLM moved {max(moved):.3f}, after {max(after):.3f}")
    n = len(before)
    print(f"mean gaps: before {sum(before) / n:.3f}, stale {sum(stale) / n:.3f}, after {sum(after) / n:.3f}")
    assert max(moved) > 10 * max(max(before), 1e-3)  # the step-1 weights reached vLLM …
    assert sum(after) <= 0.25 * sum(stale)  # … vLLM is much nearer the step-1 model than the one it started with …
    assert max(after) <= max(3 * max(before), 1e-2)  # … and computes what that model does, up to kernel noise


def test_delta_and_aux_loss_logged_and_non_zero(runs):
    logs = step_logs(runs[COEF][0])
    for entry in logs:
        print({k: entry[k] for k in ("invariance/abs_delta", "invariance/delta", "invariance/aux_loss")})
        assert math.isfinite(entry["invariance/abs_delta"]) and entry["invariance/abs_delta"] > 0
        assert math.isfinite(entry["invariance/aux_loss"]) and entry["invariance/aux_loss"] != 0
    for entry in step_logs(runs[0.0][0]):  # λ = 0: Δ still measured, the aux term is exactly zero
        assert entry["invariance/abs_delta"] > 0
        assert entry["invariance/aux_loss"] == 0


def test_importance_sampling_ratio_reaches_the_loss(runs):
    """TRL's vLLM ratio (policy term) and the aux term's weight (``invariance/aux_is_ratio/*``) are both logged."""
    for entry in step_logs(runs[COEF][0]):
        trl = {k: entry[k] for k in entry if k.startswith("sampling/importance_sampling_ratio/")}
        aux = {k: entry[k] for k in entry if k.startswith("invariance/aux_is")}
        print(trl, aux)
        assert set(trl) == {f"sampling/importance_sampling_ratio/{s}" for s in ("min", "mean", "max")}
        assert {"invariance/aux_is_ratio/min", "invariance/aux_is_ratio/mean", "invariance/aux_is_ratio/max"} <= set(
            aux
        )
        # sequence_mask (TRL's default mode) sets the ratio of a sequence outside its bounds to 0: min can be 0
        assert all(math.isfinite(v) and v >= 0 for v in trl.values())
        assert trl["sampling/importance_sampling_ratio/mean"] > 0
        # one pass per generation (num_iterations=1): θ is the sampling-time θ_old, so the aux weight is vLLM's ratio
        for stat in ("min", "mean", "max"):
            assert aux[f"invariance/aux_is_ratio/{stat}"] == pytest.approx(
                trl[f"sampling/importance_sampling_ratio/{stat}"], abs=1e-3
            )
        # vLLM samples with its own kernels: the ratio is near 1, never exactly 1 on every row
        assert trl["sampling/importance_sampling_ratio/min"] != 1 or trl["sampling/importance_sampling_ratio/max"] != 1
        assert aux["invariance/aux_is_ratio/min"] != 1 or aux["invariance/aux_is_ratio/max"] != 1
        assert aux["invariance/aux_is_ratio/min"] <= aux["invariance/aux_is_ratio/mean"]
        assert aux["invariance/aux_is_ratio/mean"] <= aux["invariance/aux_is_ratio/max"]


def test_lambda_changes_the_trained_weights(runs):
    """Same seed, same first generation batch; λ = 0.5 ends with other weights than λ = 0."""
    import torch

    (zero, zero_path), (air, air_path) = runs[0.0], runs[COEF]
    assert zero["completion_ids"][0] == air["completion_ids"][0]  # identical samples before λ acts
    a, b = torch.load(zero_path), torch.load(air_path)
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    print(f"max |θ(λ=0.5) − θ(λ=0)| = {diff:.3e}")
    assert diff > 1e-6


def test_gradient_checkpointing_on_when_requested(runs):
    """Requested with ``activation_checkpointing=True``; on transformers 5.19 the Trainer reads only the old name."""
    import transformers

    for result, _ in runs.values():
        assert result["checkpointing_during_steps"] == [True, True], f"transformers {transformers.__version__}"
