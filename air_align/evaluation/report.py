"""Markdown reports: one run's report.md, and runs side by side in the paper's table layout (Table 1 of the paper:
rows setting × method, columns per domain ``Acc / Acc_group``)."""

from __future__ import annotations

import json
from pathlib import Path

DOMAIN_ORDER = ("safety", "morality", "math")


def percent(x: float | None, digits: int = 2) -> str:
    """A share as a percentage for the markdown tables, ``n/a`` when undefined.

    >>> percent(0.5), percent(1 / 3, digits=1), percent(None)
    ('50.00%', '33.3%', 'n/a')
    """
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _pct(x: float | None) -> str:
    return percent(x)


def _ci(ci: list[float] | None) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _domains(results_list: list[dict]) -> list[str]:
    found = {d for res in results_list for s in res["slices"].values() for d in s["by_domain"]}
    return [d for d in DOMAIN_ORDER if d in found] + sorted(found - set(DOMAIN_ORDER))


def paper_table(results_list: list[dict], with_ci: bool = False) -> str:
    """Rows (setting, method), columns ``<domain> Acc / Acc_group`` and the all-domain pair; settings ID then OOD."""
    domains = _domains(results_list)
    header = ["Setting", "Method", *[f"{d} Acc / Acc_group" for d in domains], "all Acc / Acc_group"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    splits = list(dict.fromkeys(s for res in results_list for s in res["slices"]))
    for split in splits:
        for res in results_list:
            summ = res["slices"].get(split)
            if summ is None:
                continue
            cells = [summ.get("label", split), str(res.get("method", "unknown"))]
            for block in [summ["by_domain"].get(d) for d in domains] + [summ]:
                if block is None:
                    cells.append("—")
                    continue
                acc = _pct(block["acc"]) + (_ci(block.get("acc_ci")) if with_ci else "")
                grp = _pct(block["acc_group"]) + (_ci(block.get("acc_group_ci")) if with_ci else "")
                cells.append(f"{acc} / {grp}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def label_table(results_list: list[dict]) -> str:
    """Rows (setting, method); per domain the balanced ``Acc / Acc_group`` (minimum over labels) and Acc_group per
    label. Results written before per-label metrics existed show ``—``."""
    domains = _domains(results_list)
    header = ["Setting", "Method"]
    for d in domains:
        header += [f"{d} balanced Acc / Acc_group", f"{d} Acc_group by label"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for split in dict.fromkeys(s for res in results_list for s in res["slices"]):
        for res in results_list:
            summ = res["slices"].get(split)
            if summ is None:
                continue
            cells = [summ.get("label", split), str(res.get("method", "unknown"))]
            for d in domains:
                block = summ["by_domain"].get(d) or {}
                bal, labels = block.get("balanced"), block.get("by_label")
                cells.append("—" if bal is None else f"{_pct(bal['acc'])} / {_pct(bal['acc_group'])}")
                cells.append(
                    "—" if labels is None else " · ".join(f"{k}: {_pct(v['acc_group'])}" for k, v in labels.items())
                )
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _histogram_lines(summ: dict) -> list[str]:
    """One line per (domain, label): how many judged meta-groups have 0, 1, 2, … wrong prompts."""
    out = []
    for d, block in summ["by_domain"].items():
        for label, lb in (block.get("by_label") or {}).items():
            hist = lb.get("error_histogram") or []
            counts = ", ".join(f"{k}: {n}" for k, n in enumerate(hist)) or "no judged group"
            out.append(f"- {d}, label {label}: {counts}")
    return out


def render_report(results: dict) -> str:
    """report.md for one evaluation run."""
    cfg = results.get("config", {})
    out = [f"# Evaluation report — {results.get('method', 'unknown')}", ""]
    for key in ("model", "data", "judge", "method"):
        if key in results:
            out.append(f"- **{key}**: `{results[key]}`")
    out += [
        f"- **decoding**: max_new_tokens={cfg.get('max_new_tokens')}, samples={cfg.get('num_samples')}, "
        f"temperature={cfg.get('temperature')}, seed={cfg.get('seed')} ({cfg.get('prompt_rule')})",
        f"- **prompts**: {results.get('n_prompts')}, completions: {results.get('n_completions')}",
        "",
        "## Acc / Acc_group (paper layout)",
        "",
        paper_table([results]),
        f"95% bootstrap intervals over meta-groups ({cfg.get('n_boot')} resamples):",
        "",
        paper_table([results], with_ci=True),
        "## Per label and balanced (minimum over labels)",
        "",
        "A meta-group's label is its intent's (safety 1 = harmful, morality 1 = wrong, maths `none`). A policy that "
        "answers every prompt alike is right on one label at most: its balanced Acc_group is 0.",
        "",
        label_table([results]),
    ]
    for split, summ in results["slices"].items():
        label = summ.get("label", split)
        out += [f"## {label} (`{split}`)", ""]
        out.append(
            f"{summ['n_prompts']} prompts ({summ['n_scored']} scored), {summ['n_groups']} meta-groups "
            f"({summ['n_groups_scored']} fully scored)."
        )
        unscored = summ["n_prompts"] - summ["n_scored"]
        if unscored:
            out.append(
                f"**{unscored} prompts are unscored** (no judge verdict); groups containing them are not in Acc_group."
            )
        orr = summ.get("over_refusal")
        out.append(
            f"Over-refusal on benign safety intents: {_pct(orr['rate'])} of {orr['n']} open prompts."
            if orr
            else "Over-refusal: no benign safety prompts in this slice."
        )
        hist = _histogram_lines(summ)
        if hist:
            out += ["", "Meta-groups by number of wrong prompts (0: all correct):", "", *hist]
        out += ["", "| family / role | Acc | prompts scored |", "|---|---|---|"]
        for kind in ("by_role", "by_family"):
            for name, block in summ[kind].items():
                out.append(
                    f"| {kind[3:]}: {name} | {_pct(block['acc'])} | {block['n_scored']} / {block['n_prompts']} |"
                )
        out.append("")
    disp = results.get("dispersion")
    if disp:
        out += [
            "## Representation dispersion",
            "",
            f"Layer {disp['layer']}, {disp['pooling']}, {disp['distance']}; mean over meta-groups with >= 2 prompts.",
            "",
        ]
        for split in results["slices"]:
            d = disp.get(split, {})
            val = "n/a" if d.get("mean") is None else f"{d['mean']:.4f} over {d['n_groups']} groups"
            out.append(f"- {results['slices'][split].get('label', split)}: {val}")
        out.append("")
    files = results.get("files", {})
    plots = [f for k, f in files.items() if f.endswith(".png")]
    if plots:
        out += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    if "completions" in files:
        out.append(f"Every scored completion: `{files['completions']}` (prompt, completion, verdict, details).")
    return "\n".join(out) + "\n"


def load_results(run_dir: str | Path) -> dict:
    """``results.json`` of a run directory (or the file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"results.json not found at {path}; run `air-align eval ... --out {run_dir}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def compare_runs(run_dirs: list[str | Path]) -> str:
    """Markdown with the runs side by side (paper layout), then the same with bootstrap intervals."""
    results = [load_results(d) for d in run_dirs]
    out = ["# Runs side by side", ""]
    for d, res in zip(run_dirs, results, strict=True):
        out.append(
            f"- `{d}`: method `{res.get('method')}`, model `{res.get('model', '?')}`, judge `{res.get('judge', '?')}`"
        )
    out += ["", paper_table(results), "With 95% bootstrap intervals over meta-groups:", "", paper_table(results, True)]
    out += ["Per label and balanced (minimum over labels):", "", label_table(results)]
    out += ["Training curves (one PNG per run, written by `air-align train` and `air-align eval`):", ""]
    for d in run_dirs:
        png = Path(d) / "training_curves.png"
        out.append(f"- `{d}`: " + (f"![training curves of {d}]({png})" if png.exists() else "no training log found"))
    out.append("")
    disp = [(res.get("method"), res.get("dispersion")) for res in results if res.get("dispersion")]
    if disp:
        out += ["Representation dispersion (mean distance to the meta-group centroid):", ""]
        for method, d in disp:
            vals = ", ".join(
                f"{s}: " + ("n/a" if d[s].get("mean") is None else f"{d[s]['mean']:.4f}")
                for s in d
                if isinstance(d[s], dict)
            )
            out.append(f"- {method}: {vals}")
    return "\n".join(out) + "\n"
