"""The ``air-align`` command.

Each area owns its subcommands in a light ``cli.py`` (argparse only; heavy imports happen inside the handlers), so
``air-align --help`` stays fast. Every handler is ``handler(args) -> int`` (exit code).
"""

from __future__ import annotations

import argparse
import sys

from air_align import theory_cli
from air_align.data import cli as data_cli
from air_align.evaluation import cli as evaluation_cli
from air_align.lab import cli as lab_cli
from air_align.real import cli as real_cli
from air_align.training import cli as training_cli

AREAS = (
    theory_cli,  # theory: the checks that the maths matches the paper
    data_cli,  # data: build, validate and inspect meta-group datasets
    training_cli,  # train / calibrate: GRPO/GSPO with AIR or V-REx on TRL; is a reward AIR-ready?
    evaluation_cli,  # eval / report / audit: Acc, Acc_group, ID/OOD, reports, plots, a model's context invariance
    lab_cli,  # reproduce / demo: the CPU-scale lab
    real_cli,  # study: the real tier (SmolLM2 trained with each method, audited)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="air-align",
        description="Context-invariant alignment training with AIR (Anchor Invariance Regularization).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        area.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
