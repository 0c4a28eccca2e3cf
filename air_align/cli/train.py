"""``air-align train --config configs/X.yaml [key=value …] [--resume [auto|PATH] | --overwrite] [--into-existing]
[--allow-config-change] [--threads N]`` (argparse only; the run is ``air_align.training.run``). Multi-GPU /
multi-node: ``accelerate launch --config_file configs/accelerate/… -m air_align.cli train …`` (docs/scaling.md)."""

from __future__ import annotations

import argparse

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
