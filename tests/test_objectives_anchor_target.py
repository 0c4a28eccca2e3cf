"""A constant anchor level (``anchor_levels``: ``grpo+air-const``, docs/design.md §1.2) and the reward shift check,
on float64 hand-computed batches: Δ, the aux loss, the identity with AIR when the constant is the batch's own anchor
level, and what a shift of every reward changes (the aux term's raw-reward weight) and does not (advantages, Δ)."""

import pytest
import torch

from air_align.objectives import (
    aux_loss,
    grpo_advantages,
    invariance_coefficients,
    meta_group_diagnostics,
)

T = torch.float64
NAN = float("nan")

# Two meta-groups, K = 2:
#   group 0: anchor prompt 10 (r̄ = 1.25), open 20 (r̄ = 0.125), open 30 (r̄ = 2.5)
#   group 1: anchor prompt 40 (r̄ = 1.375), open 50 (r̄ = 2.0)
REWARDS = torch.tensor([1.25, 1.25, -1.0, 1.25, 2.5, 2.5, 2.5, 0.25, 3.75, 0.25], dtype=T)
PROMPTS = torch.tensor([10, 10, 20, 20, 30, 30, 40, 40, 50, 50])
GROUPS = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
ANCHOR = torch.tensor([True, True, False, False, False, False, True, True, False, False])
LOGPS = -torch.arange(1, 11, dtype=T)  # log π of completion i is −(i + 1)
LAMBDA, N = 0.5, 10
C = torch.full((10,), 2.5, dtype=T)  # the correct anchor's reward for every row (anchors' value is ignored)


def test_constant_level_coefficients_hand_computed():
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C)
    # Δ = c − r̄_s on opens: 20: 2.5 − 0.125 = 2.375; 30: 2.5 − 2.5 = 0; 50: 2.5 − 2.0 = 0.5; anchors 0
    expected = torch.tensor([0, 0, 2.375, 2.375, 0, 0, 0, 0, 0.5, 0.5], dtype=T)
    torch.testing.assert_close(coef, expected, rtol=0, atol=1e-15)
    # the paper's Δ on the same batch differs: r̄_acr − r̄_s = 1.125, −1.25 (group 0), 1.375 − 2.0 = −0.625
    paper = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air")
    torch.testing.assert_close(
        paper, torch.tensor([0, 0, 1.125, 1.125, -1.25, -1.25, 0, 0, -0.625, -0.625], dtype=T), rtol=0, atol=1e-15
    )


def test_constant_level_aux_loss_hand_computed():
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C)
    # Σ Δ r log π: prompt 20: 2.375 · (−1.0 · −3 + 1.25 · −4) = −4.75; prompt 30: 0;
    #              prompt 50: 0.5 · (3.75 · −9 + 0.25 · −10) = −18.125; total −22.875
    # aux = −λ (1/N) Σ = −0.5 / 10 · −22.875 = 1.14375
    loss = aux_loss(LOGPS, REWARDS, coef, LAMBDA, N)
    assert loss.item() == pytest.approx(1.14375, abs=1e-12)


def test_constant_equal_to_the_batch_anchor_level_is_air_exactly():
    # Random float64 batch, 6 meta-groups × (2 anchors + 3 opens) × K = 3, some NaN rewards; c_s = r̄_acr of s's
    # group, computed here from the prompt means independently of invariance_coefficients.
    g = torch.Generator().manual_seed(1)
    prompts = torch.arange(90) // 3
    groups = prompts // 5
    anchor = prompts % 5 < 2
    rewards = torch.randn(90, generator=g, dtype=T) * 1.5 + 1.0
    rewards[[5, 22, 47, 61]] = NAN
    logps = -torch.rand(90, generator=g, dtype=T) * 20
    prompt_mean = torch.stack([rewards[prompts == p].nanmean() for p in range(30)])  # (30,)
    level = torch.stack([prompt_mean[[5 * z, 5 * z + 1]].mean() for z in range(6)])  # (6,) mean of 2 anchor means
    c = level[groups]
    measured = invariance_coefficients(rewards, prompts, groups, anchor, "air")
    constant = invariance_coefficients(rewards, prompts, groups, anchor, "air", anchor_levels=c)
    torch.testing.assert_close(constant, measured, rtol=0, atol=1e-15)
    same = aux_loss(logps, rewards, measured, 0.3, 90)
    torch.testing.assert_close(aux_loss(logps, rewards, constant, 0.3, 90), same, rtol=0, atol=1e-13)
    # and a constant that is not the batch's level gives another term
    other = invariance_coefficients(rewards, prompts, groups, anchor, "air", anchor_levels=c + 0.5)
    torch.testing.assert_close(other[~anchor], measured[~anchor] + 0.5, rtol=0, atol=1e-14)


def test_constant_level_ignores_the_anchors_rewards_and_composes_with_offsets():
    # Changing every anchor reward moves paper AIR's Δ, not the constant-level Δ
    moved = torch.where(ANCHOR, REWARDS - 3.0, REWARDS)
    a = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C)
    assert torch.equal(invariance_coefficients(moved, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C), a)
    assert not torch.equal(
        invariance_coefficients(moved, PROMPTS, GROUPS, ANCHOR, "air"),
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air"),
    )
    # with offsets b: Δ = c + b − r̄_s; b = 1.25 on prompt 50 only -> 0.5 + 1.25 = 1.75
    b = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 1.25, 1.25], dtype=T)
    both = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=b, anchor_levels=C)
    torch.testing.assert_close(
        both, torch.tensor([0, 0, 2.375, 2.375, 0, 0, 0, 0, 1.75, 1.75], dtype=T), rtol=0, atol=1e-15
    )


def test_constant_level_needs_no_anchor_in_the_group_but_measured_air_does():
    opens = ~ANCHOR
    coef = invariance_coefficients(
        REWARDS[opens], PROMPTS[opens], GROUPS[opens], ANCHOR[opens], "air", anchor_levels=C[opens]
    )
    torch.testing.assert_close(coef, torch.tensor([2.375, 2.375, 0, 0, 0.5, 0.5], dtype=T), rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="meta-group 0 has no anchor prompt"):
        invariance_coefficients(REWARDS[opens], PROMPTS[opens], GROUPS[opens], ANCHOR[opens], "air")


def test_diagnostics_report_the_constant_level_delta():
    d = meta_group_diagnostics(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C)
    # opens' Δ: 2.375, 0, 0.5 -> mean 0.9583…; the gap stays the measured one: group 0: 1.25 − 1.3125 = −0.0625,
    # group 1: 1.375 − 2.0 = −0.625 -> −0.34375
    assert d["invariance/delta"] == pytest.approx(2.875 / 3, abs=1e-12)
    assert d["invariance/gap"] == pytest.approx(-0.34375, abs=1e-12)


def test_anchor_level_errors_are_clear():
    with pytest.raises(ValueError, match=r"anchor_levels replace AIR's anchor level .* invariance='vrex'"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "vrex", anchor_levels=C)
    with pytest.raises(ValueError, match=r"anchor_levels has shape \(9,\).*one anchor level c per completion"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=C[:9])
    with pytest.raises(ValueError, match="anchor_levels must be finite"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=torch.full((10,), NAN, dtype=T))
    split = C.clone()
    split[3] = 2.0  # prompt 20's two completions disagree
    with pytest.raises(ValueError, match=r"completion 3 of prompt id 20 has anchor 2.0 .* first completion has 2.5"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", anchor_levels=split)


# --- the reward shift check ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shift", [2.5, -1.0])
def test_a_reward_shift_leaves_advantages_and_delta_and_changes_the_aux_loss_by_lambda_s_delta_logp(shift):
    shifted = REWARDS - shift
    for scale in (True, False):
        torch.testing.assert_close(
            grpo_advantages(shifted, PROMPTS, scale_by_std=scale),
            grpo_advantages(REWARDS, PROMPTS, scale_by_std=scale),
            rtol=0,
            atol=1e-12,
        )
    for mode in ("air", "vrex"):
        torch.testing.assert_close(
            invariance_coefficients(shifted, PROMPTS, GROUPS, ANCHOR, mode),
            invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, mode),
            rtol=0,
            atol=1e-12,
        )
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air")
    # aux(r − s) − aux(r) = −λ/N Σ Δ (−s) log π = λ s / N · Σ Δ log π;
    # Σ Δ log π = 1.125 · (−3 − 4) − 1.25 · (−5 − 6) − 0.625 · (−9 − 10) = −7.875 + 13.75 + 11.875 = 17.75
    change = aux_loss(LOGPS, shifted, coef, LAMBDA, N) - aux_loss(LOGPS, REWARDS, coef, LAMBDA, N)
    assert change.item() == pytest.approx(LAMBDA * shift / N * 17.75, abs=1e-12)


def test_the_shift_by_the_correct_anchor_reward_hand_computed():
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air")
    # unshifted: Σ Δ r log π = 1.125 · (3 − 5) − 1.25 · (−12.5 − 15) − 0.625 · (−33.75 − 2.5) = 54.78125 -> −2.7390625
    # r − 2.5:   1.125 · (−3.5 · −3 + −1.25 · −4) + 0 − 0.625 · (1.25 · −9 + −2.25 · −10) = 10.40625 -> −0.5203125
    assert aux_loss(LOGPS, REWARDS, coef, LAMBDA, N).item() == pytest.approx(-2.7390625, abs=1e-12)
    assert aux_loss(LOGPS, REWARDS - 2.5, coef, LAMBDA, N).item() == pytest.approx(-0.5203125, abs=1e-12)


def test_shift_keeps_the_expected_aux_gradient_on_an_enumerated_policy():
    # One open prompt, a softmax policy over 4 responses with rewards r: E_y[(r − s) ∇log π] = ∇E[r] for any s,
    # because E_y[∇log π] = 0: the shift changes the aux estimator's samples, not its expectation.
    logits = torch.tensor([0.3, -1.0, 0.8, 0.1], dtype=T, requires_grad=True)
    r = torch.tensor([-1.0, 1.25, 2.5, 3.75], dtype=T)

    def expected_grad(shift: float) -> torch.Tensor:
        logp = torch.log_softmax(logits, 0)
        (grad,) = torch.autograd.grad((logp.exp().detach() * (r - shift) * logp).sum(), logits)
        return grad

    truth = torch.autograd.grad((torch.softmax(logits, 0) * r).sum(), logits)[0]
    for shift in (0.0, 2.5, -4.0):
        torch.testing.assert_close(expected_grad(shift), truth, rtol=0, atol=1e-14)
