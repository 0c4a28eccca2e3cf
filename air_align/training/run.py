"""``air-align train``: build an ``AIRConfig`` from YAML + ``key=value`` overrides, load model, data, rewards, train.

A config file is one flat YAML mapping. Keys of ``RunConfig`` (``air_align.training.recipe``: model, data,
rewards, LoRA, method) are read here; every other key is an ``AIRConfig`` field (so any ``GRPOConfig`` /
``TrainingArguments`` option works). Values are typed by the field they set, from YAML or the command line alike
(``learning_rate=5e-7`` is a float). YAML is read with YAML 1.2 booleans: only ``true`` / ``false`` are booleans, so
``save_strategy: no`` is the string ``"no"``; a boolean field takes ``true`` / ``false`` (or ``yes`` / ``no``,
``on`` / ``off``) and nothing else. ``method=grpo+air`` (the methods of ``air_align.training.methods``) sets
``invariance``, ``importance_sampling_level`` and ``aux_baseline`` at once.

Before anything loads, :func:`train` locks and checks the output folder (``run_folder.py``: a used one needs
``--resume`` or ``--overwrite``, a non-empty one without a run ``--into-existing``; ``--resume`` skips an incomplete
checkpoint, is a no-op on a finished run, and refuses changed training settings without ``--allow-config-change``)
and the recipe checks the data and the batch geometry. The console shows one progress bar; each step's metrics go
to ``output_dir/log.jsonl``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

from accelerate import PartialState
from transformers import TrainerCallback

from air_align import safe_yaml
from air_align.configs import Problems, check_fields, hints
from air_align.evaluation.plots import plot_run_curves
from air_align.files import refuse_overwriting_inputs, write_json
from air_align.models import unsafe_pickle_error
from air_align.safe_yaml import BoundedLoader, brief
from air_align.training.checkpoints import disk_full, free_bytes, resolve_checkpoint
from air_align.training.config import AIRConfig
from air_align.training.console import LOG_NAME, log_to_file
from air_align.training.methods import METHODS, method_name
from air_align.training.recipe import RunConfig, build_trainer
from air_align.training.run_folder import (
    MARKER,
    MODEL_CARD,
    RUN_FILES,
    Folder,
    check_output_dir,
    delete_previous_run,
    finished_step,
    locked,
    print_err,
    record_written,
    start_marker,
)
from air_align.training.run_record import RECORD, resolved_settings, resumed_record, write_record

RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
AIR_FIELDS = {f.name: f for f in dataclasses.fields(AIRConfig) if f.init}
COMMAND_LINE = "the command line"
KEYS = (
    "keys are RunConfig fields (model, dataset, reward, lora_*, method; air_align/training/recipe.py) or AIRConfig "
    "fields (TRL's GRPOConfig and AIR's own)"
)


class ConfigLoader(BoundedLoader):
    """The project's YAML loader (no aliases, bounded depth and size) with YAML 1.2 booleans: only true / false
    (any case). YAML 1.1 also reads yes / no / on / off as booleans, which turned ``save_strategy: no`` into
    ``False``; a boolean field still takes those words (``air_align.configs.BOOL_WORDS``)."""


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in BoundedLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


CONFIG_HINT = "a config is one flat mapping of key: value"


def load_yaml(text: str, source: str) -> Any:
    """``text`` parsed with :class:`ConfigLoader`; a syntax error, an alias or deep nesting is a ValueError naming
    ``source`` and the line (``air_align.safe_yaml.load_yaml``).

    >>> load_yaml("save_strategy: no\\nbf16: false", "x.yaml")
    {'save_strategy': 'no', 'bf16': False}
    """
    return safe_yaml.load_yaml(text, source, ConfigLoader, CONFIG_HINT)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``, each value parsed as YAML (lists, true/false, null).

    >>> parse_overrides(["max_steps=2", "invariance=vrex", "bf16=false", "save_strategy=no"])
    {'max_steps': 2, 'invariance': 'vrex', 'bf16': False, 'save_strategy': 'no'}
    """
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. max_steps=10)")
        key, raw = item.split("=", 1)
        out[key.strip()] = load_yaml(raw, f"{COMMAND_LINE} ({item})") if raw else ""
    return out


def build_configs(path: str | os.PathLike | None, overrides: list[str] = ()) -> tuple[RunConfig, AIRConfig]:
    """``(RunConfig, AIRConfig)`` from a YAML file (optional) and ``key=value`` overrides (they win).

    Every key is checked by the package's config validator (``air_align.configs``) against the field it sets:
    ``learning_rate=5e-7`` is a float, ``use_lora=yes`` a boolean, a ``reward_config`` mapping is checked against
    ``RewardConfig``; every problem is reported at once, each naming the key and where it came from.

    Raises:
        ConfigError: unknown keys (with the closest known names), values of the wrong type, not finite or out of
            range, each naming where it came from (the file or the command line).
        ValueError: an invalid YAML file; an invalid AIRConfig (e.g. λ < 0).
        FileNotFoundError: no such config file.
    """
    loaded: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--config {path}: no such file; the shipped configs are in configs/")
        loaded = safe_yaml.read_yaml(path, ConfigLoader, CONFIG_HINT) or {}
        if not isinstance(loaded, dict):
            got = type(loaded).__name__
            raise ValueError(f"{path}: a training config must be a YAML mapping of key: value, got {got}")
    cli = parse_overrides(list(overrides))
    values = {**loaded, **cli}
    source = {key: COMMAND_LINE if key in cli else str(path) for key in values}
    if values.get("method") is not None:
        apply_method(values, from_cli="method" in cli, yaml_keys=set(loaded) - set(cli))
    types = {**hints(RunConfig), **{name: hints(AIRConfig)[name] for name in AIR_FIELDS}}
    problems = Problems()
    kwargs = check_fields(
        {**RUN_FIELDS, **AIR_FIELDS},
        types,
        values,
        "",
        problems,
        origin=lambda key: source.get(key, f"method={values.get('method')}"),
        known_keys=KEYS,
    )
    problems.raise_if_any("invalid train config")
    run_kwargs = {k: v for k, v in kwargs.items() if k in RUN_FIELDS}
    air_kwargs = {k: v for k, v in kwargs.items() if k in AIR_FIELDS}
    air_kwargs.setdefault("output_dir", "runs/air")
    if not str(air_kwargs["output_dir"] or "").strip():
        raise ValueError(
            f"output_dir is empty (from {source.get('output_dir')}); name the run's folder, e.g. output_dir=runs/air"
        )
    return RunConfig(**run_kwargs), AIRConfig(**air_kwargs)


def apply_method(values: dict, from_cli: bool, yaml_keys: set[str]) -> None:
    """Set the fields of ``values["method"]`` (``air_align.training.methods``) in ``values``, in place.

    A method on the command line wins over the YAML file's ``invariance`` & co. (overrides win); the same field set
    otherwise, at the same level or above, to another value is an error.

    >>> v = {"method": "gspo+air", "invariance": "none"}
    >>> apply_method(v, from_cli=True, yaml_keys={"invariance"}); v["invariance"], v["importance_sampling_level"]
    ('air', 'sequence')
    """
    values["method"] = method_name(str(values["method"]))
    for key, value in METHODS[values["method"]].settings().items():
        overridden = from_cli and key in yaml_keys
        if key in values and values[key] != value and not overridden:
            raise ValueError(
                f"method={values['method']} sets {key}={value!r} but the config also sets {key}={brief(values[key])}; "
                "drop one of them"
            )
        values[key] = value


def train(
    run: RunConfig,
    args: AIRConfig,
    resume: str | None = None,
    overwrite: bool = False,
    into_existing: bool = False,
    allow_config_change: bool = False,
):
    """Check the output folder, build the trainer (``recipe.build_trainer``: data and batch geometry checked before
    the model loads) and train; returns the ``AIRTrainer`` (its ``state.log_history`` holds the metrics), or None
    when ``resume`` finds the run already finished (nothing is trained or written).

    ``resume``: None (a fresh run; a folder that holds a previous run is an error unless ``overwrite``), ``"auto"``
    (the last complete checkpoint of ``output_dir``) or a checkpoint path. The folder's rules (``run_folder.py``): a
    run marker lists what the run writes, ``overwrite`` deletes only that, a non-empty folder that holds no run
    needs ``into_existing``, and a lock keeps a second run out while this one trains. A resume that changes a
    setting which alters training needs ``allow_config_change`` (``run_record.py``). Writes the resolved settings
    to ``output_dir/air_align_run.yaml``, each logged step to ``output_dir/log.jsonl`` (the console shows a progress
    bar), the model to ``final/`` and the run's training curves to ``training_curves.png`` (anchors vs open reward,
    Δ per label, format rate, … one PNG readable at a glance).
    """
    state = PartialState()  # the processes of an `accelerate launch`: all check, the main one writes, all wait
    output_dir = Path(args.output_dir)
    say = print_err if state.is_main_process else (lambda message: None)
    with locked(output_dir) if state.is_main_process else contextlib.nullcontext():
        folder = Folder(output_dir)
        check_output_dir(folder, resume, overwrite, into_existing)
        checkpoint = resolve_checkpoint(resume, output_dir, say=say)
        settings = resolved_settings(run, args)
        after = checkpoint_step(checkpoint)
        original, changes = (
            resumed_record(output_dir / RECORD, settings, after, allow_config_change)
            if resume is not None
            else (settings, [])
        )
        done = finished_step(output_dir) if resume is not None else None
        if done is not None and done >= args.max_steps:
            say(
                f"--resume: the run in {output_dir} finished at step {done} (max_steps={args.max_steps}); its model "
                f"is {output_dir / 'final'}. Nothing to do: to train further, raise max_steps=... and add "
                "--allow-config-change"
            )
            return None
        refuse_overwriting_inputs(train_inputs(run, args), train_outputs(output_dir, folder))
        trainer = build_trainer(run, args)
        if state.is_main_process:
            if overwrite:
                delete_previous_run(folder, say)
            marker = start_marker(output_dir, fresh=resume is None)
            write_record(output_dir / RECORD, original, changes, set(RUN_FIELDS))
            if MODEL_CARD not in marker["written"]:  # the user's README.md: TRL's model card must not replace it
                trainer.create_model_card = lambda *a, **k: None
            trainer.add_callback(RecordCheckpoints(output_dir, marker))
        state.wait_for_everyone()
        log_to_file(trainer, output_dir / LOG_NAME)
        try:
            trainer.train(resume_from_checkpoint=checkpoint)
            trainer.save_model(str(output_dir / "final"))
        except pickle.UnpicklingError as err:  # a checkpoint's pytorch_model.bin that holds more than weights
            raise unsafe_pickle_error(checkpoint or output_dir, err) from None
        except (OSError, RuntimeError) as err:
            if disk_full(err, output_dir):
                raise OSError(
                    f"no space left on {output_dir} ({free_bytes(output_dir) / 2**20:.1f} MiB free) while saving "
                    f"step {trainer.state.global_step}: free some space, or set output_dir=... to another disk; "
                    "then rerun with --resume, which skips the checkpoint cut short"
                ) from err
            raise
        if trainer.accelerator.is_main_process:
            trainer.processing_class.save_pretrained(str(output_dir / "final"))
            plot_run_curves(trainer.state.log_history, output_dir / "training_curves.png", title=str(output_dir))
            marker["finished"] = {"step": trainer.state.global_step, "max_steps": args.max_steps}
            write_json(output_dir / MARKER, marker)
    return trainer


class RecordCheckpoints(TrainerCallback):
    """Records each checkpoint in the run marker before the trainer writes it (``run_folder.py``): a run killed
    while saving still lists the checkpoint it cut short, so ``--overwrite`` deletes it too."""

    def __init__(self, output_dir: Path, marker: dict):
        self.output_dir, self.marker = output_dir, marker

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:  # set by transformers' DefaultFlowCallback, which runs before this one
            record_written(self.output_dir, self.marker, f"checkpoint-{state.global_step}")


def checkpoint_step(checkpoint: str | None) -> int:
    """The step a checkpoint was saved at (0 for None: a run from step 0)."""
    if checkpoint is None:
        return 0
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])


def train_inputs(run: RunConfig, args: AIRConfig) -> dict[str, str]:
    """The files a run reads that could sit in its output folder: a local model, the data file, the offsets file."""
    inputs = {"model=": run.model, "dataset=": run.dataset}
    if isinstance(args.invariance_offsets, str):
        inputs["invariance_offsets="] = args.invariance_offsets
    return inputs


def train_outputs(output_dir: Path, folder: Folder) -> list[Path]:
    """What a run writes, or may delete, in ``output_dir``."""
    names = {*RUN_FILES, MODEL_CARD, MARKER, *folder.ours, *folder.unmarked_run}
    return [output_dir / name for name in sorted(names)] + [output_dir / "checkpoint-*"]
