"""Evaluation plots (matplotlib, Agg backend): per-family accuracy, anchor vs open per group, training curves.

Training logs are read from whatever exists under the given directories: ``log.jsonl`` files (one JSON object a line,
with ``step`` or ``global_step``) or TRL's ``trainer_state.json`` (its ``log_history``; the one with the largest
``global_step`` wins, i.e. the latest checkpoint).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from air_align.evaluation.metrics import SPLIT_LABELS, anchor_open_by_group, slice_records
from air_align.files import atomic_path

# Keys plotted first when present; any other numeric key starting with these prefixes follows.
CURVE_KEYS = ("loss", "reward", "reward/anchor", "reward/open", "invariance/gap", "kl", "entropy")
CURVE_PREFIXES = ("reward", "rewards/", "invariance/", "air/")
MAX_PANELS = 12


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed); imported on first use."""
    import matplotlib  # heavy, and the backend must be chosen before pyplot is imported: imported on first plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save ``fig`` atomically (``air_align.files.atomic_path``) and close it; returns ``path``."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        pyplot().close(fig)
    return Path(path)


def plot_per_family(results: dict, path: Path) -> Path:
    """Grouped bars: Acc of each wrapper family (anchors as family ``anchor``), one bar per slice (ID, OOD)."""
    plt = pyplot()
    slices = results["slices"]
    families = sorted({f for s in slices.values() for f in s["by_family"]}, key=lambda f: (f != "anchor", f))
    width = 0.8 / max(len(slices), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(families) * max(len(slices), 1) + 2), 4.0))
    for j, (split, summ) in enumerate(slices.items()):
        xs, ys, ns = [], [], []
        for i, fam in enumerate(families):
            block = summ["by_family"].get(fam)
            if block and block["acc"] is not None:
                xs.append(i + (j - (len(slices) - 1) / 2) * width)
                ys.append(block["acc"])
                ns.append(block["n_scored"])
        bars = ax.bar(xs, ys, width=width, label=f"{summ.get('label', split)} ({split})")
        for bar, n in zip(bars, ns, strict=True):
            ax.annotate(
                f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=7
            )
    ax.set_xticks(range(len(families)), families, rotation=30, ha="right")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("Acc (share of prompts correct)")
    ax.set_title(f"Accuracy per wrapper family — {results.get('method', '')}".strip(" —"))
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, path)
    return path


def plot_anchor_vs_open(records: list[dict], splits: list[str], path: Path) -> Path:
    """One panel per slice: each meta-group at (anchor Acc, open Acc); marker area ∝ number of groups there.

    Points on the diagonal are context-invariant groups; below it, the open variants lag the anchors.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, len(splits), figsize=(4.2 * len(splits), 4.0), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        points = [
            (g["anchor_acc"], g["open_acc"])
            for g in anchor_open_by_group(slice_records(records, split))
            if g["anchor_acc"] is not None and g["open_acc"] is not None
        ]
        counts = Counter((round(a, 3), round(o, 3)) for a, o in points)
        if counts:
            xs, ys, ns = zip(*[(a, o, n) for (a, o), n in counts.items()], strict=True)
            ax.scatter(xs, ys, s=[40 + 400 * n / max(ns) for n in ns], alpha=0.6)
            for x, y, n in zip(xs, ys, ns, strict=True):
                ax.annotate(str(n), (x, y), ha="center", va="center", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no group with scored\nanchors and open variants", ha="center", va="center")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("anchor Acc of the meta-group")
        ax.set_ylabel("open-variant Acc of the meta-group")
        ax.set_title(f"{SPLIT_LABELS.get(split, split)}: {len(points)} groups")
    fig.tight_layout()
    path = save_figure(fig, path)
    return path


def read_training_log(dirs: list[str | Path]) -> list[dict]:
    """Log entries (dicts with a ``step``) from the first directory holding ``log.jsonl`` or ``trainer_state.json``."""
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            continue
        for log in sorted(d.rglob("log.jsonl")):
            entries = []
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # blank, or the last line of a killed run, cut short
                    continue
                if isinstance(entry, dict):
                    entry.setdefault("step", entry.get("global_step"))
                    entries.append(entry)
            if entries:
                return entries
        states = []
        for state_path in d.rglob("trainer_state.json"):
            state = json.loads(state_path.read_text(encoding="utf-8"))
            states.append((state.get("global_step", 0), state.get("log_history", [])))
        if states:
            return [e for e in max(states, key=lambda s: s[0])[1] if "step" in e]
    return []


def plot_training_curves(dirs: list[str | Path], path: Path) -> Path | None:
    """Training curves (loss, rewards, invariance gap, ...) vs step; None when no log is found or nothing to plot."""
    entries = [e for e in read_training_log(dirs) if isinstance(e.get("step"), int | float)]
    numeric = {k for e in entries for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    keys = [k for k in CURVE_KEYS if k in numeric]
    keys += sorted(k for k in numeric if k.startswith(CURVE_PREFIXES) and k not in keys)
    keys = keys[:MAX_PANELS]
    if not keys:
        return None
    plt = pyplot()
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.0 * cols, 2.8 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = sorted((e["step"], e[key]) for e in entries if isinstance(e.get(key), int | float))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    path = save_figure(fig, path)
    return path
