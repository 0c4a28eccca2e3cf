"""Which code ran a lab run: the package version and a hash of the package's source tree.

A grid resumed across commits would otherwise mix runs trained by different trainers or recipes under one table
(docs/lab.md §6, "Resuming"). :func:`code_version` hashes every source and data file of the installed ``air_align``
package — its Python modules and the worlds' YAML specs, plus any word lists or tables shipped beside them — by sorted
relative path and content, so the hash changes exactly when the code that trains, rewards or scores a run changes, and
not with documentation, tests or caches. A run records it (``runs.execute``), its resume key includes it
(``runs.RunSpec.key``), and ``results.json`` lists the hashes a grid mixes (``code_hashes``; one for a clean grid).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from air_align import version

HASHED_SUFFIXES = (".py", ".yaml", ".yml", ".json", ".txt")
"""Files of the package that decide what a run does (code, world specs, data tables)."""


def tree_hash(root: str | Path, suffixes: tuple[str, ...] = HASHED_SUFFIXES) -> str:
    """sha256 over the sorted relative paths and contents of the files under ``root`` with one of ``suffixes``
    (``__pycache__`` skipped). A renamed, added, removed or edited file changes it; the order of the walk does not.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); _ = (d / "a.py").write_text("x = 1")
    >>> h = tree_hash(d); _ = (d / "a.py").write_text("x = 2"); h == tree_hash(d)
    False
    """
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)
    for path in files:
        rel = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        # lengths delimit the fields, so no two trees hash the same by shifting bytes between a name and a content
        digest.update(len(rel).to_bytes(8, "big") + rel + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """``{"version": air_align.__version__, "hash": tree_hash(<the package directory>)}``, computed once a process
    (a grid's worker processes each compute it from the files they import)."""
    return {"version": version.__version__, "hash": tree_hash(Path(version.__file__).parent)}
