"""Rule verifiers: multiple-choice letter, true/false, and maths by ``math_verify`` (paper §4, "task rewards use
rule-based verification for anchors"; maths open variants also use ``math_verify``).

:func:`check_answer` is the one rule check: the training rewards below call it with ``require_tag=True`` (an answer
outside the ``<answer>`` tag scores wrong) and the evaluation metric (``air_align.evaluation.scoring.rule_verdict``)
with ``require_tag=False``; both read the answer with ``air_align.answers``, which tolerates case, punctuation,
markdown and stray words ("**(b)**", "Answer: B) because…", "True."). A missing or unparsable answer is wrong;
nothing here raises on model output, only on a bad reference in the data.

Task-reward values: +1.25 correct / −1.0 wrong. The paper's appendix (as the unofficial reproduction reports it)
gives these values for the format reward and the "safe" tier of the open safety reward; we use the same pair for
rule-verified answers so that a correct anchor earns what a merely-safe open answer earns, and only the top
"safe and helpful" tier (+2.5) lets an open variant out-score its anchors (docs/design.md §2).
"""

from __future__ import annotations

from air_align.answers import (
    CHOICE_LETTERS,
    answer_text,
    completion_text,
    extract_boxed,
    math_equal,
    parse_choice,
    parse_true_false,
)

TASK_CORRECT = 1.25  # our choice, on the App. C.1 scale (see module docstring)
TASK_WRONG = -1.0  # our choice, on the App. C.1 scale
RULE_VERIFIERS = ("choice", "true_false", "math")


def check_answer(verifier: str, completion, reference, *, require_tag: bool = True) -> tuple[bool, str | None]:
    """``(correct, what was read)`` for a rule-verified row: the letter (``choice``), ``"true"``/``"false"``
    (``true_false``) or the boxed content (``math``) read from the answer, ``None`` when nothing could be read.

    ``require_tag``: without an ``<answer>`` block, True reads no answer (the training reward), False reads the
    completion without its think blocks (the evaluation metric); see ``air_align.answers.answer_text``.

    >>> check_answer("choice", "I pick B", "B"), check_answer("choice", "I pick B", "B", require_tag=False)
    ((False, None), (True, 'B'))
    >>> check_answer("true_false", "<answer>**False.**</answer>", "false")
    (True, 'false')

    Raises:
        ValueError: an unknown verifier, or a reference that is not a letter A-J / true or false / non-empty.
    """
    text = answer_text(completion_text(completion), require_tag=require_tag)
    if verifier == "choice":
        expected = str(reference).strip().upper() if reference is not None else ""
        if len(expected) != 1 or expected not in CHOICE_LETTERS:
            raise ValueError(f"multiple-choice reference answer {reference!r} is not a letter A-J; fix the data row")
        letter = parse_choice(text)
        return letter == expected, letter
    if verifier == "true_false":
        expected = parse_true_false(str(reference)) if reference is not None else None
        if expected is None:
            raise ValueError(f"true/false reference answer {reference!r} is not 'true' or 'false'; fix the data row")
        verdict = parse_true_false(text)
        return verdict == expected, None if verdict is None else str(verdict).lower()
    if verifier == "math":
        if reference is None or str(reference).strip() == "":
            raise ValueError("maths row without a reference answer: set the row's 'answer' to the final result")
        return math_equal(text, str(reference)), extract_boxed(text) if text else None
    raise ValueError(f"verifier {verifier!r} is not a rule verifier; choose one of {', '.join(RULE_VERIFIERS)}")


def _rewards(verifier: str, completions, answer, correct: float, wrong: float) -> list[float]:
    return [
        correct if check_answer(verifier, completion, reference)[0] else wrong
        for completion, reference in zip(completions, answer, strict=True)
    ]


def choice_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """Multiple-choice anchor: ``correct`` when the answer tag names the reference letter, else ``wrong``.

    >>> choice_reward(["<think>t</think><answer>(b)</answer>", "<answer>A</answer>", "no tag"], answer=["B", "B", "B"])
    [1.25, -1.0, -1.0]
    """
    return _rewards("choice", completions, answer, correct, wrong)


def true_false_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """True/false anchor: ``correct`` when the answer tag's verdict matches the reference, else ``wrong``.

    >>> true_false_reward(["<answer>False.</answer>", "<answer>true</answer>", ""], answer=["false"] * 3)
    [1.25, -1.0, -1.0]
    """
    return _rewards("true_false", completions, answer, correct, wrong)


def math_reward(
    completions, answer: list[str], correct: float = TASK_CORRECT, wrong: float = TASK_WRONG, **kwargs
) -> list[float]:
    """Maths (anchors and open variants): ``correct`` when the answer tag equals the reference by ``math_verify``.

    >>> math_reward(["<think>t</think><answer>\\\\boxed{42}</answer>", "<answer>41</answer>"], answer=["42", "42"])
    [1.25, -1.0]
    """
    return _rewards("math", completions, answer, correct, wrong)
