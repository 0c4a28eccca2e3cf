"""Wall time of a lab preset under several checkouts of air-align, interleaved (docs/performance.md, "One lab run").

For each ``--tree`` in turn (the order alternating over ``--rounds``), runs in a fresh process with that tree first
on ``sys.path``:

- ``--preset NAME``: ``air-align reproduce --preset NAME --out <new folder>`` (the warm starts come from the user's
  cache, trained there before timing);
- ``--demo``: what ``make demo`` runs once its environment is installed, ``air-align demo``, from a clean clone of
  the tree's commit (``git clone``: only committed files) with an empty model cache (``AIR_ALIGN_CACHE`` set to a
  new folder), so the warm start is trained inside the timed command as on a first ``make demo``.

Reports wall and CPU seconds (the command and its worker processes) and whether every tree printed the same table:
a faster path that changed a result would show here. The machine is shared: compare ratios taken in one session.

    python benchmarks/lab_presets.py --tree /tmp/old --tree . --preset quick --rounds 1
    python benchmarks/lab_presets.py --tree /tmp/old --tree . --demo --rounds 1
    python benchmarks/lab_presets.py --tree . --preset full --forward fast --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(tree: Path, preset: str | None, scratch: Path, forward: str | None = None) -> dict:
    """One timed command under ``tree`` (with ``--forward FORWARD`` when given); returns its wall and CPU seconds
    and the table it printed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if preset is None:
        clone = scratch / "clone"
        subprocess.run(["git", "clone", "--quiet", str(tree), str(clone)], check=True)
        commit = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
        env["AIR_ALIGN_CACHE"] = str(scratch / "empty-cache")
        cwd, command = clone, ["demo", "--out", str(scratch / "demo")]
    else:
        cwd, command = tree, ["reproduce", "--preset", preset, "--out", str(scratch / preset)]
        command += ["--forward", forward] if forward else []
    env["PYTHONPATH"] = str(cwd)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "air_align.cli", *command], cwd=cwd, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{command} under {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    printed = proc.stdout.rsplit("\nresults: " if preset else "\nreport: ", 1)[0]
    # left out: the title's seconds, and the hash of the code that ran (which differs between trees by design)
    table = "\n".join(line for line in printed.splitlines() if not line.startswith(("# Lab grid", "Code: ")))
    warm = {
        path.parent.name: json.loads(path.read_text())["log"]["seconds"]  # trained in the timed command
        for path in sorted((scratch / "empty-cache" / "lab").glob("*/recipe.json"))
    }
    return {
        "wall": wall,
        "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        "table": table,
        "warm_start_seconds": warm,
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True, help="a checkout of air-align (repeat)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--preset", help="time `air-align reproduce --preset NAME`")
    what.add_argument("--demo", action="store_true", help="time `air-align demo` from a clean clone, empty cache")
    parser.add_argument(
        "--forward", default=None, help="with --preset: pass `--forward` to reproduce (fast, trl; docs/lab.md)"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default=None, help="JSON file for every measurement")
    args = parser.parse_args(argv)
    trees = [Path(t).resolve() for t in args.tree]
    results: dict[str, list[dict]] = {str(t): [] for t in trees}
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            scratch = Path(tempfile.mkdtemp(prefix="lab-presets-"))
            try:
                results[str(tree)].append(run_once(tree, args.preset, scratch, args.forward))
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            m = results[str(tree)][-1]
            print(f"round {r}: {tree}: {m['wall']:.1f} s wall, {m['cpu']:.1f} s CPU", flush=True)
    tables = {m["table"] for runs in results.values() for m in runs}
    print(f"tables: {'all identical' if len(tables) == 1 else f'{len(tables)} different'}")
    first = str(trees[0])
    for tree in trees[1:]:
        a, b = results[first], results[str(tree)]
        wall = sorted(x["wall"] for x in a)[len(a) // 2] / sorted(x["wall"] for x in b)[len(b) // 2]
        print(f"{first} / {tree}: median wall {wall:.2f}x")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"argv": sys.argv[1:], "results": results, "cpus": os.cpu_count(), "machine": platform.platform()},
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
