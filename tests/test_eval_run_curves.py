"""One run's training curves (docs/monitoring.md): finding a run's log from the run directory, ``run_dir/final`` (the
README's ``--model runs/X/final``), a checkpoint or a lab ``log.json``; the panels drawn from a tiny run's saved
log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _messages import raises_with
from _toy import toy_trainer

from air_align.evaluation.plots import (
    find_run_log,
    plot_run_curves,
    plot_training_curves,
    read_log_file,
    read_training_log,
    run_curve_panels,
)

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 3-step AIR run of the tiny model with checkpoints every step and a saved model in ``final``, as
    ``air-align train`` lays it out."""
    run_dir = tmp_path_factory.mktemp("runs") / "air"
    trainer = toy_trainer(
        "air", str(run_dir), max_steps=3, save_strategy="steps", save_steps=1, anchor_monitor_batches=1
    )
    trainer.train()
    trainer.save_model(str(run_dir / "final"))
    return run_dir


def test_the_log_is_found_from_the_run_dir_final_and_a_checkpoint(tiny_run):
    assert (tiny_run / "final" / "config.json").is_file() and not (tiny_run / "final" / "trainer_state.json").exists()
    entries, source = find_run_log(tiny_run)
    assert source == tiny_run / "checkpoint-3" / "trainer_state.json"  # the latest checkpoint: the longest history
    assert [e["step"] for e in entries if "reward/anchor" in e] == [1, 2, 3]
    assert find_run_log(tiny_run / "final") == (entries, source)  # a saved model: its parent run's log
    early, early_source = find_run_log(tiny_run / "checkpoint-1")  # a checkpoint: its own history
    assert early_source == tiny_run / "checkpoint-1" / "trainer_state.json"
    assert [e["step"] for e in early if "reward/anchor" in e] == [1]
    assert find_run_log(source) == (entries, source)  # a log file itself
    assert find_run_log(tiny_run / "missing") is None
    # The evaluation's older entry point now finds it from `final` too (training_curves.png was missing there).
    assert [e["step"] for e in read_training_log([tiny_run / "final"]) if "reward/anchor" in e] == [1, 2, 3]
    assert plot_training_curves([tiny_run / "final"], tiny_run / "curves.png").read_bytes()[:8] == PNG


def test_a_lab_log_json_and_a_run_level_trainer_state_are_found(tmp_path, tiny_run):
    entries, _ = find_run_log(tiny_run)
    lab = tmp_path / "lab-run"
    lab.mkdir()
    (lab / "log.json").write_text(json.dumps([e for e in entries if "loss" in e or "reward" in e]))  # reproduce.py
    found, source = find_run_log(lab)
    assert source == lab / "log.json" and [e["step"] for e in found] == [1, 2, 3]
    state = tmp_path / "saved-state"
    state.mkdir()
    (state / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": entries}))  # save_state()
    assert find_run_log(state)[1] == state / "trainer_state.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert find_run_log(empty) is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"no": "history"}')
    with raises_with(ValueError, str(bad), "a list of log entries", "'log_history'"):
        read_log_file(bad)


def test_panels_of_a_tiny_run(tiny_run, tmp_path):
    entries, _ = find_run_log(tiny_run / "final")
    panels = {p["title"]: p for p in run_curve_panels(entries)}
    assert panels["reward: anchors vs open variants"]["series"] == [
        ("reward/anchor", "anchors"),
        ("reward/open", "open variants"),
    ]
    start = [e["air/anchor_start"] for e in entries if "air/anchor_start" in e][-1]
    assert panels["reward: anchors vs open variants"]["hlines"] == [(start, "anchors' start")]
    # toy rows: domain "toy", label None -> one label series, and the overall open Δ drawn bold
    delta = panels["Δ per label (> 0: open lags anchors)"]
    assert delta["series"] == [("air/delta/toy/none", "toy/none"), ("air/delta/open", "all open prompts")]
    assert delta["bold"] == "air/delta/open"
    aux = panels["AIR term vs policy term"]
    assert aux["series"] == [("air/aux_to_policy_weight", "aux / policy gradient weight")] and aux["log"] is True
    zero = panels["share of prompts with K equal rewards (no signal)"]["series"]
    assert zero == [("air/zero_std/anchor", "anchors"), ("air/zero_std/open", "open variants")]
    assert panels["format rate (mean format reward)"]["series"] == []  # toy_reward has no format function
    assert panels["anchor accuracy"]["series"] == [] and panels["anchor accuracy"]["points"] == []

    path = plot_run_curves(entries, tmp_path / "training_curves.png", title="tiny AIR run")
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 20_000
    assert plot_run_curves([{"loss": 1.0}], tmp_path / "none.png") is None  # no step: nothing to plot


def test_panels_pick_format_rate_and_anchor_accuracy_when_logged(tmp_path):
    entries = [
        {"step": s, "rewards/lab_format_reward/mean": 0.5 * s, "rewards/lab_task/mean": 1.0, "eval_anchor_acc": 0.9}
        for s in (1, 2)
    ]
    panels = {p["title"]: p for p in run_curve_panels(entries, anchor_accuracy={2: 0.95, 3: None})}
    assert panels["format rate (mean format reward)"]["series"] == [
        ("rewards/lab_format_reward/mean", "lab_format_reward")
    ]
    assert panels["anchor accuracy"]["series"] == [("eval_anchor_acc", "eval_anchor_acc")]
    assert panels["anchor accuracy"]["points"] == [(2.0, 0.95)]
    assert panels["AIR term vs policy term"]["series"] == []  # an old log without the monitors: said, not drawn
    entries[0]["air_reward/format_ok"] = 0.25  # the composite reward's rate wins over the mean reward
    panels = {p["title"]: p for p in run_curve_panels(entries)}
    assert panels["format rate"]["series"] == [("air_reward/format_ok", "share well-formed")]
    assert plot_run_curves(entries, tmp_path / "old.png").read_bytes()[:8] == PNG
