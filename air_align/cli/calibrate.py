"""``air-align calibrate``: is a reward AIR-ready? (argparse and the terminal; the check is
``air_align.calibration``, docs/calibration.md)."""

from __future__ import annotations

import argparse

from air_align.cli.options import number


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="is a reward AIR-ready? score reference responses, report Δ per label and kind, and the offsets b",
        description="Score reference responses (a correct and a wrong anchor answer, a refusal, a helpful answer,\n"
        "a non-answer, a hack, ... per label) with a training reward on meta-group rows, and report the expected\n"
        "reward and Δ = E[correct anchor] − E[kind] per domain × label × role × kind. Calibrated: every correct\n"
        "open kind within ±tolerance of the anchors, every failure below them. Writes OUT/calibration.json, .md,\n"
        ".png and scored.jsonl. Exit status: 0 calibrated, 1 not calibrated, 2 an error. docs/calibration.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  air-align calibrate --data safety.jsonl --reward composite --model smollm2-135m --limit-groups 10 "
        "--threads 1\n"
        "  air-align calibrate --data safety.jsonl --reward-config '{safety_reward: keyword, judge: {model: none}}'\n"
        "  air-align calibrate --config configs/smollm2-cpu.yaml --data safety.jsonl --reward composite "
        "--limit-groups 10",
    )
    parser.add_argument("--data", help="meta-group JSONL file (`air-align data build`), or toy")
    parser.add_argument(
        "--reward", help="reward spec, as `air-align train reward=…`: composite, toy, module:function, or a comma list"
    )
    parser.add_argument(
        "--reward-config",
        metavar="YAML/JSON",
        help="the composite's settings (RewardConfig): a YAML/JSON file or an inline mapping such as "
        "'{safety_reward: keyword, judge: {model: none}}'",
    )
    parser.add_argument(
        "--config",
        help="a train config: its model, dataset, dataset_split, reward, reward_config, reward_weights (the options "
        "above win over it)",
    )
    parser.add_argument("--model", help="the policy whose frozen copy is the composite's default judge (smollm2-135m)")
    parser.add_argument(
        "--split", help="rows of this split (default: the config's dataset_split, else train; all: every row)"
    )
    parser.add_argument("--limit-groups", type=int, metavar="N", help="N meta-groups, spread over the labels")
    parser.add_argument(
        "--responses",
        metavar="FILE",
        help="your reference responses (JSONL, docs/calibration.md) instead of the "
        "canonical set; the rows' own anchor answers are added unless the file answers anchors",
    )
    parser.add_argument("--tolerance", type=number(0), default=None, help="reward units (default 0.25)")
    parser.add_argument("--out", default="runs/calibration", help="output directory (default runs/calibration)")
    parser.add_argument("--threads", dest="calibrate_threads", type=int, metavar="N", help="torch CPU threads")
    parser.add_argument(
        "--world",
        metavar="NAME_OR_FILE",
        help="a lab world (built-in name or spec file): its training reward on "
        "its rows, with the lab's responses (air_align.lab.calibration)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (the judge's too)")
    parser.set_defaults(handler=_handle_calibrate)


def _handle_calibrate(args) -> int:
    from pathlib import Path

    from air_align.calibration.check import DEFAULT_TOLERANCE
    from air_align.files import refuse_overwriting_inputs

    if args.calibrate_threads is not None and args.calibrate_threads < 1:
        raise ValueError(f"--threads must be at least 1, got {args.calibrate_threads}")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    out = Path(args.out)
    refuse_overwriting_inputs(
        {
            "--data": args.data,
            "--responses": args.responses,
            "--config": args.config,
            "--world": args.world,
            "--reward-config": args.reward_config
            if args.reward_config and Path(args.reward_config).is_file()
            else None,
        },
        [out / n for n in ("calibration.json", "calibration.md", "calibration.png", "scored.jsonl")],
    )
    if args.world:
        table, paths = _calibrate_world(args, tolerance)
    else:
        import torch

        from air_align.calibration.run import calibrate_reward

        if args.calibrate_threads is not None:
            torch.set_num_threads(args.calibrate_threads)
        table, paths = calibrate_reward(
            data=args.data,
            reward=args.reward,
            reward_config=args.reward_config,
            config=args.config,
            model=args.model,
            split=args.split,
            limit_groups=args.limit_groups,
            responses=args.responses,
            tolerance=tolerance,
            out=args.out,
            progress=not args.no_progress,
            say=print,
        )
    return _print_result(table, paths)


def _calibrate_world(args, tolerance: float) -> tuple[dict, dict]:
    from air_align.calibration.report import write_calibration
    from air_align.lab.calibration import world_calibration

    clash = [
        f"--{k.replace('_', '-')}"
        for k in ("data", "reward", "reward_config", "config", "model", "responses", "limit_groups")
        if getattr(args, k) is not None
    ]
    if clash:
        raise ValueError(f"--world scores the lab world's own reward on its own rows; drop {', '.join(clash)}")
    split = args.split or "train"
    table = world_calibration(args.world, split=split, tolerance=tolerance)
    table["run"] = {"world": args.world, "split": split}
    return table, write_calibration(table, args.out)


def _print_result(table: dict, paths: dict) -> int:
    """The verdict and the offsets on the terminal; exit 0 calibrated, 1 not (a finding, not an input error)."""
    from air_align.calibration.report import offsets_lines, report_lines
    from air_align.calibration.run import offsets_line

    run = table.get("run", {})
    if "scoring_seconds" in run:
        seconds = f"{run['scoring_seconds']:.1f} s (setup {run['setup_seconds']:.1f} s)"
        print(f"scored {run['responses']} responses in {seconds}")
    print()
    print("\n".join(report_lines(table)))
    if table["offsets"]:
        print("\noffsets b = E[correct open] − E[correct anchor] (calibrated Δ, opt-in; paste into a train config):")
        print(f"  {offsets_line(table)}")
        print(f"  or: invariance_offsets={paths['json']}")
        checked = offsets_lines(table)  # absent for a lab world (its table comes without the scored responses)
        if checked:
            print("\n".join(checked))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0 if table["calibrated"] else 1
