"""What a lab grid measured: per-run split summaries, means over seeds, paired comparisons, and the verdicts.

Everything here is a pure function of oracle verdict records (``runs.oracle_records``): one record per prompt with
``group_id``, ``role``, ``label``, ``split``, ``correct`` and the lab's ``hack`` / ``formatted`` flags.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from air_align.evaluation.metrics import slice_records

COLLAPSE_FORMAT_RATE = 0.5
"""A run has *collapsed* when fewer than half of its greedy test completions are in the response format: the policy
has left the grammar it shares with the anchors (the failure of the first lab's AIR runs)."""


def _mean(flags) -> float | None:
    flags = [bool(f) for f in flags if f is not None]
    return sum(flags) / len(flags) if flags else None


def group_outcomes(records: list[dict]) -> dict[str, dict]:
    """Per meta-group: its label, how many of its prompts are wrong, and how many it has (unscored count as wrong)."""
    out: dict[str, dict] = {}
    for r in records:
        g = out.setdefault(r["group_id"], {"label": r.get("label"), "wrong": 0, "n": 0})
        g["n"] += 1
        g["wrong"] += not r.get("correct")
    return out


def split_summary(records: list[dict], split: str) -> dict:
    """Metrics of one split (its prompts plus the anchors they borrow), per label and balanced.

    ``acc`` / ``acc_group`` overall; ``acc_by_label`` / ``acc_group_by_label``; ``balanced_acc`` /
    ``balanced_acc_group`` (the minimum over labels); ``anchor_acc``; ``open_acc_by_label``; ``hack_rate`` (share of
    open answers that are the judge hack); ``format_rate``; ``error_histogram`` (groups with 0, 1, 2, … wrong
    prompts); ``groups`` (label and wrong count per group, for paired bootstraps).
    """
    sliced = slice_records(records, split)
    groups = group_outcomes(sliced)
    labels = sorted({g["label"] for g in groups.values()}, key=str)
    by_label = {str(lab): [r for r in sliced if r.get("label") == lab] for lab in labels}
    group_ok = {str(lab): _mean(g["wrong"] == 0 for g in groups.values() if g["label"] == lab) for lab in labels}
    acc_lab = {lab: _mean(r["correct"] for r in rs) for lab, rs in by_label.items()}
    opens = [r for r in sliced if r["role"] == "open"]
    hist: dict[str, int] = defaultdict(int)
    for g in groups.values():
        hist[str(g["wrong"])] += 1
    summary = {
        "acc": _mean(r["correct"] for r in sliced),
        "acc_group": _mean(g["wrong"] == 0 for g in groups.values()),
        "acc_by_label": acc_lab,
        "acc_group_by_label": group_ok,
        "balanced_acc": min(v for v in acc_lab.values()),
        "balanced_acc_group": min(v for v in group_ok.values()),
        "anchor_acc": _mean(r["correct"] for r in sliced if r["role"] == "anchor"),
        "open_acc_by_label": {lab: _mean(r["correct"] for r in rs if r["role"] == "open") for lab, rs in
                              by_label.items()},  # fmt: skip
        "hack_rate": _mean(r.get("hack") for r in opens),
        "format_rate": _mean(r.get("formatted") for r in sliced),
        "n_prompts": len(sliced),
        "n_groups": len(groups),
        "error_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
        "groups": {gid: [g["label"], g["wrong"]] for gid, g in sorted(groups.items())},
    }
    summary["collapsed"] = summary["format_rate"] is not None and summary["format_rate"] < COLLAPSE_FORMAT_RATE
    return {"summary": summary, "records": sliced}


SCALARS = ("acc", "acc_group", "balanced_acc", "balanced_acc_group", "anchor_acc", "hack_rate", "format_rate")


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}  # fmt: skip


def flatten(summary: dict) -> dict[str, float]:
    """Scalar metrics of a split summary, with per-label ones as ``name/label``."""
    out = {k: summary[k] for k in SCALARS if summary.get(k) is not None}
    for key in ("acc_by_label", "acc_group_by_label", "open_acc_by_label"):
        for lab, v in (summary.get(key) or {}).items():
            if v is not None:
                out[f"{key.replace('_by_label', '')}/{lab}"] = v
    out["collapsed"] = float(bool(summary.get("collapsed")))
    return out


def summarise(runs: list[dict]) -> dict:
    """``{cell: {method: {split: {metric: {mean, std, n}}}}}`` over seeds; a cell is ``world`` or ``world/regime``."""
    acc: dict = {}
    for run in runs:
        for split, summary in run["metrics"].items():
            for name, value in flatten(summary).items():
                cell = acc.setdefault(run["cell"], {}).setdefault(run["method"], {}).setdefault(split, {})
                cell.setdefault(name, []).append(value)
    return {c: {m: {s: {k: mean_std(v) for k, v in sm.items()} for s, sm in ms.items()} for m, ms in cm.items()}
            for c, cm in acc.items()}  # fmt: skip


def _group_matrix(runs: list[dict], split: str, gids: list[str]) -> np.ndarray:
    """(S, G) 1.0 where run s answered every prompt of group g right."""
    return np.array([[float(run["metrics"][split]["groups"][g][1] == 0) for g in gids] for run in runs])


def _metric(ok: np.ndarray, labels: np.ndarray, balanced: bool) -> np.ndarray:
    """Acc_group (or its minimum over labels) of ``ok`` (..., S, G) with group labels (..., G) → (...)."""
    if not balanced:
        return ok.mean(axis=(-2, -1))
    per_label = []
    for lab in np.unique(labels):
        mask = (labels == lab)[..., None, :]  # (..., 1, G)
        n = mask.sum(axis=(-2, -1)) * ok.shape[-2]
        with np.errstate(invalid="ignore", divide="ignore"):
            per_label.append(np.where(n > 0, (ok * mask).sum(axis=(-2, -1)) / np.maximum(n, 1), np.nan))
    return np.min(np.stack(per_label), axis=0)


def paired_difference(runs_a: list[dict], runs_b: list[dict], split: str, balanced: bool = False,
                      n_boot: int = 2000, seed: int = 0, alpha: float = 0.05) -> dict:  # fmt: skip
    """Mean over seeds of (Acc_group of A − Acc_group of B) on ``split``, with a paired two-level percentile
    bootstrap CI: seeds resampled with replacement (run s of A with run s of B) and meta-groups resampled with
    replacement (the same groups for both). ``balanced``: the minimum over labels instead of the plain Acc_group.

    >>> a = [{"seed": s, "metrics": {"t": {"groups": {"g1": [1, 0], "g2": [0, 0]}}}} for s in (0, 1)]
    >>> b = [{"seed": s, "metrics": {"t": {"groups": {"g1": [1, 0], "g2": [0, 2]}}}} for s in (0, 1)]
    >>> d = paired_difference(a, b, "t", balanced=True, n_boot=200)
    >>> d["diff"], d["ci"][1]
    (1.0, 1.0)
    """
    by_seed_b = {r["seed"]: r for r in runs_b}
    pairs = [(r, by_seed_b[r["seed"]]) for r in sorted(runs_a, key=lambda r: r["seed"]) if r["seed"] in by_seed_b]
    if not pairs:
        raise ValueError("paired_difference: the two methods share no seed")
    gids = sorted(pairs[0][0]["metrics"][split]["groups"])
    labels = np.array([str(pairs[0][0]["metrics"][split]["groups"][g][0]) for g in gids])
    ok_a = _group_matrix([a for a, _ in pairs], split, gids)  # (S, G)
    ok_b = _group_matrix([b for _, b in pairs], split, gids)  # (S, G)
    diff = float(_metric(ok_a, labels, balanced) - _metric(ok_b, labels, balanced))
    rng = np.random.default_rng(seed)
    s_idx = rng.integers(0, len(pairs), size=(n_boot, len(pairs)))  # (B, S)
    g_idx = rng.integers(0, len(gids), size=(n_boot, len(gids)))  # (B, G)
    draw_a = ok_a[s_idx[:, :, None], g_idx[:, None, :]]  # (B, S, G)
    draw_b = ok_b[s_idx[:, :, None], g_idx[:, None, :]]
    draws = _metric(draw_a, labels[g_idx], balanced) - _metric(draw_b, labels[g_idx], balanced)  # (B,)
    draws = draws[~np.isnan(draws)]
    lo, hi = np.percentile(draws, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"diff": diff, "ci": [float(lo), float(hi)], "n_seeds": len(pairs), "n_groups": len(gids)}


ANCHOR_TOLERANCE = 0.02
""""AIR helps" allows its anchors to fall at most 2 points below GRPO's (issue 14's pre-registered rule)."""


def helps_verdict(runs_air: list[dict], runs_grpo: list[dict], split: str = "test_ood") -> dict:
    """The pre-registered rule: AIR helps iff no AIR seed collapsed, its mean ID anchor accuracy is within
    ``ANCHOR_TOLERANCE`` of GRPO's, the ``split`` Acc_group gain is positive for **every** label, and the paired 95 %
    CI of the balanced Acc_group difference lies above 0."""
    collapsed = sum(bool(r["metrics"][s]["collapsed"]) for r in runs_air for s in r["metrics"])
    anchors = {name: statistics.fmean(r["metrics"]["test_id"]["anchor_acc"] for r in runs)
               for name, runs in (("air", runs_air), ("grpo", runs_grpo))}  # fmt: skip
    labels = sorted(runs_grpo[0]["metrics"][split]["acc_group_by_label"])
    gains = {lab: statistics.fmean(r["metrics"][split]["acc_group_by_label"][lab] for r in runs_air)
             - statistics.fmean(r["metrics"][split]["acc_group_by_label"][lab] for r in runs_grpo) for lab in labels}
    balanced = paired_difference(runs_air, runs_grpo, split, balanced=True)
    plain = paired_difference(runs_air, runs_grpo, split, balanced=False)
    checks = {
        "no_collapse": collapsed == 0,
        "anchors_within_2_points": anchors["air"] >= anchors["grpo"] - ANCHOR_TOLERANCE,
        "gain_on_every_label": all(g > 0 for g in gains.values()),
        "balanced_ci_above_zero": balanced["ci"][0] > 0,
    }
    return {"helps": all(checks.values()), "checks": checks, "collapsed_runs": collapsed, "anchor_acc": anchors,
            "gain_by_label": gains, "acc_group": plain, "balanced_acc_group": balanced}  # fmt: skip
