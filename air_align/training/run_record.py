"""``OUTPUT_DIR/air_align_run.yaml``: the settings a run was trained with, and every change a resume made to them.

The file holds the resolved settings of the run's first start (``RunConfig`` fields at the top, the ``AIRConfig`` ones
under ``air``) and, under ``changes``, one entry per resume that changed a setting: the step after which the new
values took effect and each setting's old and new value. So the record still describes the earlier steps.

A resume that changes a setting which alters training (the regulariser, λ, ``max_steps``, the data, the model, …) is
refused unless asked for explicitly (``--allow-config-change``); the settings of :data:`BOOKKEEPING` (where and how
often the run logs and saves) may change freely, and those of :data:`OPTIMIZER_STATE` (the learning rate and its
schedule) not at all, since the checkpoint's optimizer state would override them (tests/test_train_folder.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import yaml

from air_align.files import write_text
from air_align.safe_yaml import brief, read_yaml

RECORD = "air_align_run.yaml"
BOOKKEEPING = frozenset(
    {
        "output_dir",
        "logging_dir",
        "logging_steps",
        "logging_strategy",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "log_completions",
        "log_completions_hub_repo",
        "log_unique_prompts",
        "log_multimodal",
        "num_completions_to_print",
        "report_to",
        "run_name",
        "project",
        "trackio_bucket_id",
        "trackio_space_id",
        "trackio_static_space_id",
        "disable_tqdm",
        "save_steps",
        "save_strategy",
        "save_total_limit",
        "save_on_each_node",
        "save_only_model",
        "push_to_hub",
        "hub_always_push",
        "hub_model_id",
        "hub_private_repo",
        "hub_revision",
        "hub_strategy",
        "hub_token",
        "resume_from_checkpoint",
        "local_rank",
        "skip_memory_metrics",
        "ddp_timeout",
        "dataloader_num_workers",
        "dataloader_persistent_workers",
        "dataloader_pin_memory",
        "dataloader_prefetch_factor",
    }
)
"""Settings that change where and how often a run logs and saves, not what it trains: a resume may change them."""
OPTIMIZER_STATE = frozenset(
    {
        "learning_rate",
        "lr_scheduler_type",
        "lr_scheduler_kwargs",
        "warmup_steps",
        "warmup_ratio",
        "weight_decay",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "optim",
        "optim_args",
    }
)
"""Settings a resume cannot change at all: transformers restores the optimizer and its learning-rate scheduler from
the checkpoint (``optimizer.pt``, ``scheduler.pt``: the base learning rate, the step size in force), so a new value
would be recorded but not used (measured: ``learning_rate=0.01`` on resume trained on at the checkpoint's rate)."""


def resolved_settings(run, args) -> dict[str, Any]:
    """The run's settings as one flat mapping (``RunConfig`` and ``AIRConfig`` fields share no name)."""
    return {**dataclasses.asdict(run), **json.loads(args.to_json_string())}


def record_text(settings: dict[str, Any], run_fields: set[str], changes: list[dict]) -> str:
    """The YAML of the record: ``RunConfig`` fields at the top, the rest under ``air``, then ``changes``."""
    nested = {k: v for k, v in settings.items() if k in run_fields}
    nested["air"] = {k: v for k, v in settings.items() if k not in run_fields}
    if changes:
        nested["changes"] = changes
    return yaml.safe_dump(nested, sort_keys=True)


def read_record(path: str | Path) -> tuple[dict[str, Any], list[dict]] | None:
    """``(the settings of the run's first start, the changes since)`` from a record, None when there is none.

    Raises:
        ValueError: a record that is not the YAML air-align writes.
    """
    path = Path(path)
    if not path.is_file():
        return None
    loaded = read_yaml(path, hint="it is the run record air-align writes: restore it")
    if not isinstance(loaded, dict) or not isinstance(loaded.get("air"), dict):
        raise ValueError(f"{path}: not the run record air-align writes (no 'air' mapping); restore it")
    changes = loaded.pop("changes", None) or []
    air = loaded.pop("air")
    return {**loaded, **air}, changes


def current(original: dict[str, Any], changes: list[dict]) -> dict[str, Any]:
    """The settings in force after every recorded change.

    >>> current({"learning_rate": 1e-4, "max_steps": 2}, [{"after_step": 2, "settings": {"max_steps": {"from": 2,
    ...     "to": 4}}}])
    {'learning_rate': 0.0001, 'max_steps': 4}
    """
    settings = dict(original)
    for change in changes:
        settings.update({key: value["to"] for key, value in change["settings"].items()})
    return settings


def same(a: Any, b: Any) -> bool:
    """Equal values, NaN equal to NaN (a NaN setting is refused elsewhere, but the record must not see a change)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict]:
    """``{key: {"from": old, "to": new}}`` for every setting whose value differs (a key missing on one side is None).

    >>> differences({"learning_rate": 1e-4, "seed": 0}, {"learning_rate": 0.01, "seed": 0})
    {'learning_rate': {'from': 0.0001, 'to': 0.01}}
    """
    keys = sorted(set(before) | set(after))
    return {k: {"from": before.get(k), "to": after.get(k)} for k in keys if not same(before.get(k), after.get(k))}


def resumed_record(
    path: str | Path, settings: dict[str, Any], after_step: int, allow_change: bool
) -> tuple[dict[str, Any], list[dict]]:
    """``(original settings, changes)`` to write for a run resumed after ``after_step`` with ``settings``.

    Raises:
        ValueError: a setting that alters training changed and ``allow_change`` is false (the message lists them).
    """
    record = read_record(path)
    if record is None:  # a run from before the record existed: this start is its first record
        return settings, []
    original, changes = record
    changed = differences(current(original, changes), settings)
    frozen = {k: v for k, v in changed.items() if k in OPTIMIZER_STATE}
    if frozen:
        listed = ", ".join(f"{k}={brief(v['from'])} → {brief(v['to'])}" for k, v in frozen.items())
        raise ValueError(
            f"--resume: {listed} cannot change on resume: the optimizer and its learning-rate schedule are restored "
            f"from the checkpoint, so the new value would not be used. Resume with the run's value (recorded in "
            f"{path}), or start a new run in another output_dir from this one's model (model={Path(path).parent}"
            "/final)"
        )
    altering = {k: v for k, v in changed.items() if k not in BOOKKEEPING}
    if altering and not allow_change:
        listed = ", ".join(f"{k}={brief(v['from'])} → {brief(v['to'])}" for k, v in altering.items())
        raise ValueError(
            f"--resume: this run was trained with other settings than the ones given now ({listed}; recorded in "
            f"{path}); resuming with them would change how it trains from step {after_step + 1} on. Drop the "
            "changes, add --allow-config-change to continue with the new settings (the record keeps both), or start "
            "a new run in another output_dir"
        )
    if changed:
        changes = [*changes, {"after_step": after_step, "settings": changed}]
    return original, changes


def write_record(path: str | Path, original: dict[str, Any], changes: list[dict], run_fields: set[str]) -> Path:
    return write_text(path, record_text(original, run_fields, changes))
