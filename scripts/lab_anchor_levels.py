"""The anchors' training reward per run of a lab grid: how saturated the anchors were during RL.

Lab v3's conditions (docs/results/lab-v3/conditions.md, E1 and E4) report the mean training anchor level, TRL's
logged ``reward/anchor`` (the mean reward of the anchors sampled in a step), beside each comparison: with saturated
anchors it sits at the correct anchor's reward (2.5 in the lab's worlds), and ``grpo+air-const`` then sets the same
target as GRPO+AIR. The per-run logs live in the grid's scratch ``DIR/runs/`` (not committed), so this script writes
what the report needs from them into a small committed file, and prints the per-comparison table from that file:

    python scripts/lab_anchor_levels.py DIR --out docs/results/lab-v3/e1/anchor_levels.json   # from the run logs
    python scripts/lab_anchor_levels.py docs/results/lab-v3/e1/anchor_levels.json             # the table again

Runs are matched to ``results.json``'s records (for their comparison and unit) by their parameter checksum.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from air_align.files import write_json  # noqa: E402
from air_align.lab.analyse import load_results  # noqa: E402


def levels_from_grid(directory: Path) -> list[dict]:
    """One row per main run of the grid in ``directory``: its comparison, unit, method and the mean, first and last
    logged ``reward/anchor`` of its training."""
    results = load_results(directory)
    by_checksum = {}
    for path in sorted((directory / "runs").glob("main-*/result.json")):
        record = json.loads(path.read_text(encoding="utf-8"))["record"]
        by_checksum[record["param_checksum"]] = path.parent / "log.json"
    rows = []
    for run in results["runs"]:
        log = by_checksum.get(run["param_checksum"])
        if log is None:
            raise ValueError(f"{directory}/runs: no run directory with the checksum of {run['cell']} {run['method']}")
        levels = [h["reward/anchor"] for h in json.loads(log.read_text(encoding="utf-8")) if "reward/anchor" in h]
        rows.append(
            {
                "cell": run["cell"],
                "world": run["unit"]["world"],
                "warm_start": run["unit"]["warm_start"],
                "method": run["method"],
                "seed": run["seed"],
                "mean": round(statistics.fmean(levels), 4),
                "first": round(levels[0], 4),
                "last": round(levels[-1], 4),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    """Per comparison and method: the mean over units of each run's mean anchor level, and its range."""
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["cell"], row["method"]].append(row["mean"])
    lines = ["| comparison | method | mean anchor reward in training | range over runs | runs |", "|" + "---|" * 5]
    for (cell, method), values in sorted(grouped.items()):
        lines.append(
            f"| {cell} | {method} | {statistics.fmean(values):.2f} | {min(values):.2f} to {max(values):.2f} | "
            f"{len(values)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="a grid's directory (with runs/) or an anchor_levels.json written before")
    parser.add_argument("--out", default=None, help="write the per-run levels there (JSON)")
    args = parser.parse_args(argv)
    source = Path(args.source)
    rows = levels_from_grid(source) if source.is_dir() else json.loads(source.read_text(encoding="utf-8"))
    if args.out:
        write_json(args.out, rows, indent=None)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
