"""Calibrated Δ (docs/calibration.md, not in the paper): ``invariance_coefficients(..., offsets=b)``, float64 hand
cases, invariants and errors."""

import pytest
import torch

from air_align.objectives import invariance_coefficients, meta_group_diagnostics

T = torch.float64
NAN = float("nan")

# One meta-group: anchor prompt 10 (r̄ = 1.25), open prompts 20 (r̄ = 0.125) and 30 (r̄ = 2.5), K = 2 each.
REWARDS = torch.tensor([1.25, 1.25, -1.0, 1.25, 2.5, 2.5], dtype=T)
PROMPTS = torch.tensor([10, 10, 20, 20, 30, 30])
GROUPS = torch.zeros(6, dtype=torch.long)
ANCHOR = torch.tensor([True, True, False, False, False, False])


def test_air_offsets_hand_computed():
    # b: anchor 0.7 (ignored: Δ = 0 on anchors), prompt 20: 0.5, prompt 30: 1.25
    b = torch.tensor([0.7, 0.7, 0.5, 0.5, 1.25, 1.25], dtype=T)
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=b)
    # Δ_20 = r̄_acr + b − r̄ = 1.25 + 0.5 − 0.125 = 1.625;  Δ_30 = 1.25 + 1.25 − 2.5 = 0 (at its calibrated level)
    torch.testing.assert_close(coef, torch.tensor([0, 0, 1.625, 1.625, 0, 0], dtype=T), rtol=0, atol=1e-15)


def test_vrex_offsets_hand_computed():
    b = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.25, 1.25], dtype=T)
    coef = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "vrex", offsets=b)
    # calibrated levels r̄ − b: anchor 1.25, prompt 20: 0.125 − 0.5 = −0.375, prompt 30: 2.5 − 1.25 = 1.25
    # centre = (1.25 − 0.375 + 1.25) / 3 = 2.125 / 3
    centre = 2.125 / 3
    expected = [centre - 1.25] * 2 + [centre + 0.375] * 2 + [centre - 1.25] * 2
    torch.testing.assert_close(coef, torch.tensor(expected, dtype=T), rtol=0, atol=1e-15)


def test_zero_offsets_are_the_papers_form():
    zeros = torch.zeros(6, dtype=T)
    for mode in ("air", "vrex", "none"):
        paper = invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, mode)
        assert torch.equal(invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, mode, offsets=zeros), paper)


@pytest.mark.parametrize("mode", ["air", "vrex"])
def test_offsets_equal_shifting_each_prompts_rewards_by_its_b(mode):
    # Δ with offsets b == the paper's Δ on rewards r − b (anchors b = 0): each prompt is compared at its calibrated
    # level r̄_s − b_s. Random float64 batch: 5 meta-groups × (1 anchor + 3 opens) × K = 3, some NaN rewards.
    g = torch.Generator().manual_seed(0)
    prompts = torch.arange(60) // 3
    groups = prompts // 4
    anchor = prompts % 4 == 0
    rewards = torch.randn(60, generator=g, dtype=T)
    rewards[[4, 17, 31]] = NAN
    per_prompt_b = torch.randn(20, generator=g, dtype=T)
    b = torch.where(anchor, torch.zeros(60, dtype=T), per_prompt_b[prompts])
    with_b = invariance_coefficients(rewards, prompts, groups, anchor, mode, offsets=b)
    shifted = invariance_coefficients(rewards - b, prompts, groups, anchor, mode)
    torch.testing.assert_close(with_b, shifted, rtol=0, atol=1e-12)
    assert not torch.allclose(with_b, invariance_coefficients(rewards, prompts, groups, anchor, mode))


def test_diagnostics_use_the_offsets_for_delta_not_for_the_gap():
    b = torch.tensor([0.0, 0.0, 0.5, 0.5, 1.25, 1.25], dtype=T)
    d = meta_group_diagnostics(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=b)
    # Δ over the open prompts: 1.625 and 0 -> mean 0.8125, |Δ| mean 0.8125; gap = 1.25 − (0.125 + 2.5)/2 = −0.0625
    assert d["invariance/delta"] == pytest.approx(0.8125, abs=1e-12)
    assert d["invariance/abs_delta"] == pytest.approx(0.8125, abs=1e-12)
    assert d["invariance/gap"] == pytest.approx(-0.0625, abs=1e-12)


def test_offset_errors_are_clear():
    with pytest.raises(ValueError, match=r"offsets has shape \(5,\).*one offset b per completion"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=torch.zeros(5, dtype=T))
    with pytest.raises(ValueError, match="offsets must be finite"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=torch.full((6,), NAN, dtype=T))
    split = torch.tensor([0.0, 0.0, 0.5, 0.4, 0.0, 0.0], dtype=T)  # prompt 20's two completions disagree
    with pytest.raises(ValueError, match=r"completion 3 of prompt id 20 has offset 0.4 .* first completion has 0.5"):
        invariance_coefficients(REWARDS, PROMPTS, GROUPS, ANCHOR, "air", offsets=split)
