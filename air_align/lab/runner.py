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
interrupted grid loses at most the runs in progress.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
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


def _work(run: RunSpec, out: str) -> dict:
    """Train one run and save it (in a worker process or in this one)."""
    directory = run_dir(out, run)
    record = execute(run, directory)
    write_json(directory / "result.json", {"key": run.key(), "record": record})
    return record


THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


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
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context,
                                 initializer=_init_worker) as pool:  # fmt: skip
            pending = {pool.submit(_work, runs[i], str(out)): i for i in todo}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    i = pending.pop(future)
                    records[i] = future.result()  # a worker's exception surfaces here
                    if on_done:
                        on_done(runs[i], records[i], False)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return records  # type: ignore[return-value]
