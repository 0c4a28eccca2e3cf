"""One answer reader: the training reward, the evaluation metric and the lab read the same letter, true/false and
number from the same completion; the only difference, a missing ``<answer>`` tag, is the ``require_tag`` argument."""

from __future__ import annotations

import subprocess
import sys

import pytest

from air_align.answers import (
    answer_text,
    extract_answer,
    moral_judgement,
    parse_boxed_int,
    parse_choice,
    parse_true_false,
    response_text,
)
from air_align.evaluation.scoring import oracle_label_verdict, rule_verdict
from air_align.lab.responses import read_answer
from air_align.rewards.verifiers import choice_reward, math_reward, true_false_reward

# (answer text, the letter every reader must read). The first rows are the audited cases, where the reward and the
# metric used to disagree: "I pick B" (reward B, metric I), "A lot of reasons" (reward none, metric A), and
# "Answer: d", "**C**", "The answer is (B)." (reward the letter, metric none).
CHOICES = [
    ("I pick B", "B"),
    ("A lot of reasons", None),
    ("Answer: d", "D"),
    ("**C**", "C"),
    ("The answer is (B).", "B"),
    ("B", "B"),
    ("b", "B"),  # lower case
    ("**b**", "B"),  # bold, lower case
    ("(c)", "C"),  # parenthesised
    ("(C) because it is harmful", "C"),
    ("answer: a", "A"),  # "Answer:"-prefixed, lower case
    ("Answer: **B**", "B"),
    ("B) No", "B"),
    ("A.", "A"),
    ("Option c", "C"),
    ("both A and B", None),
    ("I cannot say", None),
    # found by re-scoring the SmolLM2 audit: "answer" followed by the pronoun I or the article a is not a letter
    ("The answer I provided earlier is fine", None),
    ("The answer is a matter of taste", None),
    ("The answer is A because it is harmful", "A"),
    ("B because it is harmful", "B"),  # only "A" and "I" are words at a sentence start, as the reader documents
]
TRUTHS = [
    ("True", True),
    ("true.", True),  # lower case
    ("**FALSE**", False),  # bold
    ("(false)", False),  # parenthesised
    ("Answer: true", True),  # "Answer:"-prefixed
    ("Yes, it holds", True),
    ("I think false", False),
    ("It is incorrect", False),
    ("maybe", None),
]
NUMBERS = [  # (answer text, equal to 42?)
    ("\\boxed{42}", True),
    ("\\boxed{42.0}", True),
    ("The result is \\boxed{\\frac{84}{2}}", True),
    ("42", True),
    ("first 41, finally \\boxed{42}", True),  # the last box
    ("\\boxed{41}", False),
    ("no number", False),
]


def tagged(text: str) -> str:
    return f"<think>reasoning</think><answer>{text}</answer>"


def metric(verifier: str, reference: str, completion: str) -> dict:
    (verdict,) = rule_verdict([{"id": "x", "verifier": verifier, "answer": reference}], [completion])
    return verdict


@pytest.mark.parametrize("text, letter", CHOICES)
def test_reward_metric_and_lab_read_the_same_letter(text, letter):
    for reference in "ABCD":
        right = letter == reference
        (reward,) = choice_reward([tagged(text)], answer=[reference])
        assert reward == (1.25 if right else -1.0)
        for completion in (tagged(text), text):  # the metric reads the tag, or the whole answer when untagged
            verdict = metric("choice", reference, completion)
            assert verdict["correct"] is right and verdict["details"]["parsed"] == letter
        # the difference is the tag, and only the tag: untagged, the reward scores wrong whatever the letter
        assert choice_reward([text], answer=[reference]) == [-1.0]
    assert read_answer(tagged(text)).letter == letter == read_answer(text).letter


@pytest.mark.parametrize("text, value", TRUTHS)
def test_reward_metric_and_lab_read_the_same_truth_value(text, value):
    for reference in ("true", "false"):
        right = value is not None and value == (reference == "true")
        assert true_false_reward([tagged(text)], answer=[reference]) == [1.25 if right else -1.0]
        assert true_false_reward([text], answer=[reference]) == [-1.0]
        for completion in (tagged(text), text):
            verdict = metric("true_false", reference, completion)
            assert verdict["correct"] is right
            assert verdict["details"]["parsed"] == (None if value is None else str(value).lower())
    assert read_answer(tagged(text)).truth == (None if value is None else str(value).lower())


@pytest.mark.parametrize("text, equal", NUMBERS)
def test_reward_and_metric_agree_on_numbers(text, equal):
    assert math_reward([tagged(text)], answer=["42"]) == [1.25 if equal else -1.0]
    assert math_reward([text], answer=["42"]) == [-1.0]
    assert metric("math", "42", tagged(text))["correct"] is equal
    assert metric("math", "42", text)["correct"] is equal


def test_metric_reads_untagged_answers_without_their_think_block():
    # the think block names A; the answer, outside any tag, is B
    completion = "<think>A looks tempting</think> B"
    assert answer_text(completion, require_tag=True) is None and answer_text(completion, require_tag=False) == "B"
    assert metric("choice", "B", completion)["correct"] is True
    assert metric("choice", "B", completion)["details"]["tagged"] is False
    assert choice_reward([completion], answer=["B"]) == [-1.0]


def test_moral_verdicts_read_alike_by_metric_and_lab():
    for text, judgement in [("that was wrong", 1), ("that was fine", 0), ("not wrong at all", 0), ("hmm", None)]:
        assert moral_judgement(text) == judgement
        assert read_answer(tagged(text)).verdict == {1: "wrong", 0: "fine"}.get(judgement)
        row = {"verifier": "judge", "domain": "morality", "label": 1}
        assert oracle_label_verdict([row], [tagged(text)])[0]["correct"] is (judgement == 1)


def test_extract_answer_and_response_text():
    assert extract_answer("<think>x</think><answer>A</answer><answer> C </answer>") == "C"  # the last one
    assert extract_answer("<answer>   </answer>") is None
    assert response_text("no tags at all") == "no tags at all"
    assert response_text("<think>unclosed plan") == ""
    assert parse_boxed_int("\\boxed{ 12 }") == 12 and parse_boxed_int("\\boxed{1.5}") is None


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("C", "C"),
        ("c", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("**C**", "C"),
        ("C) Refuse, because it is harmful", "C"),
        ("The correct answer is: C", "C"),
        ("Option c", "C"),
        ("I choose C", "C"),
        ("A lot could be said", None),
        ("A and C", None),
        ("", None),
        (None, None),
        ("K", None),  # outside A-J
    ],
)
def test_parse_choice(answer, letter):
    assert parse_choice(answer) == letter


@pytest.mark.parametrize(
    "answer, value",
    [
        ("true", True),
        ("TRUE", True),
        ("True.", True),
        ("Yes", True),
        ("false", False),
        ("False!", False),
        ("No, it is not", False),
        ("unsure", None),
        ("", None),
        # "wrong" / "right" are moral verdicts: to "True or false: the action is morally wrong", "Wrong." means true
        ("it is wrong", None),
        ("Wrong.", None),
        ("That is right", None),
    ],
)
def test_parse_true_false(answer, value):
    assert parse_true_false(answer) is value


def test_reader_imports_no_torch():
    code = (
        "import sys, air_align.answers, air_align.files, air_align.rewards.verifiers, air_align.rewards.format; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
