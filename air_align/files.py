"""Reading and writing the project's files: JSON, JSONL and text, every write atomic.

An atomic write goes to a temporary file in the destination's folder and is then renamed over the destination with
``os.replace``, so a crash leaves either the old file or the new one, never half of one (STYLE: nothing lost on a
crash). Parent folders are created. Argument order is always ``(path, content)``.

Pure standard library, no torch: every layer of the package may import it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it replaces ``path``, on error it is removed.

    For writers that need a file name (``fig.savefig``); the suffix is kept so that they infer the format.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with atomic_path(Path(d) / "x.txt") as tmp:
    ...         _ = tmp.write_text("hi")
    ...     sorted(p.name for p in Path(d).iterdir())
    ['x.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, non-ASCII kept, a final newline) to ``path`` atomically; returns the path."""
    return write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSONL (one JSON object a line) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def read_jsonl(path: str | Path, with_lines: bool = False):
    """Rows of a JSONL file (blank lines skipped); with ``with_lines`` also each row's 1-based line number.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a JSON object, naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no such file; build one with `air-align data build --domain safety --out {path}`"
        )
    rows, lines = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
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
    return (rows, lines) if with_lines else rows
