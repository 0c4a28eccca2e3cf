"""Validation of meta-group rows: every problem names the row (id, line) or group and says how to fix it.

A meta-group is the rows that share ``group_id`` and ``split``. One intent may appear in ``test_id`` and
``test_ood`` (a held-out intent rendered with ID and with OOD families) but in no other pair of splits.
:func:`validate_rows` returns the list of problems; :func:`check_rows` raises :class:`ValidationError` with all of
them; :func:`summarize` gives the counts that ``air-align data validate`` prints.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from air_align.data.renderers import has_prompt_slot
from air_align.data.schema import ANCHOR_VERIFIERS, REQUIRED_FIELDS, ROLES, SPLITS, VERIFIERS, prompt_text

_SPLIT_CLASS = {"train": "train", "val": "val", "test_id": "test", "test_ood": "test"}


class ValidationError(ValueError):
    """Rows that break the schema; ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{len(self.problems)} problem(s) in the meta-group rows:\n{shown}{more}")


def _where(i: int, row: dict, lines: list[int] | None) -> str:
    at = f"line {lines[i]}" if lines else f"row {i}"
    return f"{at} (id {row.get('id')!r})" if isinstance(row, dict) and row.get("id") is not None else at


def _row_problems(row: dict, where: str) -> list[str]:
    out = []
    missing = [k for k in REQUIRED_FIELDS if k not in row]
    if missing:
        return [f"{where}: missing field(s) {missing}; every row needs {list(REQUIRED_FIELDS)} (see docs/data.md)"]
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
    template = (row.get("meta") or {}).get("template_text") if isinstance(row.get("meta"), dict) else None
    if template is not None and not has_prompt_slot(str(template)):
        out.append(f"{where}: template {row['context']!r} has no prompt slot; add `{{{{ prompt }}}}` or `{{prompt}}`")
    return out


def validate_rows(
    rows: list[dict], require_equal_group_size: bool = False, lines: list[int] | None = None
) -> list[str]:
    """All problems of ``rows`` (empty list when valid); ``lines`` are the rows' file line numbers, if any.

    Checks: required fields; roles, splits and verifiers; empty prompts; anchors without a (well-formed) answer;
    duplicate ids; meta-groups (``group_id`` × ``split``) without an anchor; an intent in two of train / val / test;
    a template (``meta["template_text"]``) without a prompt slot; and, with ``require_equal_group_size`` (the
    trainer's need), meta-groups of unequal size.

    >>> row = {"id": "a", "group_id": "g", "role": "anchor", "context": "tf", "family": "anchor", "domain": "x",
    ...        "prompt": [{"role": "user", "content": "True or false: 1 = 1"}], "verifier": "true_false",
    ...        "answer": None, "intent": "1 = 1", "split": "train"}
    >>> validate_rows([row])
    ["row 0 (id 'a'): anchor without its answer; set 'answer' (a letter for choice, true/false)"]
    """
    problems: list[str] = []
    ids: dict = {}
    groups: dict[tuple, list[int]] = defaultdict(list)
    split_classes: dict[str, set] = defaultdict(set)
    for i, row in enumerate(rows):
        where = _where(i, row, lines)
        if not isinstance(row, dict):
            problems.append(f"{where}: not an object; each row must be a JSON object")
            continue
        own = _row_problems(row, where)
        problems += own
        if own and any("missing field" in p for p in own):
            continue
        if row["id"] in ids:
            problems.append(f"{where}: duplicate id {row['id']!r} (first at {ids[row['id']]}); make ids unique")
        else:
            ids[row["id"]] = where
        groups[(row["group_id"], row["split"])].append(i)
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


def check_rows(rows: list[dict], require_equal_group_size: bool = False, lines: list[int] | None = None) -> None:
    """Raise :class:`ValidationError` listing every problem of ``rows``; return None when they are valid."""
    problems = validate_rows(rows, require_equal_group_size, lines)
    if problems:
        raise ValidationError(problems)


def summarize(rows: list[dict]) -> dict:
    """Counts: rows and meta-groups per split, anchors / opens per meta-group, families per split, domains.

    >>> s = summarize([{"group_id": "g", "split": "train", "role": "anchor", "family": "anchor", "domain": "m"},
    ...                {"group_id": "g", "split": "train", "role": "open", "family": "plain", "domain": "m"}])
    >>> s["groups"], s["anchors_per_group"], s["opens_per_group"], s["families"]
    ({'train': 1}, {1: 1}, {1: 1}, {'train': ['plain']})
    """
    groups: dict[tuple, Counter] = defaultdict(Counter)
    families: dict[str, set] = defaultdict(set)
    for r in rows:
        groups[(r.get("group_id"), r.get("split"))][r.get("role")] += 1
        if r.get("role") == "open":
            families[r.get("split")].add(r.get("family"))
    order = {s: i for i, s in enumerate(SPLITS)}
    by_split = Counter(s for _, s in groups)
    return {
        "rows": len(rows),
        "intents": len({g for g, _ in groups}),
        "groups": dict(sorted(by_split.items(), key=lambda kv: order.get(kv[0], 99))),
        "anchors_per_group": dict(sorted(Counter(c["anchor"] for c in groups.values()).items())),
        "opens_per_group": dict(sorted(Counter(c["open"] for c in groups.values()).items())),
        "families": {s: sorted(f) for s, f in sorted(families.items(), key=lambda kv: order.get(kv[0], 99))},
        "domains": dict(Counter(r.get("domain") for r in rows)),
    }


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
