"""The ``air-align`` command.

The command line is one thin layer over the library: a module per command family in this package parses its
arguments and calls the library (heavy imports happen inside the handlers, so ``air-align --help`` stays fast). No
library module imports this package (``tests/test_layering.py``). Every handler is ``handler(args) -> int``: 0 done,
1 a check the command ran found a failure (``calibrate``: not calibrated; ``theory``: an identity broken;
``lab analyse --check``: a table does not rebuild), and it *raises* on bad input.

Errors: :func:`main` is the one place that turns an *expected* error (bad input: a ``ValueError`` such as
``data.validate.ValidationError``, a missing or unreadable file, a missing optional package) into ``error: …`` on
stderr and exit code 2, the message naming what was wrong and how to fix it. ``--debug`` (anywhere on the command
line) or ``AIR_ALIGN_DEBUG=1`` shows the traceback instead; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from air_align import __version__
from air_align.cli import audit, calibrate, data, evaluate, lab, real, theory, train

COMMANDS = (
    theory,  # theory: the checks that the maths matches the paper
    data,  # data: build, validate and inspect meta-group datasets
    train,  # train: GRPO/GSPO with AIR or V-REx on TRL
    calibrate,  # calibrate: is a reward AIR-ready?
    evaluate,  # eval / report: Acc, Acc_group, ID/OOD, reports, plots
    audit,  # audit: a model's context invariance before training
    lab,  # reproduce / demo / lab: the CPU-scale lab
    real,  # study: the real tier (SmolLM2 trained with each method, audited)
)
EXPECTED_ERRORS = (ValueError, OSError, ModuleNotFoundError)
"""Bad input, reported as ``error: …`` (exit 2): ValueError and its subclasses (ValidationError, the config and
world-spec errors), a missing / unreadable file (OSError: FileNotFoundError, IsADirectoryError, PermissionError …),
an optional package that is not installed (the message says how to install it)."""
INPUT_ERROR = 2
"""Exit code of a usage or input error (argparse's own code for a bad command line)."""
DEBUG_ENV = "AIR_ALIGN_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="air-align",
        description="Context-invariant alignment training with AIR (Anchor Invariance Regularization).",
        epilog=f"An expected error prints `error: …` and exits {INPUT_ERROR}; add --debug (or set {DEBUG_ENV}=1) "
        "for its traceback.",
    )
    parser.add_argument("--version", action="version", version=f"air-align {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error (accepted anywhere on the command line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without its ``--debug`` flags (before a ``--``), and whether there was one.

    >>> split_debug(["train", "max_steps=1", "--debug"])
    (['train', 'max_steps=1'], True)
    """
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [a for a in argv[:end] if a != "--debug"] + argv[end:]
    return kept, len(kept) < len(argv)


def is_override(arg: str) -> bool:
    """A ``key=value`` command-line override (``train``'s positional arguments).

    >>> is_override("max_steps=2"), is_override("--threads=2"), is_override("runs/x")
    (True, False, False)
    """
    return "=" in arg and not arg.startswith("-")


def error_message(err: BaseException) -> str:
    """The one-line (or, for a list of problems, multi-line) message of an expected error.

    >>> error_message(FileNotFoundError(2, "No such file or directory", "data.jsonl"))
    'data.jsonl: No such file or directory; check the path'
    """
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}; check the path"
    return str(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    argv, debug = split_debug(list(sys.argv[1:] if argv is None else argv))
    debug = debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(is_override(a) for a in extra):
        args.overrides += extra  # key=value on both sides of an option: `train … --overwrite max_steps=2`
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return INPUT_ERROR
    try:
        return int(args.handler(args) or 0)
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"error: {error_message(err)}", file=sys.stderr)
        return INPUT_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
