"""``air-align train --config configs/X.yaml [key=value …] [--resume [auto|PATH] | --overwrite] [--into-existing]
[--allow-config-change] [--threads N]`` and
``air-align calibrate`` (argparse only; heavy imports happen in the handlers). Multi-GPU / multi-node: ``accelerate
launch --config_file configs/accelerate/… -m air_align.cli train …`` (see ``docs/scaling.md``). ``calibrate`` checks,
before training, that a reward is calibrated for AIR (``air_align/training/calibrate.py``, docs/calibration.md)."""

from __future__ import annotations

import argparse

from air_align.options import number
from air_align.threads import add_threads_argument


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="GRPO/GSPO with AIR or V-REx on TRL",
        description="Train with AIRTrainer (TRL GRPOTrainer + AIR). Values: YAML config, then key=value overrides. "
        "The data file and the batch geometry are checked before the model loads; the console shows a progress "
        "bar and each step's metrics go to OUTPUT_DIR/log.jsonl.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  air-align train --config configs/tiny-cpu.yaml output_dir=/tmp/x max_steps=2\n"
        "  air-align train --config configs/smollm2-cpu.yaml invariance=vrex --resume auto",
    )
    parser.add_argument("--config", help="YAML config (flat mapping of RunConfig and AIRConfig keys)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="override any config key")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="auto|PATH",
        help="resume from the last complete checkpoint in output_dir (auto, the default; incomplete ones are "
        "skipped) or from PATH",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="output_dir holds a previous run: delete what it wrote (the paths its run marker lists: checkpoints, "
        "final/, log, …; nothing else) and start again",
    )
    parser.add_argument(
        "--into-existing",
        action="store_true",
        help="output_dir is a non-empty folder that holds no run (e.g. `.`): write the run beside its files; "
        "a file air-align did not write is never replaced (a README.md of yours keeps TRL's model card out)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue with settings that alter training (learning rate, method, max_steps, …) "
        "other than the run's; air_align_run.yaml keeps the old ones and records the change and its step",
    )
    add_threads_argument(parser)
    parser.set_defaults(handler=_handle_train)
    add_calibrate_parser(subparsers)


def _handle_train(args) -> int:
    import os

    from air_align.threads import set_threads

    if args.resume and "=" in args.resume and not os.path.exists(args.resume):  # `--resume max_steps=3`
        args.overrides.append(args.resume)
        args.resume = "auto"

    set_threads(args.threads)
    from transformers.utils import logging as hf_logging

    from air_align.training.console import end_line
    from air_align.training.run import build_configs, train

    hf_logging.disable_progress_bar()  # transformers' inner bars (weights written at each save): one bar, the steps
    run, air = build_configs(args.config, args.overrides)
    trainer = train(
        run,
        air,
        resume=args.resume,
        overwrite=args.overwrite,
        into_existing=args.into_existing,
        allow_config_change=args.allow_config_change,
    )
    if trainer is not None and trainer.accelerator.is_main_process:
        print(end_line(trainer, air.output_dir))
    return 0


def add_calibrate_parser(subparsers) -> None:
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
        "--responses", metavar="FILE", help="your reference responses (JSONL, docs/calibration.md) instead of the "
        "canonical set; the rows' own anchor answers are added unless the file answers anchors",
    )  # fmt: skip
    parser.add_argument("--tolerance", type=number(0), default=None, help="reward units (default 0.25)")
    parser.add_argument("--out", default="runs/calibration", help="output directory (default runs/calibration)")
    parser.add_argument("--threads", dest="calibrate_threads", type=int, metavar="N", help="torch CPU threads")
    parser.add_argument(
        "--world", metavar="NAME_OR_FILE", help="a lab world (built-in name or spec file): its training reward on "
        "its rows, with the lab's responses (needs the lab's world calibration, air_align.lab.calibration)",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (the judge's too)")
    parser.set_defaults(handler=_handle_calibrate)


def _handle_calibrate(args) -> int:
    import sys

    try:
        return _calibrate(args)
    except (FileNotFoundError, ValueError, OSError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _calibrate(args) -> int:
    import time
    from pathlib import Path

    import torch

    from air_align.files import refuse_overwriting_inputs
    from air_align.models import torch_dtype
    from air_align.rewards.calibration import DEFAULT_TOLERANCE
    from air_align.training import calibrate as cal

    if args.calibrate_threads is not None:
        if args.calibrate_threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.calibrate_threads}")
        torch.set_num_threads(args.calibrate_threads)
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    calibrate_outputs = [Path(args.out) / n for n in ("calibration.json", "calibration.md", "calibration.png")]
    refuse_overwriting_inputs(
        {"--data": args.data, "--responses": args.responses, "--config": args.config, "--world": args.world,
         "--reward-config": args.reward_config if args.reward_config and Path(args.reward_config).is_file() else None},
        [*calibrate_outputs, Path(args.out) / "scored.jsonl"],
    )  # fmt: skip
    if args.world:
        return _calibrate_world(args, tolerance)
    start = time.perf_counter()
    settings = cal.train_config_settings(args.config) if args.config else {}
    model_dtype = str(settings.get("model_dtype", "float32"))
    torch_dtype(model_dtype)  # a bad dtype in the config fails before the data and the rewards load
    spec = args.reward or settings.get("reward") or "composite"
    reward_config = cal.read_mapping(args.reward_config, "--reward-config") if args.reward_config else None
    reward_config = reward_config if reward_config is not None else settings.get("reward_config")
    data = args.data or settings.get("dataset")
    if not data:
        raise ValueError("no data: pass --data FILE (a meta-group JSONL file, `air-align data build`)")
    split = args.split or settings.get("dataset_split") or "train"
    rows = cal.load_calibration_rows(data, None if split == "all" else split, args.limit_groups)
    kinds, described = cal.reference_kinds(args.responses)
    model = args.model or settings.get("model")
    funcs, loaded = cal.build_rewards(spec, reward_config, rows, model, model_dtype)
    if args.no_progress:
        cal.quiet_judges(funcs)
    weights = settings.get("reward_weights")
    run = {
        "reward": spec,
        "reward_config": reward_config,
        "reward_weights": weights,
        "judge_policy": loaded,
        "data": str(data),
        "split": split,
        "limit_groups": args.limit_groups,
        "responses": described,
        "threads": torch.get_num_threads(),
        "setup_seconds": round(time.perf_counter() - start, 2),  # config, data, model and judge loading
    }
    groups = len({(r["group_id"], r.get("split")) for r in rows})
    print(
        f"reward {spec!r}"
        + (f" with {reward_config}" if reward_config else "")
        + (f", judge: frozen {loaded}" if loaded else "")
    )
    print(f"data {data} (split {split}): {groups} meta-groups, {len(rows)} rows; reference responses: {described}")
    table, paths = cal.calibrate(
        rows, funcs, args.out, kinds, weights=weights, tolerance=tolerance, run=run, progress=not args.no_progress
    )
    return _print_result(table, paths)


def _calibrate_world(args, tolerance: float) -> int:
    from air_align.evaluation.calibration_report import write_calibration

    clash = [f"--{k.replace('_', '-')}" for k in ("data", "reward", "reward_config", "config", "model", "responses",
             "limit_groups") if getattr(args, k) is not None]  # fmt: skip
    if clash:
        raise ValueError(f"--world scores the lab world's own reward on its own rows; drop {', '.join(clash)}")
    try:
        from air_align.lab.calibration import world_calibration
    except ImportError:
        raise ImportError(
            "--world needs the lab's world calibration (air_align.lab.calibration, lab v2), which this installation "
            "lacks; score a lab reward on a data file with --data FILE --reward module:function instead"
        ) from None
    split = args.split or "train"
    table = world_calibration(args.world, split=split, tolerance=tolerance)
    table["run"] = {"world": args.world, "split": split}
    return _print_result(table, write_calibration(table, args.out))


def _print_result(table: dict, paths: dict) -> int:
    from air_align.training import calibrate as cal

    run = table.get("run", {})
    if "scoring_seconds" in run:
        seconds = f"{run['scoring_seconds']:.1f} s (setup {run['setup_seconds']:.1f} s)"
        print(f"scored {run['responses']} responses in {seconds}")
    print()
    print("\n".join(cal.report_lines(table)))
    if table["offsets"]:
        print("\noffsets b = E[correct open] − E[correct anchor] (calibrated Δ, opt-in; paste into a train config):")
        print(f"  {cal.offsets_line(table)}")
        print(f"  or: invariance_offsets={paths['json']}")
        checked = cal.offsets_lines(table)  # absent for a lab world (its table comes without the scored responses)
        if checked:
            print("\n".join(checked))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0 if table["calibrated"] else 1
