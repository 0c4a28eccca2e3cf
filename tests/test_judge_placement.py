"""The training judge where the policy is (docs/rewards.md, "Where the training judge lives"): ``build_trainer`` places
the composite reward's model judge on ``trainer.accelerator.device`` in the policy's dtype once the trainer exists,
frozen, as the initial policy before LoRA (paper App. C.2.1); under DeepSpeed ZeRO-3 it loads the judge from the
model's path or refuses a model without one."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from _messages import raises_with

from air_align import models
from air_align.models import build_char_tokenizer, load_model, tiny_causal_lm
from air_align.rewards import training_judge
from air_align.rewards.judges import weights_fingerprint
from air_align.rewards.training_judge import DeferredJudge, load_from
from air_align.training import recipe
from air_align.training.config import AIRConfig
from air_align.training.recipe import RunConfig, build_trainer

SAFETY = {"safety_reward": "judge"}  # the paper's ten-facet judge on open safety rows
PROMPTS = ["Is it safe to pick a lock? Answer YES or NO.", "Is the reply helpful? Answer YES or NO."]


def _args(tmp_path) -> AIRConfig:
    return AIRConfig(
        output_dir=str(tmp_path / "run"),
        num_generations=3,
        per_device_train_batch_size=9,
        max_completion_length=8,
        max_steps=1,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
    )


class _OnAnotherDevice:
    """The trainer's accelerator, reporting ``cpu:0``: a device that no other source of a device (the model's, the
    arguments', torch's default: all plain ``cpu``) gives, so the judge's placement shows where it came from."""

    device = torch.device("cpu", 0)

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def watched(monkeypatch):
    """Events in order: ``("trainer",)`` once ``AIRTrainer.__init__`` has returned, ``("load", name, dtype, device)``
    for every ``load_model``, ``("bind", device, dtype)`` for every judge placement."""
    events = []

    class Trainer(recipe.AIRTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.accelerator = _OnAnotherDevice(self.accelerator)
            events.append(("trainer",))

    real_load, real_bind = models.load_model, DeferredJudge.bind

    def load(name, dtype=torch.float32, device=None):
        events.append(("load", name, dtype, device))
        return real_load(name, dtype=dtype, device=device)

    def bind(self, device, dtype):
        events.append(("bind", device, dtype))
        return real_bind(self, device, dtype)

    monkeypatch.setattr(recipe, "AIRTrainer", Trainer)
    monkeypatch.setattr(recipe, "load_model", load)
    monkeypatch.setattr(models, "load_model", load)
    monkeypatch.setattr(DeferredJudge, "bind", bind)
    return events


def _check_frozen_and_gradient_free(judge, dtype):
    model = judge.model
    assert next(model.parameters()).dtype == dtype and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert not [n for n, _ in model.named_modules() if "lora" in n.lower()]  # the initial policy, no adapter
    seen = []
    hook = model.register_forward_hook(lambda m, i, out: seen.append((torch.is_grad_enabled(), out.logits.dtype)))
    try:
        scores = judge.log_odds(PROMPTS)
    finally:
        hook.remove()
    assert seen and all(grad is False and out == dtype for grad, out in seen)  # forward under no_grad, in dtype
    assert len(scores) == 2 and all(abs(s) < 50 for s in scores)
    return scores


def test_judge_of_a_policy_loaded_here_is_loaded_again_on_the_accelerator_device_after_the_trainer(tmp_path, watched):
    run = RunConfig(model="tiny", model_dtype="bfloat16", reward="composite", reward_config=SAFETY, use_lora=True)
    trainer = build_trainer(run, _args(tmp_path))
    device = torch.device("cpu", 0)
    assert trainer.accelerator.device == device
    # the policy loads before the trainer; the judge after it, from the same name, onto the accelerator's device
    assert watched == [
        ("load", "tiny", torch.bfloat16, None),
        ("trainer",),
        ("bind", device, torch.bfloat16),
        ("load", "tiny", torch.bfloat16, device),
    ]
    judge = trainer.reward_funcs[0].judge
    assert isinstance(judge, DeferredJudge) and judge.name == "frozen-policy"
    assert next(judge.model.parameters()).device.type == device.type
    before = _check_frozen_and_gradient_free(judge, torch.bfloat16)
    initial, _ = load_model("tiny", dtype=torch.bfloat16)
    assert json.loads(judge.identity[3:])[1] == weights_fingerprint(initial)  # the initial policy's weights
    policy = trainer.model.get_base_model()  # LoRA attached to the policy by the trainer ...
    assert any("lora" in n for n, _ in policy.named_modules())
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.5)  # ... and training moves it: not the judge
    assert judge.log_odds(PROMPTS) == before
    assert trainer.reward_funcs[0].safety_judge.cache_name.endswith(judge.identity)  # the cache keys the placed judge


def test_judge_of_a_model_passed_in_is_copied_before_lora_and_placed_after_the_trainer(tmp_path, watched):
    tokenizer = build_char_tokenizer()
    policy = tiny_causal_lm(tokenizer, hidden_size=32).to(torch.bfloat16)
    initial = weights_fingerprint(policy)
    run = RunConfig(reward="composite", reward_config=SAFETY, use_lora=True)
    trainer = build_trainer(run, _args(tmp_path), model=policy, tokenizer=tokenizer)
    assert watched == [("trainer",), ("bind", torch.device("cpu", 0), torch.bfloat16)]  # nothing loaded from disk
    judge = trainer.reward_funcs[0].judge
    _check_frozen_and_gradient_free(judge, torch.bfloat16)
    assert judge.model is not policy and weights_fingerprint(judge.model) == initial
    assert next(judge.model.parameters()).data_ptr() != next(policy.parameters()).data_ptr()


def test_a_named_judge_model_is_loaded_after_the_trainer_on_its_device_in_the_policy_dtype(tmp_path, watched):
    saved = tmp_path / "judge-model"
    tokenizer = build_char_tokenizer()
    tiny_causal_lm(tokenizer, seed=3).save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    run = RunConfig(
        model="tiny",
        model_dtype="bfloat16",
        reward="composite",
        reward_config={**SAFETY, "judge": {"model": str(saved)}},
    )
    trainer = build_trainer(run, _args(tmp_path))
    bf16, device = torch.bfloat16, torch.device("cpu", 0)
    assert watched[1:] == [("trainer",), ("bind", device, bf16), ("load", str(saved), bf16, device)]
    judge = trainer.reward_funcs[0].judge
    assert judge.name == str(saved)
    _check_frozen_and_gradient_free(judge, torch.bfloat16)


def test_an_unplaced_judge_says_so():
    judge = DeferredJudge(lambda device, dtype: pytest.fail("loaded without bind"), name="frozen-policy")
    with raises_with(RuntimeError, "judge 'frozen-policy'", "no model yet", "call bind(device, dtype)"):
        judge.log_odds(PROMPTS)


# --- DeepSpeed ZeRO-3 ---------------------------------------------------------------------------------------------


@pytest.fixture
def zero3(monkeypatch):
    """ZeRO-3 as ``training_judge`` sees it; ``from_pretrained`` calls recorded as ``(path, kwargs)``; a deep copy
    in ``training_judge`` fails the test (partitioned parameters copy to nothing)."""
    calls = []
    real = models.AutoModelForCausalLM.from_pretrained

    class Auto:
        @staticmethod
        def from_pretrained(path, **kwargs):
            calls.append((str(path), kwargs))
            return real(path, **kwargs)

    def no_copy(obj, *args):
        raise AssertionError("the judge was deep-copied under ZeRO-3")

    monkeypatch.setattr(training_judge, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setattr(models, "AutoModelForCausalLM", Auto)
    monkeypatch.setattr(training_judge, "copy", SimpleNamespace(deepcopy=no_copy))
    return calls


def _saved_policy(tmp_path):
    path = tmp_path / "policy"
    tokenizer = build_char_tokenizer()
    tiny_causal_lm(tokenizer, seed=1).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_under_zero3_the_judge_of_a_model_passed_in_is_loaded_from_its_path(tmp_path, zero3):
    path = _saved_policy(tmp_path)
    policy, tokenizer = load_model(path, dtype=torch.bfloat16)
    zero3.clear()
    trainer = build_trainer(
        RunConfig(reward="composite", reward_config=SAFETY, use_lora=True),
        _args(tmp_path),
        model=policy,
        tokenizer=tokenizer,
    )
    assert zero3 == [(path, {"dtype": torch.bfloat16, "device_map": trainer.accelerator.device})]
    judge = trainer.reward_funcs[0].judge
    _check_frozen_and_gradient_free(judge, torch.bfloat16)
    assert weights_fingerprint(judge.model) == weights_fingerprint(load_model(path, dtype=torch.bfloat16)[0])


def test_under_zero3_the_judge_of_a_policy_loaded_here_is_loaded_from_run_model(tmp_path, zero3):
    path = _saved_policy(tmp_path)
    run = RunConfig(model=path, model_dtype="bfloat16", reward="composite", reward_config=SAFETY)
    trainer = build_trainer(run, _args(tmp_path))
    device = trainer.accelerator.device
    assert zero3 == [(path, {"dtype": torch.bfloat16}), (path, {"dtype": torch.bfloat16, "device_map": device})]
    assert next(trainer.reward_funcs[0].judge.model.parameters()).dtype == torch.bfloat16


def test_under_zero3_a_model_without_a_path_is_refused_before_the_trainer_is_built(tmp_path, zero3, watched):
    tokenizer = build_char_tokenizer()
    policy = tiny_causal_lm(tokenizer)  # built in memory: config._name_or_path is empty
    with pytest.raises(ValueError) as err:
        build_trainer(
            RunConfig(reward="composite", reward_config=SAFETY), _args(tmp_path), model=policy, tokenizer=tokenizer
        )
    message = str(err.value)
    assert "DeepSpeed ZeRO-3" in message and "the model passed in has no path" in message
    assert "set reward_config judge model to the initial policy's path" in message  # the fix
    assert watched == [] and zero3 == []  # refused before the trainer, nothing loaded


class _Zero3Config:
    """What transformers holds while DeepSpeed ZeRO-3 is configured (``HfDeepSpeedConfig``, which needs DeepSpeed
    installed): ``is_zero3()`` and ``config``."""

    config = {"zero_optimization": {"stage": 3}}

    def is_zero3(self):
        return True


def test_under_zero3_the_judge_loads_whole_and_the_zero3_config_is_kept(tmp_path):
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    path = _saved_policy(tmp_path)
    held = _Zero3Config()
    set_hf_deepspeed_config(held)
    try:
        assert is_deepspeed_zero3_enabled()
        with pytest.raises(ImportError, match="deepspeed"):  # from_pretrained would partition it (zero.Init)
            load_model(path, dtype=torch.bfloat16)
        model, _ = load_from(path)(torch.device("cpu"), torch.bfloat16)
        assert is_deepspeed_zero3_enabled()  # set back after the load
    finally:
        unset_hf_deepspeed_config()
    assert model.dtype == torch.bfloat16 and all(p.numel() > 0 for p in model.parameters())  # whole, not partitioned


def test_bind_casts_a_model_of_another_dtype_and_freezes_it():
    tokenizer = build_char_tokenizer()
    model = tiny_causal_lm(tokenizer)  # float32, trainable
    judge = DeferredJudge(lambda device, dtype: (model, tokenizer), name="copy").bind("cpu", torch.bfloat16)
    assert judge.model.dtype == torch.bfloat16 and not judge.model.training
    assert not any(p.requires_grad for p in judge.model.parameters())
