"""What ``air-align train`` shows: one progress bar (steps, with the reward and the invariance gap beside it), and
every logged step as a JSON line in ``output_dir/log.jsonl`` instead of transformers' printed dict per step.

``air_align.evaluation.plots.read_training_log`` reads ``log.jsonl`` (training curves in ``air-align eval``). On a
resume the log keeps the steps up to the checkpoint and drops those the interrupted run logged after it, so that
each step appears once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers.trainer_callback import PrinterCallback, ProgressCallback

from air_align.files import write_jsonl

LOG_NAME = "log.jsonl"
BAR_KEYS = {"reward": "reward", "invariance/gap": "gap", "loss": "loss"}
"""Logged values shown beside the progress bar (log key → short name)."""


def read_log(path: Path) -> list[dict]:
    """The entries of a ``log.jsonl`` (a line cut short by a kill is skipped)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


class LogToFile(ProgressCallback):
    """transformers' step progress bar (none with ``disable_tqdm``) whose ``on_log`` appends to ``path`` instead of
    printing the dict."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.current_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:  # a resumed run keeps the log up to its checkpoint
            kept = [e for e in read_log(self.path) if e.get("step", 0) <= state.global_step]
            write_jsonl(self.path, kept)
        if not args.disable_tqdm:
            super().on_train_begin(args, state, control, **kwargs)
            if self.training_bar is not None and state.global_step:
                self.training_bar.update(state.global_step)
        self.current_step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if not args.disable_tqdm:
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}, default=str) + "\n")
        shown = {short: f"{logs[key]:.3g}" for key, short in BAR_KEYS.items() if isinstance(logs.get(key), float)}
        if self.training_bar is not None and shown:
            self.training_bar.set_postfix(shown, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


class FirstOnly(logging.Filter):
    """Let through the first record whose message contains ``text``; drop the repeats (counted in ``dropped``)."""

    def __init__(self, text: str, note: str):
        super().__init__()
        self.text, self.note, self.dropped = text, note, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.text not in str(record.msg):
            return True
        if self.dropped == 0:
            record.msg = f"{record.msg}\n({self.note})"
        self.dropped += 1
        return self.dropped == 1


UNSCORED_TEXT = "All reward functions returned None"
"""TRL warns with the whole row for every completion no reward function scored (a toy reward does so by design, a
judge with ``model: none`` for every open variant): :func:`log_to_file` shows it once a run, not once a completion."""


def log_to_file(trainer, path: str | Path) -> LogToFile:
    """Give ``trainer`` a :class:`LogToFile` in place of its printing callbacks (``ProgressCallback``, which prints
    each step's dict under the bar, and ``PrinterCallback``, which prints it when the bar is off), and show TRL's
    unscored-completion warning once (:data:`UNSCORED_TEXT`; the filter is ``callback.unscored``)."""
    for callback in list(trainer.callback_handler.callbacks):
        if type(callback) in (ProgressCallback, PrinterCallback):
            trainer.callback_handler.remove_callback(callback)
    callback = LogToFile(path)
    trainer.add_callback(callback)
    trl_logger = logging.getLogger("trl.trainer.grpo_trainer")
    for old in [f for f in trl_logger.filters if isinstance(f, FirstOnly)]:  # one run at a time: its own count
        trl_logger.removeFilter(old)
    callback.unscored = FirstOnly(
        UNSCORED_TEXT, "shown once: later completions that no reward function scored are not shown"
    )
    trl_logger.addFilter(callback.unscored)
    return callback


def end_line(trainer, output_dir: str | Path) -> str:
    """The line ``air-align train`` prints when it is done: steps, time, the last reward and gap, where things are."""
    history = trainer.state.log_history
    runtime = next((e["train_runtime"] for e in reversed(history) if "train_runtime" in e), None)
    last = next((e for e in reversed(history) if "reward" in e), {})
    values = "".join(f", {key} {last[key]:.3g}" for key in ("reward", "invariance/gap") if key in last)
    took = f" in {runtime:.1f} s" if runtime is not None else ""
    out = Path(output_dir)
    return (
        f"trained {trainer.state.global_step} steps{took}{values} → {out / 'final'} (per-step log: {out / LOG_NAME})"
    )
