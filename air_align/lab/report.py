"""The lab grid's outputs: summary, comparisons, Markdown tables and plots (``reproduce.py`` calls
:func:`write_outputs`; ``analyse.py`` calls :func:`rebuild` on a grid's committed files)."""

from __future__ import annotations

import statistics
from pathlib import Path

from air_align.evaluation.plots import pyplot, save_figure
from air_align.files import write_json, write_text
from air_align.lab import outcomes
from air_align.lab.analysis import equivalence_verdict, helps_verdict, summarise, world_key, world_mean_differences
from air_align.lab.dial import dial_tables, plot_dial
from air_align.training.methods import method_label

AIR_VARIANTS = ("grpo+air", "gspo+air", "grpo+air-loo", "grpo+air-cal", "grpo+air-const", "grpo+air-shift")


def _pct(cell: dict | None, key: str) -> str:
    c = (cell or {}).get(key)
    return "—" if c is None else f"{100 * c['mean']:.1f} ± {100 * c['std']:.1f}"


def method_table(summary: dict, cell: str, methods: list[str]) -> str:
    """Rows ID/OOD × method; Acc, Acc_group, Acc_group per label, balanced Acc_group, anchors, hack rate, collapsed."""
    cm = summary.get(cell, {})
    labels = sorted(
        {k.split("/", 1)[1] for m in cm.values() for s in m.values() for k in s if k.startswith("acc_group/")}
    )
    head = ["setting", "method", "Acc", "Acc_group"] + [f"Acc_group (label {lab})" for lab in labels]
    head += ["balanced Acc_group", "anchors", "hack rate", "collapsed runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for split, name in (("test_id", "ID"), ("test_ood", "OOD")):
        for method in methods:
            c = cm.get(method, {}).get(split)
            if not c:
                continue
            collapsed = c.get("collapsed", {"mean": 0, "n": 0})
            row = [name, method_label(method), _pct(c, "acc"), _pct(c, "acc_group")]
            row += [_pct(c, f"acc_group/{lab}") for lab in labels]
            row += [
                _pct(c, "balanced_acc_group"),
                _pct(c, "anchor_acc"),
                _pct(c, "hack_rate"),
                f"{round(collapsed['mean'] * collapsed['n'])}/{collapsed['n']}",
            ]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def warm_start_table(worlds: dict) -> str:
    """Per world and split: the warm start's Acc, Acc_group per label and balanced, anchors, and the error histogram
    (meta-groups with 0, 1, 2, … wrong prompts)."""
    head = ["world", "split", "Acc", "Acc_group", "Acc_group per label", "balanced", "anchors", "groups by # wrong"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, w in worlds.items():
        for split, m in w["metrics"]["metrics"].items():
            per_label = ", ".join(f"{lab}: {100 * v:.1f}" for lab, v in m["acc_group_by_label"].items())
            lines.append(
                f"| {name} | {split} | {100 * m['acc']:.1f} | {100 * m['acc_group']:.1f} | {per_label} | "
                f"{100 * m['balanced_acc_group']:.1f} | {100 * m['anchor_acc']:.1f} | {m['error_histogram']} |"
            )
    return "\n".join(lines)


def calibration_summary(calibration: dict) -> str:
    """Per cell and label: the calibration verdict, a correct anchor's and a correct open answer's expected reward,
    the offset b, the failures at fault and the hacks (with Δ) — the full tables are in results.json."""
    head = ["cell", "label", "verdict", "correct anchor", "correct open", "offset b", "at fault (Δ)", "hacks (Δ)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, table in calibration.items():
        for v in table["verdicts"]:
            faults = ", ".join(f"{x['kind']} ({x['delta']:+.2f})" for x in v["violations"]) or "—"
            hacks = ", ".join(f"{x['kind']} ({x['delta']:+.2f})" for x in v["hacks"]) or "—"
            lines.append(
                f"| {cell} | {v['label']} | {v['status']} | {v['anchor_reward']:.2f} | {v['correct_open_reward']:.2f} "
                f"| {v['offset']:+.2f} | {faults} | {hacks} |"
            )
    return "\n".join(lines)


INTERVAL_NAMES = {
    "unit_t": "t over units",
    "seed_t": "t over seeds",
    "hier_bootstrap": "bootstrap over units",
    "bootstrap": "bootstrap over seeds and groups",
}


def _ci(v: dict) -> str:
    ci = v["ci"]
    return f"{100 * v['diff']:+.1f} " + ("[—]" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]")


def comparison_table(comparisons: dict) -> str:
    """AIR variant − GRPO per cell: OOD (and ID) Acc_group and balanced Acc_group differences with the chosen paired
    interval (``intervals.chosen_interval``), the units, the verdict and how many units say yes."""
    head = [
        "cell",
        "method",
        "split",
        "Δ Acc_group [95% CI]",
        "Δ balanced Acc_group [95% CI]",
        "interval",
        "Δ per label",
        "anchors (AIR / GRPO)",
        "AIR helps",
        "units yes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, by_method in comparisons.items():
        for method, by_split in by_method.items():
            for split, v in by_split.items():
                a, b = v["acc_group"], v["balanced_acc_group"]
                per_label = ", ".join(f"{lab}: {100 * g:+.1f}" for lab, g in v["gain_by_label"].items())
                failed = [k for k, ok in v["checks"].items() if not ok]
                verdict = "**yes**" if v["helps"] else "no (" + ", ".join(failed) + ")"
                units = f"{b['n_units']} unit" + ("s" if b["n_units"] != 1 else "")
                interval = f"{INTERVAL_NAMES[b['interval']]} ({units}, {b['n_seeds']} pairs)"
                lines.append(
                    f"| {cell} | {method_label(method)} | {'ID' if split == 'test_id' else 'OOD'} | {_ci(a)} | "
                    f"{_ci(b)} | {interval} | {per_label} | "
                    f"{100 * v['anchor_acc']['air']:.1f} / {100 * v['anchor_acc']['grpo']:.1f} | {verdict} | "
                    f"{v['units_yes']}/{v['n_units']} |"
                )
    return "\n".join(lines)


def sweep_table(sweep: dict, chosen: dict) -> str:
    """Per cell: λ → mean val balanced Acc_group / balanced Acc over the sweep seeds; the chosen λ in bold."""
    lines = ["| cell | λ: val balanced Acc_group / balanced Acc (%) | chosen |", "|---|---|---|"]
    for cell, runs in sweep.items():
        parts = []
        for lam in sorted({r["lambda"] for r in runs}):
            vals = [r["metrics"]["val"] for r in runs if r["lambda"] == lam]
            g = statistics.fmean(v["balanced_acc_group"] for v in vals)
            a = statistics.fmean(v["balanced_acc"] for v in vals)
            text = f"{lam:g}: {100 * g:.1f} / {100 * a:.1f}"
            parts.append(f"**{text}**" if lam == chosen.get(cell) else text)
        lines.append(f"| {cell} | {'; '.join(parts)} | {chosen.get(cell)} |")
    return "\n".join(lines)


def compare(runs: list[dict]) -> dict:
    """``{cell: {air_variant: {split: helps_verdict}}}`` for every AIR variant that ran beside GRPO."""
    out: dict = {}
    cells = sorted({r["cell"] for r in runs})
    for cell in cells:
        mine = [r for r in runs if r["cell"] == cell]
        grpo = [r for r in mine if r["method"] == "grpo"]
        if not grpo:
            continue
        for method in AIR_VARIANTS:
            air = [r for r in mine if r["method"] == method]
            if air:
                out.setdefault(cell, {})[method] = {s: helps_verdict(air, grpo, s) for s in ("test_ood", "test_id")}
    return out


def per_world_table(runs: list[dict], split: str = "test_ood") -> str:
    """Each method − GRPO per world, in every comparison that pools several worlds: the paired differences of
    balanced and plain Acc_group on ``split``, a world's warm starts and seeds averaged (the values the t-interval
    over worlds is computed from, docs/lab.md §6); "" when no comparison spans two worlds."""
    rows = []
    for cell in sorted({r["cell"] for r in runs}):
        mine = [r for r in runs if r["cell"] == cell]
        grpo = [r for r in mine if r["method"] == "grpo"]
        if not grpo or len({world_key(r) for r in mine}) < 2:
            continue
        for method in dict.fromkeys(r["method"] for r in mine if r["method"] != "grpo"):
            other = [r for r in mine if r["method"] == method]
            cells = []
            for metric in ("balanced_acc_group", "acc_group"):
                by_world = world_mean_differences(other, grpo, metric, split)
                means = {w.split("/")[0]: 100 * d for w, d in sorted(by_world.items())}
                listed = ", ".join(f"{w}: {v:+.1f}" for w, v in means.items())
                cells.append(f"{listed} (mean {statistics.fmean(means.values()):+.1f})")
            rows.append(f"| {cell} | {method_label(method)} | {cells[0]} | {cells[1]} |")
    if not rows:
        return ""
    head = "| comparison | method | Δ balanced Acc_group per world | Δ Acc_group per world |\n|---|---|---|---|"
    return head + "\n" + "\n".join(rows)


EQUIVALENCE_PAIRS = {"grpo+air-const": "grpo+air", "grpo+air-shift": "grpo+air"}
"""The AIR variants compared with GRPO+AIR itself by the equivalence rule (lab v3 E1)."""


def equivalences(runs: list[dict]) -> dict:
    """``{cell: {variant: {split: equivalence_verdict}}}``, each pair of ``EQUIVALENCE_PAIRS`` that ran in a cell."""
    out: dict = {}
    for cell in sorted({r["cell"] for r in runs}):
        mine = [r for r in runs if r["cell"] == cell]
        for variant, base in EQUIVALENCE_PAIRS.items():
            a, b = [r for r in mine if r["method"] == variant], [r for r in mine if r["method"] == base]
            if a and b:
                out.setdefault(cell, {})[variant] = {s: equivalence_verdict(a, b, s) for s in ("test_ood", "test_id")}
    return out


def equivalence_table(found: dict) -> str:
    """Variant − GRPO+AIR per cell: balanced Acc_group, Acc_group and hack rate differences with the verdict's
    interval, and the equivalence verdict (match / differ / inconclusive)."""
    head = [
        "cell",
        "method",
        "split",
        "Δ balanced Acc_group [95% CI]",
        "Δ Acc_group [95% CI]",
        "Δ hack rate [95% CI]",
        "interval",
        "verdict (±10 points)",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell, by_method in found.items():
        for method, by_split in by_method.items():
            for split, v in by_split.items():
                b = v["balanced_acc_group"]
                hack = _ci(v["hack_rate"]) if "hack_rate" in v else "—"
                units = f"{b['n_units']} unit" + ("s" if b["n_units"] != 1 else "")
                lines.append(
                    f"| {cell} | {method_label(method)} | {'ID' if split == 'test_id' else 'OOD'} | {_ci(b)} | "
                    f"{_ci(v['acc_group'])} | {hack} | {INTERVAL_NAMES[b['interval']]} ({units}, {b['n_seeds']} "
                    f"pairs) | {v['verdict']} |"
                )
    return "\n".join(lines)


def _plot(summary: dict, methods: list[str], path: Path) -> None:
    plt = pyplot()
    cells = sorted(summary)
    if not cells:
        return
    fig, axes = plt.subplots(1, len(cells), figsize=(3.6 * len(cells), 3.4), squeeze=False)
    for ax, cell in zip(axes[0], cells, strict=True):
        names = [m for m in methods if m in summary[cell]]
        for offset, metric, colour in ((-0.2, "acc_group", "tab:blue"), (0.2, "balanced_acc_group", "tab:orange")):
            vals = [summary[cell][m].get("test_ood", {}).get(metric, {"mean": 0, "std": 0}) for m in names]
            ax.bar(
                [i + offset for i in range(len(names))],
                [v["mean"] for v in vals],
                width=0.4,
                yerr=[v["std"] for v in vals],
                capsize=2,
                color=colour,
                label=metric,
            )
        ax.set_xticks(range(len(names)), [method_label(m) for m in names], rotation=35, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{cell}: OOD", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def _plot_sweep(sweep: dict, chosen: dict, path: Path) -> None:
    if not sweep:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(sweep), figsize=(3.6 * len(sweep), 3.2), squeeze=False)
    for ax, (cell, runs) in zip(axes[0], sorted(sweep.items()), strict=True):
        lams = sorted({r["lambda"] for r in runs})
        for metric, style in (("balanced_acc", "-o"), ("balanced_acc_group", "--s")):
            means = [statistics.fmean(r["metrics"]["val"][metric] for r in runs if r["lambda"] == lam) for lam in lams]
            ax.plot(lams, means, style, label=metric)
        ax.axvline(chosen.get(cell, float("nan")), color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("λ")
        ax.set_title(f"{cell}: λ sweep (val, GRPO+AIR)", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def write_outputs(results: dict, out: Path, full_runs: list[dict], sweep_runs: list[dict] = ()) -> dict:
    """Write a finished grid: ``outcomes.json.gz`` (every run's per-prompt outcomes, ``outcomes.py``), the code
    hashes the grid mixes, then :func:`rebuild`'s analysis (results.json, table.md, plots). ``full_runs`` are the
    main runs with their per-prompt ``records``, ``sweep_runs`` the sweep's."""
    outcomes.write(out / outcomes.FILENAME, [*full_runs, *sweep_runs])
    hashes = {(r.get("code") or {}).get("hash", "unrecorded") for r in [*full_runs, *sweep_runs]}
    results["code_hashes"] = sorted(hashes)
    return rebuild(results, out, full_runs)


def _layout(preset: dict) -> tuple[list[str], list[str]]:
    """(comparison names, methods in order) of a grid from its ``results.json`` preset (``reproduce._jsonable``): a
    unit's ``group``, or ``world/regime`` in grids recorded before units had one."""
    # a λ-tuning unit (`methods: []`, presets.Preset.tuning) has no runs of its own to show
    compared = [c for c in preset["cells"] if c.get("methods") is None or len(c["methods"])]
    cells = list(dict.fromkeys(c.get("group") or f"{Path(c['world']).stem}/{c['regime']}" for c in compared))
    per_cell = [
        ("grpo",) if preset.get("grpo_only") else (preset["methods"] if c.get("methods") is None else c["methods"])
        for c in compared
    ]
    return cells, list(dict.fromkeys(m for ms in per_cell for m in ms))


def rebuild(results: dict, out: Path, full_runs: list[dict] | None, compressed: bool = False) -> dict:
    """Summary, comparisons and tables of ``results`` into it; write ``results.json``, ``table.md`` and the plots.

    ``full_runs``: the main runs with their per-prompt ``records`` (for the two-level bootstrap), or None to compare
    from the per-run metrics of ``results["runs"]`` alone (grids from before ``outcomes.json.gz``). ``compressed``:
    write ``results.json.gz`` instead (a large grid's committed form, docs/lab.md §6)."""
    cells, methods = _layout(results["preset"])
    results["summary"] = summarise(results["runs"])
    results["comparisons"] = compare(full_runs if full_runs is not None else results["runs"])
    results["equivalence"] = equivalences(results["runs"])
    parts = [f"# Lab grid `{results['preset']['name']}` ({results['seconds']:.0f} s)"]
    parts += ["## Warm starts (greedy, oracle)", warm_start_table(results["worlds"])]
    parts += [
        "## Reward calibration per cell (train rows; `calibration.check`)",
        calibration_summary(results["calibration"]),
    ]
    for cell in cells:
        parts += [f"## {cell} (λ = {results['lambda'].get(cell)})", method_table(results["summary"], cell, methods)]
    if results["comparisons"]:
        parts += [
            "## AIR − GRPO (paired by replication unit and seed; the verdict per unit and overall)",
            comparison_table(results["comparisons"]),
        ]
    per_world = per_world_table(results["runs"])
    if per_world:
        parts += ["## Method − GRPO per world (OOD; each world's warm starts averaged)", per_world]
    dial, results["dial"] = dial_tables(results["runs"])
    if dial:
        parts += ["## The hack dial (plain GRPO's hack rate against each method's gain; docs/results/lab-v3)", dial]
    if results["equivalence"]:
        parts += [
            "## AIR variants − GRPO+AIR (paired by unit and seed; match iff the interval is within ±10 points)",
            equivalence_table(results["equivalence"]),
        ]
    if results["sweep"]:
        parts += ["## λ sweep (ID validation)", sweep_table(results["sweep"], results["lambda"])]
    hashes = results.get("code_hashes")
    parts += [f"Code: {', '.join(h[:12] for h in hashes)}" if hashes else "Code: not recorded"]
    results["table"] = "\n\n".join(parts)
    write_json(out / ("results.json.gz" if compressed else "results.json"), results)
    write_text(out / "table.md", results["table"] + "\n")
    _plot(results["summary"], methods, out / "ood_acc_group.png")
    _plot_sweep(results["sweep"], results["lambda"], out / "lambda_sweep.png")
    if results["dial"]:
        plot_dial(results["dial"], out / "hack_dial.png")
    return results
