"""Step time and peak memory of AIRTrainer with invariance none vs air vs vrex (same config, same seed).

Each (model, mode) runs in its own subprocess so peak memory is per mode: the child reports TRL's per-step
``step_time`` (median over steps after the first, which warms up) and the growth of its peak RSS during training
(Linux ``VmHWM`` after training − ``VmRSS`` before it). Modes are run in alternating order over ``--rounds`` to
spread machine-load drift evenly. Results: a JSON file and a Markdown table of ratios to ``none``.

``--fixed-length`` suppresses EOS (and the pad token, which TRL counts as an ending) in generation, so every
completion has ``--completion-len`` tokens in every mode: the ratio then measures the aux term alone, not a policy
that drifted to other lengths under a different loss. The logged mean completion lengths are kept per run.

    python benchmarks/step_overhead.py --models tiny smollm2-135m --steps 6 --out benchmarks/results/step_overhead.json
    python benchmarks/step_overhead.py --models tiny --steps 20 --rounds 3 --fixed-length \
        --out benchmarks/results/step_overhead_tiny_fixed.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from air_align.files import write_json

MODES = ("none", "air", "vrex")


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def fixed_length_generation(tokenizer) -> dict:
    """``generation_kwargs`` under which no completion ends early: EOS and pad suppressed."""
    return {"suppress_tokens": sorted({tokenizer.eos_token_id, tokenizer.pad_token_id})}


def child(model_name: str, mode: str, steps: int, completion_len: int, threads: int, fixed_length: bool) -> dict:
    """One measured run in this process; returns step times (s), peak RSS growth (MiB) and mean completion lengths."""
    import torch

    torch.set_num_threads(threads)
    from air_align.models import load_model
    from air_align.training.config import AIRConfig
    from air_align.training.recipe import RunConfig, build_trainer
    from air_align.training.toy import toy_meta_groups, toy_reward

    model, tokenizer = load_model(model_name)
    with tempfile.TemporaryDirectory() as tmp:
        args = AIRConfig(
            output_dir=tmp,
            invariance=mode,
            invariance_coef=8e-4,
            num_generations=3,
            per_device_train_batch_size=9,
            max_completion_length=completion_len,
            loss_type="grpo",
            learning_rate=1e-6,
            max_steps=steps,
            logging_steps=1,
            save_strategy="no",
            use_cpu=True,
            bf16=False,
            report_to="none",
            seed=0,
            generation_kwargs=fixed_length_generation(tokenizer) if fixed_length else None,
        )
        trainer = build_trainer(
            RunConfig(), args, model=model, tokenizer=tokenizer, rows=toy_meta_groups(8, 2), reward_funcs=toy_reward
        )
        rss_before = _proc_kib("VmRSS")
        trainer.train()
        peak = _proc_kib("VmHWM")
    logs = trainer.state.log_history
    times = [h["step_time"] for h in logs if "step_time" in h]
    lengths = [h["completions/mean_length"] for h in logs if "completions/mean_length" in h]
    return {"step_times": times, "peak_growth_mib": (peak - rss_before) / 1024, "mean_lengths": lengths}


def run_child(model_name: str, mode: str, args) -> dict:
    cmd = [sys.executable, __file__, "--child", model_name, mode, "--steps", str(args.steps)]
    cmd += ["--completion-len", str(args.completion_len), "--threads", str(args.threads)]
    cmd += ["--fixed-length"] if args.fixed_length else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    if proc.returncode != 0:
        raise RuntimeError(f"{model_name}/{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summarise(results: dict) -> dict:
    out = {}
    for model_name, by_mode in results.items():
        rows = {}
        for mode, runs in by_mode.items():
            times = [t for r in runs for t in r["step_times"][1:]]  # drop each run's warm-up step
            rows[mode] = {
                "median_step_s": statistics.median(times),
                "peak_growth_mib": max(r["peak_growth_mib"] for r in runs),
                "steps_measured": len(times),
                "mean_lengths": sorted({x for r in runs for x in r.get("mean_lengths", [])}),
            }
        base = rows["none"]
        for mode in rows:
            rows[mode]["time_ratio"] = rows[mode]["median_step_s"] / base["median_step_s"]
            rows[mode]["memory_ratio"] = rows[mode]["peak_growth_mib"] / max(base["peak_growth_mib"], 1e-9)
        out[model_name] = rows
    return out


def markdown(summary: dict) -> str:
    lines = ["| model | mode | median step (s) | step time / none | peak RSS growth (MiB) | memory / none |"]
    lines.append("|---|---|---|---|---|---|")
    for model_name, rows in summary.items():
        for mode, r in rows.items():
            lines.append(
                f"| {model_name} | {mode} | {r['median_step_s']:.3f} | {r['time_ratio']:.3f} | "
                f"{r['peak_growth_mib']:.1f} | {r['memory_ratio']:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny"])
    parser.add_argument("--steps", type=int, default=8, help="training steps per run (the first is warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per mode, in alternating order")
    parser.add_argument("--completion-len", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--fixed-length", action="store_true", help="suppress EOS: every completion has --completion-len tokens"
    )
    parser.add_argument("--out", default="benchmarks/results/step_overhead.json")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child, args.steps, args.completion_len, args.threads, args.fixed_length)))
        return 0

    from tqdm import tqdm

    results: dict = {m: {mode: [] for mode in MODES} for m in args.models}
    jobs = [
        (m, mode) for m in args.models for r in range(args.rounds) for mode in (MODES if r % 2 == 0 else MODES[::-1])
    ]
    for model_name, mode in tqdm(jobs, desc="runs"):
        results[model_name][mode].append(run_child(model_name, mode, args))
    summary = summarise(results)
    write_json(args.out, {"config": vars(args), "summary": summary, "raw": results})
    print(markdown(summary))
    if args.fixed_length:
        lengths = {m: rows["mean_lengths"] for rows_by_mode in summary.values() for m, rows in rows_by_mode.items()}
        print(f"logged mean completion lengths per mode: {lengths}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
