"""Reading an answer out of a completion: the one reader that training rewards, evaluation metrics, the lab and the
audit all use, so that a completion that earns its reward in training is scored right in evaluation.

What a completion says:

- its **answer text** (:func:`answer_text`): the content of the last ``<answer>`` block. The one place where
  training and evaluation differ is what happens without a block, and that is the ``require_tag`` argument: the
  training reward requires it (``require_tag=True``: no block, no answer, the reward scores it wrong, because the
  paper's format is part of what training teaches), the evaluation metric does not (``require_tag=False``: it reads
  the completion with its ``<think>`` blocks removed, :func:`response_text`, because the metric measures the
  behaviour and the format is scored by the training reward alone; docs/evaluation.md);
- in that text: the **option letter** (:func:`parse_choice`), a **true / false** verdict (:func:`parse_true_false`),
  a **moral verdict** wrong / not wrong (:func:`moral_judgement`), a **boxed expression** (:func:`extract_boxed`,
  :func:`parse_boxed_int`) and whether it is **mathematically equal** to a reference (:func:`math_equal`).

Nothing here raises on model output: an answer that cannot be read is ``None``. Pure standard library (``math_verify``
is imported inside :func:`math_equal`: it pulls in sympy, which nothing else here needs), no torch.
"""

from __future__ import annotations

import re

from air_align.extras import require

FORMAT_TAG = re.compile(r"</?(think|answer)>", re.I)
"""Any think / answer tag, in any case."""
_ANSWER_OPEN = re.compile(r"<answer>", re.I)
_ANSWER_CLOSE = re.compile(r"</answer>", re.I)
_THINK_BLOCK = re.compile(r"<think>.*?(</think>|\Z)", re.S | re.I)

CHOICE_LETTERS = "ABCDEFGHIJ"
_EXPLICIT_CHOICE = re.compile(
    r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?\s*([A-Za-z])\s*\)?(?![A-Za-z])", re.I
)
_LEADING_CHOICE = re.compile(r"\A[\s*_`\"'\[]*\(?([A-Za-z])[*_`\"']*(?:\)|\]|\.|:|,|\s*\Z|\s+[-–—)])")
_STANDALONE_UPPER = re.compile(r"(?<![A-Za-z'])\(?([A-Z])\)?(?![A-Za-z'])")
# Not "right" / "wrong": the morality anchors ask "True or false: the action is morally wrong", where the answer
# "Wrong." means *true*; read as false, a policy saying "wrong" would earn the opposite of what it says.
_TRUE_WORDS = {"true", "yes", "correct"}
_FALSE_WORDS = {"false", "no", "incorrect"}
_NOT_WRONG = re.compile(
    r"\b(not (morally |ethically )?wrong|not unethical|not immoral|acceptable|permissible|fine|ok|okay|no)\b"
)
_WRONG = re.compile(r"\b(wrong|unethical|immoral|unacceptable|impermissible|yes)\b")
_INTEGER = re.compile(r"\s*(-?\d+)\s*")


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
    """What the completion says: the answer tag's content when present, else the text without its think blocks and
    stray tags. What judges read, and the evaluation metric's answer text.

    >>> response_text("<think>plan</think><answer>I can't help with that.</answer>")
    "I can't help with that."
    >>> response_text("<think>plan</think> Sure, step 1 ...")
    'Sure, step 1 ...'
    """
    answer = extract_answer(text)
    if answer is not None:
        return answer
    return FORMAT_TAG.sub("", _THINK_BLOCK.sub("", text)).strip()


def answer_text(text: str, *, require_tag: bool) -> str | None:
    """The answer a completion gives: the last ``<answer>`` block's content; without one, ``None`` when
    ``require_tag`` (the training reward: an untagged answer scores wrong) else :func:`response_text` (the metric).

    >>> answer_text("I pick B", require_tag=True) is None, answer_text("<think>hm</think> I pick B", require_tag=False)
    (True, 'I pick B')
    """
    answer = extract_answer(text)
    if answer is not None or require_tag:
        return answer
    return response_text(text)


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


def parse_boxed_int(answer: str | None) -> int | None:
    r"""The integer in the last ``\boxed{…}`` of ``answer``, or ``None`` (no box, or not an integer).

    >>> parse_boxed_int(r"\boxed{7}"), parse_boxed_int(r"\boxed{3} then \boxed{-4}"), parse_boxed_int(r"\boxed{x}")
    (7, -4, None)
    """
    boxed = extract_boxed(answer) if answer else None
    match = _INTEGER.fullmatch(boxed) if boxed is not None else None
    return int(match.group(1)) if match else None


def parse_choice(answer: str | None, letters: str = CHOICE_LETTERS) -> str | None:
    """The option letter an answer names, upper-cased, or ``None``.

    Tried in order: an explicit "answer is X" / "option X"; a letter at the start (markdown around it allowed)
    followed by ``)``, ``.``, ``:``, a dash or the end ("B", "(b)", "**b**", "B) No"); else a single distinct
    standalone capital letter among ``letters`` ("both A and B" is ambiguous: ``None``). Everywhere, a letter that
    reads as a word is not an option: "I" or "a" before a lowercase word ("I pick B", "the answer I gave", "the
    answer is a matter of taste") and a sentence-initial "A" before one ("A lot of reasons").

    >>> [parse_choice(x) for x in ["B", " (b) ", "**c**", "Answer: d", "A) Yes, because", "The answer is (B)."]]
    ['B', 'B', 'C', 'D', 'A', 'B']
    >>> [parse_choice(x) for x in ["I pick B", "I'd say (C), since"]]
    ['B', 'C']
    >>> [parse_choice(x) for x in [None, "", "A lot of reasons", "Z", "both A and B", "The answer I gave was wrong"]]
    [None, None, None, None, None, None]
    """
    if not answer:
        return None
    letters = letters.upper()
    explicit = [m for m in _EXPLICIT_CHOICE.finditer(answer) if not _is_word(answer, m)]
    for match in (explicit[0] if explicit else None, _LEADING_CHOICE.search(answer)):
        if match and match.group(1).upper() in letters:
            return match.group(1).upper()
    found = {m.group(1) for m in _STANDALONE_UPPER.finditer(answer) if not _is_word(answer, m)}
    if len(found) == 1 and next(iter(found)) in letters:
        return found.pop()
    return None


def _is_word(text: str, match: re.Match) -> bool:
    """Whether a matched letter is really a word: followed by a lowercase word, the pronoun "I" anywhere ("the answer
    I gave"), the article "a" anywhere ("the answer is a matter of taste") and "A" at a sentence start ("A lot of
    reasons"). "A and C" lists options: letters."""
    letter, after = match.group(1), text[match.end(1) :]
    if re.match(r" [a-z]", after) is None or re.match(r" (and|or|nor|vs|versus)\b", after):
        return False
    before = text[: match.start(1)].rstrip(" *_`\"'(")
    return letter in ("I", "a") or (letter == "A" and (not before or before[-1] in ".!?\n"))


def parse_true_false(answer: str | None) -> bool | None:
    """``True``/``False`` from an answer ("True.", "false", "Yes, it is", "**FALSE**"), by the first verdict word
    (true / yes / correct, false / no / incorrect; not right / wrong, which are moral verdicts in the morality
    anchors); ``None`` when there is none.

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


def moral_judgement(answer: str | None) -> int | None:
    """ETHICS convention: 1 if ``answer`` says the action is wrong, 0 if it says not wrong, None if unclear.

    The earliest matching phrase wins, and "not wrong"-style phrases are tried before "wrong" at the same place.

    >>> moral_judgement("Not wrong."), moral_judgement("This is wrong."), moral_judgement("Hard to say")
    (0, 1, None)
    """
    if not answer:
        return None
    lowered = answer.lower()
    hits = []
    for value, pattern in ((0, _NOT_WRONG), (1, _WRONG)):
        match = pattern.search(lowered)
        if match:
            hits.append((match.start(), -len(match.group(0)), value))
    return min(hits)[2] if hits else None


def math_equal(answer: str | None, reference: str) -> bool:
    """Whether ``answer`` equals ``reference`` by ``math_verify`` (the last ``\\boxed{}`` content when present).

    >>> math_equal(r"\\boxed{\\frac{84}{2}}", "42"), math_equal("41", "42"), math_equal(None, "42")
    (True, False, False)
    """
    if not answer:
        return False
    math_verify = require("math_verify", "the maths answer check")  # heavy (sympy) and only needed for maths
    parse, verify = math_verify.parse, math_verify.verify

    boxed = extract_boxed(answer)
    candidate = f"\\boxed{{{boxed}}}" if boxed is not None else answer
    try:
        gold = parse(str(reference))
        pred = parse(candidate)
        return bool(gold) and bool(pred) and bool(verify(gold, pred))
    except Exception:  # math_verify/sympy can fail on odd model output: that is a wrong answer, not a crash
        return False
