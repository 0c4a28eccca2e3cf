"""Cost of a busy machine: a tiny ``air-align train`` (20 steps) with and without a deliberate CPU load.

Each *variant* is one way of running the same command (which code, which environment, which ``--threads``); each
*load* is a number of background busy loops (``python -c 'while True: pass'``) started before the command and
stopped after it. Rounds interleave every variant × load, so slow drift of the machine's other work touches all
alike. Per run: the wall time of the whole command, the trainer's own ``train_runtime`` and the 1-minute load
average (mean of before and after: the machine's other jobs, the busy loops and the run itself).

    python benchmarks/threads.py --rounds 3 --out benchmarks/results/threads.json

``--before PATH`` names a checkout of the code before the fix (its ``air_align`` is put first on ``PYTHONPATH``);
without it only this checkout's variants run. docs/performance.md ("Shared cores") reports the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "AIR_ALIGN_THREADS")
RUNTIME = re.compile(r"train_runtime'?:\s*'?([0-9.]+)")


def variants(before: str | None) -> dict[str, tuple[str, dict, list[str]]]:
    """name -> (code root, extra environment, extra train arguments)."""
    out = {}
    if before:
        out["before: default (torch's threads)"] = (before, {}, [])
        out["before: OMP_NUM_THREADS=1"] = (before, {"OMP_NUM_THREADS": "1"}, [])
    out["after: default (torch's threads)"] = (str(ROOT), {}, [])
    out["after: --threads 1"] = (str(ROOT), {}, ["--threads", "1"])
    return out


def run_once(code: str, env_extra: dict, args: list[str], steps: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(env_extra, PYTHONPATH=code)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "air_align.cli", "train", *args, "--config", str(ROOT / "configs/tiny-cpu.yaml")]
        cmd += [f"output_dir={tmp}/run", f"max_steps={steps}", "save_steps=1000"]
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)  # -m puts cwd first on the path
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} failed:\n{proc.stderr[-2000:]}")
        runtime = None
        log = Path(tmp) / "run" / "log.jsonl"
        entries = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
        runtime = next((e["train_runtime"] for e in entries if "train_runtime" in e), None)
        if runtime is None:
            match = RUNTIME.search(proc.stdout + proc.stderr)
            runtime = float(match.group(1)) if match else None
    return {"wall_s": round(wall, 2), "train_s": runtime}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default=None, help="checkout of the code before the fix")
    parser.add_argument("--loads", default="0,1", help="background busy loops per condition (default: 0,1)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="JSON file for every measurement and the medians")
    args = parser.parse_args()
    loads = [int(x) for x in args.loads.split(",")]
    table = variants(args.before)
    for name, (code, _, _) in table.items():  # each variant runs the code it names
        probe = [sys.executable, "-c", "import air_align; print(air_align.__file__)"]
        used = subprocess.run(probe, cwd=code, env={**os.environ, "PYTHONPATH": code}, capture_output=True, text=True)
        assert used.stdout.startswith(str(Path(code).resolve())), (name, used.stdout, used.stderr)
    runs = []
    for r in range(args.rounds):
        for load in loads:
            for name, (code, env, extra) in table.items():
                busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
                loadavg = os.getloadavg()[0]
                try:
                    res = run_once(code, env, extra, args.steps)
                finally:
                    for p in busy:
                        p.kill()
                        p.wait()
                res["loadavg_1min"] = round((loadavg + os.getloadavg()[0]) / 2, 2)  # the machine's, ours included
                runs.append({"round": r, "load": load, "variant": name, **res})
                print(json.dumps(runs[-1]), flush=True)
    medians = {}
    for name in table:
        for load in loads:
            mine = [x for x in runs if x["variant"] == name and x["load"] == load]
            medians[f"{name} | load {load}"] = {
                "wall_s": statistics.median(x["wall_s"] for x in mine),
                "train_s": statistics.median(x["train_s"] for x in mine if x["train_s"] is not None),
            }
    for key, m in medians.items():
        print(f"{key:55s} wall {m['wall_s']:7.2f} s   train {m['train_s']:7.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": runs, "medians": medians}, indent=1) + "\n")


if __name__ == "__main__":
    main()
