"""The lab's fast paths give the slow paths' results (docs/performance.md, "One lab run"): ``LabTrainer`` (π_old's
log-probs from the first pass's loss forward) without activation checkpointing trains the same weights, bit for bit,
with the same logged metrics, as plain ``AIRTrainer`` with TRL's extra forward and checkpointing; the indexed
``world.intent_of`` finds what a search of the world's intents finds."""

from __future__ import annotations

import pytest
import torch

from air_align.lab import runs, world
from air_align.lab.runs import RunSpec, Training, build_run_trainer
from air_align.lab.spec import load_world
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.lab.trainer import LabTrainer
from air_align.models import tiny_causal_lm
from air_align.training.recipe import air_config
from air_align.training.trainer import AIRTrainer

TIMING = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def _lab_trainer(tmp_path, method: str, training: Training):
    """The lab's trainer of ``method`` (λ = 0.5, seed 0) on the safety world's train rows, from an untrained tiny
    model."""
    tokenizer = build_lab_tokenizer("safety")
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=2, max_positions=128, seed=0)
    rows = world.build_rows("safety", seed=0, splits=("train",))
    run = RunSpec(world="safety", method=method, lam=0.5, seed=0, warm_start="unused", training=training)
    return build_run_trainer(run, model, tokenizer, rows, tmp_path)


def _train(tmp_path, method: str, steps: int = 4):
    """A 4-step lab run (num_iterations 2: two generation batches, each trained on-policy then off-policy) from an
    untrained tiny model: ``(parameters, logged rows, forwards without gradient, trainer)``."""
    training = Training(
        max_steps=steps, groups_per_step=1, max_completion_length=8, padding_chunks=0, shared_prompts=False
    )
    trainer = _lab_trainer(tmp_path, method, training)
    no_grad_forwards = []
    forward = trainer._get_per_token_logps_and_entropies

    def counted(*args, **kwargs):
        result = forward(*args, **kwargs)
        if not result[0].requires_grad:
            no_grad_forwards.append(result[0].shape)
        return result

    trainer._get_per_token_logps_and_entropies = counted
    torch.set_num_threads(1)
    trainer.train()
    logged = [{k: v for k, v in row.items() if k not in TIMING} for row in trainer.state.log_history]
    params = [p.detach().clone() for p in trainer.model.parameters()]
    return params, logged, len(no_grad_forwards), trainer


@pytest.mark.parametrize("method", ["grpo", "grpo+air", "gspo+air"])
def test_the_fast_path_trains_the_same_weights_as_trl_s_own(tmp_path, monkeypatch, method):
    fast, fast_log, fast_forwards, trainer = _train(tmp_path / "fast", method)
    assert isinstance(trainer, LabTrainer) and not trainer.model.is_gradient_checkpointing
    with monkeypatch.context() as patch:  # the slow path: TRL's extra forward, gradient checkpointing on
        patch.setattr(runs, "LabTrainer", AIRTrainer)
        patch.setattr(runs, "air_config", lambda *a, **k: air_config(*a, **{**k, "activation_checkpointing": True}))
        slow, slow_log, slow_forwards, reference = _train(tmp_path / "slow", method)
    assert type(reference) is AIRTrainer and reference.model.is_gradient_checkpointing
    assert (fast_forwards, slow_forwards) == (0, 2)  # TRL's no-grad forward ran once per generation batch
    assert all(torch.equal(a, b) for a, b in zip(fast, slow, strict=True))
    assert fast_log == slow_log  # losses, rewards, ratios π_θ/π_old, clip fractions: the same numbers
    if method != "grpo":  # the second pass of each batch was off-policy: its ratios moved away from 1
        ratios = [row["invariance/aux_is_ratio/max"] for row in fast_log if "invariance/aux_is_ratio/max" in row]
        assert len(ratios) == 4 and max(ratios) > 1.0


def test_the_fast_path_is_plain_air_trainer_where_the_first_pass_is_not_the_sampler(tmp_path):
    trainer = _lab_trainer(tmp_path, "grpo+air", Training(max_steps=1, groups_per_step=1, num_iterations=1))
    assert not trainer.first_pass_is_sampling_policy()  # one pass per batch: TRL needs no π_old at all
    trainer.num_iterations = 2
    assert trainer.first_pass_is_sampling_policy()
    trainer.args.steps_per_generation = 2 * trainer.args.gradient_accumulation_steps  # later micro-batches lag
    assert not trainer.first_pass_is_sampling_policy()


@pytest.mark.parametrize("name", ["safety", "morality", "math"])
def test_the_intent_index_finds_what_a_search_finds(name):
    spec = load_world(name)
    rows = world.build_rows(spec, seed=0)
    for row in rows:
        key = row["meta"]["intent_key"]
        assert world.intent_of(spec, row) == next(it for it in world.intents(spec) if it.key == key)
    again = load_world(name)  # another spec object of the same world: its own index, the same answers
    assert world.intent_of(again, rows[-1]) == world.intent_of(spec, rows[-1])
    assert world.intent_of(name, rows[0]) == world.intent_of(spec, rows[0])
    with pytest.raises(ValueError, match="meta.intent_key 'no-such-intent' names no intent"):
        world.intent_of(spec, {"id": "x", "meta": {"intent_key": "no-such-intent"}})


def test_the_lab_loader_skips_a_device_move_that_would_move_nothing(tmp_path):
    from accelerate.utils import send_to_device

    trainer = _lab_trainer(tmp_path, "grpo+air", Training())
    loader = trainer.get_train_dataloader()
    assert loader.device is None
    batch = next(iter(loader))
    assert len(batch) == trainer.args.per_device_train_batch_size and set(batch[0]) >= {"prompt", "id"}
    leaves = [value for row in batch for value in row.values()]
    assert not any(isinstance(v, torch.Tensor) for v in leaves)  # strings and numbers: nothing to move
    assert send_to_device(batch, trainer.accelerator.device) == batch
