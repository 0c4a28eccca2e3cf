"""Throughput of the lab grid: the same runs with one worker process vs several (docs/performance.md, "The lab grid").

The lab's runs are independent; ``air_align.lab.runner.run_all`` hands them to ``--workers`` processes with one
torch thread each. This benchmark trains the same set of runs (safety world, hack regime, GRPO and GRPO+AIR, a few
seeds, ``--steps`` optimiser steps) into fresh directories with 1 worker and with N workers, alternating the order
over ``--rounds``, and reports the wall-time ratio measured in one session (machines here are shared and noisy:
compare ratios, not seconds). The warm start is trained (or read from the cache) before timing.

    python benchmarks/lab_workers.py --workers 2 --runs 4 --steps 20 --out benchmarks/results/lab_workers.json
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

from air_align.files import write_json
from air_align.lab.runner import run_all
from air_align.lab.runs import RunSpec, Training
from air_align.lab.warmstart import Recipe, warm_start


def safety_hack_runs(warm, n: int, steps: int, tag: str = "bench") -> list[RunSpec]:
    """``n`` runs on the safety world's hack regime from ``warm``: GRPO and GRPO+AIR alternating, seeds 0, 0, 1, 1, …
    (also the grid of ``lab_run_profile.py``)."""
    methods = ("grpo", "grpo+air")
    return [
        RunSpec(
            world="safety",
            method=methods[i % 2],
            lam=0.1,
            seed=i // 2,
            warm_start=str(warm),
            training=Training(max_steps=steps),
            judge=(("cue_strength", 4.0),),
            tag=tag,
        )
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes to compare with one")
    parser.add_argument("--runs", type=int, default=4, help="lab runs per measurement")
    parser.add_argument("--steps", type=int, default=20, help="optimiser steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="measurements per setting (alternating order)")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    warm = warm_start(Recipe(world="safety"))
    runs = safety_hack_runs(warm, args.runs, args.steps)
    seconds: dict[int, list[float]] = {1: [], args.workers: []}
    order = [1, args.workers]
    for r in range(args.rounds):
        for workers in order if r % 2 == 0 else order[::-1]:
            with tempfile.TemporaryDirectory(prefix=f"lab-workers-{workers}-") as out:
                start = time.perf_counter()
                run_all(runs, out, workers=workers)
                seconds[workers].append(time.perf_counter() - start)
            print(f"round {r}: {workers} worker(s): {seconds[workers][-1]:.1f} s", flush=True)
    one, many = statistics.median(seconds[1]), statistics.median(seconds[args.workers])
    result = {
        "runs": args.runs,
        "steps": args.steps,
        "workers": args.workers,
        "seconds": {str(k): v for k, v in seconds.items()},
        "median_seconds": {"1": one, str(args.workers): many},
        "speedup": one / many,
        "cpus": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "machine": platform.platform(),
    }
    print(f"speed-up with {args.workers} workers: {one / many:.2f}x ({one:.1f} s -> {many:.1f} s)")
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
