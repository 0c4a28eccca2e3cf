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
from air_align.extras import require
from air_align.files import atomic_path

# Keys plotted first when present; any other numeric key starting with these prefixes follows.


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed); imported on first use."""
    # heavy, optional (the `plots` extra), and the backend must be chosen before pyplot is imported
    matplotlib = require("matplotlib", "plotting")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "plotting")


def save_figure(fig, path: Path, dpi: int = 110, tight: bool = True) -> Path:
    """Save ``fig`` atomically (``air_align.files.atomic_path``) and close it; returns ``path``. ``tight`` crops the
    page to what is drawn (one more drawing pass); a figure whose margins are set already passes ``tight=False``."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None)
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
    """Log entries (dicts with a ``step``) from the first directory holding ``log.jsonl`` or ``trainer_state.json``
    anywhere under it, or else whose run log :func:`find_run_log` finds (a lab run's ``log.json``; for a saved model
    such as ``runs/X/final``, its parent run directory)."""
    for d in dirs:
        entries = _read_training_log_under(d)
        if not entries:
            found = find_run_log(d) if Path(d).is_dir() else None
            entries = found[0] if found else []
        if entries:
            return entries
    return []


def _read_training_log_under(d: str | Path) -> list[dict]:
    """The first ``log.jsonl`` anywhere under ``d``, else the ``trainer_state.json`` under it with the largest
    ``global_step``; [] when neither exists."""
    d = Path(d)
    if not d.is_dir():
        return []
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
    """A run's training curves, one PNG readable at a glance (:func:`plot_run_curves`: anchors vs open reward, Δ per
    label, format rate, the aux term beside the policy term, the no-signal share, anchor accuracy), from the first of
    ``dirs`` that holds a training log (:func:`read_training_log`); None when there is none."""
    return plot_run_curves(read_training_log(dirs), path)


# --- one run's training curves, readable at a glance (docs/monitoring.md) --------------------------------------------

LOG_FILES = ("log.json", "log.jsonl", "trainer_state.json")  # a lab run's log, a JSONL log, TRL's trainer state


def read_log_file(path: str | Path) -> list[dict]:
    """Log entries of one file: a JSON list of dicts (a lab run's ``log.json``), a JSON object with ``log_history``
    (TRL's ``trainer_state.json``) or JSONL (one dict a line); each entry gets ``step`` (from ``global_step`` if
    missing). Entries without a numeric step are dropped."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: neither JSON nor JSONL ({err})") from None
    if isinstance(data, dict):
        data = data.get("log_history")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of log entries or an object with 'log_history'")
    entries = []
    for entry in data:
        if isinstance(entry, dict):
            entry = {**entry, "step": entry.get("step", entry.get("global_step"))}
            if isinstance(entry["step"], int | float) and not isinstance(entry["step"], bool):
                entries.append(entry)
    return entries


def _log_in_dir(d: Path) -> Path | None:
    for name in LOG_FILES:
        if (d / name).is_file():
            return d / name
    states = []  # TRL checkpoints: the latest (largest global_step) holds the longest history
    for state_path in d.glob("checkpoint-*/trainer_state.json"):
        try:
            states.append((json.loads(state_path.read_text(encoding="utf-8")).get("global_step", 0), state_path))
        except (json.JSONDecodeError, OSError):
            continue
    return max(states)[1] if states else None


def _is_model_dir(d: Path) -> bool:
    return (
        d.name == "final"
        or d.name.startswith("checkpoint-")
        or (d / "config.json").is_file()
        or (d / "adapter_config.json").is_file()
    )


def find_run_log(path: str | Path) -> tuple[list[dict], Path] | None:
    """A training run's log entries and the file they came from, given any of: the run directory (``log.json``,
    ``log.jsonl``, ``trainer_state.json`` or its latest ``checkpoint-*/trainer_state.json``), a saved model inside it
    (``run_dir/final``, the README's ``--model runs/X/final``; any directory with ``config.json``: its parent run
    directory is searched when it holds no log itself), a checkpoint directory (its own ``trainer_state.json``), or a
    log file. None when no log is found."""
    path = Path(path)
    if path.is_file():
        return read_log_file(path), path
    if not path.is_dir():
        return None
    candidates = [path] + ([path.parent] if _is_model_dir(path) else [])
    for d in candidates:
        found = _log_in_dir(d)
        if found is not None:
            entries = read_log_file(found)
            if entries:
                return entries, found
    return None


def _series(entries: list[dict], key: str) -> tuple[list[float], list[float]]:
    pts = sorted(
        (e["step"], e[key])
        for e in entries
        if isinstance(e.get(key), int | float) and not isinstance(e.get(key), bool) and math.isfinite(e[key])
    )
    return [p[0] for p in pts], [p[1] for p in pts]


def _label_delta_keys(numeric: set[str]) -> list[str]:
    """``air/delta/<domain>/<label>`` keys (the per-label Δ of AIRTrainer's monitors), sorted."""
    return sorted(k for k in numeric if k.startswith("air/delta/") and k.count("/") == 3)


def run_curve_panels(entries: list[dict], anchor_accuracy: dict | None = None) -> list[dict]:
    """What :func:`plot_run_curves` draws, panel by panel, from a trainer ``log_history``: ``title``, ``series``
    (``(key, label)`` pairs present in the log), ``bold`` (the key drawn thick), ``hlines`` (``(y, label)``),
    ``points`` (extra ``(step, value)`` markers), ``ylim``, ``log`` (log scale) and ``empty`` (said when nothing is
    drawn). The six panels:

    1. reward of anchors vs open variants (``reward/anchor``, ``reward/open``; the anchors' starting level
       ``air/anchor_start`` as a line);
    2. Δ per (domain, label) (``air/delta/<domain>/<label>``) and over all open prompts (``air/delta/open``, else
       ``invariance/delta``);
    3. format rate: ``air_reward/format_ok`` (the composite reward's share of well-formed completions) or, else, the
       mean of every reward function whose name contains ``format`` (``rewards/<name>/mean``);
    4. the AIR term vs the policy term: ``air/aux_to_policy_weight`` (log scale), else ``invariance/aux_loss`` beside
       ``loss``;
    5. share of prompts without GRPO signal per role (``air/zero_std/*``, else TRL's ``frac_reward_zero_std``);
    6. anchor accuracy where evaluated: log keys ending in ``anchor_acc`` and ``anchor_accuracy`` (``{step: acc}``,
       e.g. a final evaluation).
    """
    numeric = {k for e in entries for k, v in e.items() if isinstance(v, int | float) and not isinstance(v, bool)}

    def present(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, label) for k, label in pairs if k in numeric]

    start = _series(entries, "air/anchor_start")[1]
    overall = "air/delta/open" if "air/delta/open" in numeric else "invariance/delta"
    formats = sorted(k for k in numeric if k.startswith("rewards/") and k.endswith("/mean") and "format" in k)
    weight = _series(entries, "air/aux_to_policy_weight")[1]
    zero = present([("air/zero_std/anchor", "anchors"), ("air/zero_std/open", "open variants")])
    accuracy = sorted((float(s), float(a)) for s, a in (anchor_accuracy or {}).items() if a is not None)
    return [
        dict(
            title="reward: anchors vs open variants",
            series=present([("reward/anchor", "anchors"), ("reward/open", "open variants")]),
            hlines=[(start[-1], "anchors' start")] if start else [],
            empty="no reward/anchor or reward/open in this log",
        ),
        dict(
            title="Δ per label (> 0: open lags anchors)",
            series=[(k, k.removeprefix("air/delta/")) for k in _label_delta_keys(numeric)]
            + present([(overall, "all open prompts")]),
            bold=overall,
            hlines=[(0.0, None)],
            empty="no Δ in this log",
        ),
        dict(
            title="format rate" if "air_reward/format_ok" in numeric else "format rate (mean format reward)",
            series=present([("air_reward/format_ok", "share well-formed")])
            or [(k, k.removeprefix("rewards/").removesuffix("/mean")) for k in formats],
            ylim=(-0.05, 1.05) if "air_reward/format_ok" in numeric else None,
            empty="no format reward in this log",
        ),
        dict(
            title="AIR term vs policy term",
            series=present([("air/aux_to_policy_weight", "aux / policy gradient weight")])
            or present([("invariance/aux_loss", "aux loss"), ("loss", "loss")]),
            hlines=[(1.0, None)] if weight else [],
            log=bool(weight) and min(weight) > 0,
            empty="no AIR term in this log",
        ),
        dict(
            title="share of prompts with K equal rewards (no signal)",
            series=zero or present([("frac_reward_zero_std", "all prompts")]),
            ylim=(-0.05, 1.05),
            empty="not in this log",
        ),
        dict(
            title="anchor accuracy",
            series=[(k, k) for k in sorted(k for k in numeric if k.endswith("anchor_acc"))],
            points=accuracy,
            ylim=(-0.05, 1.05),
            empty="anchor accuracy not evaluated during training",
        ),
    ]


RUN_CURVE_MARGINS = dict(left=0.045, right=0.99, bottom=0.07, top=0.9, wspace=0.2, hspace=0.38)


def plot_run_curves(
    entries: list[dict], path: str | Path, title: str = "", anchor_accuracy: dict | None = None
) -> Path | None:
    """One PNG of one run's training, readable at a glance: the six panels of :func:`run_curve_panels` against the
    optimiser step, from a trainer ``log_history`` (``find_run_log``). A panel whose keys are absent says so.
    Returns ``path``, or None when no entry has a numeric step."""
    entries = [e for e in entries if isinstance(e.get("step"), int | float)]
    if not entries:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13.5, 6.6))
    panels = run_curve_panels(entries, anchor_accuracy)
    steps = [e["step"] for e in entries] + [x for p in panels for x, _ in p.get("points", [])]
    margin = max(0.5, 0.03 * (max(steps) - min(steps)))
    for ax, panel in zip(axes.flat, panels, strict=True):
        for key, label in panel["series"]:
            xs, ys = _series(entries, key)
            bold = dict(color="black", lw=2, alpha=0.6) if key == panel.get("bold") else {}
            ax.plot(xs, ys, label=label, marker="." if len(xs) < 50 else None, **bold)
        if panel.get("points"):
            xs, ys = zip(*panel["points"], strict=True)
            ax.plot(xs, ys, marker="o", ls="--", label="evaluated")
        if panel["series"] or panel.get("points"):
            for y, label in panel.get("hlines", []):
                ax.axhline(y, ls="--" if label else ":", lw=1, color="grey", label=label)
            if panel.get("log"):
                ax.set_yscale("log")
            if panel.get("ylim"):
                ax.set_ylim(*panel["ylim"])
            ax.set_xlim(min(steps) - margin, max(steps) + margin)  # one step axis for every panel
            ax.legend(fontsize=7)
        else:
            ax.set_xticks([]), ax.set_yticks([])
            ax.text(
                0.5, 0.5, panel["empty"], ha="center", va="center", fontsize=8, color="grey", transform=ax.transAxes
            )
        ax.set_title(panel["title"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    # fixed margins, not tight_layout and a tight crop: each of those is a drawing pass of its own, and a lab grid
    # draws this figure once per run (docs/performance.md, "One lab run")
    fig.subplots_adjust(**RUN_CURVE_MARGINS)
    return save_figure(fig, Path(path), tight=False)
