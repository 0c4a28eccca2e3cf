"""Run many lab runs, in parallel worker processes, resumably.

Each run (``runs.RunSpec``) is independent of every other, so the grid is embarrassingly parallel. On a small CPU
machine the fastest layout is one torch thread per run and one run per core: the lab's model is tiny, so a run is
dominated by Python and small-kernel overhead that a second thread cannot share, while two threads of one run on a
busy machine wait on each other (docs/performance.md measures both). ``run_all(runs, out, workers=N)`` starts N
worker processes (``spawn``; each with ``OMP_NUM_THREADS=1`` and ``torch.set_num_threads(1)``) and hands them runs;
``workers=1`` runs everything in this process, with the same single thread per run, so serial and parallel results
are identical (tested).

Every finished run is written atomically to ``out/runs/<name>/result.json`` together with its spec (``RunSpec.key``);
calling ``run_all`` again with the same runs reuses them and trains only what is missing or changed, so an
interrupted grid loses at most the runs in progress. A worker process that dies (``kill -9``, the out-of-memory
killer) stops the grid with an error naming the run it was training (each worker notes its pid in the run's folder,
``worker.json``, while it trains) and saying that a rerun resumes (tests/test_lab_runner.py).
"""

from __future__ import annotations

import gc
import json
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

from air_align.files import write_json
from air_align.lab.runs import RunSpec, execute


def run_dir(out: str | Path, run: RunSpec) -> Path:
    return Path(out) / "runs" / run.name()


def load_finished(out: str | Path, run: RunSpec) -> dict | None:
    """The saved record of ``run`` if it finished with the same spec, else None (a torn file counts as missing)."""
    path = run_dir(out, run) / "result.json"
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return saved.get("record") if saved.get("key") == run.key() else None


WORKER_FILE = "worker.json"
"""In a run's folder while a worker process trains it: ``{"pid": …}``, so that a dead worker's run can be named."""


def _work(run: RunSpec, out: str) -> dict:
    """Train one run and save it (in a worker process or in this one)."""
    directory = run_dir(out, run)
    write_json(directory / WORKER_FILE, {"pid": os.getpid()})
    record = execute(run, directory)
    write_json(directory / "result.json", {"key": run.key(), "record": record})
    (directory / WORKER_FILE).unlink(missing_ok=True)
    return record


def exit_reason(exitcode: int | None) -> str:
    """How a process ended, in words.

    >>> exit_reason(-9), exit_reason(1)
    ('killed by signal 9 (SIGKILL: kill -9, or the out-of-memory killer)', 'exited with status 1')
    """
    if exitcode is None or exitcode >= 0:
        return f"exited with status {exitcode}"
    name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else f"signal {-exitcode}"
    why = ": kill -9, or the out-of-memory killer" if -exitcode == signal.SIGKILL else ""
    return f"killed by signal {-exitcode} ({name}{why})"


def dead_worker_error(
    out: str | Path, in_progress: list[RunSpec], exitcodes: dict[int, int | None], finished: int, total: int
) -> ChildProcessError:
    """The error of a grid whose worker died: which run it was training (by the pids the workers noted, and the
    exit codes of the pool's processes), what is saved, and that a rerun resumes."""
    pids = {}
    for run in in_progress:
        try:
            pids[run.name()] = json.loads((run_dir(out, run) / WORKER_FILE).read_text(encoding="utf-8"))["pid"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    # the pool terminates (SIGTERM) its other workers once one has died: the dead one ended otherwise
    dead = {pid: code for pid, code in exitcodes.items() if code not in (None, 0, -signal.SIGTERM)}
    named = [f"{name} (pid {pid}, {exit_reason(dead[pid])})" for name, pid in pids.items() if pid in dead]
    if not named:
        named = [f"one of {', '.join(r.name() for r in in_progress)}"]
    return ChildProcessError(
        f"the worker process training run {'; '.join(named)} died, and the grid stopped; {finished} of {total} runs "
        f"are finished and saved in {Path(out) / 'runs'}: rerun the same command to resume (it trains only the runs "
        "not finished)"
    )


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def prepare_worker() -> None:
    """Ready a process to train runs: one torch thread, and everything imported so far (torch, transformers, TRL,
    this package: the objects that live as long as the process) moved out of the garbage collector's reach
    (``gc.freeze``). Every trainer's start runs a full collection (accelerate's ``free_memory``), which otherwise
    walks those 430,000 objects again in every run (0.24 s, 2 % of a run: docs/performance.md, "One lab run"); the
    run's own objects are collected as before."""
    import torch

    torch.set_num_threads(1)
    gc.freeze()


def run_all(
    runs: Iterable[RunSpec],
    out: str | Path,
    workers: int = 1,
    on_done: Callable[[RunSpec, dict, bool], None] | None = None,
) -> list[dict]:
    """Records of ``runs`` in their order: finished ones loaded, the others trained with ``workers`` processes.

    ``on_done(run, record, resumed)`` is called as each run finishes (progress bars).
    """
    runs = list(runs)
    names = [r.name() for r in runs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two runs of the grid share a directory name: {dup[:3]}; give them different tags")
    records: list[dict | None] = [None] * len(runs)
    todo = []
    for i, run in enumerate(runs):
        records[i] = load_finished(out, run)
        if records[i] is not None:
            if on_done:
                on_done(run, records[i], True)
        else:
            todo.append(i)
    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            records[i] = _work(runs[i], str(out))
            if on_done:
                on_done(runs[i], records[i], False)
        return records  # type: ignore[return-value]
    saved = {name: os.environ.get(name) for name in THREAD_ENV}
    os.environ.update(dict.fromkeys(THREAD_ENV, "1"))  # the spawned workers start with one thread, before torch loads
    try:
        context = get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=min(workers, len(todo)), mp_context=context, initializer=prepare_worker
        ) as pool:
            pending = {pool.submit(_work, runs[i], str(out)): i for i in todo}
            workers = dict(pool._processes)  # pid → Process: its exit code tells which worker died
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    try:
                        records[i] = future.result()  # a worker's exception surfaces here
                    except BrokenProcessPool:
                        pool.shutdown(wait=True)
                        in_progress = [runs[j] for j in [i, *pending.values()]]
                        finished = sum(r is not None for r in records)
                        codes = {pid: p.exitcode for pid, p in {**workers, **(pool._processes or {})}.items()}
                        raise dead_worker_error(out, in_progress, codes, finished, len(runs)) from None
                    if on_done:
                        on_done(runs[i], records[i], False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return records  # type: ignore[return-value]
