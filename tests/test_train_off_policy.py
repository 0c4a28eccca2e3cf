"""``AIRTrainer`` on a replayed pass: the aux term is importance-weighted by min(π_θ/π_old, aux_is_cap) over the
sequence (``objectives.aux_importance_weights``), exactly what the tabular proof in
``tests/test_objectives_off_policy.py`` shows to be unbiased; on-policy nothing changes; TRL's policy-only masks
are refused."""

from __future__ import annotations

import pytest
import torch
from _toy import toy_trainer
from test_train_trainer import (
    REL_TOL,
    RewardRecorder,
    expected_coefficients,
    first_generation_batch,
    flat,
    grads,
    plain_completion_logps,
)
from trl import GRPOTrainer

from air_align.objectives import aux_importance_weights, aux_loss, sequence_logprob
from air_align.training.config import AIRConfig


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    """A float64 trainer with num_iterations = 2 (TRL keeps π_old's log-probs), one generation batch, then θ moved
    as an optimiser step would: the second pass over that batch is off-policy."""
    recorder = RewardRecorder()
    trainer = toy_trainer(
        "air",
        str(tmp_path_factory.mktemp("replay")),
        reward_funcs=recorder,
        dtype=torch.float64,
        invariance_coef=0.5,
        per_device_train_batch_size=18,
        num_iterations=2,
    )
    out = first_generation_batch(trainer)
    assert out["old_per_token_logps"] is not None  # TRL keeps π_old when samples are replayed
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return trainer, out, recorder.calls[0]


@pytest.mark.parametrize(("loss_type", "level"), [("grpo", "token"), ("dapo", "token"), ("grpo", "sequence")])
def test_replayed_aux_gradient_is_importance_weighted(replayed, loss_type, level):
    trainer, out, call = replayed
    trainer.loss_type, trainer.importance_sampling_level = loss_type, level
    trainer.current_gradient_accumulation_steps = 1
    rewards, coef = expected_coefficients(call, k=3)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    g_air = flat(grads(trainer.compute_loss(trainer.model, out), params), params)
    g_none = flat(grads(GRPOTrainer._compute_loss(trainer, trainer.model, out), params), params)

    def independent(weighted: bool):
        logps = plain_completion_logps(trainer, out)
        mask = out["completion_mask"]
        rho = None
        if weighted:
            rho, _ = aux_importance_weights(logps, out["old_per_token_logps"], mask, trainer.args.aux_is_cap)
        seq = sequence_logprob(logps, mask)
        loss = aux_loss(seq, rewards.to(seq.dtype), coef.to(seq.dtype), trainer.args.invariance_coef, len(seq), rho)
        return flat(grads(loss, params), params), rho

    g_weighted, rho = independent(True)
    g_unweighted, _ = independent(False)
    scale = g_weighted.abs().max().item()
    assert scale > 1e-3 and (rho - 1).abs().max() > 1e-2  # a real replay: ratios away from 1
    assert (g_air - g_none - g_weighted).abs().max().item() <= REL_TOL * scale
    assert (g_air - g_none - g_unweighted).abs().max().item() > 100 * REL_TOL * scale  # the old, biased term


def test_replay_logs_the_ratio_and_on_policy_logs_nothing(tmp_path):
    trainer = toy_trainer("air", str(tmp_path / "replay"), num_iterations=2, max_steps=2)
    trainer.train()
    logged = [row for row in trainer.state.log_history if "invariance/aux_is_ratio/mean" in row]
    assert len(logged) == 2
    for row in logged:
        assert row["invariance/aux_is_ratio/min"] <= row["invariance/aux_is_ratio/mean"]
        assert row["invariance/aux_is_ratio/mean"] <= row["invariance/aux_is_ratio/max"] <= 3.0
        assert 0.0 <= row["invariance/aux_is_truncated"] <= 1.0
    assert any(row["invariance/aux_is_ratio/max"] != row["invariance/aux_is_ratio/min"] for row in logged)

    on_policy = toy_trainer("air", str(tmp_path / "on"), max_steps=1)
    on_policy.train()
    assert not any("invariance/aux_is_ratio/mean" in row for row in on_policy.state.log_history)


@pytest.mark.parametrize(
    ("fields", "fix"),
    [({"top_entropy_quantile": 0.2}, "top_entropy_quantile=1.0"), ({"off_policy_mask_threshold": 0.5}, "Unset")],
)
def test_policy_only_masks_are_refused_with_the_invariance_term(tmp_path, fields, fix):
    common = dict(output_dir=str(tmp_path), use_cpu=True, num_generations=3, per_device_train_batch_size=9)
    with pytest.raises(ValueError, match=fix):
        AIRConfig(invariance="air", **common, **fields)
    with pytest.raises(ValueError, match="invariance=none"):
        AIRConfig(invariance="vrex", **common, **fields)
    AIRConfig(invariance="none", **common, **fields)  # plain GRPO keeps TRL's masks


@pytest.mark.parametrize("cap", [0.0, -1.0, float("inf"), float("nan"), True])
def test_cap_must_be_a_positive_finite_number(tmp_path, cap):
    with pytest.raises(ValueError, match="aux_is_cap"):
        AIRConfig(output_dir=str(tmp_path), use_cpu=True, aux_is_cap=cap)
