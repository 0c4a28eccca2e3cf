"""The meta-group row schema (DESIGN.md §1): one row per prompt, JSONL and ``datasets.Dataset`` I/O.

A meta-group ``S_z = A_z ∪ O_z`` is the set of rows that share ``group_id`` (the intent ``z``) and ``split``; anchors
(``role="anchor"``) are the verifiable renderings, open variants (``role="open"``) the wrapped ones. The fields and
their meaning are listed in ``docs/data.md``; :data:`FIELDS` is the authoritative list.

``meta`` is a free-form dict in JSONL. Arrow cannot hold dicts whose keys differ from row to row, so
:func:`to_dataset` stores it as a JSON string and :func:`from_dataset` decodes it again (the trainer reads the
JSON string form too).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

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


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as JSONL atomically (a temporary file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Longest JSONL line read, in bytes (newline included): a row with a prompt at the validation limit (32,000
# characters, up to 4 bytes each in UTF-8, or 6 as a JSON \u escape) stays far below it, and a runaway line (a 20 MB
# line once passed validation) is refused without reading it whole.
MAX_LINE_BYTES = 1 << 20


def read_jsonl(path: str | Path, with_lines: bool = False, allow_empty: bool = False):
    """Rows of a JSONL file (blank lines skipped); with ``with_lines`` also each row's 1-based line number.

    Each line is read as bytes, at most :data:`MAX_LINE_BYTES`, and decoded as UTF-8 (a byte-order mark on the first
    line is allowed), so that an over-long line or a bad byte is reported with its file and line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: a line over :data:`MAX_LINE_BYTES`, invalid UTF-8, a line that is not
            a JSON object; or, unless ``allow_empty``, a file with no rows.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; build one with `air-align data build --domain safety --out {path}`"
        )
    rows, lines = [], []
    with path.open("rb") as f:
        for n, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise ValueError(
                    f"{path}:{n}: line longer than {MAX_LINE_BYTES:,} bytes; a row must stay under that limit (its "
                    "prompt under 32,000 characters): shorten the row or move bulky data out of it"
                )
            try:
                line = raw.decode("utf-8-sig" if n == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{n}: not valid UTF-8 (byte {err.start + 1} of the line is {raw[err.start]:#04x}); "
                    "save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not valid JSON ({err}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object (one row), got {type(row).__name__}")
            rows.append(row)
            lines.append(n)
    if not rows and not allow_empty:
        raise ValueError(f"{path}: the file holds no rows; it needs one JSON object per line (`air-align data build`)")
    return (rows, lines) if with_lines else rows


def to_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` of ``rows`` with the columns of :data:`FIELDS` first; ``meta`` JSON-encoded."""
    from datasets import Dataset

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
