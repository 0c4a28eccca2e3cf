"""Is the lab's fast forwards' rounding within seed noise? (docs/performance.md, "The seed-noise check").

``Training.padding_chunks`` computes the same log-probs as TRL's padded forward with other rounding, and over a
100-step run a rounding-level difference sends the run down another trajectory, as another RL seed would. This
script measures whether that moves the lab's metrics beyond what a change of seed does:

1. it runs the ``quick`` preset's runs (its cells and methods, λ fixed) over ``--seeds`` twice from one checkout,
   once with ``padding_chunks = 0`` (TRL's forward) and once with ``--chunks`` (and, with ``--shared-prompts``,
   ``Training.shared_prompts``: each prompt run once), each a resumable grid under ``OUT/pad<N>[-shared]``;
2. per metric it pairs the runs of the same cell, method and seed, ``d = metric(chunks) − metric(0)``, and reports
   the mean of ``d`` with its t-interval over the pairs, and the *seed noise* ``σ``: the standard deviation between
   seeds of one cell and method, pooled over the cells and methods of the padding-0 runs;
3. the verdict, fixed before the runs (docs/performance.md): a metric is *within seed noise* when the 95 %
   t-interval of the mean difference contains 0 and lies inside ``[−σ, +σ]``. ``sd(d) / (√2 σ)`` near 1 says the
   rounding acts on a run as a change of seed does.

    python benchmarks/lab_padding_noise.py --out runs/padding-noise --seeds 0 1 2 3 --workers 1 \\
        --json benchmarks/results/lab_padding_noise.json
    python benchmarks/lab_padding_noise.py --out runs/shared-prompts-noise --seeds 0 1 2 3 --workers 1 \\
        --shared-prompts --json benchmarks/results/lab_shared_prompts_noise.json
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

METRICS = tuple(
    (split, name)
    for split in ("test_id", "test_ood")
    for name in ("acc_group", "balanced_acc_group", "acc", "anchor_acc", "hack_rate")
)
"""The metrics compared, each a share in [0, 1] (reported in points)."""


def paired_differences(base: list[dict], other: list[dict], split: str, name: str) -> dict[tuple, float]:
    """``{(cell, method, seed): metric(other) − metric(base)}`` over the runs both grids have."""

    def by_key(runs):
        return {(r["cell"], r["method"], r["seed"]): r["metrics"][split][name] for r in runs}

    a, b = by_key(base), by_key(other)
    missing = sorted(set(a) ^ set(b))
    if missing:
        raise ValueError(f"the two grids do not hold the same runs: {missing[:4]} … ({len(missing)} unpaired)")
    return {k: b[k] - a[k] for k in sorted(a)}


def pooled_seed_sd(runs: list[dict], split: str, name: str) -> float:
    """The standard deviation between seeds of one (cell, method), pooled: √(Σ (n − 1) s² / Σ (n − 1)).

    >>> runs = [{"cell": "c", "method": m, "seed": s, "metrics": {"x": {"y": v}}}
    ...         for m, vals in (("a", (0.0, 2.0)), ("b", (1.0, 1.0, 4.0))) for s, v in enumerate(vals)]
    >>> pooled_seed_sd(runs, "x", "y")  # a: s² = 2 (1 df); b: s² = 3 (2 df) -> (2 + 6) / 3
    1.632993161855452
    """
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in runs:
        groups[r["cell"], r["method"]].append(r["metrics"][split][name])
    dof = sum(len(v) - 1 for v in groups.values() if len(v) > 1)
    if dof == 0:
        raise ValueError("the seed noise needs at least two seeds of one cell and method")
    return math.sqrt(sum((len(v) - 1) * statistics.variance(v) for v in groups.values() if len(v) > 1) / dof)


def compare(base: list[dict], other: list[dict]) -> list[dict]:
    """One row per metric: the mean paired difference, its t-interval, the seed noise and the verdict (points)."""
    from air_align.lab.intervals import t_interval

    rows = []
    for split, name in METRICS:
        diffs = list(paired_differences(base, other, split, name).values())
        sigma = pooled_seed_sd(base, split, name)
        lo, hi = t_interval(diffs)
        sd = statistics.stdev(diffs)
        rows.append(
            {
                "metric": f"{split}/{name}",
                "pairs": len(diffs),
                "mean_diff": 100 * statistics.fmean(diffs),
                "interval": [100 * lo, 100 * hi],
                "seed_sd": 100 * sigma,
                "sd_ratio": sd / (math.sqrt(2) * sigma) if sigma > 0 else None,
                "identical_pairs": sum(d == 0 for d in diffs),
                "within_seed_noise": lo <= 0 <= hi and -sigma <= lo and hi <= sigma,
            }
        )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| metric | pairs | mean d (points) | 95 % t-interval | seed sd σ | sd(d) / (√2 σ) | within seed noise |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = "—" if r["sd_ratio"] is None else f"{r['sd_ratio']:.2f}"
        lines.append(
            f"| {r['metric']} | {r['pairs']} | {r['mean_diff']:+.2f} | [{r['interval'][0]:+.2f}, "
            f"{r['interval'][1]:+.2f}] | {r['seed_sd']:.2f} | {ratio} | {'yes' if r['within_seed_noise'] else 'no'} |"
        )
    return "\n".join(lines)


def grid_name(chunks: int, shared_prompts: bool = False) -> str:
    """The folder (and JSON key) of one arm: ``pad0``, ``pad3``, ``pad3-shared``."""
    return f"pad{chunks}" + ("-shared" if shared_prompts else "")


def run_grid(out: Path, chunks: int, seeds: tuple[int, ...], workers: int, shared_prompts: bool = False) -> list[dict]:
    from air_align.lab.presets import PRESETS
    from air_align.lab.reproduce import reproduce

    quick = PRESETS["quick"]
    training = dataclasses.replace(quick.training, padding_chunks=chunks)
    if shared_prompts:
        training = dataclasses.replace(training, shared_prompts=True)
    name = grid_name(chunks, shared_prompts)
    preset = dataclasses.replace(quick, name=f"quick-{name}", seeds=seeds, workers=workers, training=training)
    return reproduce(preset, out / name)["runs"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the two grids (resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--chunks", type=int, default=3, help="padding_chunks of the compared grid")
    parser.add_argument(
        "--shared-prompts", action="store_true", help="the compared grid also runs each prompt once (shared_prompts)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the runs' metrics and the comparison here")
    args = parser.parse_args(argv)
    if len(args.seeds) < 2 or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: give at least two different seeds, got {args.seeds}")
    if args.chunks < 1:
        parser.error(f"--chunks: give the padding_chunks to compare with TRL's forward (>= 1), got {args.chunks}")
    seeds = tuple(args.seeds)
    base = run_grid(args.out, 0, seeds, args.workers)
    other = run_grid(args.out, args.chunks, seeds, args.workers, args.shared_prompts)
    rows = compare(base, other)
    print(markdown(rows))
    if args.json:
        from air_align.files import write_json

        keep = ("cell", "method", "seed", "param_checksum", "train_seconds", "code")
        write_json(
            args.json,
            {
                "seeds": list(seeds),
                "chunks": args.chunks,
                "shared_prompts": args.shared_prompts,
                "comparison": rows,
                "runs": {
                    "pad0": [{**{k: r[k] for k in keep}, "metrics": r["metrics"]} for r in base],
                    grid_name(args.chunks, args.shared_prompts): [
                        {**{k: r[k] for k in keep}, "metrics": r["metrics"]} for r in other
                    ],
                },
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
