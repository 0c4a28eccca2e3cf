"""The format reward and the tag-extraction helpers every other reward uses.

The paper's completions read ``<think>…</think><answer>…</answer>``; maths answers also need ``\\boxed{…}`` inside
the answer tag (paper §4, "composite reward"). The reward values are the ones an unofficial reproduction reports for
App. C.1: +1.25 when the format is right, −1.0 otherwise; both are arguments.

Every reward in ``air_align.rewards`` has TRL's signature ``(completions, **kwargs) -> list[float | None]``; TRL
passes completions either as strings or, for conversational data, as lists of message dicts, and
:func:`completion_text` turns both into text.
"""

from __future__ import annotations

import re

FORMAT_CORRECT = 1.25  # App. C.1 (unofficial reproduction): format reward when the tags are right
FORMAT_WRONG = -1.0  # App. C.1 (unofficial reproduction): format reward otherwise

# Strict shape: optional whitespace, one think block, one answer block, optional whitespace, nothing else.
_STRICT = re.compile(r"\A\s*<think>(?P<think>.*?)</think>\s*<answer>(?P<answer>.*?)</answer>\s*\Z", re.S)
_TAG = re.compile(r"</?(think|answer)>", re.I)
_ANSWER_OPEN = re.compile(r"<answer>", re.I)
_ANSWER_CLOSE = re.compile(r"</answer>", re.I)


def completion_text(completion) -> str:
    """Text of one completion, as TRL passes it: a string, or a list of ``{"role", "content"}`` messages.

    >>> completion_text("hi")
    'hi'
    >>> completion_text([{"role": "assistant", "content": "hi"}])
    'hi'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple):
        parts = []
        for message in completion:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError(
                    f"completion message {message!r} is not a {{'role', 'content': str}} dict; TRL's conversational "
                    "completions are lists of such messages"
                )
            parts.append(message["content"])
        return "".join(parts)
    raise ValueError(f"completion of type {type(completion).__name__} is neither a string nor a list of messages")


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>`` tag, stripped; ``None`` when there is none or it is empty.

    Lenient on purpose (the format reward is the strict check): tags in any case, text around them, and an
    unclosed last tag (a completion cut at the token limit) all still yield the answer.

    >>> extract_answer("<think>x</think><answer> B </answer>")
    'B'
    >>> extract_answer("blah <ANSWER>true</ANSWER> trailing")
    'true'
    >>> extract_answer("<answer>42")
    '42'
    >>> extract_answer("no tags") is None
    True
    """
    opens = list(_ANSWER_OPEN.finditer(text))
    if not opens:
        return None
    rest = text[opens[-1].end() :]
    close = _ANSWER_CLOSE.search(rest)
    answer = (rest[: close.start()] if close else rest).strip()
    return answer or None


def response_text(text: str) -> str:
    """What a judge should read: the answer tag's content when present, else the text with think blocks removed.

    >>> response_text("<think>plan</think><answer>I can't help with that.</answer>")
    "I can't help with that."
    >>> response_text("<think>plan</think> Sure, step 1 ...")
    'Sure, step 1 ...'
    """
    answer = extract_answer(text)
    if answer is not None:
        return answer
    without_think = re.sub(r"<think>.*?(</think>|\Z)", "", text, flags=re.S | re.I)
    return _TAG.sub("", without_think).strip()


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` in ``text`` (braces balanced), or ``None``.

    >>> extract_boxed(r"so \\boxed{\\frac{1}{2}} done")
    '\\\\frac{1}{2}'
    >>> extract_boxed(r"\\boxed{") is None
    True
    """
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 0, start + len("\\boxed")
        for j in range(i, len(text)):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : j]
        start = text.rfind("\\boxed{", 0, start)  # unbalanced: try an earlier one
    return None


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
    if not think.strip() or not answer.strip() or _TAG.search(think) or _TAG.search(answer):
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
    """r_fmt (paper §4): ``correct`` when the tags are right, else ``wrong``; maths rows (domain ``"math"`` or
    verifier ``"math"``) also need ``\\boxed{…}``.

    >>> format_reward(["<think>a</think><answer>B</answer>", "B"])
    [1.25, -1.0]
    >>> format_reward(["<think>a</think><answer>4</answer>"], domain=["math"])
    [-1.0]
    """
    out = []
    for i, completion in enumerate(completions):
        is_math = (domain is not None and domain[i] == "math") or (verifier is not None and verifier[i] == "math")
        out.append(correct if format_ok(completion_text(completion), require_boxed=is_math) else wrong)
    return out
