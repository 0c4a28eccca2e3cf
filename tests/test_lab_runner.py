"""The lab's parallel runner: worker processes give exactly the serial result, and a rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from _messages import assert_facts

from air_align.lab.runner import load_finished, run_all
from air_align.lab.runs import RunSpec, Training
from air_align.lab.warmstart import Recipe, warm_start

SHORT = {"epochs": 4, "open_per_intent": 3}  # the smoke preset's warm start


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    return warm_start(Recipe(world="safety", **SHORT), root=tmp_path_factory.getbasetemp() / "lab-warm")


def _runs(warm):
    training = Training(max_steps=2)
    return [
        RunSpec(
            world="safety",
            method=m,
            lam=0.1,
            seed=s,
            warm_start=str(warm),
            training=training,
            judge=(("cue_strength", 4.0),),
            tag="t",
        )
        for m, s in (("grpo", 0), ("grpo+air", 1))
    ]


def test_parallel_workers_give_the_serial_result_exactly(warm, tmp_path):
    runs = _runs(warm)
    serial = run_all(runs, tmp_path / "serial", workers=1)
    parallel = run_all(runs, tmp_path / "parallel", workers=2)
    for a, b in zip(serial, parallel, strict=True):
        assert a["param_checksum"] == b["param_checksum"]  # bit-identical weights after training
        assert a["metrics"] == b["metrics"] and a["records"] == b["records"]
    assert serial[0]["param_checksum"] != serial[1]["param_checksum"]  # two different runs really ran


def test_a_rerun_resumes_and_a_changed_run_retrains(warm, tmp_path, monkeypatch):
    runs = _runs(warm)[:1]
    first = run_all(runs, tmp_path, workers=1)
    seen = []

    def no_training(run, out):
        raise AssertionError("a finished run was retrained")

    monkeypatch.setattr("air_align.lab.runner._work", no_training)
    again = run_all(runs, tmp_path, workers=1, on_done=lambda run, rec, resumed: seen.append(resumed))
    assert again == first and seen == [True]
    changed = [RunSpec(**{**runs[0].__dict__, "training": Training(max_steps=3)})]
    assert load_finished(tmp_path, changed[0]) is None  # another setup is not mistaken for the finished one
    with pytest.raises(AssertionError, match="retrained"):
        run_all(changed, tmp_path, workers=1)


def test_a_dead_worker_is_named_with_its_run(tmp_path):
    from air_align.lab.runner import WORKER_FILE, dead_worker_error, run_dir

    runs = _runs("warm")
    for run, pid in zip(runs, (111, 222), strict=True):
        run_dir(tmp_path, run).mkdir(parents=True)
        (run_dir(tmp_path, run) / WORKER_FILE).write_text(json.dumps({"pid": pid}))
    err = dead_worker_error(tmp_path, runs, {111: -15, 222: -9}, finished=3, total=5)  # 222 killed, 111 stopped
    assert isinstance(err, OSError)  # the run, the process and its signal, what is saved where, and the fix
    facts = (f"training run {runs[1].name()} ", "pid 222", "signal 9", "SIGKILL", "out-of-memory killer", "died")
    assert_facts(str(err), *facts, "3 of 5 runs", str(tmp_path / "runs"), "rerun the same command to resume")
    err = dead_worker_error(tmp_path, runs, {111: -15, 222: -15}, finished=0, total=2)  # no telling which: both
    assert f"training run one of {runs[0].name()}, {runs[1].name()} died" in str(err)


@pytest.mark.slow  # two spawned workers import torch and train: ~1 min on 2 busy cores
def test_kill_9_of_a_worker_names_its_run_and_a_rerun_resumes_exactly(warm, tmp_path):
    from air_align.lab.runner import WORKER_FILE

    runs = _runs(warm)
    killed = []

    def kill_the_first_worker():  # as `kill -9 PID` from another terminal, once a worker has started its run
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for note in (tmp_path / "grid" / "runs").glob(f"*/{WORKER_FILE}"):
                try:
                    pid = json.loads(note.read_text())["pid"]
                except (OSError, ValueError):
                    continue
                os.kill(pid, signal.SIGKILL)
                killed.append((note.parent.name, pid))
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_the_first_worker)
    watcher.start()
    with pytest.raises(ChildProcessError) as err:
        run_all(runs, tmp_path / "grid", workers=2)
    watcher.join()
    ((name, pid),) = killed
    facts = (f"training run {name} ", f"pid {pid}", "signal 9", "SIGKILL", "rerun the same command to resume")
    assert_facts(str(err.value), *facts)
    resumed = run_all(runs, tmp_path / "grid", workers=2)
    straight = run_all(runs, tmp_path / "straight", workers=1)
    assert [r["param_checksum"] for r in resumed] == [r["param_checksum"] for r in straight]


def test_a_worker_freezes_what_it_imported_out_of_the_collectors_reach():
    import gc

    import torch

    from air_align.lab.runner import prepare_worker

    threads, frozen = torch.get_num_threads(), gc.get_freeze_count()
    oldest = len(gc.get_objects(generation=2))  # what a full collection, accelerate's free_memory, walks
    try:
        prepare_worker()
        assert torch.get_num_threads() == 1
        assert gc.get_freeze_count() - frozen > 100_000  # torch, transformers, TRL, this package: the runner's imports
        assert len(gc.get_objects(generation=2)) < oldest - 100_000  # out of the collector's walk
    finally:
        gc.unfreeze()
        torch.set_num_threads(threads)
