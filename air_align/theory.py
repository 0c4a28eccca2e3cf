"""Exact checks that :mod:`air_align.objectives` implements the paper's gradients (Lemma A.4, Theorem A.3).

A *tabular softmax policy* makes every expectation exact: each prompt ``s`` has ``Y`` possible responses with a fixed
reward table ``r(s, y)``, and ``π_θ(y|s) = softmax(φ(s, ·)·θ_shared + θ_own[s, ·])``. Risks are ``R_s = −E_y r(s, y)``.

Checks, all in float64:

1. AIR identity: ``∇ E[J_aux^AIR] = −½ ∇Ω_AIR``, ``Ω_AIR = Σ_z Σ_{c∈O_z} (R_c − sg[R_acr(z)])²``;
   and the regulariser puts zero gradient on the anchors' own parameters (the stop-gradient).
2. V-REx identity: ``∇ E[J_aux^VREx] = −½ ∇ Σ_z Σ_{c∈S_z} (R_c − R̄_z)² = −(|S_z|/2) ∇ Σ_z Var_c R_c``.
3. Failure mode (App. A.3, two contexts, ``R_o > R_a``): on ``L = R_a + R_o + λ Ω`` a descent step raises the anchor's
   risk under V-REx once ``λ > 1/(R_o − R_a)`` (the paper's ``λ > −1/Δ``, ``Δ = R_a − R_o``, with ``Ω`` the sum of
   squared deviations); under AIR the anchor's coefficient stays 1 and its risk never rises.
4. Monte-Carlo: the gradient of the *sampled* surrogate (``objectives.aux_loss`` over K draws per prompt, Δ estimated
   from the same draws) converges to the exact one as K grows.

The expected surrogate uses the score-function form ``E_y[r ∇log π] = ∇E_y[r]``: ``Σ_y sg[π(y|s)] r(s,y) log π(y|s)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from air_align.objectives import aux_loss, invariance_coefficients

DTYPE = torch.float64


@dataclass
class TabularProblem:
    """A tabular softmax policy over meta-groups (all tensors float64).

    Shape:
        rewards (P, Y); features (P, Y, D); theta_shared (D,); theta_own (P, Y); group (P,); is_anchor (P,).
    """

    rewards: Tensor
    features: Tensor
    theta_shared: Tensor
    theta_own: Tensor
    group: Tensor
    is_anchor: Tensor

    def logits(self) -> Tensor:  # (P, Y)
        return self.features @ self.theta_shared + self.theta_own

    def log_probs(self) -> Tensor:  # (P, Y)
        return torch.log_softmax(self.logits(), dim=-1)

    def expected_reward(self) -> Tensor:  # (P,)  E_y r(s, y) = −R_s
        return (self.log_probs().exp() * self.rewards).sum(-1)

    def params(self) -> list[Tensor]:
        return [self.theta_shared, self.theta_own]


def random_problem(
    num_groups: int = 3,
    anchors: int = 1,
    opens: int = 2,
    num_responses: int = 4,
    feature_dim: int = 5,
    shared: bool = True,
    seed: int = 0,
) -> TabularProblem:
    """Random rewards in [−1, 2.5] (the paper's scale), random features and parameters, requires_grad set."""
    g = torch.Generator().manual_seed(seed)
    per = anchors + opens
    p = num_groups * per
    rewards = -1.0 + 3.5 * torch.rand(p, num_responses, generator=g, dtype=DTYPE)
    features = torch.randn(p, num_responses, feature_dim, generator=g, dtype=DTYPE) * (1.0 if shared else 0.0)
    theta_shared = torch.randn(feature_dim, generator=g, dtype=DTYPE).requires_grad_()
    theta_own = torch.randn(p, num_responses, generator=g, dtype=DTYPE).requires_grad_()
    group = torch.arange(num_groups).repeat_interleave(per)
    is_anchor = torch.tensor(([True] * anchors + [False] * opens) * num_groups)
    return TabularProblem(rewards, features, theta_shared, theta_own, group, is_anchor)


def exact_coefficients(problem: TabularProblem, invariance: str) -> Tensor:
    """``Δ_s`` from the exact prompt means, through ``objectives.invariance_coefficients``.

    Each prompt is given two "completions" whose rewards both equal ``E_y r(s, y)``, so the sample means the
    objectives compute are the exact means. Returns (P,).
    """
    with torch.no_grad():
        mean = problem.expected_reward()  # (P,)
    p = mean.numel()
    rewards = mean.repeat_interleave(2)  # (2P,)
    prompt_ids = torch.arange(p).repeat_interleave(2)
    coef = invariance_coefficients(
        rewards, prompt_ids, problem.group.repeat_interleave(2), problem.is_anchor.repeat_interleave(2), invariance
    )
    return coef[::2]


def expected_surrogate(problem: TabularProblem, coef: Tensor) -> Tensor:
    """``E[J_aux] = Σ_s Δ_s Σ_y sg[π(y|s)] r(s, y) log π(y|s)``; its gradient is ``Σ_s Δ_s ∇E_y r(s, y)``."""
    logp = problem.log_probs()  # (P, Y)
    weight = logp.detach().exp() * problem.rewards  # (P, Y)
    return (coef[:, None] * weight * logp).sum()


def omega_air(problem: TabularProblem) -> Tensor:
    """``Ω_AIR = Σ_z Σ_{c∈O_z} (R_c − sg[R_acr(z)])²`` with ``R_acr(z)`` the mean risk of z's anchors."""
    risk = -problem.expected_reward()  # (P,)
    total = risk.new_zeros(())
    for z in problem.group.unique():
        in_z = problem.group == z
        r_acr = risk[in_z & problem.is_anchor].mean().detach()  # sg[R_acr]
        total = total + ((risk[in_z & ~problem.is_anchor] - r_acr) ** 2).sum()
    return total


def omega_vrex(problem: TabularProblem) -> Tensor:
    """``Σ_z Σ_{c∈S_z} (R_c − R̄_z)² = Σ_z |S_z| · Var_c[R_c]`` (population variance, no stop-gradient)."""
    risk = -problem.expected_reward()
    total = risk.new_zeros(())
    for z in problem.group.unique():
        r = risk[problem.group == z]
        total = total + ((r - r.mean()) ** 2).sum()
    return total


def _grad(value: Tensor, params: list[Tensor]) -> Tensor:
    grads = torch.autograd.grad(value, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])


def identity_error(problem: TabularProblem, invariance: str) -> float:
    """``max |∇E[J_aux] − (−½ ∇Ω)|`` over all parameters, relative to ``max |∇Ω|``."""
    coef = exact_coefficients(problem, invariance)
    lhs = _grad(expected_surrogate(problem, coef), problem.params())
    omega = omega_air(problem) if invariance == "air" else omega_vrex(problem)
    rhs = -0.5 * _grad(omega, problem.params())
    return float((lhs - rhs).abs().max() / rhs.abs().max().clamp(min=1e-300))


def anchor_own_gradient(problem: TabularProblem, invariance: str) -> float:
    """``max |∂Ω/∂θ_own[anchor]|``: zero for AIR (stop-gradient), non-zero for V-REx."""
    omega = omega_air(problem) if invariance == "air" else omega_vrex(problem)
    (g_own,) = torch.autograd.grad(omega, [problem.theta_own])
    return float(g_own[problem.is_anchor].abs().max())


def two_context_problem(seed: int = 0, jitter: float = 0.1) -> TabularProblem:
    """App. A.3: one meta-group, an anchor and an open variant, separate parameters, and ``R_o > R_a``.

    The anchor is mostly right (+1.25 correct / −1.0 wrong); the open variant is mostly wrong. ``jitter`` scales a
    seeded random perturbation of the logits (the ordering ``R_o > R_a`` holds for jitter ≤ 0.5).
    """
    rewards = torch.tensor([[1.25, -1.0], [1.25, -1.0]], dtype=DTYPE)
    g = torch.Generator().manual_seed(seed)
    noise = jitter * torch.randn(2, 2, generator=g, dtype=DTYPE)
    theta_own = torch.tensor([[1.5, 0.0], [0.0, 1.0]], dtype=DTYPE) + noise
    return TabularProblem(
        rewards=rewards,
        features=torch.zeros(2, 2, 1, dtype=DTYPE),
        theta_shared=torch.zeros(1, dtype=DTYPE, requires_grad=True),
        theta_own=theta_own.requires_grad_(),
        group=torch.zeros(2, dtype=torch.long),
        is_anchor=torch.tensor([True, False]),
    )


@dataclass
class DowngradeResult:
    anchor_risk_before: float
    open_risk_before: float
    threshold: float  # λ* = 1 / (R_o − R_a)
    lam: float | None  # None: a step on the regulariser alone
    vrex_anchor_risk_change: float
    air_anchor_risk_change: float


def downgrade_step(lam: float | None, step: float = 1e-3, seed: int = 0, jitter: float = 0.1) -> DowngradeResult:
    """One gradient-descent step and the change of the anchor's risk ``R_a``, for Ω ∈ {V-REx, AIR}.

    ``lam=None`` steps on the regulariser Ω alone; otherwise on ``L = R_a + R_o + λ Ω``.
    """
    changes = {}
    for mode in ("vrex", "air"):
        prob = two_context_problem(seed, jitter)
        risk = -prob.expected_reward()
        omega = omega_vrex(prob) if mode == "vrex" else omega_air(prob)
        loss = omega if lam is None else risk.sum() + lam * omega
        (g_own,) = torch.autograd.grad(loss, [prob.theta_own])
        with torch.no_grad():
            prob.theta_own -= step * g_own
            changes[mode] = float(-prob.expected_reward()[0] - risk[0].detach())
    r_a, r_o = float(risk[0].detach()), float(risk[1].detach())
    return DowngradeResult(r_a, r_o, 1.0 / (r_o - r_a), lam, changes["vrex"], changes["air"])


def downgrade_sweep(num_problems: int = 100, jitter: float = 0.5) -> dict[str, float]:
    """Over random two-context problems with ``R_o > R_a``, one step on each regulariser alone.

    Returns the share of problems where the V-REx step raised ``R_a`` and the largest ``|ΔR_a|`` of the AIR step.
    """
    raised, air_max = 0, 0.0
    for seed in range(num_problems):
        res = downgrade_step(None, seed=seed, jitter=jitter)
        if res.open_risk_before <= res.anchor_risk_before:
            raise AssertionError(f"seed {seed}: R_o <= R_a, the jitter is too large for this check")
        raised += res.vrex_anchor_risk_change > 0
        air_max = max(air_max, abs(res.air_anchor_risk_change))
    return {"vrex_raised_share": raised / num_problems, "air_max_abs_change": air_max}


def monte_carlo_errors(
    ks: tuple[int, ...] = (4, 64, 1024, 16384), invariance: str = "air", seed: int = 0
) -> list[tuple[int, float]]:
    """Relative error of the sampled surrogate's gradient against ``½ ∇Ω / P`` for growing K.

    The sampled loss ``objectives.aux_loss`` with λ = 1 and ``N = P·K`` has expected gradient
    ``−(1/P) Σ_s Δ_s ∇E r = −(1/P) ∇E[J_aux] = ½ ∇Ω / P`` (up to the O(1/K) bias of estimating Δ from the same draws).
    """
    out = []
    for k in ks:
        prob = random_problem(seed=seed)
        omega = omega_air(prob) if invariance == "air" else omega_vrex(prob)
        p = prob.rewards.shape[0]
        target = 0.5 * _grad(omega, prob.params()) / p
        gen = torch.Generator().manual_seed(seed + 1000 + k)
        logp = prob.log_probs()  # (P, Y)
        draws = torch.multinomial(logp.detach().exp(), k, replacement=True, generator=gen)  # (P, K)
        seq_logps = logp.gather(1, draws).reshape(-1)  # (P·K,)
        rewards = prob.rewards.gather(1, draws).reshape(-1)  # (P·K,)
        prompt_ids = torch.arange(p).repeat_interleave(k)
        coef = invariance_coefficients(
            rewards, prompt_ids, prob.group.repeat_interleave(k), prob.is_anchor.repeat_interleave(k), invariance
        )
        loss = aux_loss(seq_logps, rewards, coef, invariance_coef=1.0, num_completions=p * k)
        got = _grad(loss, prob.params())
        out.append((k, float((got - target).norm() / target.norm())))
    return out
