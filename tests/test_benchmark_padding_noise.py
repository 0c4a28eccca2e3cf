"""The seed-noise check of the padding-free forward (``benchmarks/lab_padding_noise.py``) on hand-made runs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("lab_padding_noise", ROOT / "benchmarks" / "lab_padding_noise.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(values: dict[tuple[str, int], float]) -> list[dict]:
    """Runs of one cell whose every metric is the given value."""
    metrics = {
        split: dict.fromkeys(("acc_group", "balanced_acc_group", "acc", "anchor_acc", "hack_rate"))
        for split in ("test_id", "test_ood")
    }
    runs = []
    for (method, seed), v in values.items():
        m = {split: dict.fromkeys(names, v) for split, names in metrics.items()}
        runs.append({"cell": "safety/main", "method": method, "seed": seed, "metrics": m})
    return runs


def test_the_verdict_holds_a_small_unbiased_difference_and_rejects_a_shift():
    noise = _module()
    # padding 0: grpo seeds 0.5, 0.7 (s² = 0.02), air seeds 0.6, 0.6 (s² = 0): pooled σ = √(0.02 / 2) = 0.1
    base = _runs({("grpo", 0): 0.5, ("grpo", 1): 0.7, ("air", 0): 0.6, ("air", 1): 0.6})
    small = _runs({("grpo", 0): 0.51, ("grpo", 1): 0.69, ("air", 0): 0.61, ("air", 1): 0.59})
    row = noise.compare(base, small)[0]
    assert row["metric"] == "test_id/acc_group" and row["pairs"] == 4
    assert row["seed_sd"] == pytest.approx(10.0)
    # d = (+1, −1, +1, −1) points: mean 0, sd 2/√3 · … = 1.1547, t(3) = 3.1824, half = 3.1824 · 1.1547 / 2
    assert row["mean_diff"] == pytest.approx(0.0, abs=1e-12)
    half = 3.1824 * math.sqrt(4 / 3) / 2
    assert row["interval"] == pytest.approx([-half, half], abs=1e-3)
    assert row["sd_ratio"] == pytest.approx(math.sqrt(4 / 3) / (math.sqrt(2) * 10), rel=1e-9)
    assert row["within_seed_noise"] and row["identical_pairs"] == 0

    shifted = _runs({("grpo", 0): 0.62, ("grpo", 1): 0.8, ("air", 0): 0.72, ("air", 1): 0.7})
    row = noise.compare(base, shifted)[0]  # d = (12, 10, 12, 10): the interval excludes 0
    assert row["mean_diff"] == pytest.approx(11.0)
    assert not row["within_seed_noise"]


def test_grids_with_other_runs_are_refused():
    noise = _module()
    base = _runs({("grpo", 0): 0.5, ("grpo", 1): 0.7})
    with pytest.raises(ValueError, match="do not hold the same runs"):
        noise.compare(base, _runs({("grpo", 0): 0.5, ("grpo", 2): 0.7}))
    with pytest.raises(ValueError, match="at least two seeds"):
        noise.pooled_seed_sd(_runs({("grpo", 0): 0.5}), "test_id", "acc")
