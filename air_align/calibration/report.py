"""Renderers of a calibration table (``calibration/check.py``): Markdown, one plot, and the three files.

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


def label_name(domain, label) -> str:
    """A label as the reports name it.

    >>> label_name("safety", 1), label_name("math", None)
    ('label 1 (harmful)', 'label none')
    """
    name = LABEL_NAMES.get((domain, label))
    return f"label {'none' if label is None else label}" + (f" ({name})" if name else "")


def reward_number(x: float | None, signed: bool = False) -> str:
    """A reward or Δ with three decimals (``n/a`` when nothing was scored).

    >>> reward_number(2.5), reward_number(-0.25, signed=True), reward_number(None)
    ('2.500', '-0.250', 'n/a')
    """
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
        out += [f"## {d}, {label_name(d, lab)}: {v['status']}", ""]
        out.append(
            f"Correct anchor {reward_number(v['anchor_reward'])}, "
            f"correct open {reward_number(v['correct_open_reward'])}, "
            f"offset b = E[correct open] − E[correct anchor] = {reward_number(v['offset'], signed=True)}"
            + (f" (applied: {v['offset_applied']:+.3f})" if table["offsets_applied"] else "")
            + "."
        )
        out += ["", "| role | kind | class | n | mean ± std | Δ |", "|---|---|---|---|---|---|"]
        for c in table["cells"]:
            if (c["domain"], c["label"]) != (d, lab):
                continue
            spread = "n/a" if c["mean"] is None else f"{c['mean']:.3f} ± {c['std']:.3f}"
            n = f"{c['n']}" + (f" (+{c['n_unscored']} unscored)" if c["n_unscored"] else "")
            out.append(
                f"| {c['role']} | {c['kind']} | {c['class']} | {n} | {spread} | {reward_number(c['delta'], True)} |"
            )
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
            ax.annotate(
                f"{delta:+.2f}",
                (delta, y),
                xytext=(4 if delta >= 0 else -4, 0),
                textcoords="offset points",
                ha="left" if delta >= 0 else "right",
                va="center",
                fontsize=7,
            )
        ax.margins(x=0.15)
        ax.set_yticks(ys, [f"{c['role']}: {c['kind']}" for c in cells], fontsize=8)
        ax.set_xlabel("Δ = E[correct anchor] − E[kind]  (reward units)", fontsize=8)
        ax.set_title(f"{v['domain']}, {label_name(v['domain'], v['label'])}: {v['status']}", fontsize=9)
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


def report_lines(table: dict) -> list[str]:
    """The table and verdict as terminal lines: per (domain, label) its cells, violations and hacks, then the
    overall verdict naming every label and kind at fault with its Δ."""
    out = []
    for v in table["verdicts"]:
        d, lab = v["domain"], v["label"]
        out.append(
            f"{d}, {label_name(d, lab)}: {v['status']} (correct anchor {reward_number(v['anchor_reward'])}, "
            f"correct open {reward_number(v['correct_open_reward'])}, b = {reward_number(v['offset'], signed=True)})"
        )
        out.append(f"  {'role':<7}{'kind':<20}{'class':<9}{'n':>5}  {'mean ± std':<17}{'Δ':>8}")
        for c in table["cells"]:
            if (c["domain"], c["label"]) != (d, lab):
                continue
            spread = "n/a" if c["mean"] is None else f"{c['mean']:.3f} ± {c['std']:.3f}"
            flag = " <-" if any(x["kind"] == c["kind"] and x["role"] == c["role"] for x in v["violations"]) else ""
            delta = reward_number(c["delta"], signed=True)
            out.append(f"  {c['role']:<7}{c['kind']:<20}{c['class']:<9}{c['n']:>5}  {spread:<17}{delta:>8}{flag}")
        out += [f"  violation: {x['message']}" for x in v["violations"]]
        out += [f"  {x['message']}" for x in v["hacks"]]
        out += [f"  note: {n}" for n in v["notes"]]
    out.append("")
    tol = table["tolerance"]
    if table["calibrated"]:
        out.append(f"verdict: calibrated within tolerance {tol:g} (every label)")
    else:
        out.append(f"verdict: NOT calibrated within tolerance {tol:g}")
        for v in table["verdicts"]:
            if v["status"] == "calibrated":
                continue
            where = f"{v['domain']}, {label_name(v['domain'], v['label'])}"
            if v["violations"]:
                kinds = ", ".join(
                    f"{x['role']} '{x['kind']}' ({x['class']}) Δ = {x['delta']:+.3f}" for x in v["violations"]
                )
                out.append(f"  {where}: {kinds}")
            else:
                out.append(f"  {where}: {v['status']} ({'; '.join(v['notes'])})")
    return out


def offsets_lines(table: dict) -> list[str]:
    """Whether the measured offsets would make the reward calibrated (calibrated Δ), and what they cannot fix."""
    check = table.get("with_offsets")
    if check is None:
        return []
    if check["calibrated"]:
        return ["with these offsets (calibrated Δ) every label is calibrated"]
    out = ["with these offsets (calibrated Δ) it is still NOT calibrated (an offset cannot fix these):"]
    for v in check["verdicts"]:
        if v["violations"]:
            kinds = ", ".join(
                f"{x['role']} '{x['kind']}' ({x['class']}) Δ = {x['delta']:+.3f}" for x in v["violations"]
            )
            out.append(f"  {v['domain']}, {label_name(v['domain'], v['label'])}: {kinds}")
        elif v["status"] != "calibrated":
            out.append(f"  {v['domain']}, {label_name(v['domain'], v['label'])}: {v['status']}")
    return out
