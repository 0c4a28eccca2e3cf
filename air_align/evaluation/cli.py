"""``air-align eval``, ``air-align report`` and ``air-align audit`` (argparse only here; heavy imports inside the
handlers)."""

from __future__ import annotations

import argparse

from air_align.options import number, whole
from air_align.threads import add_threads_argument

EVAL_OUTPUTS = ("results.json", "records.jsonl", "completions.jsonl", "report.md", "per_family.png",
                "anchor_vs_open.png", "training_curves.png")  # fmt: skip
"""What ``eval`` writes in ``--out`` (``evaluation.evaluate.write_outputs``); ``audit`` adds :data:`AUDIT_OUTPUTS`."""
AUDIT_OUTPUTS = ("audit.json", "flip_rates.png")

# Per-domain defaults sized for ~10 minutes on 2 CPU cores with SmolLM2-135M (docs/real-tier-results.md, "Audit of
# SmolLM2-135M-Instruct").
DEFAULT_N_INTENTS = {"safety": 8, "morality": 8, "math": 8}
DEFAULT_MAX_NEW_TOKENS = {"safety": 64, "morality": 64, "math": 128}


def add_parser(subparsers) -> None:
    """Add the ``eval``, ``report`` and ``audit`` subcommands."""
    ev = subparsers.add_parser(
        "eval",
        help="evaluate a model: Acc, Acc_group, ID/OOD, dispersion, report and plots",
        description="Generate for every prompt, score anchors by rule and open variants by the evaluation judge, "
        "and write results.json, completions.jsonl, report.md and plots to --out.",
    )
    ev.add_argument("--model", required=True, help="'tiny', 'smollm2-135m', a local directory or a hub id")
    ev.add_argument("--data", required=True, help="meta-group JSONL file (one schema row a line)")
    ev.add_argument("--out", required=True, help="output directory")
    ev.add_argument(
        "--judge",
        default="oracle-label",
        help="evaluation judge for open variants: 'oracle-label' (weak keyword heuristic vs the row's label), "
        "'none' (open variants unscored) or 'model:PATH_OR_NAME' (default: %(default)s)",
    )
    ev.add_argument("--splits", default="test_id,test_ood", help="comma-separated splits (default: %(default)s)")
    ev.add_argument("--max-new-tokens", type=whole(1), default=256)
    ev.add_argument("--batch-size", type=whole(1), default=8)
    ev.add_argument("--num-samples", type=whole(1), default=1, help="samples per prompt; >1 needs --temperature > 0")
    ev.add_argument("--temperature", type=number(0), default=0.0, help="0 = greedy (default)")
    ev.add_argument(
        "--limit", type=whole(1, "meta-groups to evaluate"), default=None, help="evaluate only the first N meta-groups"
    )
    ev.add_argument("--seed", type=int, default=0, help="sampling and bootstrap seed")
    ev.add_argument(
        "--bootstrap",
        type=whole(0, "0: no intervals"),
        default=1000,
        help="bootstrap resamples for the CIs (0 = none)",
    )
    ev.add_argument("--dispersion", action=argparse.BooleanOptionalAction, default=True)
    ev.add_argument("--dispersion-layer", type=int, default=-1, help="hidden_states index (default: last)")
    ev.add_argument("--method", default=None, help="method tag for tables, e.g. 'GRPO+AIR' (default: model name)")
    ev.add_argument(
        "--train-dir", default=None, help="where to look for training logs (default: the run folder of --model)"
    )
    ev.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    ev.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_threads_argument(ev)
    ev.set_defaults(handler=run_eval)

    rep = subparsers.add_parser(
        "report",
        help="put several evaluation runs side by side (paper table layout)",
        description="Read RUN_DIR/results.json of each run and write a markdown table: rows setting x method, "
        "columns per domain Acc / Acc_group.",
    )
    rep.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    rep.add_argument("--out", default=None, help="markdown file to write (default: print)")
    rep.set_defaults(handler=run_report)

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


def run_eval(args) -> int:
    """Handler of ``air-align eval``."""
    from pathlib import Path

    import torch

    from air_align.threads import set_threads

    set_threads(args.threads)
    from air_align.data.validate import read_checked
    from air_align.evaluation.dispersion import check_layer
    from air_align.evaluation.evaluate import evaluate, select_rows
    from air_align.evaluation.scoring import eval_verdict
    from air_align.files import refuse_overwriting_inputs
    from air_align.models import load_model

    train_dir = args.train_dir or default_train_dir(args.model)
    refuse_overwriting_inputs(
        {"--data": args.data, "--model": args.model, "--train-dir": train_dir},
        [Path(args.out) / name for name in EVAL_OUTPUTS],
    )
    verdict = eval_verdict(args.judge)  # fail fast on a bad --judge, before loading the model
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    rows = read_checked(args.data)  # every check of `air-align data validate`, before loading the model
    check_splits(splits, rows, args.data)
    if args.limit is not None:
        rows = select_rows(rows, list(splits), limit_groups=args.limit)
    model, tokenizer = load_model(args.model)
    if args.dispersion:
        check_layer(model, args.dispersion_layer)  # before the model moves to its device and generates
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    evaluation = evaluate(
        model,
        tokenizer,
        rows,
        verdict=verdict,
        splits=splits,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        num_samples=args.num_samples,
        temperature=args.temperature,
        seed=args.seed,
        n_boot=args.bootstrap,
        dispersion=args.dispersion,
        dispersion_layer=args.dispersion_layer,
        out_dir=args.out,
        train_dir=train_dir,
        tags={
            "method": args.method or Path(args.model.rstrip("/")).name,
            "model": args.model,
            "data": str(args.data),
            "data_sha256": file_sha256(args.data),  # `report` tells runs on different data apart, even at one path
            "judge": args.judge,
        },
        progress=not args.no_progress,
    )
    for split, summ in evaluation.results["slices"].items():
        acc, grp = summ["acc"], summ["acc_group"]
        print(
            f"{summ['label']:>4} ({split}): Acc {'n/a' if acc is None else f'{acc:.4f}'}  "
            f"Acc_group {'n/a' if grp is None else f'{grp:.4f}'}  ({summ['n_prompts']} prompts, "
            f"{summ['n_groups']} groups)"
        )
    print(f"wrote {Path(args.out) / 'results.json'} and {Path(args.out) / 'report.md'}")
    return 0


def check_splits(splits: tuple[str, ...], rows: list[dict], data: str) -> None:
    """Raise unless every split of ``--splits`` has rows in ``data`` (the message lists the splits it has).

    >>> check_splits(("test_id", "x"), [{"split": "test_id"}, {"split": "train"}], "d.jsonl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --splits test_id,x: d.jsonl has no rows in split 'x'; its splits are train, test_id (e.g. --splits ...
    """
    from air_align.data.schema import SPLITS

    present = sorted({str(r.get("split")) for r in rows}, key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s))
    missing = [s for s in splits if s not in present]
    if not splits or missing:
        tests = [s for s in present if s.startswith("test")] or present
        raise ValueError(
            f"--splits {','.join(splits)}: {data} has no rows in split {', '.join(map(repr, missing)) or '(none)'}; "
            f"its splits are {', '.join(present)} (e.g. --splits {','.join(tests)})"
        )


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, in hex (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_train_dir(model: str) -> str | None:
    """Where ``eval`` looks for the training log of ``model``: the run folder of ``air-align train`` for its
    ``final/`` model (``log.jsonl`` sits beside ``final/``), else the model's own folder, else none (a hub id)."""
    from pathlib import Path

    path = Path(model)
    if not path.is_dir():
        return None
    return str(path.parent) if path.name == "final" else str(path)


def run_report(args) -> int:
    """Handler of ``air-align report``."""
    import sys
    from pathlib import Path

    from air_align.evaluation.report import compare_runs, data_warning, load_results
    from air_align.files import refuse_overwriting_inputs, write_text

    if args.out is not None:
        refuse_overwriting_inputs([("RUN_DIR", Path(d) / "results.json") for d in args.run_dirs], [args.out])
    text = compare_runs(args.run_dirs)
    warning = data_warning(args.run_dirs, [load_results(d) for d in args.run_dirs])
    if warning:  # also on stderr: with --out the table goes to a file the user may not open at once
        print("\n".join(line.replace("**", "") for line in warning if line), file=sys.stderr)
    if args.out is None:
        print(text, end="")
        return 0
    print(f"wrote {write_text(args.out, text)}")
    return 0


def run_audit_cli(args: argparse.Namespace) -> int:
    """Handler of ``air-align audit``."""
    from pathlib import Path

    from air_align.threads import set_threads

    set_threads(args.threads)
    import torch

    from air_align.data.audit_rows import audit_rows
    from air_align.evaluation.audit import run_audit
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
