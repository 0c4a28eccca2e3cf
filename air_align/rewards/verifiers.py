"""Rule verifiers: multiple-choice letter, true/false, and maths by ``math_verify`` (paper §4, "task rewards use
rule-based verification for anchors"; maths open variants also use ``math_verify``).

Extraction reads the answer tag (:func:`air_align.rewards.format.extract_answer`) and tolerates case, punctuation,
markdown and stray words ("**(b)**", "Answer: B) because…", "True."). A missing or unparsable answer scores as
wrong; nothing here raises on model output.

Task-reward values: +1.25 correct / −1.0 wrong. The paper's appendix (as the unofficial reproduction reports it)
gives these values for the format reward and the "safe" tier of the open safety reward; we use the same pair for
rule-verified answers so that a correct anchor earns what a merely-safe open answer earns, and only the top
"safe and helpful" tier (+2.5) lets an open variant out-score its anchors (DESIGN.md §2).
"""

from __future__ import annotations

import re

from air_align.rewards.format import completion_text, extract_answer, extract_boxed

TASK_CORRECT = 1.25  # our choice, on the App. C.1 scale (see module docstring)
TASK_WRONG = -1.0  # our choice, on the App. C.1 scale

CHOICE_LETTERS = "ABCDEFGHIJ"
_EXPLICIT_CHOICE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?\s*([A-Za-z])\s*\)?(?![A-Za-z])", re.I
)
_LEADING_CHOICE = re.compile(r"\A[\s*_`\"'\[]*\(?([A-Za-z])(?:\)|\]|\.|:|,|\s*\Z|\s+[-–—)])")
_STANDALONE_UPPER = re.compile(r"(?<![A-Za-z'])\(?([A-Z])\)?(?![A-Za-z'])")
_TRUE_WORDS = {"true", "yes", "correct", "right"}
_FALSE_WORDS = {"false", "no", "incorrect", "wrong"}


def parse_choice(answer: str | None, letters: str = CHOICE_LETTERS) -> str | None:
    """The option letter an answer names, upper-cased, or ``None``.

    Tried in order: an explicit "answer is X" / "option X"; a letter at the start followed by ``)``, ``.``, ``:``,
    a dash or the end ("B", "(b)", "B) No"); else a single distinct standalone capital letter among ``letters``, not
    counting a sentence-initial "A lot…" / "I pick…" ("both A and B" is ambiguous: ``None``).

    >>> [parse_choice(x) for x in ["B", " (b) ", "**C**", "Answer: d", "A) Yes, because", "The answer is (B)."]]
    ['B', 'B', 'C', 'D', 'A', 'B']
    >>> [parse_choice(x) for x in ["I pick B", "I'd say (C), since"]]
    ['B', 'C']
    >>> [parse_choice(x) for x in [None, "", "A lot of reasons", "Z", "both A and B"]]
    [None, None, None, None, None]
    """
    if not answer:
        return None
    letters = letters.upper()
    for pattern in (_EXPLICIT_CHOICE, _LEADING_CHOICE):
        match = pattern.search(answer)
        if match and match.group(1).upper() in letters:
            return match.group(1).upper()
    found = {m.group(1) for m in _STANDALONE_UPPER.finditer(answer) if not _is_sentence_word(answer, m)}
    if len(found) == 1 and next(iter(found)) in letters:
        return found.pop()
    return None


def _is_sentence_word(text: str, match: re.Match) -> bool:
    """A capital at a sentence start followed by a lowercase word is the article "A" or the pronoun "I"."""
    before = text[: match.start()].rstrip(" *_`\"'")
    after = text[match.end() :]
    listing = re.match(r" (and|or|nor|vs|versus)\b", after) is not None  # "A and C" lists options
    return (not before or before[-1] in ".!?\n") and re.match(r" [a-z]", after) is not None and not listing


def parse_true_false(answer: str | None) -> bool | None:
    """``True``/``False`` from an answer ("True.", "false", "Yes, it is", "**FALSE**"), by the first verdict word;
    ``None`` when there is none.

    >>> [parse_true_false(x) for x in ["True.", "**FALSE**", "yes, it holds", "Incorrect: 2+3=5", "maybe", None]]
    [True, False, True, False, None, None]
    """
    if not answer:
        return None
    for word in re.findall(r"[a-z]+", answer.lower()):
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def _reference_bool(reference) -> bool:
    parsed = parse_true_false(str(reference))
    if parsed is None:
        raise ValueError(f"true/false reference answer {reference!r} is not 'true' or 'false'; fix the data row")
    return parsed


def choice_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """Multiple-choice anchor: ``correct`` when the answer tag names the reference letter, else ``wrong``.

    >>> choice_reward(["<think>t</think><answer>(b)</answer>", "<answer>A</answer>", "no tag"], answer=["B", "B", "B"])
    [1.25, -1.0, -1.0]
    """
    out = []
    for completion, reference in zip(completions, answer, strict=True):
        if not reference or str(reference).strip().upper() not in CHOICE_LETTERS:
            raise ValueError(f"multiple-choice reference answer {reference!r} is not a letter A-J; fix the data row")
        picked = parse_choice(extract_answer(completion_text(completion)))
        out.append(correct if picked == str(reference).strip().upper() else wrong)
    return out


def true_false_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """True/false anchor: ``correct`` when the answer tag's verdict matches the reference, else ``wrong``.

    >>> true_false_reward(["<answer>False.</answer>", "<answer>true</answer>", ""], answer=["false"] * 3)
    [1.25, -1.0, -1.0]
    """
    out = []
    for completion, reference in zip(completions, answer, strict=True):
        expected = _reference_bool(reference)
        picked = parse_true_false(extract_answer(completion_text(completion)))
        out.append(correct if picked is not None and picked == expected else wrong)
    return out


def math_correct(answer_text: str | None, reference: str) -> bool:
    """Whether ``answer_text`` equals ``reference`` by ``math_verify`` (the ``\\boxed{}`` content when present).

    >>> math_correct(r"\\boxed{\\frac{84}{2}}", "42"), math_correct("41", "42"), math_correct(None, "42")
    (True, False, False)
    """
    if not answer_text:
        return False
    from math_verify import parse, verify

    boxed = extract_boxed(answer_text)
    candidate = f"\\boxed{{{boxed}}}" if boxed is not None else answer_text
    try:
        gold = parse(str(reference))
        pred = parse(candidate)
        return bool(gold) and bool(pred) and bool(verify(gold, pred))
    except Exception:  # math_verify/sympy can fail on odd model output: that is a wrong answer, not a crash
        return False


def math_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """Maths (anchors and open variants): ``correct`` when the answer tag equals the reference by ``math_verify``.

    >>> math_reward(["<think>t</think><answer>\\\\boxed{42}</answer>", "<answer>41</answer>"], answer=["42", "42"])
    [1.25, -1.0]
    """
    out = []
    for completion, reference in zip(completions, answer, strict=True):
        if reference is None or str(reference).strip() == "":
            raise ValueError("maths row without a reference answer: set the row's 'answer' to the final result")
        ok = math_correct(extract_answer(completion_text(completion)), reference)
        out.append(correct if ok else wrong)
    return out
