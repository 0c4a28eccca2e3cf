"""``air-align audit``: a model's context invariance before training (argparse and the terminal; the audit is
``air_align.audit``, docs/real-tier.md)."""

from __future__ import annotations

import argparse

from air_align.cli.evaluate import EVAL_OUTPUTS
from air_align.cli.options import whole
from air_align.threads import add_threads_argument

AUDIT_OUTPUTS = ("audit.json", "flip_rates.png")

# Per-domain defaults sized for ~10 minutes on 2 CPU cores with SmolLM2-135M (docs/real-tier-results.md, "Audit of
# SmolLM2-135M-Instruct").
DEFAULT_N_INTENTS = {"safety": 8, "morality": 8, "math": 8}
DEFAULT_MAX_NEW_TOKENS = {"safety": 64, "morality": 64, "math": 128}


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "audit",
        help="context invariance of a model before training: per-family Acc, Acc_group, flips, over-refusal",
        description="Render real intents into anchors + one variant of every wrapper family (ID and OOD), "
        "generate greedily, score anchors by rule and open variants by the evaluation judge, and write "
        "results.json, completions.jsonl, audit.json, report.md and plots to --out.",
    )
    p.add_argument("--model", default="smollm2-135m", help="'smollm2-135m', 'tiny', a local directory or a hub id")
    p.add_argument("--domain", required=True, choices=["safety", "morality", "math"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--judge",
        default="oracle-label",
        help="evaluation judge for open safety/morality variants: 'oracle-label' (keyword heuristic, default), "
        "'none', or 'model:NAME' (an LLM judge: a load_model name or path, or a server URL)",
    )
    p.add_argument("--n-intents", type=whole(1), default=None, help="intents (default: 8)")
    p.add_argument("--anchors", type=whole(1), default=2, help="anchor renderings per intent (mc, tf, mc-2, ...)")
    p.add_argument("--ood-families", default="2", help="families held out as OOD (number drawn by seed, or names)")
    p.add_argument(
        "--max-template-chars", type=whole(0, "0 keeps all"), default=2000, help="drop longer jailbreak templates"
    )
    p.add_argument("--max-new-tokens", type=whole(1), default=None, help="default: 64 (safety, morality), 128 (math)")
    p.add_argument("--batch-size", type=whole(1), default=24)
    p.add_argument("--limit", type=whole(1, "intents to audit"), default=None, help="audit only the first N intents")
    p.add_argument("--seed", type=int, default=0, help="intent draw, ID/OOD family choice, template draw")
    p.add_argument(
        "--bootstrap",
        type=whole(0, "0: no intervals"),
        default=1000,
        help="bootstrap resamples for the CIs (0 = none)",
    )
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_threads_argument(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(handler=run_audit_cli)


def run_audit_cli(args: argparse.Namespace) -> int:
    """Handler of ``air-align audit``."""
    from pathlib import Path

    from air_align.threads import set_threads

    set_threads(args.threads)
    import torch

    from air_align.audit.rows import audit_rows
    from air_align.audit.run import run_audit
    from air_align.evaluation.scoring import judge_verdict
    from air_align.files import refuse_overwriting_inputs
    from air_align.models import load_model

    refuse_overwriting_inputs({"--model": args.model}, [Path(args.out) / n for n in (*EVAL_OUTPUTS, *AUDIT_OUTPUTS)])
    n_intents = args.n_intents or DEFAULT_N_INTENTS[args.domain]
    ood = int(args.ood_families) if args.ood_families.strip().isdigit() else args.ood_families
    judge_verdict(args.judge)  # an unknown or unavailable judge fails before the model loads
    rows = audit_rows(
        args.domain,
        n_intents,
        args.seed,
        anchors=args.anchors,
        ood_families=ood,
        max_template_chars=args.max_template_chars or None,
    )
    if args.limit is not None:
        keep = set(list(dict.fromkeys(r["group_id"] for r in rows))[: args.limit])
        rows = [r for r in rows if r["group_id"] in keep]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_model(args.model)
    model.to(device)
    out = run_audit(
        model,
        tokenizer,
        rows,
        args.out,
        judge=args.judge,
        max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.domain],
        batch_size=args.batch_size,
        seed=args.seed,
        n_boot=args.bootstrap,
        tags={"model": args.model, "data": f"audit:{args.domain}/n{n_intents}/seed{args.seed}", "device": device},
        progress=not args.no_progress,
    )
    for s in out["results"]["slices"].values():
        print(f"{s['label']}: Acc {s['acc']}  Acc_group {s['acc_group']}  ({s['n_groups_scored']} groups)")
    print(f"wrote {args.out}/report.md ({out['audit']['seconds']} s)")
    return 0
