"""``air-align train --config configs/X.yaml [key=value …] [--resume [auto|PATH]]`` (argparse only; heavy imports
happen in the handler). Multi-GPU / multi-node: ``accelerate launch --config_file configs/accelerate/… -m
air_align.cli train …`` (see ``docs/scaling.md``)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="GRPO/GSPO with AIR or V-REx on TRL",
        description="Train with AIRTrainer (TRL GRPOTrainer + AIR). Values: YAML config, then key=value overrides.",
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
        help="resume from the last checkpoint in output_dir (auto, the default) or from PATH",
    )
    parser.set_defaults(handler=_handle_train)


def _handle_train(args) -> int:
    from air_align.training.run import build_configs, train

    run, air = build_configs(args.config, args.overrides)
    trainer = train(run, air, resume=args.resume)
    if trainer.accelerator.is_main_process:
        last = trainer.state.log_history[-1] if trainer.state.log_history else {}
        print(f"trained {trainer.state.global_step} steps → {air.output_dir}/final  {last}")
    return 0
