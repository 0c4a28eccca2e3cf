"""Renderers of a calibration table (``rewards/calibration.py``): Markdown, one plot, and the three files.

``calibration_markdown(table)`` — one section per (domain, label): the verdict, a table of expected rewards and Δ per
role and kind, the violations, the hacks and the offset b. ``plot_calibration(table, path)`` — Δ per kind, one panel
per (domain, label), bars coloured by class, the ±tolerance band shaded. ``write_calibration(table, out_dir)`` —
``calibration.json``, ``calibration.md``, ``calibration.png``, each written atomically.
"""

from __future__ import annotations

from pathlib import Path

from air_align.evaluation.plots import pyplot, save_figure
from air_align.files import write_json, write_text

LABEL_NAMES = {("safety", 1): "harmful", ("safety", 0): "benign", ("morality", 1): "wrong", ("morality", 0): "fine"}
CLASS_COLOURS = {"correct": "tab:green", "failure": "tab:red", "hack": "tab:purple"}


def _label(domain, label) -> str:
    name = LABEL_NAMES.get((domain, label))
    return f"label {'none' if label is None else label}" + (f" ({name})" if name else "")


def _num(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def calibration_markdown(table: dict) -> str:
    """The table as Markdown: a summary line, then per (domain, label) its verdict, cells, violations and hacks."""
    tol = table["tolerance"]
    overall = "**calibrated**" if table["calibrated"] else "**not calibrated**"
    out = [
        "# Reward calibration",
        "",
        f"Verdict: {overall} (tolerance {tol:g}). Δ = E[correct anchor reward] − E[kind's reward]"
        + (" + b on open rows (calibrated Δ)" if table["offsets_applied"] else "")
        + ": the Δ AIR would give a policy that always wrote that kind. Calibrated: every correct open kind within "
        f"±{tol:g} of 0, every failure above {tol:g}; hacks below 0 are where AIR's negative coefficient acts.",
        "",
    ]
    for v in table["verdicts"]:
        d, lab = v["domain"], v["label"]
        out += [f"## {d}, {_label(d, lab)}: {v['status']}", ""]
        out.append(
            f"Correct anchor {_num(v['anchor_reward'])}, correct open {_num(v['correct_open_reward'])}, "
            f"offset b = E[correct open] − E[correct anchor] = {_num(v['offset'], signed=True)}"
            + (f" (applied: {v['offset_applied']:+.3f})" if table["offsets_applied"] else "")
            + "."
        )
        out += ["", "| role | kind | class | n | mean ± std | Δ |", "|---|---|---|---|---|---|"]
        for c in table["cells"]:
            if (c["domain"], c["label"]) != (d, lab):
                continue
            spread = "n/a" if c["mean"] is None else f"{c['mean']:.3f} ± {c['std']:.3f}"
            n = f"{c['n']}" + (f" (+{c['n_unscored']} unscored)" if c["n_unscored"] else "")
            out.append(f"| {c['role']} | {c['kind']} | {c['class']} | {n} | {spread} | {_num(c['delta'], True)} |")
        out.append("")
        out += [f"- **violation**: {x['message']}" for x in v["violations"]]
        out += [f"- hack: {x['message']}" for x in v["hacks"]]
        out += [f"- note: {n}" for n in v["notes"]]
        if v["violations"] or v["hacks"] or v["notes"]:
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def plot_calibration(table: dict, path: str | Path) -> Path:
    """Δ per (role, kind), one panel per (domain, label); green correct, red failure, purple hack; the grey band is
    ±tolerance (correct kinds belong inside it, failures to its right)."""
    plt = pyplot()
    panels = table["verdicts"]
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    heights = [
        sum(1 for c in table["cells"] if (c["domain"], c["label"]) == (v["domain"], v["label"])) for v in panels
    ]
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 0.4 * max(heights) + 1.6 * rows + 0.6), squeeze=False)
    tol = table["tolerance"]
    for ax, v in zip(axes.flat, panels, strict=False):
        cells = [c for c in table["cells"] if (c["domain"], c["label"]) == (v["domain"], v["label"])]
        cells = [c for c in cells if c["delta"] is not None]
        ys = list(range(len(cells)))[::-1]
        ax.axvspan(-tol, tol, color="0.9", zorder=0)
        ax.axvline(0.0, color="0.4", lw=1)
        deltas, colours = [c["delta"] for c in cells], [CLASS_COLOURS[c["class"]] for c in cells]
        ax.barh(ys, deltas, color=colours, zorder=2)
        ax.scatter(deltas, ys, c=colours, edgecolors="black", s=18, zorder=3)  # a Δ of 0 stays visible
        for y, delta in zip(ys, deltas, strict=True):
            ax.annotate(f"{delta:+.2f}", (delta, y), xytext=(4 if delta >= 0 else -4, 0), textcoords="offset points",
                        ha="left" if delta >= 0 else "right", va="center", fontsize=7)  # fmt: skip
        ax.margins(x=0.15)
        ax.set_yticks(ys, [f"{c['role']}: {c['kind']}" for c in cells], fontsize=8)
        ax.set_xlabel("Δ = E[correct anchor] − E[kind]  (reward units)", fontsize=8)
        ax.set_title(f"{v['domain']}, {_label(v['domain'], v['label'])}: {v['status']}", fontsize=9)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=col) for col in CLASS_COLOURS.values()]
    fig.legend(handles, list(CLASS_COLOURS), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save_figure(fig, Path(path))


def write_calibration(table: dict, out_dir: str | Path) -> dict[str, Path]:
    """``calibration.json``, ``calibration.md`` and ``calibration.png`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    paths = {"json": out / "calibration.json", "markdown": out / "calibration.md", "plot": out / "calibration.png"}
    write_json(paths["json"], table)
    write_text(paths["markdown"], calibration_markdown(table))
    plot_calibration(table, paths["plot"])
    return paths
