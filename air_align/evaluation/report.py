"""Markdown reports: one run's report.md, and runs side by side in the paper's table layout (Table 1 of the paper:
rows setting × method, columns per domain ``Acc / Acc_group``)."""

from __future__ import annotations

import math
from pathlib import Path

from air_align.files import parse_json

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


SHARE_KEYS = ("acc", "acc_group", "rate")
"""Keys of ``results.json`` whose values are shares (a number in [0, 1], or null when undefined)."""


def metric_problems(value, where: str = "slices") -> list[str]:
    """Every share in ``value`` (a results.json's ``slices``) that is not null or a finite number in [0, 1], and every
    dispersion mean that is not null or a finite number ≥ 0, as ``key path = value``.

    >>> metric_problems({"test_id": {"acc": float("nan"), "acc_ci": [0.1, 3.0], "by_domain": {"x": {"acc": 0.5}}}})
    ['slices.test_id.acc = nan', 'slices.test_id.acc_ci = [0.1, 3.0]']
    """
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{where}.{key}"
            if key in SHARE_KEYS or key.endswith("_ci"):
                shares = item if key.endswith("_ci") and isinstance(item, list) else [item]
                if key.endswith("_ci") and item is not None and (not isinstance(item, list) or len(item) != 2):
                    out.append(f"{here} = {_shown(item)}")
                elif not all(x is None or (_finite(x) and 0 <= x <= 1) for x in shares):
                    out.append(f"{here} = {_shown(item)}")
            elif key == "mean" and where.startswith("dispersion"):
                if not (item is None or (_finite(item) and item >= 0)):
                    out.append(f"{here} = {_shown(item)}")
            else:
                out += metric_problems(item, here)
    return out


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def load_results(run_dir: str | Path) -> dict:
    """``results.json`` of a run directory (or the file itself), its metrics checked (:func:`metric_problems`).

    Raises:
        FileNotFoundError: no results.json there.
        ValueError: not JSON, not the results of ``air-align eval``, or a metric that is not a share (NaN, 1e300, -1):
            a report would show ``nan%`` or a 300-digit percentage.
    """
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"results.json not found at {path}; run `air-align eval ... --out {run_dir}` first")
    results = parse_json(path.read_text(encoding="utf-8"), str(path))
    if not isinstance(results, dict) or not isinstance(results.get("slices"), dict):
        raise ValueError(f"{path}: not the results of `air-align eval` (no 'slices' mapping); re-run the evaluation")
    bad = metric_problems(results["slices"]) + metric_problems(results.get("dispersion"), "dispersion")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise ValueError(
            f"{path}: {len(bad)} metric(s) out of range: {shown}; a share is a number in [0, 1] or null, a dispersion "
            "a number ≥ 0: the file was edited or damaged, so re-run `air-align eval` for this run"
        )
    return results


def data_of(results: dict) -> str:
    """The data a run was evaluated on, as the report names it: the file and, when recorded, its SHA-256 prefix.

    >>> data_of({"data": "d.jsonl", "data_sha256": "0123456789abcdef"}), data_of({})
    ('d.jsonl (sha256 0123456789ab)', 'unknown')
    """
    digest = results.get("data_sha256")
    return f"{results.get('data', 'unknown')}" + (f" (sha256 {str(digest)[:12]})" if digest else "")


def data_warning(run_dirs: list, results: list[dict]) -> list[str]:
    """Markdown lines warning that the runs were evaluated on different data (none when all used the same), with the
    runs of each; runs that share a method tag are named first, as their rows would read alike."""
    by_data: dict[str, list[str]] = {}
    for d, res in zip(run_dirs, results, strict=True):
        by_data.setdefault(data_of(res), []).append(f"`{d}` ({res.get('method')})")
    if len(by_data) < 2:
        return []
    methods = [res.get("method") for res in results]
    shared = sorted({str(m) for m in methods if methods.count(m) > 1})
    same_tag = f" (method {', '.join(shared)} appears on more than one)" if shared else ""
    lines = [
        f"**Warning: these runs were evaluated on different data{same_tag}; their rows are not a like-for-like "
        "comparison.**",
        "",
    ]
    return lines + [f"- data `{data}`: {', '.join(runs)}" for data, runs in by_data.items()] + [""]


def _distinct_methods(run_dirs: list, results: list[dict]) -> list[dict]:
    """The results with a method tag that repeats suffixed by its run directory, so that table rows differ."""
    methods = [res.get("method") for res in results]
    return [
        {**res, "method": f"{res.get('method')} ({d})"} if methods.count(res.get("method")) > 1 else res
        for d, res in zip(run_dirs, results, strict=True)
    ]


def compare_runs(run_dirs: list[str | Path]) -> str:
    """Markdown with the runs side by side (paper layout), then the same with bootstrap intervals.

    Each run's data is listed, and runs evaluated on different data are flagged (:func:`data_warning`); a method tag
    used by several runs is suffixed by the run directory in the tables."""
    results = [load_results(d) for d in run_dirs]
    out = ["# Runs side by side", ""]
    for d, res in zip(run_dirs, results, strict=True):
        out.append(
            f"- `{d}`: method `{res.get('method')}`, model `{res.get('model', '?')}`, "
            f"judge `{res.get('judge', '?')}`, data `{data_of(res)}`"
        )
    out += ["", *data_warning(run_dirs, results)]
    results = _distinct_methods(run_dirs, results)
    out += [paper_table(results), "With 95% bootstrap intervals over meta-groups:", "", paper_table(results, True)]
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
