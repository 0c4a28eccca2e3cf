"""Paired bootstrap confidence intervals of a method difference, over seeds and meta-groups (docs/evaluation.md).

Two methods A and B are evaluated on the same test meta-groups, with *paired* seeds: seed s of A and seed s of B
share the warm start and the data order, so their difference at one seed is less noisy than either alone. The
quantity is

    D = mean_s metric(A, s) − mean_s metric(B, s)

for a metric computed from per-prompt records (``acc``, ``acc_group``, ``balanced_acc``, ``balanced_acc_group``;
``air_align.evaluation.metrics`` defines them). Its percentile interval comes from a two-level bootstrap, each draw

1. resamples the S seeds with replacement (the **same** drawn seeds for A and B: the pairing), and
2. resamples the meta-groups with replacement, **within their label class** ``(domain, label)`` (the **same** drawn
   groups for both methods and every drawn seed),

and recomputes D on the resampled data. Stratifying by label keeps the test set's label mix fixed (it is a design
choice of the data, not a random quantity), so the balanced metrics (a minimum over labels) are defined in every draw.
A draw in which a metric is undefined for a drawn run (say, every drawn group unscored) is dropped and counted
(``n_valid``).

Vectorised: per run and meta-group the counts (correct and scored prompts, all-correct and judged flags) form
``(M, S, G)`` arrays; a draw is a pair of multiplicity vectors (seeds ``(S,)``, groups ``(G,)``), so every draw's
metric is one matrix product. ``tests/test_eval_compare.py`` checks it against a plain loop over the same draws.
Deterministic for a seed (``numpy.random.default_rng``).
"""

from __future__ import annotations

import numpy as np

from air_align.evaluation.metrics import group_labels, label_name, slice_records

METRICS: tuple[str, ...] = ("acc", "acc_group", "balanced_acc", "balanced_acc_group")


def _sorted(values) -> list:
    try:
        return sorted(values)
    except TypeError:  # mixed types: a stable order all the same
        return sorted(values, key=str)


def group_order(records: list[dict]) -> tuple[list[str], list[tuple], list[int]]:
    """``(group ids, label classes, class sizes)``: meta-groups ordered by label class ``(domain, label)`` (classes in
    the order of ``metrics.split_by_label``), then by first appearance. The bootstrap draws index this order."""
    classes = group_labels(records)
    keys = _sorted_classes(set(classes.values()))
    gids = [g for key in keys for g in classes if classes[g] == key]
    sizes = [sum(1 for g in classes if classes[g] == key) for key in keys]
    return gids, keys, sizes


def _sorted_classes(keys) -> list[tuple]:
    return sorted(keys, key=lambda k: (str(k[0]), label_name(k[1])))


def draw_indices(n_seeds: int, class_sizes: list[int], n_boot: int, rng: np.random.Generator):
    """One bootstrap's draws: ``(seed_idx (B, S), group_idx (B, G))``; groups are drawn within each class (the
    classes' blocks of :func:`group_order`), seeds first, then the classes in order."""
    seed_idx = rng.integers(0, n_seeds, size=(n_boot, n_seeds))  # (B, S)
    blocks, offset = [], 0
    for size in class_sizes:
        blocks.append(offset + rng.integers(0, size, size=(n_boot, size)))  # (B, G_c)
        offset += size
    return seed_idx, np.concatenate(blocks, axis=1)  # (B, G)


def _multiplicity(idx: np.ndarray, n: int) -> np.ndarray:
    """``(B, K)`` indices in ``0..n-1`` -> ``(B, n)`` counts of each index in each row."""
    rows = idx.shape[0]
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(float)


def _run_arrays(records: list[dict], gids: list[str], where: str) -> np.ndarray:
    """``(4, G)``: correct prompts, scored prompts, all-correct-and-judged flag, judged flag of each group."""
    index = {g: i for i, g in enumerate(gids)}
    out = np.zeros((4, len(gids)))
    unscored = np.zeros(len(gids), dtype=bool)
    for rec in records:
        i = index.get(rec["group_id"])
        if i is None:
            raise ValueError(
                f"{where}: meta-group {rec['group_id']!r} is not in the other runs; a paired comparison needs every "
                "run evaluated on the same meta-groups (same data file and --splits)"
            )
        if rec.get("correct") is None:
            unscored[i] = True
        else:
            out[0, i] += bool(rec["correct"])
            out[1, i] += 1
    out[3] = (~unscored).astype(float)
    out[2] = out[3] * (out[0] == out[1])
    return out


def _metric_values(arrays: np.ndarray, class_of: np.ndarray, n_classes: int, counts: np.ndarray) -> dict:
    """Every metric for every run and draw: ``{metric: (M, S, B)}``; NaN where undefined.

    Shape:
        arrays (M, S, 4, G), class_of (G,), counts (B, G) group multiplicities.
    """

    def ratio(num_idx: int, den_idx: int, mask: np.ndarray | None = None) -> np.ndarray:
        num, den = arrays[:, :, num_idx], arrays[:, :, den_idx]  # (M, S, G)
        if mask is not None:
            num, den = num * mask, den * mask
        n, d = num @ counts.T, den @ counts.T  # (M, S, B)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)

    out = {"acc": ratio(0, 1), "acc_group": ratio(2, 3)}
    for name, (num_idx, den_idx) in (("balanced_acc", (0, 1)), ("balanced_acc_group", (2, 3))):
        per_class = np.stack([ratio(num_idx, den_idx, class_of == c) for c in range(n_classes)])  # (C, M, S, B)
        defined = ~np.isnan(per_class)
        lowest = np.where(defined, per_class, np.inf).min(axis=0)
        out[name] = np.where(defined.any(axis=0), lowest, np.nan)  # minimum over the classes defined
    return out


def _seed_mean(values: np.ndarray, seed_counts: np.ndarray) -> np.ndarray:
    """Mean over drawn seeds: ``(M, S, B)`` values, ``(B, S)`` seed multiplicities -> ``(M, B)``."""
    weights = seed_counts.T[None]  # (1, S, B)
    contrib = np.where(weights > 0, values * weights, 0.0)  # an undrawn seed contributes nothing, even if NaN
    return contrib.sum(axis=1) / seed_counts.shape[1]


def paired_differences(
    runs: dict[tuple, list[dict]],
    method_a: str,
    method_b: str,
    metrics: tuple[str, ...] = METRICS,
    split: str | None = None,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, dict]:
    """Paired bootstrap CIs of ``mean_s metric(A, s) − mean_s metric(B, s)`` for each metric (same draws for all).

    Args:
        runs: per-prompt records keyed by ``(method, seed)``; each record ``{group_id, role, label, domain, correct,
            split}`` (``records.jsonl`` of ``air-align eval``). Both methods need the same seeds and, after slicing,
            the same meta-groups with the same labels.
        split: keep the slice of this split (``metrics.slice_records``: its prompts plus its groups' anchors); None
            keeps every record.
        n_boot: bootstrap draws; ``seed``: the draws' RNG seed; ``alpha``: 1 − coverage (percentile interval).

    Returns:
        ``{metric: {"diff", "ci": [lo, hi] | None, "a", "b", "per_seed": {seed: {"a", "b"}}, "n_valid", ...}}``;
        ``diff``, ``a``, ``b`` are the point estimates on the data as observed.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    if n_boot < 1 or not 0 < alpha < 1:
        raise ValueError(f"need n_boot >= 1 and 0 < alpha < 1, got n_boot={n_boot}, alpha={alpha}")
    seeds_of = {m: {s for (meth, s) in runs if meth == m} for m in (method_a, method_b)}
    for m, found in seeds_of.items():
        if not found:
            present = _sorted({meth for meth, _ in runs})
            raise ValueError(f"no runs of method {m!r}; the runs have methods {present}")
    if seeds_of[method_a] != seeds_of[method_b]:
        raise ValueError(
            f"paired seeds differ: {method_a!r} has seeds {_sorted(seeds_of[method_a])}, {method_b!r} has "
            f"{_sorted(seeds_of[method_b])}; evaluate both methods on the same seeds (or drop the unpaired runs)"
        )
    seeds = _sorted(seeds_of[method_a])
    sliced = {}
    for key in [(m, s) for m in (method_a, method_b) for s in seeds]:
        records = runs[key] if split is None else slice_records(runs[key], split)
        if not records:
            raise ValueError(f"run {key}: no records" + (f" in split {split!r}" if split else ""))
        sliced[key] = records
    first = next(iter(sliced))
    gids, classes, sizes = group_order(sliced[first])
    for key, records in sliced.items():
        if group_labels(records) != dict(group_labels(sliced[first])):
            raise ValueError(
                f"run {key} and run {first} have different meta-groups or labels; a paired comparison needs the "
                "same evaluation data for every run"
            )
    arrays = np.stack(
        [np.stack([_run_arrays(sliced[(m, s)], gids, f"run {(m, s)}") for s in seeds]) for m in (method_a, method_b)]
    )  # (M=2, S, 4, G)
    class_index = {c: i for i, c in enumerate(classes)}
    class_of = np.array([class_index[c] for c in (group_labels(sliced[first])[g] for g in gids)])  # (G,)

    observed = _metric_values(arrays, class_of, len(classes), np.ones((1, len(gids))))  # {m: (2, S, 1)}
    rng = np.random.default_rng(seed)
    seed_idx, group_idx = draw_indices(len(seeds), sizes, n_boot, rng)
    boot = _metric_values(arrays, class_of, len(classes), _multiplicity(group_idx, len(gids)))  # {m: (2, S, B)}
    seed_counts = _multiplicity(seed_idx, len(seeds))  # (B, S)
    q = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    out = {}
    for metric in metrics:
        per_seed = observed[metric][:, :, 0]  # (2, S)
        means = _seed_mean(boot[metric], seed_counts)  # (2, B)
        diffs = means[0] - means[1]  # (B,)
        valid = diffs[np.isfinite(diffs)]
        a, b = float(np.mean(per_seed[0])), float(np.mean(per_seed[1]))
        out[metric] = {
            "metric": metric,
            "split": split,
            "method_a": method_a,
            "method_b": method_b,
            "diff": a - b,
            "ci": [float(v) for v in np.percentile(valid, q)] if valid.size else None,
            "alpha": alpha,
            "a": a,
            "b": b,
            "per_seed": {
                str(s): {"a": float(v_a), "b": float(v_b)} for s, v_a, v_b in zip(seeds, *per_seed, strict=True)
            },
            "n_seeds": len(seeds),
            "n_groups": len(gids),
            "label_classes": [f"{d}/{label_name(lab)}" for d, lab in classes],
            "n_boot": n_boot,
            "n_valid": int(valid.size),
        }
    return out


def paired_bootstrap(
    runs: dict[tuple, list[dict]],
    method_a: str,
    method_b: str,
    metric: str = "acc_group",
    split: str | None = None,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """:func:`paired_differences` for one metric.

    >>> runs = {(m, s): [{"group_id": f"g{g}", "label": 1, "correct": m == "A"} for g in range(3)]
    ...         for m in ("A", "B") for s in (0, 1)}
    >>> res = paired_bootstrap(runs, "A", "B", "acc_group", n_boot=100)
    >>> res["diff"], res["ci"]
    (1.0, [1.0, 1.0])
    """
    return paired_differences(runs, method_a, method_b, (metric,), split, n_boot, seed, alpha)[metric]
