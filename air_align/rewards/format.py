"""The format reward r_fmt: are the paper's tags right? (Reading the answer out of the tags is ``air_align.answers``.)

The paper's completions read ``<think>…</think><answer>…</answer>``; maths answers also need ``\\boxed{…}`` inside
the answer tag (paper §4, "composite reward"). The reward values are the ones an unofficial reproduction reports for
App. C.1: +1.25 when the format is right, −1.0 otherwise; both are arguments.

Every reward in ``air_align.rewards`` has TRL's signature ``(completions, **kwargs) -> list[float | None]``; TRL
passes completions either as strings or, for conversational data, as lists of message dicts, and
:func:`air_align.answers.completion_text` turns both into text.
"""

from __future__ import annotations

import re

from air_align.answers import FORMAT_TAG, completion_text, extract_boxed

FORMAT_CORRECT = 1.25  # App. C.1 (unofficial reproduction): format reward when the tags are right
FORMAT_WRONG = -1.0  # App. C.1 (unofficial reproduction): format reward otherwise

# Strict shape: optional whitespace, one think block, one answer block, optional whitespace, nothing else.
_STRICT = re.compile(r"\A\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.S)


def format_ok(text: str, require_boxed: bool = False) -> bool:
    """Whether ``text`` is exactly a non-empty think block then a non-empty answer block (and a non-empty
    ``\\boxed{…}`` inside the answer when ``require_boxed``).

    >>> format_ok("<think>2+2</think><answer>4</answer>")
    True
    >>> format_ok("<think> </think><answer>4</answer>")  # empty think
    False
    >>> format_ok("<answer>4</answer>")
    False
    >>> format_ok("<think>a</think><answer>4</answer> extra")
    False
    >>> format_ok("<think>a</think><answer>4</answer>", require_boxed=True)
    False
    >>> format_ok("<think>a</think><answer>\\\\boxed{4}</answer>", require_boxed=True)
    True
    """
    match = _STRICT.match(text)
    if match is None:
        return False
    think, answer = match["think"], match["answer"]
    if not think.strip() or not answer.strip() or FORMAT_TAG.search(think) or FORMAT_TAG.search(answer):
        return False
    if require_boxed:
        boxed = extract_boxed(answer)
        return boxed is not None and bool(boxed.strip())
    return True


def format_reward(
    completions,
    domain: list[str] | None = None,
    verifier: list[str] | None = None,
    correct: float = FORMAT_CORRECT,
    wrong: float = FORMAT_WRONG,
    **kwargs,
) -> list[float]:
    """r_fmt (paper §4): ``correct`` when the tags are right, else ``wrong``; maths answers (verifier ``"math"``, or
    domain ``"math"`` when no verifier column is given) also need ``\\boxed{…}``. A maths *anchor* (verifier
    ``choice`` / ``true_false``) answers with a letter or true/false and needs no box (its prompt says so).

    >>> format_reward(["<think>a</think><answer>B</answer>", "B"])
    [1.25, -1.0]
    >>> format_reward(["<think>a</think><answer>4</answer>"], domain=["math"])
    [-1.0]
    >>> format_reward(["<think>a</think><answer>B</answer>"], domain=["math"], verifier=["choice"])
    [1.25]
    """
    out = []
    for i, completion in enumerate(completions):
        box = requires_box(domain[i] if domain is not None else None, verifier[i] if verifier is not None else None)
        out.append(correct if format_ok(completion_text(completion), require_boxed=box) else wrong)
    return out


def requires_box(domain: str | None, verifier: str | None) -> bool:
    """Whether a row's answer must hold ``\\boxed{…}``: a maths answer (verifier ``math``; domain ``math`` when the
    row has no verifier). A maths anchor answers with a letter or true/false, as its prompt asks, and needs no box.

    >>> requires_box("math", "math"), requires_box("math", "choice"), requires_box("math", None)
    (True, False, True)
    """
    return verifier == "math" if verifier is not None else domain == "math"
