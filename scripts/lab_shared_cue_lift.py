"""Lab v3 E3's measure (a): does plain GRPO lift the OOD floor more in worlds with a shared cue than without?

Pre-registered in docs/results/lab-v3/conditions.md (E3): GRPO's lift is its balanced OOD Acc_group minus its warm
start's, per unit (world × warm start); a cue world's lift is paired with its control's (same kind, generator seed
and warm-start seed: ``gen-safety-0-cue`` with ``gen-safety-0``), averaged over a world's two warm starts, and the
difference's mean over the 4 worlds of a kind gets the t-interval over those world means (``intervals.t_interval``).
Read from a committed grid alone (``results.json`` or ``results.json.gz``: the warm starts' greedy metrics and every
run's), so that docs/results.md's table comes back from the repository:

    python scripts/lab_shared_cue_lift.py docs/results/lab-v3/e3
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from air_align.lab.analyse import load_results  # noqa: E402
from air_align.lab.intervals import t_interval  # noqa: E402

METRIC = "balanced_acc_group"
SPLIT = "test_ood"


def warm_start_levels(results: dict) -> dict[str, float]:
    """``{warm-start directory name: its greedy balanced OOD Acc_group}`` from the grid's warm-start table."""
    return {Path(w["warm_start"]).name: w["metrics"]["metrics"][SPLIT][METRIC] for w in results["worlds"].values()}


def lifts(results: dict, method: str = "grpo") -> dict[tuple[str, int], float]:
    """``{(world, warm-start seed): method's balanced OOD Acc_group − its warm start's}`` over the grid's runs."""
    warm = warm_start_levels(results)
    out = {}
    for run in results["runs"]:
        if run["method"] == method:
            out[run["unit"]["world"], run["warm_seed"]] = (
                run["metrics"][SPLIT][METRIC] - warm[run["unit"]["warm_start"]]
            )
    return out


def cue_minus_control(results: dict, method: str = "grpo") -> dict[str, dict]:
    """Per kind: each world's mean (over warm starts) of cue lift − control lift; their mean and its t-interval."""
    found = lifts(results, method)
    per_world: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for (world, warm_seed), lift in found.items():
        if world.endswith("-cue"):
            control = world.removesuffix("-cue")
            if (control, warm_seed) in found:
                kind = world.split("-")[1]
                per_world[kind][control].append(lift - found[control, warm_seed])
    out = {}
    for kind, worlds in sorted(per_world.items()):
        means = {w: statistics.fmean(d) for w, d in sorted(worlds.items())}
        out[kind] = {"worlds": means, "mean": statistics.fmean(means.values()), "ci": t_interval(list(means.values()))}
    return out


def mean_lift(results: dict, cue: bool, method: str = "grpo") -> dict[str, float]:
    """Per kind: the mean lift over the cue worlds' units (``cue``) or the controls'."""
    grouped = defaultdict(list)
    for (world, _), lift in lifts(results, method).items():
        if world.endswith("-cue") == cue:
            grouped[world.split("-")[1]].append(lift)
    return {kind: statistics.fmean(v) for kind, v in sorted(grouped.items())}


def table(results: dict, method: str = "grpo") -> str:
    found = cue_minus_control(results, method)
    cue, control = mean_lift(results, True, method), mean_lift(results, False, method)
    lines = [
        "| kind | lift, cue worlds | lift, controls | cue − control per world | mean [95 % CI over worlds] |",
        "|" + "---|" * 5,
    ]
    for kind, v in found.items():
        per = ", ".join(f"{w}: {100 * d:+.1f}" for w, d in v["worlds"].items())
        ci = v["ci"]
        shown = f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]" if ci else "[—]"
        mean = f"{100 * v['mean']:+.1f} {shown}"
        lines.append(f"| {kind} | {100 * cue[kind]:+.1f} | {100 * control[kind]:+.1f} | {per} | {mean} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("grid", help="a grid's directory (results.json or results.json.gz)")
    parser.add_argument("--method", default="grpo", help="whose lift (default: grpo)")
    args = parser.parse_args(argv)
    print(table(load_results(Path(args.grid)), args.method))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
