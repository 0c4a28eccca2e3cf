"""``air-align study``: the real-tier study (argparse only here; the model, data and trainer are imported inside the
handler, so that ``air-align --help`` stays fast)."""

from __future__ import annotations

import argparse
import json

from air_align.cli.options import number
from air_align.threads import add_threads_argument


def add_parser(subparsers) -> None:
    """Add the ``study`` subcommand."""
    p = subparsers.add_parser(
        "study",
        help="real tier: audit SmolLM2, train it with GRPO / GRPO+AIR / GRPO+V-REx, audit each result",
        description="Audit the untrained model, train every method with the same settings but the regulariser "
        "(LoRA, frozen-policy judge), audit each on the build's held-out test intents (one variant of every wrapper "
        "family, ID and OOD), and write study.json / study.md to --out. scripts/gpu_study.sh wraps it.",
    )
    p.add_argument("--domain", default="safety", choices=["safety", "morality", "math"])
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--methods",
        default="grpo,grpo+air,grpo+vrex",
        help="comma list of methods: grpo, grpo+vrex, grpo+air, gspo+air, grpo+air-loo (air, vrex accepted)",
    )
    p.add_argument("--model", default="smollm2-135m", help="a load_model name or path (the judge is a frozen copy)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=40, help="max optimiser steps per method")
    p.add_argument("--train-seconds", type=number(0), default=100.0, help="wall-clock budget per method (0: none)")
    p.add_argument("--n-intents", type=int, default=32)
    p.add_argument("--groups-per-step", type=int, default=2)
    p.add_argument("--max-completion-length", type=int, default=48)
    p.add_argument("--lr", type=number(0, low_open=True), default=2e-5)
    p.add_argument("--lam", type=number(0), default=0.05, help="λ (invariance_coef) for AIR and V-REx")
    p.add_argument("--audit-max-new-tokens", type=int, default=96)
    p.add_argument("--audit-batch-size", type=int, default=64)
    p.add_argument("--judge", default="oracle-label", help="evaluation judge of the audits (see air-align eval)")
    p.add_argument("--no-base", action="store_true", help="skip the audit of the untrained model")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)
    p.set_defaults(handler=run_study_cli)


def run_study_cli(args: argparse.Namespace) -> int:
    """Handler of ``air-align study``."""
    from air_align.threads import set_threads

    set_threads(args.threads)
    from air_align.files import refuse_overwriting_inputs
    from air_align.real.config import StudyConfig
    from air_align.real.study import run_study

    refuse_overwriting_inputs({"--model": args.model}, [args.out])  # a study writes its whole folder

    config = StudyConfig(
        domain=args.domain,
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        model=args.model,
        device=args.device,
        max_steps=args.steps,
        time_budget_s=args.train_seconds or None,
        n_intents=args.n_intents,
        groups_per_step=args.groups_per_step,
        max_completion_length=args.max_completion_length,
        learning_rate=args.lr,
        invariance_coef=args.lam,
        audit_max_new_tokens=args.audit_max_new_tokens,
        audit_batch_size=args.audit_batch_size,
        judge=args.judge,
        seed=args.seed,
        audit_base=not args.no_base,
    )
    summary = run_study(config, args.out)
    print(json.dumps(summary["rows"], indent=1))
    return 0
