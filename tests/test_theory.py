"""Gradient identities (Lemma A.4), the downgrading-anchor failure mode (App. A.3) and Monte-Carlo convergence.

All on a tabular softmax policy where expectations are exact sums, in float64.
"""

import pytest
import torch

from air_align import theory
from air_align.cli import main


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("mode", ["air", "vrex"])
def test_gradient_identity(mode, seed, shared):
    # ∇E[J_aux] = −½∇Ω for AIR (Ω_AIR) and V-REx (Σ_c (R_c − R̄)²), exactly up to float64 round-off
    prob = theory.random_problem(num_groups=3, anchors=2, opens=3, seed=seed, shared=shared)
    assert theory.identity_error(prob, mode) < 1e-12


def test_identity_against_finite_differences():
    # Independent of autograd through Ω: without shared features, an open prompt's own logits move only its risk,
    # so ∂Ω_AIR/∂θ_own[open] is an ordinary derivative; central differences must match −2·∂E[J_aux]/∂θ_own[open].
    prob = theory.random_problem(num_groups=2, anchors=1, opens=2, shared=False, seed=3)
    coef = theory.exact_coefficients(prob, "air")
    (g_surr,) = torch.autograd.grad(theory.expected_surrogate(prob, coef), [prob.theta_own])
    h = 1e-6
    worst = 0.0
    for s in torch.nonzero(~prob.is_anchor).flatten().tolist():
        for y in range(prob.rewards.shape[1]):
            with torch.no_grad():
                prob.theta_own[s, y] += h
                up = float(theory.omega_air(prob))
                prob.theta_own[s, y] -= 2 * h
                down = float(theory.omega_air(prob))
                prob.theta_own[s, y] += h
            fd = (up - down) / (2 * h)
            worst = max(worst, abs(fd - (-2.0 * float(g_surr[s, y]))))
    assert worst < 1e-8


def test_air_stop_gradient_and_vrex_reaches_anchors():
    for seed in range(3):
        assert theory.anchor_own_gradient(theory.random_problem(seed=seed), "air") == 0.0
        assert theory.anchor_own_gradient(theory.random_problem(seed=seed), "vrex") > 1e-3


def test_vrex_identity_equals_scaled_variance():
    # Σ_c (R_c − R̄)² = |S_z| · Var_c R_c: the V-REx surrogate's gradient is −(|S_z|/2)∇ΣVar.
    prob = theory.random_problem(num_groups=2, anchors=1, opens=3, seed=4)
    risk = -prob.expected_reward()
    var_sum = sum(risk[prob.group == z].var(unbiased=False) for z in prob.group.unique())
    torch.testing.assert_close(theory.omega_vrex(prob), 4 * var_sum)


def test_failure_mode_regulariser_alone():
    # App. A.3: when R_o > R_a, a descent step on V-REx's Ω raises the anchor's risk; AIR's leaves it exactly as is.
    res = theory.downgrade_step(None)
    assert res.open_risk_before > res.anchor_risk_before
    assert res.vrex_anchor_risk_change > 1e-5
    assert res.air_anchor_risk_change == 0.0
    sweep = theory.downgrade_sweep(num_problems=50)
    assert sweep == {"vrex_raised_share": 1.0, "air_max_abs_change": 0.0}


@pytest.mark.parametrize("factor", [0.25, 0.5, 0.9, 1.1, 2.0, 10.0])
def test_failure_mode_threshold(factor):
    # On L = R_a + R_o + λΩ (two contexts, separate parameters) the anchor's coefficient under V-REx is
    # 1 − λ(R_o − R_a): a descent step raises R_a exactly when λ > λ* = 1/(R_o − R_a) (the paper's λ > −1/Δ).
    # Under AIR the coefficient stays 1: R_a falls for every λ.
    lam_star = theory.downgrade_step(0.0).threshold
    res = theory.downgrade_step(factor * lam_star)
    assert (res.vrex_anchor_risk_change > 0) == (factor > 1.0)
    assert res.air_anchor_risk_change < 0


def test_threshold_hand_computed():
    # Anchor logits (1.5, 0) -> π = σ(1.5) = 0.817574; R_a = −(1.25·0.817574 − 1·0.182426) = −0.839540
    prob = theory.two_context_problem(jitter=0.0)
    risk = -prob.expected_reward().detach()
    p_a = torch.sigmoid(torch.tensor(1.5, dtype=torch.float64))
    p_o = torch.sigmoid(torch.tensor(-1.0, dtype=torch.float64))
    torch.testing.assert_close(risk, torch.stack([-(1.25 * p_a - (1 - p_a)), -(1.25 * p_o - (1 - p_o))]))
    assert theory.downgrade_step(0.0, jitter=0.0).threshold == pytest.approx(1.0 / float(risk[1] - risk[0]))


@pytest.mark.parametrize("mode", ["air", "vrex"])
def test_monte_carlo_converges(mode):
    errs = [e for _, e in theory.monte_carlo_errors(ks=(8, 512, 32768), invariance=mode)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.03


def test_theory_cli_all_pass(capsys):
    assert main(["theory"]) == 0
    out = capsys.readouterr().out
    assert "10 / 10 checks passed" in out and "FAIL" not in out
