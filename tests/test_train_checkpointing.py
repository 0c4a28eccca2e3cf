"""Gradient checkpointing is on when asked for, on every transformers the package admits.

transformers 5.0–5.19 (the versions a TRL-supported vLLM requires) have no ``activation_checkpointing`` training
argument; ``AIRConfig`` must then request checkpointing through ``gradient_checkpointing``, the name those versions
read. ``make test-vllm`` runs this file again on the vLLM environment's transformers."""

from __future__ import annotations

import warnings

import pytest
import transformers
from _toy import toy_trainer
from transformers import TrainerCallback

from air_align.training.config import trainer_reads_activation_checkpointing
from air_align.training.run import build_configs


def checkpointing_on(model) -> bool:
    """The model's own flag, under the name the installed transformers has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # `is_gradient_checkpointing` is deprecated on 5.20+
        if hasattr(model, "is_activation_checkpointing"):
            return bool(model.is_activation_checkpointing)
        return bool(model.is_gradient_checkpointing)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, True),  # TRL's default: on
        ({"activation_checkpointing": True}, True),
        ({"gradient_checkpointing": True}, True),  # the deprecated name still works
        ({"activation_checkpointing": False}, False),
        ({"gradient_checkpointing": False}, False),
    ],
)
def test_trainer_model_checkpointing_matches_request(tmp_path, fields, expected):
    trainer = toy_trainer(output_dir=str(tmp_path), **fields)
    seen = []  # the model's flag during each optimiser step (the Trainer enables checkpointing in train())
    trainer.add_callback(
        type(
            "Probe", (TrainerCallback,), {"on_step_end": lambda *a, **k: seen.append(checkpointing_on(trainer.model))}
        )()
    )
    trainer.train()
    assert seen == [expected], (transformers.__version__, fields)
    assert checkpointing_on(trainer.model) is expected
    assert trainer.args.activation_checkpointing is expected
    if not trainer_reads_activation_checkpointing():  # 5.0–5.19: the field the Trainer reads
        assert trainer.args.gradient_checkpointing is expected


@pytest.mark.parametrize(
    ("overrides", "yaml_text", "expected"),
    [
        (["activation_checkpointing=true"], "", True),
        (["gradient_checkpointing=true"], "", True),
        (["activation_checkpointing=false"], "", False),
        ([], "activation_checkpointing: true\n", True),
        ([], "gradient_checkpointing: false\n", False),
    ],
)
def test_yaml_and_command_line_requests_reach_the_config(tmp_path, overrides, yaml_text, expected):
    path = None
    if yaml_text:
        path = tmp_path / "run.yaml"
        path.write_text("use_cpu: true\n" + yaml_text)
    _, args = build_configs(path, [*overrides, "use_cpu=true", f"output_dir={tmp_path / 'out'}"])
    assert args.activation_checkpointing is expected
    if not trainer_reads_activation_checkpointing():
        assert args.gradient_checkpointing is expected
