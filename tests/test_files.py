"""The I/O module: atomic writes keep the mode a plain open() would give, and leave nothing behind on an error."""

from __future__ import annotations

import os

import pytest

from air_align.files import atomic_path, read_jsonl, write_json, write_jsonl, write_text


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    old = os.umask(0o022)
    try:
        for path in (
            write_text(tmp_path / "a.md", "x"),
            write_json(tmp_path / "b.json", {"a": 1}),
            write_jsonl(tmp_path / "c.jsonl", [{"a": 1}]),
        ):
            assert os.stat(path).st_mode & 0o777 == 0o644, path
    finally:
        os.umask(old)
    assert read_jsonl(tmp_path / "c.jsonl") == [{"a": 1}]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text(tmp_path / "keep.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_json_named_gz_is_written_gzipped_and_the_same_bytes_each_time(tmp_path):
    import gzip
    import json

    obj = {"é": [1, 2.5, None], "b": "x"}
    path = write_json(tmp_path / "r.json.gz", obj)
    first = path.read_bytes()
    assert first[:2] == b"\x1f\x8b"  # the gzip magic number
    text = gzip.decompress(first).decode("utf-8")
    assert json.loads(text) == obj and text.endswith("\n") and "é" in text  # non-ASCII kept, as in a plain file
    assert text == (write_json(tmp_path / "r.json", obj)).read_text(encoding="utf-8")
    assert write_json(tmp_path / "r.json.gz", obj).read_bytes() == first  # no time or name in the header
