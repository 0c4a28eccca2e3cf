"""``AIRConfig.anchor_target`` / ``anchor_constant`` (``grpo+air-const``) and ``reward_shift`` in the trainer
(docs/design.md §1.2): the config's checks, the coefficients the trainer applies on a float64 generation batch, and
the reward shift changing the aux term by exactly ``λ s (1/N) Σ Δ log π`` while advantages and Δ stay put."""

from __future__ import annotations

import json
import math

import pytest
import torch
from _messages import raises_with
from _toy import toy_trainer
from test_train_trainer import first_generation_batch, plain_completion_logps

from air_align.objectives import sequence_logprob
from air_align.training.config import AIRConfig
from air_align.training.methods import METHODS
from air_align.training.recipe import air_config

CPU = dict(output_dir="/tmp/air-align-anchor-target", use_cpu=True, bf16=False, report_to="none")
K = 3


# --- the config ------------------------------------------------------------------------------------------------------


def test_constant_target_forms(tmp_path):
    levels = {"safety/0": 2.5, "safety/1": 2.5}
    assert (
        AIRConfig(**CPU, anchor_target="constant", anchor_constant={"safety": {0: 2.5, 1: 2.5}}).anchor_constant
        == levels
    )
    assert AIRConfig(**CPU, anchor_target="constant", anchor_constant=json.dumps(levels)).anchor_constant == levels
    # a calibration.json gives its correct-anchor rewards, not its offsets
    calibration = {
        "verdicts": [
            {"domain": "safety", "label": 0, "anchor_reward": 2.5, "offset": 1.25},
            {"domain": "safety", "label": 1, "anchor_reward": 2.25, "offset": 0.0},
        ],
        "offsets": {"safety": {"0": 1.25, "1": 0.0}},
    }
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(calibration))
    config = AIRConfig(**CPU, anchor_target="constant", anchor_constant=str(path))
    assert config.anchor_constant == {"safety/0": 2.5, "safety/1": 2.25}
    assert AIRConfig(**CPU).anchor_target == "anchors" and AIRConfig(**CPU).reward_shift == 0.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(anchor_target="constant"), r"anchor_target='constant' needs anchor_constant: the reward of a correct"),
        (dict(anchor_target="anchors", anchor_constant={"safety/0": 2.5}), r"unused with anchor_target='anchors'"),
        (dict(anchor_target="fixed"), r"anchor_target must be one of \('anchors', 'constant'\), got 'fixed'"),
        (
            dict(anchor_target="constant", anchor_constant={"safety/0": 2.5}, invariance="vrex"),
            r"invariance='vrex' has none .* use invariance='air'",
        ),
        (
            dict(anchor_target="constant", anchor_constant={"safety": 2.5}),
            r"anchor_constant: safety: not a 'domain/label' key",
        ),
        (dict(anchor_target="constant", anchor_constant={"safety/0": math.inf}), r"must be a finite number"),
        (dict(reward_shift=math.nan), r"reward_shift must be a finite number"),
        (dict(reward_shift="2.5"), r"reward_shift must be a finite number"),
        (dict(reward_shift=2.5, invariance="none"), r"with invariance='none' it would do nothing"),
        (dict(reward_shift=2.5, aux_baseline="leave_one_out"), r"would do nothing with aux_baseline='leave_one_out'"),
    ],
)
def test_config_refusals(fields, message):
    with pytest.raises(ValueError, match=message):
        AIRConfig(**CPU, **fields)


def test_method_rows_set_the_fields():
    assert METHODS["grpo+air-const"].settings() == {
        "invariance": "air",
        "importance_sampling_level": "token",
        "aux_baseline": "none",
        "anchor_target": "constant",
        "reward_shift": 0.0,
    }
    assert METHODS["grpo+air-shift"].settings()["reward_shift"] == 2.5
    args = air_config("grpo+air-const", **CPU, anchor_constant={"toy/none": 1.0})
    assert (args.invariance, args.anchor_target, args.anchor_constant) == ("air", "constant", {"toy/none": 1.0})
    with pytest.raises(ValueError, match="needs anchor_constant"):
        air_config("grpo+air-const", **CPU)
    with pytest.raises(ValueError, match=r"method 'grpo\+air' sets \['reward_shift'\]"):
        air_config("grpo+air", **CPU, reward_shift=1.0)


def test_trainer_refuses_open_rows_without_a_level(tmp_path):
    with raises_with(ValueError, "anchor_constant", "{'toy/0': 1.0}", "none for ['toy/none']", "add them"):
        toy_trainer("air", str(tmp_path), anchor_target="constant", anchor_constant={"toy/0": 1.0})


# --- the trainer on a float64 generation batch -----------------------------------------------------------------------


def regenerate(trainer, **args):
    """The first generation batch again, from the same RNG state, with ``args`` set on the trainer's config."""
    for key, value in args.items():
        setattr(trainer.args, key, value)
    torch.manual_seed(123)
    return first_generation_batch(trainer), trainer.reward_funcs[0].calls[-1]


def prompt_means(call) -> torch.Tensor:
    rewards = torch.tensor([math.nan if x is None else x for x in call[0]], dtype=torch.float64)
    return torch.stack([rewards[i : i + K].nanmean() for i in range(0, len(rewards), K)])  # (P,)


def test_trainer_applies_the_constant_level(f64_batch):
    trainer, _, _ = f64_batch
    out, call = regenerate(trainer, anchor_target="constant", anchor_constant={"toy/none": 1.7})
    roles = call[2]
    # Δ_s = 1.7 − r̄_s on every open prompt, 0 on anchors, by hand from the recorded rewards
    per_prompt = [0.0 if roles[i * K] == "anchor" else 1.7 - float(m) for i, m in enumerate(prompt_means(call))]
    expected = torch.tensor(per_prompt, dtype=torch.float64).repeat_interleave(K)
    assert (expected != 0).sum() >= 6
    torch.testing.assert_close(out["air_coef"].double(), expected, rtol=0, atol=1e-6)  # float32 rewards in the trainer
    measured, _ = regenerate(trainer, anchor_target="anchors", anchor_constant={})
    assert torch.equal(measured["completion_ids"], out["completion_ids"])  # same samples: only Δ's level differs
    assert not torch.allclose(measured["air_coef"], out["air_coef"])
    assert torch.equal(measured["advantages"], out["advantages"])


def test_trainer_reward_shift_changes_only_the_aux_weight(f64_batch):
    trainer, _, _ = f64_batch
    trainer.current_gradient_accumulation_steps = 1
    base, _ = regenerate(trainer, anchor_target="anchors", anchor_constant={}, reward_shift=0.0)
    shifted, _ = regenerate(trainer, reward_shift=2.5)
    trainer.args.reward_shift = 0.0
    assert torch.equal(shifted["completion_ids"], base["completion_ids"])
    assert torch.equal(shifted["advantages"], base["advantages"])  # GRPO's advantages: unchanged
    assert torch.equal(shifted["air_coef"], base["air_coef"])  # Δ: unchanged
    assert torch.equal(shifted["air_reward"], base["air_reward"] - 2.5)  # the aux term's raw reward: shifted
    # loss(shifted) − loss(base) = −λ/N Σ Δ (−2.5) log π = λ · 2.5 / N · Σ Δ log π, N = 18 completions
    change = (trainer.compute_loss(trainer.model, shifted) - trainer.compute_loss(trainer.model, base)).item()
    with torch.no_grad():
        seq = sequence_logprob(plain_completion_logps(trainer, base), base["completion_mask"])  # (18,)
    predicted = trainer.args.invariance_coef * 2.5 / 18 * float((base["air_coef"].double() * seq).sum())
    assert abs(predicted) > 1e-2
    assert change == pytest.approx(predicted, rel=1e-5)
