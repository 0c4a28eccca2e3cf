"""The aux term on a replayed (off-policy) pass, proved on a tabular policy with every sequence enumerated.

Samples drawn from an older policy μ = π_old (TRL's ``num_iterations > 1``) make the paper's aux gradient
``−λ Δ E_{y~π_θ}[r ∇log π_θ]`` a gradient under the wrong distribution. The importance-weighted estimator
(``objectives.aux_importance_weights``) restores it exactly in expectation; the unweighted one does not. The
expectations below are exact sums over all sequences of a two-step autoregressive policy with an end token, in
float64, so the checks are identities, not statistics.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from air_align.objectives import aux_importance_weights, aux_loss, sequence_logprob

V, EOS = 3, 0  # vocabulary {0, 1, 2}; token 0 ends the sequence
LAMBDA = 0.7


def sequences() -> list[tuple[int, ...]]:
    """Every sequence of at most two tokens that stops at EOS: (0,), (1, 0), (1, 1), …, (2, 2): 7 in all."""
    return [(EOS,)] + [(a, b) for a, b in itertools.product(range(1, V), range(V))]


def token_logps(theta1: torch.Tensor, theta2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs (S, 2) of every sequence under the tabular policy, and the mask (S, 2).

    π(y1) = softmax(θ1)[y1], π(y2 | y1) = softmax(θ2[y1])[y2]."""
    l1, l2 = torch.log_softmax(theta1, -1), torch.log_softmax(theta2, -1)  # (V,), (V, V)
    rows, masks = [], []
    for y in sequences():
        first = l1[y[0]]
        second = l2[y[0], y[1]] if len(y) == 2 else torch.zeros((), dtype=l1.dtype)
        rows.append(torch.stack([first, second]))
        masks.append(torch.tensor([1.0, float(len(y) == 2)], dtype=l1.dtype))
    return torch.stack(rows), torch.stack(masks)


def params(seed: int, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (
        scale * torch.randn(V, generator=g, dtype=torch.float64),
        scale * torch.randn(V, V, generator=g, dtype=torch.float64),
    )


REWARDS = torch.tensor([2.5, -1.0, 0.5, 3.0, 1.0, -0.5, 2.0], dtype=torch.float64)  # r(y), one per sequence


def on_policy_gradient(theta, delta: float) -> torch.Tensor:
    """∇_θ of −λ Δ E_{y~π_θ}[r(y)]: the aux gradient the paper's on-policy estimator has in expectation,
    computed from the expected reward itself, independently of any estimator."""
    t1, t2 = (t.clone().requires_grad_(True) for t in theta)
    logps, mask = token_logps(t1, t2)
    probs = torch.exp((logps * mask).sum(-1))  # (S,) π_θ(y)
    assert torch.isclose(probs.sum(), torch.tensor(1.0, dtype=torch.float64))
    objective = -LAMBDA * delta * (probs * REWARDS).sum()
    return torch.cat([g.flatten() for g in torch.autograd.grad(objective, [t1, t2])])


def expected_replay_gradient(theta, theta_old, delta: float, weighted: bool, cap: float = 3.0) -> torch.Tensor:
    """E_{y~π_old}[∇ aux_loss(y)] for a one-sample aux loss, summed exactly over every sequence: the estimator the
    trainer applies on a replayed pass (weighted) or the one it applied before (unweighted)."""
    t1, t2 = (t.clone().requires_grad_(True) for t in theta)
    logps, mask = token_logps(t1, t2)
    with torch.no_grad():
        old_logps, _ = token_logps(*theta_old)
        p_old = torch.exp((old_logps * mask).sum(-1))  # (S,) π_old(y): the sampling distribution
    rho, _ = aux_importance_weights(logps, old_logps, mask, cap) if weighted else (None, None)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(len(REWARDS)):
        one = slice(i, i + 1)
        loss = aux_loss(
            sequence_logprob(logps[one], mask[one]),
            REWARDS[one],
            torch.tensor([delta], dtype=torch.float64),
            LAMBDA,
            1,
            None if rho is None else rho[one],
        )
        total = total + p_old[i] * loss
    return torch.cat([g.flatten() for g in torch.autograd.grad(total, [t1, t2])])


@pytest.mark.parametrize("delta", [0.8, -1.3])  # open variants below (pulled up) and above (pulled down) anchors
def test_weighted_replay_equals_on_policy_gradient_and_unweighted_does_not(delta):
    theta, theta_old = params(0), params(1, scale=0.3)
    theta_old = (theta[0] + theta_old[0], theta[1] + theta_old[1])  # an older θ, ratios within the cap
    logps, mask = token_logps(*theta)
    old_logps, _ = token_logps(*theta_old)
    rho, truncated = aux_importance_weights(logps, old_logps, mask, 3.0)
    assert not truncated.any() and (rho - 1).abs().max() > 0.05  # truly off-policy, truncation not binding

    target = on_policy_gradient(theta, delta)
    weighted = expected_replay_gradient(theta, theta_old, delta, weighted=True)
    unweighted = expected_replay_gradient(theta, theta_old, delta, weighted=False)
    assert target.abs().max() > 1e-2
    assert torch.allclose(weighted, target, rtol=0, atol=1e-12)  # exact in float64
    assert (unweighted - target).abs().max() > 1e-2 * target.abs().max()  # biased without the weights


def test_on_policy_weights_are_exactly_one_and_the_identity_holds():
    theta = params(2)
    logps, mask = token_logps(*theta)
    rho, truncated = aux_importance_weights(logps, logps.clone(), mask, 3.0)
    assert torch.equal(rho, torch.ones_like(rho)) and not truncated.any()
    for weighted in (True, False):
        got = expected_replay_gradient(theta, theta, 0.8, weighted=weighted)
        assert torch.allclose(got, on_policy_gradient(theta, 0.8), rtol=0, atol=1e-12)


def test_truncation_bias_is_exactly_the_clipped_mass():
    # With the cap binding, the weighted estimator's bias is −λ Δ Σ_{ρ>c} (c π_old − π_θ) r ∇log π_θ: only the
    # truncated sequences move it, by what truncation removed.
    theta, step = params(3), params(4, scale=1.5)
    theta_old = (theta[0] + step[0], theta[1] + step[1])
    cap, delta = 1.5, 0.8
    logps, mask = token_logps(*theta)
    old_logps, _ = token_logps(*theta_old)
    _, truncated = aux_importance_weights(logps, old_logps, mask, cap)
    assert 0 < truncated.sum() < len(truncated)

    t1, t2 = (t.clone().requires_grad_(True) for t in theta)
    lp, _ = token_logps(t1, t2)
    seq = (lp * mask).sum(-1)  # (S,) log π_θ(y), with gradient
    with torch.no_grad():
        p, p_old = torch.exp((logps * mask).sum(-1)), torch.exp((old_logps * mask).sum(-1))
        clipped = torch.where(truncated, cap * p_old - p, torch.zeros_like(p))
    bias_objective = -LAMBDA * delta * (clipped * REWARDS * seq).sum()
    bias = torch.cat([g.flatten() for g in torch.autograd.grad(bias_objective, [t1, t2])])

    got = expected_replay_gradient(theta, theta_old, delta, weighted=True, cap=cap)
    assert bias.abs().max() > 1e-3
    assert torch.allclose(got - on_policy_gradient(theta, delta), bias, rtol=0, atol=1e-12)


def test_importance_weights_check_shapes_and_cap():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        aux_importance_weights(x, torch.zeros(2, 2), x, 3.0)
    with pytest.raises(ValueError, match="cap must be > 0"):
        aux_importance_weights(x, x, x, 0.0)
    # a huge log-ratio is truncated without overflowing to inf
    rho, cut = aux_importance_weights(torch.full((1, 3), 400.0), torch.zeros(1, 3), torch.ones(1, 3), 3.0)
    assert torch.equal(rho, torch.tensor([3.0])) and cut.item()
