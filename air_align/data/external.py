"""Bring your own data: rows or intents from a local file or (with network) a Hugging Face dataset id.

:func:`load_table` reads csv / jsonl / json / parquet files, or any other string as a Hugging Face dataset id through
``datasets.load_dataset`` (needs network, never used by the tests or the built-in domains). ``column_map`` renames
source columns to schema fields (``{"source_column": "schema_field"}``).
"""

from __future__ import annotations

import json
from pathlib import Path

from air_align.data.schema import FIELDS

_LOCAL = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def load_table(source: str | Path, split: str = "train") -> list[dict]:
    """Records of a local csv/jsonl/json/parquet file, or of split ``split`` of a Hugging Face dataset id."""
    from datasets import load_dataset  # heavy (pyarrow): imported only when a table is read

    path = Path(source)
    if path.suffix in _LOCAL:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file (local files must end in {sorted(_LOCAL)})")
        dataset = load_dataset(_LOCAL[path.suffix], data_files=str(path), split="train")
    else:
        dataset = load_dataset(str(source), split=split)  # a Hub id: needs network
    return [dict(r) for r in dataset]


def _rename(record: dict, column_map: dict[str, str] | None, source: str) -> dict:
    column_map = column_map or {}
    missing = [c for c in column_map if c not in record]
    if missing:
        raise ValueError(f"{source}: column(s) {missing} of the column map are not in the data {sorted(record)}")
    return {column_map.get(k, k): v for k, v in record.items()}


def load_rows(source: str | Path, column_map: dict[str, str] | None = None, split: str = "train") -> list[dict]:
    """Schema rows from a file or Hub dataset, columns renamed by ``column_map``; validate them with ``check_rows``.

    A string ``prompt`` becomes one user message; a JSON-string ``meta`` is decoded; ``answer`` becomes a string
    (booleans ``"true"`` / ``"false"``), ``label`` an int; absent optional fields are filled with None / {}.
    """
    rows = []
    for record in load_table(source, split):
        row = _rename(record, column_map, str(source))
        if isinstance(row.get("prompt"), str):
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
        if isinstance(row.get("meta"), str):
            row["meta"] = json.loads(row["meta"]) if row["meta"] else {}
        answer = row.get("answer")
        if isinstance(answer, bool):  # csv/json readers turn "true" into a boolean
            answer = "true" if answer else "false"
        row["answer"] = None if answer is None else str(answer)
        row["label"] = None if row.get("label") is None else int(row["label"])
        row.setdefault("meta", {})
        rows.append({**{k: row[k] for k in FIELDS if k in row}, **{k: v for k, v in row.items() if k not in FIELDS}})
    return rows


def load_intents(source: str | Path, column_map: dict[str, str] | None = None, split: str = "train") -> list[dict]:
    """Intents ``{"id", "text", "label", "source", "meta"}`` for ``build_meta_groups(intents=...)``.

    After ``column_map``, a record needs ``text``; ``id`` defaults to the record index, ``label`` to None; an
    ``answer`` column (maths) goes to ``meta["answer"]``.
    """
    out = []
    for i, record in enumerate(load_table(source, split)):
        row = _rename(record, column_map, str(source))
        if not str(row.get("text") or "").strip():
            raise ValueError(f"{source}: record {i} has no 'text'; map the intent column, e.g. --column-map goal=text")
        meta = {"answer": str(row["answer"])} if row.get("answer") is not None else {}
        label = row.get("label")
        out.append(
            {
                "id": str(row.get("id", f"{i:05d}")),
                "text": str(row["text"]).strip(),
                "label": None if label is None else int(label),
                "source": str(source),
                "meta": meta,
            }
        )
    return out


def parse_column_map(spec: str | None) -> dict[str, str]:
    """``"goal=text,target=answer"`` → ``{"goal": "text", "target": "answer"}``.

    >>> parse_column_map("goal=text, category=label")
    {'goal': 'text', 'category': 'label'}
    """
    out = {}
    for part in (spec or "").split(","):
        if part.strip():
            if "=" not in part:
                raise ValueError(f"column map entry {part!r}: write source_column=schema_field")
            src, dst = part.split("=", 1)
            out[src.strip()] = dst.strip()
    return out
