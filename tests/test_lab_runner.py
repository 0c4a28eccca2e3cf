"""The lab's parallel runner: worker processes give exactly the serial result, and a rerun resumes."""

from __future__ import annotations

import pytest

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
        )  # fmt: skip
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
