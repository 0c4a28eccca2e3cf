"""A judge cache keyed by (judge identity, prompt, completion), so that re-scoring the same completion is free.

In memory by default; with ``path`` it also appends one JSON line per new entry to a file and reloads that file on
start (a torn last line, from a killed run, is skipped). Values are lists of finite floats (a judge's per-question
log-odds): a non-finite value is refused on ``put`` and skipped on load, so a broken score is never served again.
The key's first part is :func:`judge_identity`, not the judge's display name, so two judges on different servers or
models never share entries.

>>> cache = JudgeCache()
>>> cache.get("j", "p", "c") is None
True
>>> cache.put("j", "p", "c", [0.5, -1.0])
>>> cache.get("j", "p", "c"), len(cache)
([0.5, -1.0], 1)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from pathlib import Path


def judge_identity(judge) -> str:
    """The part of a cache key that names a judge: its ``identity`` (server URL and model; model path and weights
    fingerprint) when it has one, else its ``name``.

    >>> class Named:
    ...     name = "keyword"
    >>> judge_identity(Named())
    'keyword'
    """
    return getattr(judge, "identity", None) or judge.name


def cache_key(judge: str, prompt: str, completion: str) -> str:
    """SHA-256 of the JSON triple: unambiguous whatever the strings contain."""
    return hashlib.sha256(json.dumps([judge, prompt, completion]).encode("utf-8")).hexdigest()


class JudgeCache:
    """In-memory dict of judge scores with optional JSONL persistence (append-only)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._data: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        if self.path is not None and self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        value = [float(v) for v in row["value"]]
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue  # a torn line from an interrupted write costs one re-score
                    if all(math.isfinite(v) for v in value):  # NaN from an older version: re-score
                        self._data[row["key"]] = value

    def __len__(self) -> int:
        return len(self._data)

    def get(self, judge: str, prompt: str, completion: str) -> list[float] | None:
        value = self._data.get(cache_key(judge, prompt, completion))
        with self._lock:
            if value is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if value is None else list(value)

    def put(self, judge: str, prompt: str, completion: str, value: list[float]) -> None:
        self.put_many([(judge, prompt, completion, value)])

    def put_many(self, entries: list[tuple[str, str, str, list[float]]]) -> None:
        """Store several entries; with a file, append them in one write and flush.

        Raises:
            ValueError: an entry holds a non-finite value (nothing is stored then).
        """
        for judge, _, _, value in entries:
            if not all(math.isfinite(float(v)) for v in value):
                raise ValueError(f"judge {judge!r} gave a non-finite score {list(value)}; it is not cached")
        lines = []
        with self._lock:
            for judge, prompt, completion, value in entries:
                key = cache_key(judge, prompt, completion)
                self._data[key] = [float(v) for v in value]
                lines.append(json.dumps({"key": key, "value": self._data[key]}) + "\n")
            if self.path is not None and lines:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("".join(lines))
                    f.flush()
