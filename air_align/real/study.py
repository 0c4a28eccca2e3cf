"""A short real-tier study: audit SmolLM2, train it with GRPO, GRPO+AIR and GRPO+V-REx, audit each result.

``air-align study --domain safety --device cuda --out DIR`` (``scripts/gpu_study.sh`` wraps it); the settings are a
``StudyConfig``. Every method shares the data, the seed, the frozen-policy judge and every hyperparameter except the
regulariser (docs/design.md §5.1). Trained models are audited on the build's held-out **test** intents (never trained
on), with one variant of every wrapper family, ID and OOD families as the build assigns them. Outputs in DIR:

- ``base/``, ``grpo/``, ``grpo+air/``, ``grpo+vrex/``: each an audit directory (results.json, audit.json, report.md,
  plots); trained ones also hold ``train.json`` (seconds per step, log history);
- ``study.json`` and ``study.md``: one row per model — steps, seconds per step, ID / OOD Acc and Acc_group,
  anchor Acc, over-refusal, mean flip rate — and the paper-style table of ``air-align report``.

A short budget (tens of steps) measures cost and shows the pipeline at work on a real model; it is not a
replication of the paper's effect sizes, and the study says so in its output.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from air_align.audit.rows import audit_rows
from air_align.audit.run import run_audit
from air_align.evaluation.report import compare_runs, percent
from air_align.evaluation.scoring import judge_verdict
from air_align.files import write_json, write_text
from air_align.models import load_model
from air_align.real.config import StudyConfig
from air_align.real.train import train_real, train_rows
from air_align.training.methods import method_label, method_name


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def study_row(name: str, audit: dict, results: dict, train: dict | None) -> dict:
    """One row of the study table from an audit, its evaluation results and (for trained models) train info."""
    slices = {s["label"]: s for s in results["slices"].values()}
    over = [s.get("over_refusal") for s in results["slices"].values() if s.get("over_refusal")]
    n_over = sum(o["n"] for o in over)
    return {
        "model": name,
        "steps": train["steps"] if train else 0,
        "seconds_per_step": train["seconds_per_step"] if train else None,
        "train_seconds": train["train_seconds"] if train else None,
        **{f"{lab}_acc": slices.get(lab, {}).get("acc") for lab in ("ID", "OOD")},
        **{f"{lab}_acc_group": slices.get(lab, {}).get("acc_group") for lab in ("ID", "OOD")},
        "anchor_acc": audit["family_acc"].get("anchor", {}).get("acc"),
        "over_refusal": sum(o["rate"] * o["n"] for o in over) / n_over if n_over else None,
        "mean_flip": _mean(f["flip"] for f in audit["flip_vs_plain"].values()),
        "audit_seconds": audit["seconds"],
    }


def render_study(rows: list[dict], config: dict, paper_table: str) -> str:
    """study.md: the settings, the table of rows, the paper-style table and the honest caveat."""

    def pct(x):
        return percent(x, digits=1)

    out = [
        f"# Real-tier study: {config['domain']} on {config['model']}",
        "",
        "Settings (shared by every method): " + ", ".join(f"{k}={v}" for k, v in config.items()),
        "",
        "| model | steps | s/step | ID Acc | ID Acc_group | OOD Acc | OOD Acc_group | anchor Acc | over-refusal | "
        "mean flip vs plain |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['model']} | {r['steps']} | {r['seconds_per_step'] or '—'} | {pct(r['ID_acc'])} | "
            f"{pct(r['ID_acc_group'])} | {pct(r['OOD_acc'])} | {pct(r['OOD_acc_group'])} | {pct(r['anchor_acc'])} | "
            f"{pct(r['over_refusal'])} | {pct(r['mean_flip'])} |"
        )
    out += [
        "",
        "Audited on held-out test intents with one variant of every wrapper family; open variants scored by the "
        "evaluation judge named in each audit's report (the keyword heuristic by default: not an oracle). One seed, "
        "a short budget: differences of a few points are within noise (see the bootstrap intervals in each "
        "report.md). This measures cost and exercises the pipeline; it does not replicate the paper's effect sizes.",
        "",
        "## Paper-style table",
        "",
        paper_table,
        "",
    ]
    return "\n".join(out)


def run_study(config: StudyConfig, out_dir: str | Path) -> dict:
    """Run the study; returns ``{"rows": [...], "config": {...}}`` and writes study.json / study.md to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    methods = [method_name(m) for m in config.methods]  # an unknown method fails before any work
    judge_verdict(config.judge)  # so does an unknown evaluation judge (it runs only after the first training)
    settings = {**config.as_dict(), "methods": methods, "judge(train)": "frozen policy"}
    rows = train_rows(config)
    test = audit_rows(
        config.domain,
        config.n_intents,
        config.seed,
        anchors=config.anchors,
        ood_families=config.ood_families,
        min_ood_contexts=config.opens,
        max_template_chars=config.max_template_chars,
        intent_split="test",
    )
    audit_kw = {
        "judge": config.judge,
        "max_new_tokens": config.audit_max_new_tokens,
        "batch_size": config.audit_batch_size,
        "seed": config.seed,
    }
    table, run_dirs = [], []
    if config.audit_base:
        base, tokenizer = load_model(config.model)
        base.to(config.device)
        res = run_audit(
            base, tokenizer, test, out / "base", tags={"model": config.model, "method": "base"}, **audit_kw
        )
        table.append(study_row("base", res["audit"], res["results"], None))
        run_dirs.append(out / "base")
        del base
    for method in methods:
        start = time.time()
        trained = train_real(config, method, out / method / "train", rows=rows)
        info = {k: v for k, v in trained.items() if k not in ("model", "tokenizer")}
        write_json(out / method / "train.json", info)
        label = method_label(method)
        res = run_audit(
            trained["model"],
            trained["tokenizer"],
            test,
            out / method,
            tags={"model": config.model, "method": label},
            **audit_kw,
        )
        table.append(study_row(label, res["audit"], res["results"], info))
        run_dirs.append(out / method)
        print(f"{label}: {info['steps']} steps, {info['seconds_per_step']} s/step, {time.time() - start:.0f} s")
        del trained
        if config.device.startswith("cuda"):
            torch.cuda.empty_cache()
    summary = {"config": settings, "rows": table}
    write_json(out / "study.json", summary)
    write_text(out / "study.md", render_study(table, settings, compare_runs(run_dirs)))
    return summary
