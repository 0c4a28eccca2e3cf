"""A judge cache keyed by (judge identity, prompt, completion), so that re-scoring the same completion is free.

In memory by default; with ``path`` it also appends one JSON line per new entry to a file and reloads that file on
start. Values are lists of finite floats (a judge's per-question log-odds): a non-finite value is refused on ``put``.
On load a line is used only when it is a JSON object (UTF-8) with a string ``key`` and a ``value`` that is a list of
finite numbers; any other line (a torn last line from a killed run, NaN from an older version, a line edited by hand:
no ``key``, a list as key, ``"value": "12"``, invalid UTF-8) is skipped and counted (:attr:`JudgeCache.skipped`),
with one :class:`JudgeCacheWarning` naming the file, so its entry is scored again rather than misread.
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
import warnings
from pathlib import Path


class JudgeCacheWarning(UserWarning):
    """Lines of a judge cache file that could not be used (they are scored again)."""


def judge_identity(judge) -> str:
    """The part of a cache key that names a judge: its ``identity`` (server URL and model; model path and weights
    fingerprint) when it has one, else its ``name``.

    >>> class Named:
    ...     name = "keyword"
    >>> judge_identity(Named())
    'keyword'
    """
    return getattr(judge, "identity", None) or judge.name


def parse_cache_line(raw: bytes) -> tuple[str, list[float]]:
    """``(key, value)`` of one line of a cache file.

    Raises:
        ValueError: why the line cannot be used (the caller skips it).

    >>> parse_cache_line(b'{"key": "ab", "value": [0.5, -1]}')
    ('ab', [0.5, -1.0])
    >>> parse_cache_line(b'{"key": "ab", "value": "12"}')
    Traceback (most recent call last):
    ...
    ValueError: value is not a list of numbers
    """
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("not UTF-8") from None
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON (a torn line?)") from None
    if not isinstance(row, dict) or not isinstance(row.get("key"), str):
        raise ValueError("no string key")
    value = row.get("value")
    if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        raise ValueError("value is not a list of numbers")
    try:
        value = [float(v) for v in value]
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError("value out of float range") from None
    if not all(math.isfinite(v) for v in value):  # NaN from an older version
        raise ValueError("value not finite")
    return row["key"], value


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
        self.skipped = 0
        """Lines of the file that could not be used (see the module docstring)."""
        if self.path is not None and self.path.exists():
            self._load()

    def _load(self) -> None:
        first = None
        with open(self.path, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    key, value = parse_cache_line(raw)
                except ValueError as err:
                    self.skipped += 1
                    first = first or f"line {number}: {err}"
                    continue
                self._data[key] = value
        if self.skipped:
            warnings.warn(
                f"judge cache {self.path}: skipped {self.skipped} unusable line(s) (first: {first}); their entries "
                "will be scored again",
                JudgeCacheWarning,
                stacklevel=3,
            )

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
