"""Intervals for a paired difference AIR − GRPO when RL seeds are nested in independent units (worlds, warm starts).

A lab comparison pairs each AIR run with the GRPO run of the same unit and seed (same world, warm start and data
order) and looks at ``d[u][s] = metric(AIR, u, s) − metric(GRPO, u, s)``. The estimate is the mean over units of the
unit means (every unit weighs the same). Its intervals, each a function of the nested differences alone:

- ``seed_t``: a t-interval over all ``d[u][s]`` as if they were independent — right when the only randomness is the
  RL seed (one unit: the interval is conditional on that world and warm start);
- ``unit_t``: a t-interval over the unit means (``U − 1`` degrees of freedom; needs two units) — the population
  statement over worlds and warm starts, with the seed noise inside each unit mean;
- ``hier_bootstrap``: a percentile bootstrap that draws units, then seeds within each drawn unit.

The grid's third candidate, the two-level percentile bootstrap over seeds and meta-groups, is
``air_align.evaluation.compare.paired_differences`` (it needs the per-prompt records). Which one the verdict uses is
``CHOSEN``, decided by the coverage check (``coverage.py``; its figures are in docs/results.md §6).
"""

from __future__ import annotations

import math
import statistics

import numpy as np

CANDIDATES = ("bootstrap", "seed_t", "unit_t", "hier_bootstrap")
"""The intervals the coverage check compares (``bootstrap``: the two-level one of ``evaluation.compare``)."""


def t_two_sided_cdf(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer ``df`` ≥ 1 (Abramowitz & Stegun 26.7.3–4, the finite series in
    θ = atan(t / √df)).

    >>> round(t_two_sided_cdf(12.7062, 1), 4), round(t_two_sided_cdf(2.7764, 4), 4)
    (0.95, 0.95)
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + (2/3)c² + (2·4)/(3·5)c⁴ + …)), the sum up to c^(df−3)
        total, term = 0.0, 1.0
        for k in range(1, (df - 1) // 2 + 1):
            total += term
            term *= (2 * k) / (2 * k + 1) * c2
        tail = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
        return 2.0 / math.pi * (theta + tail)
    total, term = 0.0, 1.0  # even: sinθ (1 + (1/2)c² + (1·3)/(2·4)c⁴ + …), up to c^(df−2)
    for k in range(1, df // 2 + 1):
        total += term
        term *= (2 * k - 1) / (2 * k) * c2
    return math.sin(theta) * total


def t_quantile(coverage: float, df: int) -> float:
    """The t with P(|T| ≤ t) = ``coverage`` (so ``t_quantile(0.95, df)`` is the 97.5 % quantile), by bisection.

    >>> [round(t_quantile(0.95, df), 3) for df in (1, 2, 4, 9, 29)]
    [12.706, 4.303, 2.776, 2.262, 2.045]
    """
    lo, hi = 0.0, 1.0
    while t_two_sided_cdf(hi, df) < coverage:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_two_sided_cdf(mid, df) < coverage else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def t_interval(values: list[float], alpha: float = 0.05) -> list[float] | None:
    """Mean ± t(n − 1) · sd / √n; None with fewer than two values.

    >>> [round(x, 3) for x in t_interval([1.0, 3.0])]  # mean 2, sd √2, se 1, t(1) 12.706
    [-10.706, 14.706]
    >>> t_interval([5.0]) is None
    True
    """
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile(1 - alpha, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return [mean - half, mean + half]


def estimate(nested: dict) -> float:
    """Mean over units of the unit means of ``{unit: [d, …]}``."""
    return statistics.fmean(statistics.fmean(ds) for ds in nested.values())


def hier_bootstrap(nested: dict, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> list[float] | None:
    """Percentile interval of :func:`estimate` under draws of units with replacement, then of seeds with
    replacement within each drawn unit. None when no unit has a value.

    >>> hier_bootstrap({"a": [1.0, 1.0], "b": [1.0]}, n_boot=50)  # no spread anywhere: the point
    [1.0, 1.0]
    """
    units = [np.asarray(ds, dtype=float) for ds in nested.values() if len(ds)]
    if not units:
        return None
    rng = np.random.default_rng(seed)
    n_units = len(units)
    picks = rng.integers(0, n_units, size=(n_boot, n_units))
    stats = np.zeros(n_boot)
    for u, ds in enumerate(units):  # each drawn copy of unit u gets its own seed draw
        copies = (picks == u).sum(axis=1)  # (B,)
        most = int(copies.max())
        if most == 0:
            continue
        means = ds[rng.integers(0, len(ds), size=(n_boot, most, len(ds)))].mean(axis=2)  # (B, most)
        used = np.arange(most)[None, :] < copies[:, None]
        stats += np.where(used, means, 0.0).sum(axis=1)
    stats /= n_units
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def nested_intervals(nested: dict, n_boot: int = 10000, seed: int = 0, alpha: float = 0.05) -> dict:
    """``{"seed_t", "unit_t", "hier_bootstrap"}`` intervals of ``{unit: [d, …]}`` (None where undefined)."""
    flat = [d for ds in nested.values() for d in ds]
    means = [statistics.fmean(ds) for ds in nested.values() if ds]
    return {
        "seed_t": t_interval(flat, alpha),
        "unit_t": t_interval(means, alpha),
        "hier_bootstrap": hier_bootstrap(nested, n_boot=n_boot, seed=seed, alpha=alpha),
    }


def chosen_interval(n_units: int) -> str:
    """The interval the verdict uses: over the independent units (``analysis.top_level``) when there are two or more
    (the coverage check: it alone keeps its 95 % when worlds and warm starts differ), else the seed-level t, whose
    statement is conditional on the one unit."""
    return "unit_t" if n_units >= 2 else "seed_t"
