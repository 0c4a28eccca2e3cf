"""Validation of meta-group rows: every problem names the row (id, line) or group and says how to fix it.

A meta-group is the rows that share ``group_id`` and ``split``. One intent may appear in ``test_id`` and
``test_ood`` (a held-out intent rendered with ID and with OOD families) but in no other pair of splits.
:func:`validate_rows` returns the list of problems; :func:`check_rows` raises :class:`ValidationError` with all of
them; :func:`summarize` gives the counts that ``air-align data validate`` prints.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from air_align.data.renderers import has_prompt_slot
from air_align.data.schema import ANCHOR_VERIFIERS, REQUIRED_FIELDS, ROLES, SPLITS, VERIFIERS, prompt_text
from air_align.files import read_jsonl

_SPLIT_CLASS = {"train": "train", "val": "val", "test_id": "test", "test_ood": "test"}
# Longest prompt a row may hold, in characters. The longest PyRIT jailbreak template is 25,496 characters, so every
# file `air-align data build` writes fits; a 200k-character prompt made `eval` try to allocate 40 GB. Raise it with
# `validate_rows(max_prompt_chars=...)` or `air-align data validate --max-prompt-chars N` for long-context models.
MAX_PROMPT_CHARS = 32_000
# The labels each built-in domain uses (docs/data.md): safety 1 = harmful, 0 = benign; morality 1 = wrong (ETHICS),
# 0 = not wrong; maths has none (its reference is ``answer``). Other domains: an integer or null.
DOMAIN_LABELS = {
    "safety": ((0, 1), "use 0 (benign: helping is correct) or 1 (harmful: refusing is correct)"),
    "morality": ((0, 1), "use 0 (not wrong) or 1 (wrong, the ETHICS convention)"),
    "math": ((None,), "maths rows carry no label; set it to null (the reference goes in 'answer')"),
}
_TEXT_FIELDS = tuple(k for k in REQUIRED_FIELDS if k != "prompt")  # every required field but prompt is a string


class ValidationError(ValueError):
    """Rows that break the schema; ``problems`` holds one message per problem, ``source`` names the file (if any)."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        where = source if source is not None else "the meta-group rows"
        super().__init__(f"{len(self.problems)} problem(s) in {where}:\n{shown}{more}")


def _where(i: int, row: dict, lines: list[int] | None) -> str:
    at = f"line {lines[i]}" if lines else f"row {i}"
    return f"{at} (id {row.get('id')!r})" if isinstance(row, dict) and row.get("id") is not None else at


def _row_problems(row: dict, where: str, max_prompt_chars: int = MAX_PROMPT_CHARS) -> list[str]:
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    if missing:
        return [f"{where}: missing field(s) {missing}; every row needs {list(REQUIRED_FIELDS)} (see docs/data.md)"]
    wrong_type = [f"{k} {row[k]!r} ({type(row[k]).__name__})" for k in _TEXT_FIELDS if not isinstance(row[k], str)]
    if wrong_type:  # reported alone: grouping and the checks below need strings
        return [f"{where}: {', '.join(wrong_type)} must be a string; write it in quotes (see docs/data.md)"]
    out = _label_problems(row, where)
    role, verifier, answer = row["role"], row["verifier"], row.get("answer")
    if role not in ROLES:
        out.append(f"{where}: unknown role {role!r}; use 'anchor' (verifiable) or 'open' (judged)")
    if row["split"] not in SPLITS:
        out.append(f"{where}: unknown split {row['split']!r}; use one of {list(SPLITS)}")
    if verifier not in VERIFIERS:
        out.append(f"{where}: unknown verifier {verifier!r}; use one of {list(VERIFIERS)}")
    prompt = row["prompt"]
    if not isinstance(prompt, str | list) or not prompt_text(prompt).strip():
        out.append(f"{where}: empty prompt; give a non-empty string or chat messages [{{'role','content'}}]")
    elif isinstance(prompt, list) and not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in prompt):
        out.append(f"{where}: prompt messages must be {{'role': ..., 'content': ...}} dicts")
    elif isinstance(prompt, list) and (bad := _bad_message(prompt)):
        out.append(f"{where}: prompt message {bad}; each message is {{'role': 'user', 'content': 'the text'}}")
    elif len(prompt_text(prompt)) > max_prompt_chars:
        out.append(
            f"{where}: prompt of {len(prompt_text(prompt)):,} characters, over the limit of {max_prompt_chars:,}; "
            "shorten it (e.g. a smaller --max-template-chars) or raise the limit with --max-prompt-chars"
        )
    for name in ("group_id", "family", "context"):
        if not str(row[name] or "").strip():
            out.append(f"{where}: empty {name}; every row needs one (anchors use family 'anchor')")
    if role == "anchor":
        if verifier not in ANCHOR_VERIFIERS:
            out.append(
                f"{where}: anchor with verifier {verifier!r}; an anchor must be rule-checkable: {ANCHOR_VERIFIERS}"
            )
        if answer is None or str(answer).strip() == "":
            out.append(f"{where}: anchor without its answer; set 'answer' (a letter for choice, true/false)")
        elif verifier == "choice" and not (len(str(answer)) == 1 and str(answer).isalpha() and str(answer).isupper()):
            out.append(f"{where}: choice answer {answer!r} is not one capital letter; store the correct letter ('B')")
        elif verifier == "true_false" and str(answer) not in ("true", "false"):
            out.append(f"{where}: true/false answer {answer!r}; store 'true' or 'false' (lower case)")
    if verifier == "math" and (answer is None or str(answer).strip() == ""):
        out.append(f"{where}: math row without a reference answer; set 'answer' to the final number")
    if isinstance(answer, bool) or not (
        answer is None or isinstance(answer, str | int) or (isinstance(answer, float) and math.isfinite(answer))
    ):
        out.append(f"{where}: answer {answer!r} is not a string; store it as text ('B', 'true', '42')")
    template = (row.get("meta") or {}).get("template_text") if isinstance(row.get("meta"), dict) else None
    if template is not None and not has_prompt_slot(str(template)):
        out.append(f"{where}: template {row['context']!r} has no prompt slot; add `{{{{ prompt }}}}` or `{{prompt}}`")
    return out


def _bad_message(prompt: list[dict]) -> str:
    """The first message of a chat prompt whose role or content is not a string, described; "" when all are.

    A chat template joins ``content`` to other strings, so a list or a number there fails only when the prompt is
    rendered (``eval``, ``train``).

    >>> _bad_message([{"role": "user", "content": ["a"]}])
    "#0 has content ['a'] (list), which must be a string"
    """
    for i, message in enumerate(prompt):
        for key in ("role", "content"):
            if not isinstance(message[key], str):
                shown = repr(message[key])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                return f"#{i} has {key} {shown} ({type(message[key]).__name__}), which must be a string"
    return ""


def _label_problems(row: dict, where: str) -> list[str]:
    """A label that is not one of its domain's values (:data:`DOMAIN_LABELS`): NaN, ±inf, 2, true, "1" ..."""
    label, domain = row.get("label"), row["domain"]
    allowed, fix = DOMAIN_LABELS.get(domain, (None, "use an integer or null"))
    exact_int = isinstance(label, int) and not isinstance(label, bool)  # JSON true == 1 in Python: refuse it
    if allowed is None:
        ok = label is None or exact_int
    else:
        ok = (label is None and None in allowed) or (exact_int and label in allowed)
    return [] if ok else [f"{where}: label {label!r} is not valid for domain {domain!r}; {fix}"]


GROUP_FIELDS = ("domain", "label", "intent")
"""What every row of one ``group_id`` shares, in every split: a meta-group is one intent, with one label (AIR pulls
open variants toward the anchors of their own group, and the metrics score a group by its label)."""


def _disagreements(row: dict, where: str, first: dict, first_where: str) -> list[str]:
    """One problem per :data:`GROUP_FIELDS` value of ``row`` that differs from the first row of its ``group_id``."""
    out = []
    for name in GROUP_FIELDS:
        if row.get(name) != first.get(name):
            out.append(
                f"{where}: {name} {_short(row.get(name))} disagrees with {first_where} of the same group_id "
                f"{row['group_id']!r} ({name} {_short(first.get(name))}); all rows of a meta-group (in every split) "
                f"share {', '.join(GROUP_FIELDS)}: fix the row, or give it its own group_id"
            )
    return out


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def validate_rows(
    rows: list[dict],
    require_equal_group_size: bool = False,
    lines: list[int] | None = None,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
) -> list[str]:
    """All problems of ``rows`` (empty list when valid); ``lines`` are the rows' file line numbers, if any.

    Checks: at least one row; required fields, and string values for all of them but ``prompt``; roles, splits and
    verifiers; empty prompts, and prompts over ``max_prompt_chars`` characters (:data:`MAX_PROMPT_CHARS`); labels
    outside their domain's values (:data:`DOMAIN_LABELS`; NaN and ±inf included); anchors without a (well-formed)
    answer; duplicate ids; rows of one ``group_id`` whose domain, label or intent differ (:data:`GROUP_FIELDS`);
    meta-groups (``group_id`` × ``split``) without an anchor; an intent in two of train / val / test; a template
    (``meta["template_text"]``) without a prompt slot; and, with ``require_equal_group_size`` (the trainer's need),
    meta-groups of unequal size.

    >>> row = {"id": "a", "group_id": "g", "role": "anchor", "context": "tf", "family": "anchor", "domain": "x",
    ...        "prompt": [{"role": "user", "content": "True or false: 1 = 1"}], "verifier": "true_false",
    ...        "answer": None, "intent": "1 = 1", "split": "train"}
    >>> validate_rows([row])
    ["row 0 (id 'a'): anchor without its answer; set 'answer' (a letter for choice, true/false)"]
    """
    if not rows:
        return ["no rows; a meta-group file holds one JSON object per line (build one with `air-align data build`)"]
    problems: list[str] = []
    ids: dict = {}
    groups: dict[tuple, list[int]] = defaultdict(list)
    split_classes: dict[str, set] = defaultdict(set)
    first_of_group: dict[str, tuple[dict, str]] = {}
    for i, row in enumerate(rows):
        where = _where(i, row, lines)
        if not isinstance(row, dict):
            problems.append(f"{where}: not an object; each row must be a JSON object")
            continue
        own = _row_problems(row, where, max_prompt_chars)
        problems += own
        if any(k not in row or not isinstance(row[k], str) for k in _TEXT_FIELDS):
            continue  # missing or non-string fields: the row cannot be grouped
        if row["id"] in ids:
            problems.append(f"{where}: duplicate id {row['id']!r} (first at {ids[row['id']]}); make ids unique")
        else:
            ids[row["id"]] = where
        groups[(row["group_id"], row["split"])].append(i)
        if not _label_problems(row, where):  # a bad label is reported alone, not again as a disagreement
            first = first_of_group.setdefault(row["group_id"], (row, where))
            problems += _disagreements(row, where, *first)
        if row["split"] in _SPLIT_CLASS:
            split_classes[row["group_id"]].add(_SPLIT_CLASS[row["split"]])
    for (group, split), members in groups.items():
        if not any(rows[i]["role"] == "anchor" for i in members):
            problems.append(
                f"meta-group {group!r} (split {split}) has no anchor; add a verifiable anchor row (role 'anchor') "
                "or drop the group: AIR measures open variants against their anchors"
            )
    for group, classes in split_classes.items():
        if len(classes) > 1:
            problems.append(
                f"intent {group!r} is in several splits {sorted(classes)}; keep each intent in one of train / val / "
                "test (test_id and test_ood may share it), e.g. rebuild with `air-align data build`"
            )
    if require_equal_group_size and groups:
        sizes = Counter(len(m) for m in groups.values())
        if len(sizes) > 1:
            usual = sizes.most_common(1)[0][0]
            odd = [f"{g!r}/{s} has {len(m)}" for (g, s), m in groups.items() if len(m) != usual][:5]
            problems.append(
                f"meta-groups of unequal size {dict(sorted(sizes.items()))} (size: count); the trainer needs one "
                f"size, most have {usual}: e.g. {', '.join(odd)}; rebuild with fixed --anchors/--opens or drop groups"
            )
    return problems


def check_rows(
    rows: list[dict],
    require_equal_group_size: bool = False,
    lines: list[int] | None = None,
    max_prompt_chars: int = MAX_PROMPT_CHARS,
    source: str | None = None,
) -> None:
    """Raise :class:`ValidationError` listing every problem of ``rows`` (read from the file ``source``, if given);
    return None when they are valid."""
    problems = validate_rows(rows, require_equal_group_size, lines, max_prompt_chars)
    if problems:
        raise ValidationError(problems, source)


def read_checked(path: str, require_equal_group_size: bool = False) -> list[dict]:
    """The rows of the meta-group file ``path``, refused with :class:`ValidationError` (each problem naming its line
    and fix) unless they pass every check of ``air-align data validate``: what ``train`` and ``eval`` read.

    Raises:
        FileNotFoundError, ValueError: the file is missing or unreadable (``air_align.files.read_jsonl``).
        ValidationError: the rows break the schema.
    """
    rows, lines = read_jsonl(path, with_lines=True)
    check_rows(rows, require_equal_group_size, lines=lines, source=str(path))
    return rows


def summarize(rows: list[dict]) -> dict:
    """Counts: rows and meta-groups per split, anchors / opens per meta-group, families per split, domains.

    >>> s = summarize([{"group_id": "g", "split": "train", "role": "anchor", "family": "anchor", "domain": "m"},
    ...                {"group_id": "g", "split": "train", "role": "open", "family": "plain", "domain": "m"}])
    >>> s["groups"], s["anchors_per_group"], s["opens_per_group"], s["families"]
    ({'train': 1}, {1: 1}, {1: 1}, {'train': ['plain']})
    """
    groups: dict[tuple, Counter] = defaultdict(Counter)
    families: dict[str, set] = defaultdict(set)
    rows = [r for r in rows if isinstance(r, dict)]
    for r in rows:  # any value a file holds (a list, a number) becomes text, so that counting never fails
        group_id, split, role, family = (_text(r.get(k)) for k in ("group_id", "split", "role", "family"))
        groups[(group_id, split)][role] += 1
        if role == "open":
            families[split].add(family)
    order = {s: i for i, s in enumerate(SPLITS)}
    by_split = Counter(s for _, s in groups)
    return {
        "rows": len(rows),
        "intents": len({g for g, _ in groups}),
        "groups": dict(sorted(by_split.items(), key=lambda kv: order.get(kv[0], 99))),
        "anchors_per_group": dict(sorted(Counter(c["anchor"] for c in groups.values()).items())),
        "opens_per_group": dict(sorted(Counter(c["open"] for c in groups.values()).items())),
        "families": {s: sorted(f) for s, f in sorted(families.items(), key=lambda kv: order.get(kv[0], 99))},
        "domains": dict(Counter(_text(r.get("domain")) for r in rows)),
    }


def _text(value) -> str:
    return value if isinstance(value, str) else repr(value)


def format_summary(summary: dict) -> str:
    """The summary as the lines ``air-align data validate`` prints."""
    lines = [
        f"rows: {summary['rows']}   intents: {summary['intents']}   domains: {summary['domains']}",
        "meta-groups per split: " + ", ".join(f"{s} {n}" for s, n in summary["groups"].items()),
        f"anchors per meta-group (count: groups): {summary['anchors_per_group']}",
        f"opens per meta-group (count: groups): {summary['opens_per_group']}",
        "open families per split:",
    ]
    lines += [f"  {s} ({len(f)}): {', '.join(f)}" for s, f in summary["families"].items()]
    return "\n".join(lines)
