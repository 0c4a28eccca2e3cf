"""Hand-computed cases, invariants and error messages of air_align.objectives (float64)."""

import math

import pytest
import torch

from air_align.objectives import (
    aux_loss,
    grpo_advantages,
    invariance_coefficients,
    meta_group_diagnostics,
    meta_group_stats,
    sequence_logprob,
)

T = torch.float64
NAN = float("nan")


def t(x, dtype=T):
    return torch.tensor(x, dtype=dtype)


def ids(x):
    return torch.tensor(x, dtype=torch.long)


# One meta-group (z=7): anchor prompt 10, open prompts 20 and 30, K = 2 completions each.
#   prompt 10 (anchor): rewards 1.25, 1.25   -> r̄ = 1.25,  σ = 0
#   prompt 20 (open):   rewards -1.0, 1.25   -> r̄ = 0.125, σ = sqrt(((−1.125)² + 1.125²)/1) = 1.125·√2
#   prompt 30 (open):   rewards  2.5, 2.5    -> r̄ = 2.5,   σ = 0
REWARDS = t([1.25, 1.25, -1.0, 1.25, 2.5, 2.5])
PROMPTS = ids([10, 10, 20, 20, 30, 30])
GROUPS = ids([7, 7, 7, 7, 7, 7])
ANCHOR = torch.tensor([True, True, False, False, False, False])


def test_meta_group_stats_hand_computed():
    s = meta_group_stats(REWARDS, PROMPTS, GROUPS, ANCHOR)
    torch.testing.assert_close(s.prompt_mean, t([1.25, 0.125, 2.5]), rtol=0, atol=1e-15)
    torch.testing.assert_close(s.prompt_std, t([0.0, 1.125 * math.sqrt(2), 0.0]), rtol=0, atol=1e-15)
    # r̄_acr = 1.25 (one anchor); open mean = (0.125 + 2.5)/2 = 1.3125; context mean = (1.25+0.125+2.5)/3 = 1.291666…
    torch.testing.assert_close(s.anchor_mean, t([1.25]))
    torch.testing.assert_close(s.open_mean, t([1.3125]))
    torch.testing.assert_close(s.context_mean, t([3.875 / 3]))
    assert s.num_anchors.tolist() == [1] and s.num_opens.tolist() == [2]
    assert s.prompt_of_completion.tolist() == [0, 0, 1, 1, 2, 2]


def test_air_coefficients_hand_computed():
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air")
    # anchors 0; prompt 20: 1.25 − 0.125 = 1.125 (lags: reinforce);
    # prompt 30: 1.25 − 2.5 = −1.25 (out-scores its anchor: suppress)
    torch.testing.assert_close(coef, t([0, 0, 1.125, 1.125, -1.25, -1.25]), rtol=0, atol=1e-15)


def test_vrex_coefficients_hand_computed():
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "vrex")
    c = 3.875 / 3  # mean_c r̄_c
    # anchors included: the anchor gets c − 1.25 = 0.041666… > 0 here; open 20: c − 0.125; open 30: c − 2.5
    expected = t([c - 1.25, c - 1.25, c - 0.125, c - 0.125, c - 2.5, c - 2.5])
    torch.testing.assert_close(coef, expected, rtol=0, atol=1e-15)


def test_vrex_gives_anchor_negative_coefficient_when_anchor_leads():
    # Anchor r̄ = 1.25, open r̄ = −1.0: V-REx centre 0.125, anchor coefficient 0.125 − 1.25 = −1.125 (downgrading).
    r = t([1.25, 1.25, -1.0, -1.0])
    p, g, a = ids([0, 0, 1, 1]), ids([0, 0, 0, 0]), torch.tensor([True, True, False, False])
    vrex = invariance_coefficients(r, p, g, a, "vrex")
    air = invariance_coefficients(r, p, g, a, "air")
    torch.testing.assert_close(vrex, t([-1.125, -1.125, 1.125, 1.125]))
    torch.testing.assert_close(air, t([0.0, 0.0, 2.25, 2.25]))


def test_none_mode_is_zero():
    assert torch.equal(invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "none"), torch.zeros(6, dtype=T))


def test_two_anchors_average_prompt_means_not_completions():
    # Anchor A: rewards (1, NaN, NaN) -> r̄ = 1 (one scorable); anchor B: (0, 0, 0) -> r̄ = 0.
    # r̄_acr = (1 + 0)/2 = 0.5 (mean of prompt means); a pooled completion mean would give 1/4.
    # Open O: (0.5, 0.5, 0.5) -> Δ = 0.5 − 0.5 = 0.
    r = t([1.0, NAN, NAN, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5])
    p = ids([0, 0, 0, 1, 1, 1, 2, 2, 2])
    g = ids([5] * 9)
    a = torch.tensor([True] * 6 + [False] * 3)
    s = meta_group_stats(r, p, g, a)
    torch.testing.assert_close(s.anchor_mean, t([0.5]))
    assert s.prompt_valid.tolist() == [1, 3, 3]
    assert torch.equal(invariance_coefficients(r, p, g, a, "air")[6:], t([0.0, 0.0, 0.0]))


def test_nan_excluded_not_counted_as_zero():
    # Open prompt (2.0, NaN): r̄ = 2.0 (NaN excluded); counted as 0 it would be 1.0.
    r = t([1.0, 1.0, 2.0, NAN])
    p, g, a = ids([0, 0, 1, 1]), ids([0, 0, 0, 0]), torch.tensor([True, True, False, False])
    coef = invariance_coefficients(r, p, g, a, "air")
    torch.testing.assert_close(coef, t([0.0, 0.0, -1.0, -1.0]))
    # and the NaN completion contributes nothing to the aux loss
    loss = aux_loss(t([-1.0, -1.0, -1.0, -100.0]), r, coef, 1.0, 4)
    torch.testing.assert_close(loss, t(-(-1.0 * 2.0 * -1.0) / 4))


def test_several_groups_and_arbitrary_ids():
    # Group 100: anchor r̄=1, open r̄=0 -> Δ_open = 1. Group 3: anchor r̄=0, open r̄=1 -> Δ_open = −1.
    r = t([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0])
    p = ids([-4, -4, 99, 99, 8, 8, 1, 1])
    g = ids([100, 100, 100, 100, 3, 3, 3, 3])
    a = torch.tensor([True, True, False, False, True, True, False, False])
    coef = invariance_coefficients(r, p, g, a, "air")
    torch.testing.assert_close(coef, t([0, 0, 1, 1, 0, 0, -1, -1]))
    stats = meta_group_stats(r, p, g, a)  # per-group gap r̄_acr − r̄_open: 1 − 0 and 0 − 1
    torch.testing.assert_close(stats.anchor_mean - stats.open_mean, t([1.0, -1.0]))


def test_coefficients_equivariant_under_permutation():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(24, generator=gen, dtype=T)
    p = torch.arange(8).repeat_interleave(3)
    g = p // 4
    a = (p % 4) == 0
    perm = torch.randperm(24, generator=gen)
    for mode in ("air", "vrex"):
        full = invariance_coefficients(r, p, g, a, mode)
        permuted = invariance_coefficients(r[perm], p[perm], g[perm], a[perm], mode)
        torch.testing.assert_close(permuted, full[perm], rtol=0, atol=1e-14)


def test_invariants_agreeing_contexts_and_vrex_centring():
    gen = torch.Generator().manual_seed(1)
    p = torch.arange(6).repeat_interleave(4)
    g = p // 3
    a = (p % 3) == 0
    # Every prompt of a meta-group with the same mean -> no invariance pressure at all.
    same = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=T).repeat(6)
    for mode in ("air", "vrex"):
        assert invariance_coefficients(same, p, g, a, mode).abs().max() == 0
    # V-REx coefficients are centred within each meta-group (equal K): Σ_c Δ_c = 0.
    r = torch.randn(24, generator=gen, dtype=T)
    coef = invariance_coefficients(r, p, g, a, "vrex")[::4]  # one per prompt
    torch.testing.assert_close(coef.view(2, 3).sum(1), t([0.0, 0.0]), rtol=0, atol=1e-14)


def test_grpo_advantages_match_trl_formula():
    # prompt 0: (1, 3) -> mean 2, unbiased std √2 -> (−1/(√2+1e-4), +1/(√2+1e-4)); prompt 1 constant -> 0.
    adv = grpo_advantages(t([1.0, 3.0, 5.0, 5.0]), ids([0, 0, 1, 1]))
    s = math.sqrt(2) + 1e-4
    torch.testing.assert_close(adv, t([-1 / s, 1 / s, 0.0, 0.0]))
    adv_ns = grpo_advantages(t([1.0, 3.0, 5.0, NAN]), ids([0, 0, 1, 1]), scale_by_std=False)
    torch.testing.assert_close(adv_ns, t([-1.0, 1.0, 0.0, 0.0]))


def test_sequence_logprob_masked_sum_and_mean():
    logps = t([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    torch.testing.assert_close(sequence_logprob(logps, mask), t([-6.0, -1.0]))
    torch.testing.assert_close(sequence_logprob(logps, mask, "mean"), t([-2.0, -0.5]))


def test_aux_loss_value_and_gradient():
    # L = −λ/N Σ Δ r logπ with λ=0.5, N=4: Δr = (2·1, −1·3) -> −0.5/4·(2·(−1) + (−3)·(−2)) = −0.5/4·4 = −0.5
    seq = t([-1.0, -2.0]).requires_grad_()
    loss = aux_loss(seq, t([1.0, 3.0]), t([2.0, -1.0]), invariance_coef=0.5, num_completions=4)
    torch.testing.assert_close(loss, t(-0.5))
    loss.backward()
    # ∂L/∂logπ_i = −λ Δ_i r_i / N = (−0.5·2/4, −0.5·(−3)/4)
    torch.testing.assert_close(seq.grad, t([-0.25, 0.375]))


def test_aux_loss_micro_batches_sum_to_full_batch():
    gen = torch.Generator().manual_seed(2)
    seq, r, c = (torch.randn(12, generator=gen, dtype=T) for _ in range(3))
    full = aux_loss(seq, r, c, 0.1, 12)
    parts = sum(aux_loss(seq[i : i + 4], r[i : i + 4], c[i : i + 4], 0.1, 12) for i in range(0, 12, 4))
    torch.testing.assert_close(parts, full, rtol=0, atol=1e-15)


def test_diagnostics_hand_computed():
    d = meta_group_diagnostics(REWARDS, PROMPTS, GROUPS, ANCHOR, "air")
    assert d["reward/anchor"] == pytest.approx(1.25)
    assert d["reward/open"] == pytest.approx(1.3125)  # (0.125 + 2.5)/2
    assert d["invariance/gap"] == pytest.approx(1.25 - 1.3125)
    assert d["invariance/abs_delta"] == pytest.approx((1.125 + 1.25) / 2)
    assert d["invariance/delta"] == pytest.approx((1.125 - 1.25) / 2)
    assert meta_group_diagnostics(REWARDS, PROMPTS, GROUPS, ANCHOR, "none")["invariance/abs_delta"] == 0.0


# ---- errors: each names the problem ----


def test_error_group_without_anchor_under_air():
    with pytest.raises(ValueError, match="meta-group 7 has no anchor"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, torch.zeros(6, dtype=torch.bool), "air")
    # V-REx does not need anchors
    invariance_coefficients(REWARDS, PROMPTS, GROUPS, torch.zeros(6, dtype=torch.bool), "vrex")


def test_error_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch: group_ids"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS[:5], ANCHOR, "air")
    with pytest.raises(ValueError, match="flat"):
        meta_group_stats(REWARDS.view(2, 3), PROMPTS, GROUPS, ANCHOR)
    with pytest.raises(ValueError, match="shape mismatch"):
        aux_loss(t([1.0]), t([1.0, 2.0]), t([1.0, 2.0]), 0.1, 2)


def test_error_fewer_than_two_completions():
    with pytest.raises(ValueError, match="prompt id 3 has 1 completion"):
        meta_group_stats(t([1.0, 2.0, 0.0]), ids([0, 0, 3]), ids([0, 0, 0]), torch.tensor([True, True, False]))


def test_error_nan_only_prompt():
    with pytest.raises(ValueError, match="prompt id 1: all 2 rewards are NaN"):
        meta_group_stats(t([1.0, 2.0, NAN, NAN]), ids([0, 0, 1, 1]), ids([0] * 4), torch.tensor([1, 1, 0, 0]).bool())


def test_error_inconsistent_prompt():
    with pytest.raises(ValueError, match="different meta-group"):
        meta_group_stats(t([1.0, 2.0]), ids([0, 0]), ids([0, 1]), torch.tensor([True, True]))
    with pytest.raises(ValueError, match="different role"):
        meta_group_stats(t([1.0, 2.0]), ids([0, 0]), ids([0, 0]), torch.tensor([True, False]))


def test_error_unknown_mode_and_bad_inputs():
    with pytest.raises(ValueError, match="invariance must be one of"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "irm")
    with pytest.raises(ValueError, match="floating-point"):
        meta_group_stats(ids([1, 2]), ids([0, 0]), ids([0, 0]), torch.tensor([True, True]))
    with pytest.raises(ValueError, match="empty"):
        meta_group_stats(t([]), ids([]), ids([]), torch.tensor([], dtype=torch.bool))
    with pytest.raises(ValueError, match="num_completions"):
        aux_loss(t([1.0]), t([1.0]), t([1.0]), 0.1, 0)


def test_leave_one_out_baseline_keeps_the_expected_aux_gradient_exactly():
    """E[(r_i − b_i) ∇log π(y_i)] = E[r_i ∇log π(y_i)] because b_i depends only on the other samples: checked by
    exact enumeration of all K = 3 draws from a 3-action softmax policy, in float64."""
    import itertools

    from air_align.objectives import leave_one_out_baseline

    theta = torch.tensor([0.3, -0.5, 1.1], dtype=torch.float64, requires_grad=True)
    reward = torch.tensor([2.5, 1.25, -1.0], dtype=torch.float64)
    logp = torch.log_softmax(theta, 0)
    plain, centred, spread = 0.0, 0.0, []
    for draw in itertools.product(range(3), repeat=3):
        idx = torch.tensor(draw)
        prob = logp[idx].sum().exp().detach()
        r = reward[idx]
        w = r - leave_one_out_baseline(r, torch.zeros(3, dtype=torch.long))
        plain = plain + prob * (r * logp[idx]).sum()
        centred = centred + prob * (w * logp[idx]).sum()
        spread.append(w)
    g_plain = torch.autograd.grad(plain, theta, retain_graph=True)[0]
    g_centred = torch.autograd.grad(centred, theta)[0]
    assert g_plain.abs().max() > 0.1
    torch.testing.assert_close(g_centred, g_plain, rtol=1e-12, atol=1e-12)
    # ... while the per-sample weights now take both signs (the baseline is what lowers only above-average samples)
    weights = torch.cat(spread)
    assert (weights > 0).any() and (weights < 0).any() and (reward > 0).sum() == 2


def test_leave_one_out_baseline_errors():
    from air_align.objectives import leave_one_out_baseline

    with pytest.raises(ValueError, match=r"must both be \(B,\)"):
        leave_one_out_baseline(torch.ones(3), torch.zeros(2, dtype=torch.long))
