"""``air-align train``: build an ``AIRConfig`` from YAML + ``key=value`` overrides, load model, data, rewards, train.

A config file is one flat YAML mapping. Keys of ``RunConfig`` (``air_align.training.recipe``: model, data,
rewards, LoRA, method) are read here; every other key is an ``AIRConfig`` field (so any ``GRPOConfig`` /
``TrainingArguments`` option works). Values are typed by the field they set, from YAML or the command line alike
(``learning_rate=5e-7`` is a float). ``method=grpo+air`` (the methods of ``air_align.training.methods``) sets
``invariance``, ``importance_sampling_level`` and ``aux_baseline`` at once.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from pathlib import Path
from typing import Any

import yaml
from transformers.trainer_utils import get_last_checkpoint

from air_align.files import write_text
from air_align.training.config import AIRConfig
from air_align.training.methods import METHODS, method_name
from air_align.training.recipe import RunConfig, build_trainer

RUN_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
AIR_FIELDS = {f.name: f for f in dataclasses.fields(AIRConfig) if f.init}


def _coerce(name: str, value: Any, type_hint: Any) -> Any:
    """Type a YAML / command-line value by its dataclass field's annotation (a string under PEP 563)."""
    hint = str(type_hint)
    if isinstance(value, bool):
        return value
    if "float" in hint and isinstance(value, int | str):
        try:
            return float(value)
        except ValueError:
            if "str" not in hint:
                raise ValueError(f"{name}={value!r}: expected a number ({hint})") from None
    if "int" in hint and isinstance(value, str) and "str" not in hint:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name}={value!r}: expected an integer ({hint})") from None
    if hint.startswith("str") and isinstance(value, int | float):
        return str(value)
    return value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a=1", "b=x"]`` → ``{"a": 1, "b": "x"}``, each value parsed as YAML (lists, bools, null).

    >>> parse_overrides(["max_steps=2", "invariance=vrex", "bf16=false"])
    {'max_steps': 2, 'invariance': 'vrex', 'bf16': False}
    """
    out = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. max_steps=10)")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw) if raw else ""
    return out


def build_configs(path: str | os.PathLike | None, overrides: list[str] = ()) -> tuple[RunConfig, AIRConfig]:
    """``(RunConfig, AIRConfig)`` from a YAML file (optional) and ``key=value`` overrides (they win).

    Raises:
        ValueError: an unknown key (with the closest known names), a value of the wrong type.
    """
    loaded: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping of key: value, got {type(loaded)}")
    cli = parse_overrides(list(overrides))
    values = {**loaded, **cli}
    if values.get("method") is not None:
        apply_method(values, from_cli="method" in cli, yaml_keys=set(loaded) - set(cli))
    run_kwargs, air_kwargs = {}, {}
    for key, value in values.items():
        if key in RUN_FIELDS:
            run_kwargs[key] = _coerce(key, value, RUN_FIELDS[key].type)
        elif key in AIR_FIELDS:
            air_kwargs[key] = _coerce(key, value, AIR_FIELDS[key].type)
        else:
            close = difflib.get_close_matches(key, [*RUN_FIELDS, *AIR_FIELDS], n=3)
            raise ValueError(
                f"unknown config key {key!r} (from {path or 'the command line'}); did you mean {close}? Keys are "
                "RunConfig fields (model, dataset, reward, lora_*, method) or AIRConfig/GRPOConfig fields"
            )
    air_kwargs.setdefault("output_dir", "runs/air")
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
                f"method={values['method']} sets {key}={value!r} but the config also sets {key}={values[key]!r}; "
                "drop one of them"
            )
        values[key] = value


def resolve_checkpoint(resume: str | None, output_dir: str) -> str | None:
    """``None`` (fresh run), ``"auto"`` (last ``checkpoint-*`` in ``output_dir``, or fresh if none) or a path."""
    if resume is None:
        return None
    if resume == "auto":
        return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if not os.path.isdir(resume):
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint directory")
    return resume


def train(run: RunConfig, args: AIRConfig, resume: str | None = None):
    """Build the trainer (``recipe.build_trainer``) and train; returns the ``AIRTrainer`` (its ``state.log_history``
    holds the metrics). Writes the resolved config to ``output_dir/air_align_run.yaml`` and the model to ``final/``."""
    trainer = build_trainer(run, args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if trainer.accelerator.is_main_process:
        resolved = {**dataclasses.asdict(run), "air": json.loads(args.to_json_string())}
        write_text(output_dir / "air_align_run.yaml", yaml.safe_dump(resolved, sort_keys=True))
    trainer.train(resume_from_checkpoint=resolve_checkpoint(resume, args.output_dir))
    trainer.save_model(str(output_dir / "final"))
    if trainer.accelerator.is_main_process:
        trainer.processing_class.save_pretrained(str(output_dir / "final"))
    return trainer
