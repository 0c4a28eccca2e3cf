"""Where a lab run's time goes, and old code against new code as ratios (docs/performance.md, "One lab run").

A *profile* trains one lab run (``air_align.lab.runs.execute``: safety world, hack regime, GRPO+AIR, the presets'
``Training``) in a fresh process on one torch thread and splits its wall time into phases by timing the functions
that do each, in CPU seconds of the process (``time.process_time``: on one thread the wall time of an idle machine,
and far less sensitive than wall time to the other jobs of a shared machine; exclusive: a phase nested in another is
not counted twice):

- process start and imports (the interpreter, torch, transformers, TRL, air_align);
- the warm start's load, the trainer's build;
- per step: generation (TRL's ``_generate``: prompt templating, tokenisation, ``model.generate``), the reward/judge
  (``_calculate_rewards``), the no-grad log-prob forward of the sampling policy (``old_per_token_logps``), the
  loss (forward and loss, ``compute_loss``), the backward, the optimiser (clipping and ``optimizer.step``), and the
  trainer's own bookkeeping (the rest of ``train``: data loading, advantages, AIR's Δ, logging, callbacks);
- after training: the scoring (greedy generation on the test splits, the oracle), writing (``log.json``, the
  curves' plot), the rest.

Between the imports and the run the child does what a grid's worker process does before its first run
(``runner.prepare_worker``, in a tree that has it), so that "the run" is what a worker pays per run.

The hooks wrap bound methods of the run's own trainer (``build_run_trainer`` is wrapped to reach it), so the same
script measures any version of the code that keeps ``air_align.lab.runs.execute``, ``build_run_trainer``,
``load_warm_start`` and ``score``: ``--tree DIR`` runs the child with ``DIR`` first on ``sys.path`` (and checks that
``air_align`` is imported from there). Several trees are measured interleaved, round by round (the machine is
shared: compare ratios taken in one session, not seconds).

``--grid N`` instead times ``runner.run_all`` on N runs (alternately GRPO and GRPO+AIR, seeds 0, 1, …) with
``--workers`` processes: the throughput a preset sees, with its worker processes' start-up shared by their runs.

    python benchmarks/lab_run_profile.py --rounds 1 --out benchmarks/results/lab_run_profile.json
    python benchmarks/lab_run_profile.py --tree /tmp/old --tree . --rounds 3
    python benchmarks/lab_run_profile.py --tree /tmp/old --tree . --padding-chunks default,3 --rounds 1
    python benchmarks/lab_run_profile.py --tree /tmp/old --tree . --grid 8 --workers 2 --rounds 2
"""

from __future__ import annotations

import time

_PROCESS_START = time.perf_counter()  # before any heavy import: the child's own import time starts here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

PHASES = (
    "process start, imports",
    "warm start load",
    "trainer build",
    "generation",
    "reward (judge)",
    "old log-probs forward",
    "loss (forward)",
    "backward",
    "optimiser",
    "trainer bookkeeping",
    "scoring",
    "writing (log, plot)",
    "other",
)
RESULT_TAG = "LAB_RUN_PROFILE "


class PhaseTimer:
    """Exclusive CPU time per label of nested wrapped calls: a wrapped call's time minus its wrapped children's."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list] = []  # [label, children's seconds]

    def add(self, label: str, seconds: float) -> None:
        """Time measured outside a wrapper (the optimiser, between two callbacks), taken from the caller's frame."""
        self.totals[label] += seconds
        self.calls[label] += 1
        if self._stack:
            self._stack[-1][1] += seconds

    def wrap(self, fn, label):
        """``fn`` timed under ``label`` (a string, or a function of no argument giving one at call time)."""

        def timed(*args, **kwargs):
            name = label() if callable(label) else label
            start = time.process_time()
            self._stack.append([name, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _, children = self._stack.pop()
                elapsed = time.process_time() - start
                self.totals[name] += elapsed - children
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][1] += elapsed

        return timed


def _hook_trainer(trainer, timer: PhaseTimer) -> None:
    import torch
    from transformers import TrainerCallback

    def logps_label() -> str:
        return "loss (forward)" if torch.is_grad_enabled() else "old log-probs forward"

    for attr, label in (
        ("train", "trainer bookkeeping"),
        ("_generate", "generation"),
        ("_calculate_rewards", "reward (judge)"),
        ("_get_per_token_logps_and_entropies", logps_label),
        ("compute_loss", "loss (forward)"),
        ("_clip_grad_norm", "optimiser"),
    ):
        setattr(trainer, attr, timer.wrap(getattr(trainer, attr), label))
    trainer.accelerator.backward = timer.wrap(trainer.accelerator.backward, "backward")

    class OptimiserClock(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            self.start = time.process_time()

        def on_optimizer_step(self, args, state, control, **kwargs):
            timer.add("optimiser", time.process_time() - self.start)

    trainer.add_callback(OptimiserClock())


def child(args) -> dict:
    """One profiled run in this process."""
    import torch

    torch.set_num_threads(1)
    import air_align
    from air_align.lab import runner, runs
    from air_align.lab.runs import RunSpec, Training
    from air_align.lab.warmstart import Recipe, warm_start

    imported = time.perf_counter() - _PROCESS_START
    prepare = getattr(runner, "prepare_worker", None)  # what a grid's worker does before its first run, if any
    if prepare is not None:
        prepare()
    warm = warm_start(Recipe(world="safety"))  # cached by the parent before timing
    timer = PhaseTimer()
    build = runs.build_run_trainer

    def build_and_hook(*a, **k):
        trainer = build(*a, **k)
        _hook_trainer(trainer, timer)
        return trainer

    runs.build_run_trainer = timer.wrap(build_and_hook, "trainer build")
    runs.load_warm_start = timer.wrap(runs.load_warm_start, "warm start load")
    runs.score = timer.wrap(runs.score, "scoring")
    runs.write_json = timer.wrap(runs.write_json, "writing (log, plot)")
    runs.plot_run_curves = timer.wrap(runs.plot_run_curves, "writing (log, plot)")
    run = RunSpec(
        world="safety",
        method=args.method,
        lam=0.1,
        seed=args.seed,
        warm_start=str(warm),
        training=Training(max_steps=args.steps, **_training_options(args)),
        judge=(("cue_strength", 4.0),),
        tag="profile",
    )
    with tempfile.TemporaryDirectory(prefix="lab-run-profile-") as out:
        start, cpu = time.perf_counter(), time.process_time()
        if args.cprofile:
            import cProfile

            profiler = cProfile.Profile()
            record = profiler.runcall(timer.wrap(runs.execute, "other"), run, out)
            profiler.dump_stats(args.cprofile)
        else:
            record = timer.wrap(runs.execute, "other")(run, out)
        run_seconds, run_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "air_align": str(Path(air_align.__file__).parent.parent.resolve()),
        "imports_in_child": imported,
        "run_seconds": run_seconds,
        "run_cpu": run_cpu,
        "phases": dict(timer.totals),
        "calls": dict(timer.calls),
        "param_checksum": record["param_checksum"],
        "metrics": record["metrics"],
    }


def _training_options(args) -> dict:
    """The child's ``Training`` fields beyond the steps: ``padding_chunks`` and ``shared_prompts`` when given (a
    tree whose ``Training`` lacks a field is measured without it)."""
    options = {} if args.padding_chunks is None else {"padding_chunks": args.padding_chunks}
    if args.shared_prompts is not None:
        options["shared_prompts"] = bool(args.shared_prompts)
    return options


def _per_tree(value: str | None, trees: int, flag: str = "--padding-chunks") -> list[int | None]:
    """``flag``'s value for each tree: one value for all, or a comma-separated list with ``default`` for the
    tree's default (``--padding-chunks default,3``: the first tree as it is, the second with 3 chunks)."""
    if value is None:
        return [None] * trees
    items = value.split(",")
    if len(items) == 1:
        items *= trees
    if len(items) != trees or not all(i == "default" or i.isdigit() for i in items):
        raise SystemExit(
            f"error: {flag} {value!r}: give one whole number, or one per --tree ({trees}) separated by "
            f"commas, 'default' for a tree's default, e.g. {flag} default,3"
        )
    return [None if i == "default" else int(i) for i in items]


def grid_child(args) -> dict:
    """``run_all`` on ``--grid`` runs with ``--workers`` processes, in this process."""
    from lab_workers import safety_hack_runs  # beside this script (its folder is first on sys.path)

    import air_align
    from air_align.lab.runner import run_all
    from air_align.lab.warmstart import Recipe, warm_start

    warm = warm_start(Recipe(world="safety"))
    runs = safety_hack_runs(warm, args.grid, args.steps, tag="grid")
    with tempfile.TemporaryDirectory(prefix="lab-grid-profile-") as out:
        start = time.perf_counter()
        records = run_all(runs, out, workers=args.workers)
        seconds = time.perf_counter() - start
    return {
        "air_align": str(Path(air_align.__file__).parent.parent.resolve()),
        "run_seconds": seconds,
        "param_checksums": [r["param_checksum"] for r in records],
    }


def measure(tree: Path, argv: list[str]) -> dict:
    """Run this script's child mode under ``tree``; returns its result plus the wall time seen from here."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv], cwd=tree, env=env, capture_output=True, text=True
    )
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)  # the child and its workers
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"the child under {tree} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len(RESULT_TAG) :])
    if Path(result["air_align"]) != tree.resolve():
        raise RuntimeError(f"the child under {tree} imported air_align from {result['air_align']}")
    result["wall"], result["cpu"] = wall, cpu
    if "phases" in result:  # interpreter start, imports and exit, seen from outside (the child cannot time them)
        result["phases"]["process start, imports"] = cpu - result["run_cpu"]
    return result


def table(results: dict[str, list[dict]]) -> str:
    """Markdown: per phase, the median CPU seconds of each tree and its share of the median CPU time of the whole
    process; then the whole process's CPU and wall time."""
    names = list(results)
    head = "| phase | " + " | ".join(f"{n}: CPU s | {n}: %" for n in names) + " |"
    lines = [head, "|---|" + "---|---|" * len(names)]
    cpus = {n: statistics.median(r["cpu"] for r in results[n]) for n in names}
    walls = {n: statistics.median(r["wall"] for r in results[n]) for n in names}
    for phase in PHASES:
        cells = []
        for n in names:
            seconds = statistics.median(r["phases"].get(phase, 0.0) for r in results[n])
            cells += [f"{seconds:.2f}", f"{100 * seconds / cpus[n]:.0f}"]
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    lines.append("| **whole process, CPU** | " + " | ".join(f"**{cpus[n]:.2f}** | 100" for n in names) + " |")
    lines.append("| whole process, wall | " + " | ".join(f"{walls[n]:.2f} | " for n in names) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree",
        action="append",
        default=None,
        help="a checkout of air-align to measure (repeat to compare; default: this one)",
    )
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per run (default: 100)")
    parser.add_argument("--method", default="grpo+air", help="the profiled run's method (default: grpo+air)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="measurements per tree, interleaved")
    parser.add_argument("--grid", type=int, default=0, help="time run_all on this many runs instead of one run")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of --grid (default: 2)")
    parser.add_argument(
        "--padding-chunks",
        default=None,
        help="Training.padding_chunks of the profiled run: one number, or one per --tree with 'default' for "
        "the tree's default (e.g. default,3); default: the Training default",
    )
    parser.add_argument(
        "--shared-prompts",
        default=None,
        help="Training.shared_prompts of the profiled run (0 or 1): one value, or one per --tree with 'default' "
        "for the tree's default (e.g. default,1); default: the Training default",
    )
    parser.add_argument("--cprofile", default=None, help="(child) also write a cProfile of the run to this file")
    parser.add_argument("--out", default=None, help="JSON file for every measurement")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.padding_chunks = None if args.padding_chunks is None else int(args.padding_chunks)
        args.shared_prompts = None if args.shared_prompts is None else int(args.shared_prompts)
        result = grid_child(args) if args.grid else child(args)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0
    trees = [Path(t).resolve() for t in (args.tree or [Path(__file__).resolve().parent.parent])]
    chunks = _per_tree(args.padding_chunks, len(trees))
    shared = _per_tree(args.shared_prompts, len(trees), "--shared-prompts")
    options = [
        ([] if c is None else ["--padding-chunks", str(c)]) + ([] if p is None else ["--shared-prompts", str(p)])
        for c, p in zip(chunks, shared, strict=True)
    ]
    names = [
        str(t) + "".join(f" ({flag.lstrip('-').replace('-', '_')} {v})" for flag, v in zip(o[::2], o[1::2]))
        for t, o in zip(trees, options, strict=True)
    ]
    if len(set(names)) != len(names):
        raise SystemExit("error: the same --tree twice with the same options: give each a different one")
    child_argv = [
        "--child",
        "--steps",
        str(args.steps),
        "--method",
        args.method,
        "--seed",
        str(args.seed),
        "--grid",
        str(args.grid),
        "--workers",
        str(args.workers),
    ]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = list(zip(names, trees, options, strict=True))
        for name, tree, extra in order if r % 2 == 0 else order[::-1]:
            results[name].append(measure(tree, child_argv + extra))
            print(
                f"round {r}: {name}: {results[name][-1]['wall']:.1f} s wall, "
                f"{results[name][-1]['run_seconds']:.1f} s in the run(s)",
                flush=True,
            )
    if not args.grid:
        print(table(results))
    medians = {n: statistics.median(x["wall"] for x in results[n]) for n in names}
    cpu_medians = {n: statistics.median(x["cpu"] for x in results[n]) for n in names}
    for n in names[1:]:
        print(
            f"{names[0]} / {n}: wall {medians[names[0]] / medians[n]:.2f}x ({medians[names[0]]:.1f} s -> "
            f"{medians[n]:.1f} s), CPU {cpu_medians[names[0]] / cpu_medians[n]:.2f}x ({cpu_medians[names[0]]:.1f} s "
            f"-> {cpu_medians[n]:.1f} s)"
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {
                    "argv": sys.argv[1:],
                    "results": results,
                    "median_wall": medians,
                    "median_cpu": cpu_medians,
                    "cpus": os.cpu_count(),
                    "load_average_at_end": os.getloadavg(),
                    "machine": platform.platform(),
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
