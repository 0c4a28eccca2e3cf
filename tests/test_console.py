"""What a run shows: one progress bar, no per-step dict and no deprecation warning on the
console, each step in ``output_dir/log.jsonl``, a short end line."""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import trl.models.utils

ROOT = Path(__file__).resolve().parents[1]


def test_train_console_is_one_bar_and_an_end_line(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "air_align.cli", "train", "--config", str(ROOT / "configs/tiny-cpu.yaml")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [*cmd, f"output_dir={out}", "max_steps=2", "--threads", "1"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr[-3000:]
    console = run.stdout + run.stderr
    assert "{'loss'" not in console and "'train_runtime'" not in console  # the per-step dicts went to the log
    assert "Warning" not in console, console  # FutureWarnings of gradient_checkpointing among them
    assert "Writing model shards" not in console  # transformers' inner bars at each save
    assert run.stderr.count("2/2 [") >= 1 and "reward=" in run.stderr  # the step bar, with the reward beside it
    assert re.fullmatch(
        rf"trained 2 steps in [0-9.]+ s, reward [-0-9.e]+, invariance/gap [-0-9.e]+ → {out / 'final'} "
        rf"\(per-step log: {out / 'log.jsonl'}\)\n",
        run.stdout,
    ), run.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 2]  # two steps, then the end-of-training summary
    assert {"loss", "reward", "invariance/gap"} <= set(log[0]) and "train_runtime" in log[-1]


def test_trl_still_calls_the_deprecated_checkpointing_names():
    # recipe.hide_trl_deprecation_warnings hides the warnings of these TRL calls by message; when TRL stops making
    # them, this fails: delete that function then.
    source = inspect.getsource(trl.models.utils)
    assert "unwrapped_model.is_gradient_checkpointing" in source
    assert "gradient_checkpointing_disable()" in source and "gradient_checkpointing_enable(" in source


def test_trl_unscored_warning_is_shown_once_a_run(tmp_path, caplog):
    # toy_reward returns None for a completion that starts with a digit: TRL warns with the whole row each time
    from air_align.cli import main

    args = ["train", "--config", str(ROOT / "configs/tiny-cpu.yaml"), f"output_dir={tmp_path}", "max_steps=4"]
    with caplog.at_level("WARNING", logger="trl.trainer.grpo_trainer"):
        assert main([*args, "disable_tqdm=true"]) == 0
    shown = [r for r in caplog.records if "All reward functions returned None" in r.getMessage()]
    assert len(shown) == 1 and shown[0].getMessage().endswith(
        "(shown once: later completions that no reward function scored are not shown)"
    )
    filters = logging.getLogger("trl.trainer.grpo_trainer").filters
    assert len(filters) == 1 and filters[0].dropped > 1  # repeats happened and were held back
