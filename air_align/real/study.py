"""A short real-tier study: audit SmolLM2, train it with GRPO, GRPO+AIR and GRPO+V-REx, audit each result.

``python -m air_align.real.study --domain safety --device cuda --out DIR`` (``scripts/gpu_study.sh`` wraps it).
Every method shares the data, the seed, the frozen-policy judge and every hyperparameter except the regulariser
(DESIGN.md §5). Trained models are audited on the build's held-out **test** intents (never trained on), with one
variant of every wrapper family, ID and OOD families as the build assigns them. Outputs in DIR:

- ``base/``, ``grpo/``, ``air/``, ``vrex/``: each an audit directory (results.json, audit.json, report.md, plots);
  trained ones also hold ``train.json`` (seconds per step, log history);
- ``study.json`` and ``study.md``: one row per model — steps, seconds per step, ID / OOD Acc and Acc_group,
  anchor Acc, over-refusal, mean flip rate — and the paper-style table of ``air-align report``.

A short budget (tens of steps) measures cost and shows the pipeline at work on a real model; it is not a
replication of the paper's effect sizes, and the study says so in its output.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


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
        return "n/a" if x is None else f"{100 * x:.1f}%"

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


def run_study(
    domain: str,
    out_dir: str | Path,
    *,
    methods: tuple[str, ...] = ("grpo", "air", "vrex"),
    model: str = "smollm2-135m",
    device: str = "cpu",
    max_steps: int = 40,
    time_budget_s: float | None = 100.0,
    n_intents: int = 32,
    anchors: int = 2,
    opens: int = 2,
    num_generations: int = 3,
    groups_per_step: int = 2,
    max_completion_length: int = 48,
    learning_rate: float = 2e-5,
    invariance_coef: float = 0.05,
    max_template_chars: int = 1200,
    audit_max_new_tokens: int = 96,
    audit_batch_size: int = 64,
    judge: str = "oracle-label",
    seed: int = 0,
    audit_base: bool = True,
    progress: bool = False,
) -> dict:
    """Run the study; returns ``{"rows": [...], "config": {...}}`` and writes study.json / study.md."""
    import torch

    from air_align.evaluation.report import compare_runs
    from air_align.files import write_json, write_text
    from air_align.models import load_model
    from air_align.real.audit import audit_rows, run_audit
    from air_align.real.train import METHODS, train_real, train_rows

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {
        "domain": domain, "model": model, "device": device, "max_steps": max_steps, "time_budget_s": time_budget_s,
        "n_intents": n_intents, "anchors": anchors, "opens": opens, "K": num_generations,
        "groups_per_step": groups_per_step, "max_completion_length": max_completion_length,
        "learning_rate": learning_rate, "lambda": invariance_coef, "lora_r": 8, "judge(train)": "frozen policy",
        "judge(eval)": judge, "seed": seed,
    }  # fmt: skip
    rows = train_rows(domain, n_intents, anchors, opens, seed, max_template_chars)
    test = audit_rows(
        domain, n_intents, seed, anchors=anchors, min_ood_contexts=opens, max_template_chars=max_template_chars,
        intent_split="test",
    )  # fmt: skip
    audit_kw = {"judge": judge, "max_new_tokens": audit_max_new_tokens, "batch_size": audit_batch_size, "seed": seed}
    table, run_dirs = [], []
    if audit_base:
        base, tokenizer = load_model(model)
        base.to(device)
        res = run_audit(base, tokenizer, test, out / "base", tags={"model": model, "method": "base"}, **audit_kw)
        table.append(study_row("base", res["audit"], res["results"], None))
        run_dirs.append(out / "base")
        del base
    for method in methods:
        start = time.time()
        trained = train_real(
            domain, method, out / method / "train", model=model, rows=rows, max_steps=max_steps,
            num_generations=num_generations, groups_per_step=groups_per_step,
            max_completion_length=max_completion_length, learning_rate=learning_rate,
            invariance_coef=invariance_coef, device=device, seed=seed, time_budget_s=time_budget_s,
            progress=progress,
        )  # fmt: skip
        info = {k: v for k, v in trained.items() if k not in ("model", "tokenizer")}
        write_json(out / method / "train.json", info)
        label = METHODS[method][1]
        res = run_audit(
            trained["model"], trained["tokenizer"], test, out / method, tags={"model": model, "method": label},
            **audit_kw,
        )  # fmt: skip
        table.append(study_row(label, res["audit"], res["results"], info))
        run_dirs.append(out / method)
        print(f"{label}: {info['steps']} steps, {info['seconds_per_step']} s/step, {time.time() - start:.0f} s")
        del trained
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    summary = {"config": config, "rows": table}
    write_json(out / "study.json", summary)
    write_text(out / "study.md", render_study(table, config, compare_runs(run_dirs)))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m air_align.real.study", description=__doc__.split("\n\n")[0])
    p.add_argument("--domain", default="safety", choices=["safety", "morality", "math"])
    p.add_argument("--out", required=True)
    p.add_argument("--methods", default="grpo,air,vrex", help="comma list of grpo, air, vrex")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=40, help="max optimiser steps per method")
    p.add_argument("--train-seconds", type=float, default=100.0, help="wall-clock budget per method (0: none)")
    p.add_argument("--n-intents", type=int, default=32)
    p.add_argument("--groups-per-step", type=int, default=2)
    p.add_argument("--max-completion-length", type=int, default=48)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--lam", type=float, default=0.05, help="λ (invariance_coef) for AIR and V-REx")
    p.add_argument("--audit-max-new-tokens", type=int, default=96)
    p.add_argument("--audit-batch-size", type=int, default=64)
    p.add_argument("--no-base", action="store_true", help="skip the audit of the untrained model")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    summary = run_study(
        args.domain, args.out, methods=methods, model=args.model, device=args.device, max_steps=args.steps,
        time_budget_s=args.train_seconds or None, n_intents=args.n_intents, groups_per_step=args.groups_per_step,
        max_completion_length=args.max_completion_length, learning_rate=args.lr, invariance_coef=args.lam,
        audit_max_new_tokens=args.audit_max_new_tokens, audit_batch_size=args.audit_batch_size, seed=args.seed,
        audit_base=not args.no_base,
    )  # fmt: skip
    print(json.dumps(summary["rows"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
