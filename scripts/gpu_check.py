"""GPU acceptance check of AIRTrainer: one command, a table (docs/performance.md, "GPU acceptance check").

Sections, each ``ok``, ``fail`` (it ran and a check did not hold), ``error`` (it raised) or ``skipped`` (with the
reason):

- ``identity``: one step's gradient of invariance=air = that of invariance=none + the independent aux gradient of
  ``air_align.objectives`` (the check of tests/test_train_trainer.py), fp32 and bf16 autocast, relative errors;
- ``overhead``: AIR/none and V-REx/none step time and peak memory on fixed-length completions (EOS suppressed),
  ``bench_steps`` measured steps a run after one warm-up, ``bench_rounds`` runs a mode in alternating order;
- ``checkpointing``: peak memory with gradient checkpointing on vs off, and whether the model has it on;
- ``judge``: the composite reward's frozen-policy judge built by ``build_trainer``: its device and dtype beside the
  policy's, and the time of one reward call;
- ``deepspeed``: ZeRO-2 and ZeRO-3 through transformers' ``deepspeed`` argument (accelerate's DeepSpeed plugin), one
  process on one GPU, each in a child process.

    python scripts/gpu_check.py --device cuda --out $OUT      # what scripts/gpu_check.sh runs
    python scripts/gpu_check.py --device cpu --out /tmp/gc    # tiny sizes, minutes on 2 cores
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_check_parts beside this file
from gpu_check_parts import Sizes  # noqa: E402

# On the H200: about 1.5 s a step with 64-token completions (24 layers, one token every ~20 ms in HF generate),
# so 3 modes × 3 rounds × 11 steps ≈ 2.5 min; the other sections ≈ 2 min; the 8-minute budget keeps a margin.
SIZES = {
    "cuda": Sizes(
        device="cuda",
        model="qwen2.5-0.5b-shape",
        identity_batch=18,
        identity_completion=32,
        bench_batch=9,
        bench_completion=64,
        bench_steps=10,
        bench_rounds=3,
        ckpt_batch=18,
        ckpt_completion=128,
        ckpt_steps=2,
    ),
    "cpu": Sizes(
        device="cpu",
        model="tiny",
        identity_batch=18,
        identity_completion=8,
        bench_batch=9,
        bench_completion=8,
        bench_steps=10,
        bench_rounds=3,
        ckpt_batch=9,
        ckpt_completion=16,
        ckpt_steps=2,
    ),
}
# Pass thresholds. fp32: TRL's fused head and a plain log_softmax compute the same gradient in different orders;
# tests/test_train_trainer.py sees ≈ 1e-6 of the largest component (TRL's head runs in float32), the CPU mode here
# 1.2e-6; 1e-4 leaves room for CUDA's reduction orders. bf16 autocast rounds matmul inputs to 8 mantissa bits (unit
# roundoff 2^-8 ≈ 4e-3), differently in the two forwards: 5e-2 is ~10 roundoffs (the CPU mode: 7.3e-3).
IDENTITY_TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2}
MODES = ("none", "air", "vrex")
DS_CHILD_TIMEOUT_S = 150


class Budget:
    """Wall-clock budget of the whole check; sections that would not fit are skipped with that reason."""

    def __init__(self, seconds: float):
        self.start, self.seconds = time.monotonic(), seconds

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)


def section(name: str, fn, *args) -> dict:
    start = time.perf_counter()
    try:
        out = fn(*args)
    except Exception as err:  # a broken section is reported; the others still run
        reason = f"{type(err).__name__}: {err}"
        out = {"status": "error", "reason": reason, "traceback": traceback.format_exc()[-4000:]}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(f"gpu_check: {name}: {out['status']} in {out['seconds']} s", file=sys.stderr, flush=True)
    return out


def identity_section(sizes: Sizes) -> dict:
    from gpu_check_parts import one_step_identity

    rows = []
    for precision in ("fp32", "bf16"):
        row = one_step_identity(sizes, precision)
        row["tolerance"] = IDENTITY_TOLERANCE[precision]
        row["pass"] = row["relative_error"] <= row["tolerance"] and row["nonzero_coefficients"] > 0
        rows.append(row)
    return {"status": "ok" if all(r["pass"] for r in rows) else "fail", "rows": rows}


def overhead_section(sizes: Sizes, budget: Budget) -> dict:
    from gpu_check_parts import timed_run

    runs: dict[str, list] = {m: [] for m in MODES}
    last = 0.0
    for r in range(sizes.bench_rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            if budget.left() < 1.5 * last + 30:
                reason = f"time budget: stopped before round {r + 1} of {sizes.bench_rounds} ({mode})"
                return {"status": "fail", "reason": reason, **summarise_overhead(sizes, runs)}
            start = time.perf_counter()
            runs[mode].append(
                timed_run(sizes, mode, sizes.bench_steps + 1, sizes.bench_batch, sizes.bench_completion, False)
            )
            last = time.perf_counter() - start
    out = summarise_overhead(sizes, runs)
    full = {sizes.bench_completion}
    fixed = all(
        run["mean_lengths"] and set(run["mean_lengths"]) == full and set(run["clipped_ratios"]) == {1}
        for m in MODES
        for run in runs[m]
    )
    enough = all(row["steps_measured"] >= sizes.bench_steps * sizes.bench_rounds for row in out["rows"])
    out["fixed_length"] = fixed
    out["status"] = "ok" if fixed and enough else "fail"
    if not fixed:
        out["reason"] = "some completions were shorter than max_completion_length: EOS was not suppressed"
    return out


def summarise_overhead(sizes: Sizes, runs: dict) -> dict:
    rows = []
    for mode, mode_runs in runs.items():
        times = [t for run in mode_runs for t in run["step_times"][1:]]  # each run's first step warms up
        peaks = [run["peak_mib"] for run in mode_runs if run["peak_mib"] is not None]
        rows.append(
            {
                "invariance": mode,
                "runs": len(mode_runs),
                "steps_measured": len(times),
                "median_step_s": statistics.median(times) if times else None,
                "peak_mib": max(peaks) if peaks else None,
                "mean_lengths": sorted({x for run in mode_runs for x in run["mean_lengths"]}),
                "aux_loss_nonzero": any(a != 0 for run in mode_runs for a in run["aux_losses"]),
                "memory_note": next((run["memory_note"] for run in mode_runs if run["memory_note"]), ""),
            }
        )
    base = rows[0]

    def run_median(run) -> float:
        return statistics.median(run["step_times"][1:])

    for row in rows:
        # Ratios within a round (runs adjacent in time), then their median: load that changes between rounds on a
        # shared machine cancels; on a dedicated GPU it is close to the ratio of the pooled medians.
        pairs = zip(runs[row["invariance"]], runs[base["invariance"]])
        ratios = [run_median(a) / run_median(b) for a, b in pairs if a["step_times"][1:] and b["step_times"][1:]]
        row["round_time_ratios"] = ratios
        row["time_ratio"] = statistics.median(ratios) if ratios else None
        ok = base["peak_mib"] and row["peak_mib"] is not None
        row["memory_ratio"] = row["peak_mib"] / base["peak_mib"] if ok else None
    return {"rows": rows, "completion_tokens": sizes.bench_completion, "batch": sizes.bench_batch, "raw": runs}


def checkpointing_section(sizes: Sizes) -> dict:
    from gpu_check_parts import timed_run

    rows = []
    for on in (True, False):
        run = timed_run(sizes, "air", sizes.ckpt_steps, sizes.ckpt_batch, sizes.ckpt_completion, on)
        rows.append(
            {
                "checkpointing": on,
                "model_flag_after_build": run["checkpointing_after_build"],
                "model_flag_after_train": run["checkpointing_after_train"],
                "peak_mib": run["peak_mib"],
                "median_step_s": statistics.median(run["step_times"]) if run["step_times"] else None,
                "memory_note": run["memory_note"],
            }
        )
    flags_right = all(r["model_flag_after_train"] == r["checkpointing"] for r in rows)
    out = {"status": "ok" if flags_right else "fail", "rows": rows, "flags_right": flags_right}
    if not flags_right:
        out["reason"] = "model.is_gradient_checkpointing does not follow the requested setting"
    on, off = rows[0]["peak_mib"], rows[1]["peak_mib"]
    out["memory_on_over_off"] = on / off if on is not None and off else None
    if sizes.device == "cuda" and out["memory_on_over_off"] is not None and out["memory_on_over_off"] >= 1:
        out["status"], out["reason"] = "fail", "checkpointing on did not lower peak GPU memory"
    return out


def judge_section(sizes: Sizes) -> dict:
    import tempfile

    from gpu_check_parts import air_config, build_policy, make_trainer, toy_rows

    from air_align.training.recipe import RunConfig

    with tempfile.TemporaryDirectory() as tmp:
        args = air_config(sizes, tmp, "air", max_completion_length=sizes.identity_completion)
        # The policy starts on the CPU, as load_model leaves it: the trainer moves it, and the judge must follow.
        policy = build_policy(sizes, device="cpu")
        run = RunConfig(reward="composite")
        trainer = make_trainer(sizes, args, run=run, rows=toy_rows(8, "safety"), policy=policy)
        reward = next(f for f in trainer.reward_funcs if hasattr(f, "judge"))  # the CompositeReward
        policy_param = next(trainer.model.parameters())

        def where() -> dict | None:
            model = getattr(reward.judge, "model", None)  # None while a judge is still to be built
            if model is None:
                return None
            p = next(model.parameters())
            return {"device": str(p.device), "dtype": str(p.dtype), "training": model.training}

        before = where()
        rows = toy_rows(3, "safety")[:9]
        completions = [f"<think>t</think><answer>{'I cannot help with that. ' * (i + 1)}</answer>" for i in range(9)]
        columns = {k: [row[k] for row in rows] for k in ("role", "domain", "verifier", "answer", "intent")}
        if sizes.device == "cuda":
            import torch

            torch.cuda.synchronize()
        start = time.perf_counter()
        rewards = reward(completions, prompts=[row["prompt"] for row in rows], **columns)
        seconds = time.perf_counter() - start
        after = where()
    out = {
        "policy": {"device": str(policy_param.device), "dtype": str(policy_param.dtype)},
        "judge_before_call": before,
        "judge_after_call": after,
        "judged_rows": sum(v == "judge" for v in columns["verifier"]),
        "reward_call_s": seconds,
        "rewards": rewards,
        "same_device_as_policy": after is not None and after["device"] == str(policy_param.device),
    }
    out["status"] = "ok" if out["same_device_as_policy"] and None not in rewards else "fail"
    if not out["same_device_as_policy"]:
        where_judge = after["device"] if after else "no in-process model"
        out["reason"] = f"the judge runs on {where_judge}, the policy on {policy_param.device}"
    return out


def deepspeed_section(sizes: Sizes, budget: Budget, out_dir: Path) -> dict:
    if sizes.device != "cuda":
        return {"status": "skipped", "reason": "CPU mode: accelerate runs DeepSpeed only on a GPU (or NPU/XPU)"}
    if importlib.util.find_spec("deepspeed") is None:
        why = os.environ.get("GPU_CHECK_DEEPSPEED_STATUS") or "deepspeed is not installed"
        return {"status": "skipped", "reason": why}
    rows = []
    for stage in (2, 3):
        if budget.left() < DS_CHILD_TIMEOUT_S + 20:
            rows.append({"stage": stage, "status": "skipped", "reason": "time budget"})
            continue
        env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
        env["MASTER_PORT"] = str(29500 + stage)
        cmd = [sys.executable, __file__, "--device", "cuda", "--out", str(out_dir), "--deepspeed-child", str(stage)]
        log = out_dir / f"deepspeed_zero{stage}.log"
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=DS_CHILD_TIMEOUT_S)
            log.write_text(proc.stdout + proc.stderr)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode == 0 and lines:
                rows.append({"stage": stage, **json.loads(lines[-1])})
            else:
                rows.append({"stage": stage, "status": "error", "reason": proc.stderr.strip()[-1500:]})
        except subprocess.TimeoutExpired:
            rows.append({"stage": stage, "status": "error", "reason": f"timed out after {DS_CHILD_TIMEOUT_S} s"})
    status = "ok" if all(r["status"] == "ok" for r in rows) else "fail"
    return {"status": status, "rows": rows}


def deepspeed_child(stage: int) -> dict:
    """One ZeRO stage, 2 optimiser steps of AIR in this process (world size 1): ran, finite losses, weights moved."""
    import math
    import tempfile

    import deepspeed
    import torch
    from gpu_check_parts import PeakMemory, air_config, make_trainer
    from transformers import TrainerCallback

    sizes = SIZES["cuda"]
    config = {
        "zero_optimization": {"stage": stage},
        "bf16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }
    with tempfile.TemporaryDirectory() as tmp:
        args = air_config(sizes, tmp, "air", max_steps=2, learning_rate=1e-3, deepspeed=config)
        trainer = make_trainer(sizes, args)
        probe = trainer.model.get_input_embeddings().weight  # the same Parameter once DeepSpeed has partitioned it
        snapshots = []

        class Snapshot(TrainerCallback):
            """The embedding after DeepSpeed's set-up (bf16 cast, partitioning) and after the last step: a change
            between the two is the optimiser's, not the cast's."""

            def on_step_begin(self, args, state, control, **kwargs):
                if state.global_step == 0:
                    snapshots.append(gathered())

            def on_train_end(self, args, state, control, **kwargs):
                snapshots.append(gathered())

        def gathered():
            with deepspeed.zero.GatheredParameters([probe], enabled=stage == 3):
                return probe.detach().float().cpu().clone()

        trainer.add_callback(Snapshot())
        with PeakMemory("cuda") as memory:
            start = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - start
        moved = (snapshots[-1] - snapshots[0]).abs().max().item() if len(snapshots) == 2 else float("nan")
        logs = trainer.state.log_history
        losses = [h["loss"] for h in logs if "loss" in h]
        aux = [h["invariance/aux_loss"] for h in logs if "invariance/aux_loss" in h]
    ok = len(losses) == 2 and all(math.isfinite(x) for x in losses) and moved > 0
    return {
        "status": "ok" if ok else "fail",
        "deepspeed": deepspeed.__version__,
        "steps": len(losses),
        "losses": losses,
        "aux_losses": aux,
        "embedding_max_change": moved,
        "peak_mib": memory.peak_mib,
        "train_s": seconds,
        "torch_cuda": torch.version.cuda,
    }


def environment(sizes: Sizes) -> dict:
    import accelerate
    import torch
    import transformers
    import trl

    env = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "accelerate": accelerate.__version__,
        "device": sizes.device,
    }
    if sizes.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda")
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--budget-s", type=float, default=450, help="wall-clock budget of the sections (seconds)")
    parser.add_argument("--deepspeed-child", type=int, choices=(2, 3), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    if args.deepspeed_child:
        print(json.dumps(deepspeed_child(args.deepspeed_child)))
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: torch sees no GPU; run the CPU mode with --device cpu (GPU_CHECK_DEVICE=cpu)", file=sys.stderr)
        return 2
    os.environ.setdefault("TQDM_DISABLE", "1")
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes, budget = SIZES[args.device], Budget(args.budget_s)
    from gpu_check_table import markdown

    report = {"sizes": asdict(sizes), "environment": environment(sizes), "sections": {}}
    sections = report["sections"]
    sections["identity"] = section("identity", identity_section, sizes)
    sections["judge"] = section("judge", judge_section, sizes)
    sections["checkpointing"] = section("checkpointing", checkpointing_section, sizes)
    sections["deepspeed"] = section("deepspeed", deepspeed_section, sizes, budget, out_dir)
    sections["overhead"] = section("overhead", overhead_section, sizes, budget)
    report["wall_s"] = round(time.monotonic() - budget.start, 1)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if all(s["status"] in ("ok", "skipped") for s in sections.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
