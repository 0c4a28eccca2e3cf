"""The ``air-align`` command.

Each area owns its subcommands in a light ``cli.py`` (argparse only; heavy imports happen inside the
handlers), so ``air-align --help`` stays fast. Every handler is ``handler(args) -> int`` (exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, description). Each module defines ``add_parser(subparsers) -> None``.
_AREAS = (
    ("air_align.theory_cli", "theory: print the checks that the maths matches the paper"),
    ("air_align.data.cli", "data: build, validate and inspect meta-group datasets"),
    ("air_align.training.cli", "train: GRPO/GSPO with AIR or V-REx on TRL"),
    ("air_align.evaluation.cli", "eval / report: Acc, Acc_group, ID/OOD, reports and plots"),
    ("air_align.lab.cli", "reproduce / demo: the CPU-scale lab"),
    ("air_align.real.cli", "audit: context invariance of a real model"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="air-align",
        description="Context-invariant alignment training with AIR (Anchor Invariance Regularization).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, _ in _AREAS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name == module_name:  # area not built yet
                continue
            raise
        module.add_parser(sub)
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
