"""The meta-group row schema (docs/design.md §1.1): one row per prompt, and ``datasets.Dataset`` I/O (JSONL files are
read and written by ``air_align.files``).

A meta-group ``S_z = A_z ∪ O_z`` is the set of rows that share ``group_id`` (the intent ``z``) and ``split``; anchors
(``role="anchor"``) are the verifiable renderings, open variants (``role="open"``) the wrapped ones. The fields and
their meaning are listed in ``docs/data.md``; :data:`FIELDS` is the authoritative list.

``meta`` is a free-form dict in JSONL. Arrow cannot hold dicts whose keys differ from row to row, so
:func:`to_dataset` stores it as a JSON string and :func:`from_dataset` decodes it again (the trainer reads the
JSON string form too).
"""

from __future__ import annotations

import json

ROLES = ("anchor", "open")
SPLITS = ("train", "val", "test_id", "test_ood")
VERIFIERS = ("choice", "true_false", "math", "judge")
DOMAINS = ("safety", "morality", "math")  # others are allowed; these three have built-in sources
ANCHOR_FAMILY = "anchor"  # the family of every anchor row: anchors are never held out as OOD
ANCHOR_VERIFIERS = ("choice", "true_false")  # an anchor must be checkable by a rule

# Field order of a row (also the column order of a datasets.Dataset).
FIELDS = (
    "id",
    "group_id",
    "role",
    "context",
    "family",
    "domain",
    "prompt",
    "verifier",
    "answer",
    "label",
    "intent",
    "split",
    "meta",
)
REQUIRED_FIELDS = ("id", "group_id", "role", "context", "family", "domain", "prompt", "verifier", "intent", "split")


def make_row(
    *,
    id: str,  # noqa: A002 - the schema's field name
    group_id: str,
    role: str,
    context: str,
    family: str,
    domain: str,
    content: str,
    verifier: str,
    answer: str | None,
    label: int | None,
    intent: str,
    split: str,
    meta: dict | None = None,
) -> dict:
    """One schema row whose prompt is a single user message ``content``.

    >>> row = make_row(id="m/1/train/tf", group_id="m/1", role="anchor", context="tf", family="anchor",
    ...                domain="morality", content="True or false: ...", verifier="true_false", answer="true",
    ...                label=1, intent="I lied.", split="train")
    >>> list(row) == list(FIELDS), row["prompt"]
    (True, [{'role': 'user', 'content': 'True or false: ...'}])
    """
    return {
        "id": id,
        "group_id": group_id,
        "role": role,
        "context": context,
        "family": family,
        "domain": domain,
        "prompt": [{"role": "user", "content": content}],
        "verifier": verifier,
        "answer": answer,
        "label": label,
        "intent": intent,
        "split": split,
        "meta": dict(meta or {}),
    }


def prompt_text(prompt) -> str:
    """The text of a prompt: a plain string, or the user/system messages of a chat joined by blank lines.

    >>> prompt_text([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    'Be brief.\\n\\nHi'
    """
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(str(m.get("content", "")) for m in prompt or [] if isinstance(m, dict))


def to_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` of ``rows`` with the columns of :data:`FIELDS` first; ``meta`` JSON-encoded."""
    from datasets import Dataset  # heavy (pyarrow): only the trainer needs a Dataset; the lab's rows are light

    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in FIELDS]
    columns = [*FIELDS, *extra]
    encoded = []
    for r in rows:
        out = {k: r.get(k) for k in columns}
        if not isinstance(out["meta"], str):
            out["meta"] = json.dumps(out["meta"] or {}, sort_keys=True, ensure_ascii=False)
        encoded.append(out)
    return Dataset.from_list(encoded)


def from_dataset(dataset) -> list[dict]:
    """Rows of a ``datasets.Dataset`` written by :func:`to_dataset` (``meta`` decoded back into a dict)."""
    rows = []
    for r in dataset:
        r = dict(r)
        if isinstance(r.get("meta"), str):
            r["meta"] = json.loads(r["meta"]) if r["meta"] else {}
        rows.append(r)
    return rows
