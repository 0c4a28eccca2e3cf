"""Reading and writing the project's files: JSON, JSONL and text, every write atomic.

An atomic write goes to a temporary file in the destination's folder and is then renamed over the destination with
``os.replace``, so a crash leaves either the old file or the new one, never half of one (STYLE: nothing lost on a
crash). Parent folders are created. Argument order is always ``(path, content)``.

Pure standard library, no torch: every layer of the package may import it.
"""

from __future__ import annotations

import gzip
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
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file 0600: give it the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (UTF-8, non-ASCII kept, a final newline) to ``path`` atomically, gzipped by
    :func:`write_gzip` when the name ends in ``.gz``; returns the path."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False) + "\n"
    if Path(path).suffix == ".gz":
        return write_gzip(path, text.encode("utf-8"))
    return write_text(path, text)


def write_gzip(path: str | Path, data: bytes) -> Path:
    """Write ``data`` gzipped to ``path`` atomically, with no file name or time in the gzip header, so that the same
    data give the same bytes (as ``gzip -n``); returns the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(data)
    return Path(path)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write ``rows`` as JSONL (one JSON object a line) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


# Longest JSONL line read, in bytes (newline included): a row with a prompt at the validation limit (32,000
# characters, up to 4 bytes each in UTF-8, or 6 as a JSON \u escape) stays far below it, and a runaway line (a 20 MB
# line once passed validation) is refused without reading it whole.
MAX_LINE_BYTES = 1 << 20
# Deepest nesting of arrays and objects read from a user's JSON. A row needs 4 levels (row, prompt list, message,
# content); Python's parser raises RecursionError near 1,000 levels, and code that walks a value (repr, json.dumps,
# Arrow) fails at depths it accepts, so anything deeper than this is refused as it is read.
MAX_JSON_DEPTH = 64


def json_depth(value) -> int:
    """How deeply ``value`` nests lists and dicts (a scalar: 0), walked without recursion.

    >>> json_depth(1), json_depth([]), json_depth({"a": [1, {"b": 2}]})
    (0, 1, 3)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack += [(child, depth + 1) for child in (item.values() if isinstance(item, dict) else item)]
    return deepest


def parse_json(text: str, where: str, fix: str = ""):
    """``text`` parsed as JSON; anything that is not valid JSON (the message then ends with ``fix``), or nests deeper
    than :data:`MAX_JSON_DEPTH`, is a ValueError that starts with ``where`` (a file, or ``file:line``).

    >>> parse_json('{"a": [1]}', "x.json")
    {'a': [1]}
    >>> parse_json("[" * 100_000 + "]" * 100_000, "x.jsonl:3")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x.jsonl:3: JSON nested deeper than 64 levels; ...
    """
    too_deep = (
        f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels; a row or record needs a few (a chat prompt 4): "
        "flatten the value"
    )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err}){fix}") from None
    except RecursionError:  # the parser's own limit, near 1,000 levels
        raise ValueError(too_deep) from None
    if json_depth(value) > MAX_JSON_DEPTH:
        raise ValueError(too_deep)
    return value


def read_jsonl(path: str | Path, with_lines: bool = False, allow_empty: bool = False):
    """Rows of a JSONL file (blank lines skipped); with ``with_lines`` also each row's 1-based line number.

    Each line is read as bytes, at most :data:`MAX_LINE_BYTES`, and decoded as UTF-8 (a byte-order mark on the first
    line is allowed), so that an over-long line or a bad byte is reported with its file and line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: a line over :data:`MAX_LINE_BYTES`, invalid UTF-8, a line that is not
            a JSON object or nests deeper than :data:`MAX_JSON_DEPTH`; or, unless ``allow_empty``, a file with no
            rows.
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
            row = parse_json(line, f"{path}:{n}", fix="; each line must be one JSON object")
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object (one row), got {type(row).__name__}")
            rows.append(row)
            lines.append(n)
    if not rows and not allow_empty:
        raise ValueError(f"{path}: the file holds no rows; it needs one JSON object per line (`air-align data build`)")
    return (rows, lines) if with_lines else rows


def refuse_overwriting_inputs(
    inputs: dict[str, str | Path | None] | Iterable[tuple[str, str | Path | None]], outputs: Iterable[str | Path]
) -> None:
    """Refuse a command whose outputs would replace or delete one of its inputs, before anything is written.

    ``inputs`` maps how the user named each input (``"--data"``, ``"model="``) to its path (None: absent), as a
    dict or as ``(name, path)`` pairs;
    ``outputs`` are the paths the command writes or deletes: files, folders (an input inside one clashes too) and
    names with ``*`` (``checkpoint-*``). Paths are compared after resolving symbolic links, and a hard link to an
    output counts as the output. An input that does not exist (a model name such as ``tiny``) cannot be lost.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_text(Path(d) / "records.jsonl", "{}")
    ...     try:
    ...         refuse_overwriting_inputs({"--data": Path(d) / "records.jsonl"}, [Path(d) / "records.jsonl"])
    ...     except ValueError as err:
    ...         print(str(err).replace(d, "DIR")[:88])
    --data DIR/records.jsonl is also an output of this command (it writes DIR/records.jsonl)
    """
    import fnmatch

    outputs = list(outputs)
    for label, given in inputs.items() if isinstance(inputs, dict) else inputs:
        if given is None or not os.path.lexists(given):  # a model name ("tiny"), an absent file: nothing to lose
            continue
        source = Path(os.path.realpath(given))
        for output in map(Path, outputs):
            parent = Path(os.path.realpath(output.parent)) if "*" in output.name else Path(os.path.realpath(output))
            parent, name = (parent, output.name) if "*" in output.name else (parent.parent, parent.name)
            inside = (source, *source.parents)  # the input itself, or a folder holding it
            clash = any(p.parent == parent and fnmatch.fnmatchcase(p.name, name) for p in inside)
            if not clash and source.is_file() and output.is_file():
                clash = os.path.samefile(source, output)
            if clash:
                named = f"{label}{given}" if label.endswith("=") else f"{label} {given}"
                raise ValueError(
                    f"{named} is also an output of this command (it writes {output}): write the outputs to another "
                    "folder, or copy the input elsewhere first"
                )


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, in hex (read in 1 MiB blocks)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
