"""Argument types of the commands' numeric options: every ``--option`` that takes a number parses it with
:func:`number` or :func:`whole`, so that ``nan``, ``inf`` and values outside the option's range stop at the command
line (argparse's ``error: argument --temperature: …``, exit 2) instead of reaching a JSON file (where NaN is not
valid JSON) or failing deep inside a run.

Pure standard library: the command-line modules import it while the command line is parsed.
"""

from __future__ import annotations

import argparse
import math


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    """The allowed range in words: ``≥ 0``, ``> 0``, ``in [0, 1)``."""
    if high is None:
        return f"{'>' if low_open else '≥'} {low:g}"
    if low is None:
        return f"{'<' if high_open else '≤'} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def number(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False):
    """An argparse ``type`` for a finite float between ``low`` and ``high`` (each included unless ``*_open``).

    >>> number(0, 1, high_open=True)("0.25")
    0.25
    >>> number(0)("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: 'nan' is not a finite number; give a number ≥ 0
    """
    allowed = _bounds(low, high, low_open, high_open) if (low, high) != (None, None) else "(e.g. 0.5)"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a number {allowed}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a number {allowed}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a number {allowed}")
        return value

    parse.__name__ = "number"  # argparse names the type in some messages
    return parse


def whole(low: int = 0, meaning: str = ""):
    """An argparse ``type`` for a whole number ≥ ``low``; ``meaning`` (what 0 or the minimum means) joins the
    message.

    >>> whole(1)("3")
    3
    >>> whole(1, "the number of intents")("-3")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: -3 is out of range; give a whole number ≥ 1 (the number of intents)
    """
    hint = f" ({meaning})" if meaning else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one ≥ {low}{hint}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is out of range; give a whole number ≥ {low}{hint}")
        return value

    parse.__name__ = "whole number"
    return parse
