"""``air-align eval`` and ``air-align report`` (argparse and the terminal; the evaluation is
``air_align.evaluation``, docs/evaluation.md)."""

from __future__ import annotations

import argparse

from air_align.cli.options import number, whole
from air_align.threads import add_threads_argument

EVAL_OUTPUTS = (
    "results.json",
    "records.jsonl",
    "completions.jsonl",
    "report.md",
    "per_family.png",
    "anchor_vs_open.png",
    "training_curves.png",
)
"""What ``eval`` writes in ``--out`` (``evaluation.evaluate.write_outputs``); ``audit`` adds its own."""


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


def run_eval(args) -> int:
    """Handler of ``air-align eval``."""
    from pathlib import Path

    import torch

    from air_align.threads import set_threads

    set_threads(args.threads)
    from air_align.data.validate import read_checked
    from air_align.evaluation.dispersion import check_layer
    from air_align.evaluation.evaluate import check_splits, default_train_dir, evaluate, select_rows
    from air_align.evaluation.scoring import eval_verdict
    from air_align.files import file_sha256, refuse_overwriting_inputs
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
