"""Checkpoints of ``air-align train``: which are complete, which to resume from, and a used output folder.

A run killed while saving leaves a checkpoint folder without ``trainer_state.json`` (transformers writes it last) or
with a file cut short. Resuming from it fails, or worse, loads half a model. :func:`checkpoint_problem` says what is
wrong with a folder, reading only file headers and ends (cheap even for a 14B model): ``trainer_state.json`` must
parse; every ``*.safetensors`` file must be as long as its header says; every ``torch.save`` file (``*.pt``,
``*.pth``, ``*.bin``) must be a whole zip archive (its directory sits at the end, so a cut file has none).
:func:`resolve_checkpoint` skips such folders, with a message, and resumes from the last complete one.

A save that fails because the disk is full (:func:`disk_full`) leaves such a torn checkpoint too; ``air-align train``
then says so (``no space left on PATH``) and ``--resume`` skips it. What a run may write into its folder, and delete
there, is ``run_folder.py``'s.
"""

from __future__ import annotations

import errno
import json
import re
import shutil
import struct
import zipfile
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` is not whole (None when its size matches its header)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} is cut short ({size} bytes)"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > size - 8:
            return f"{path.name} is cut short (its header alone needs {header_len + 8} bytes, the file has {size})"
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return f"{path.name} has an unreadable header"
    end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if size != 8 + header_len + end:
        return f"{path.name} is cut short ({size} bytes of {8 + header_len + end})"
    return None


def checkpoint_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be resumed from (None when it is complete).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     checkpoint_problem(d)
    'no trainer_state.json (the run stopped while saving this checkpoint)'
    """
    folder = Path(folder)
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json (the run stopped while saving this checkpoint)"
    try:
        if "global_step" not in json.loads(state.read_text(encoding="utf-8")):
            return "trainer_state.json has no global_step"
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "trainer_state.json is cut short or not JSON"
    weights = [p for p in folder.iterdir() if p.suffix == ".safetensors" or p.name == "pytorch_model.bin"]
    if not weights:
        return "no model weights (*.safetensors)"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            return f"{index.name} is cut short or not JSON"
        missing = sorted(s for s in shards if not (folder / s).is_file())
        if missing:
            return f"weight shard(s) {missing} missing"
    for path in sorted(folder.rglob("*")):
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
        elif path.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(path):
            problem = f"{path.relative_to(folder)} is cut short (not a whole torch.save archive)"
        else:
            problem = None
        if problem:
            return problem
    return None


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, latest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT.match(p.name)]
    return sorted(found, key=lambda p: -int(CHECKPOINT.match(p.name).group(1)))


def last_complete_checkpoint(output_dir: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """``(the latest complete checkpoint or None, [(skipped folder, why), ...])`` of ``output_dir``."""
    skipped = []
    for folder in checkpoints(output_dir):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append((folder, problem))
    return None, skipped


def resolve_checkpoint(resume: str | None, output_dir: str | Path, say=print) -> str | None:
    """The checkpoint to resume from: ``None`` (fresh run), ``"auto"`` (the last *complete* ``checkpoint-*`` of
    ``output_dir``, saying which incomplete ones it skips; None when there is none) or a path, which must be a
    complete checkpoint.

    Raises:
        FileNotFoundError: ``resume`` is a path that does not exist.
        ValueError: ``resume`` is an incomplete checkpoint (the message names an earlier complete one, if any).
    """
    if resume is None:
        return None
    if resume == "auto":
        found, skipped = last_complete_checkpoint(output_dir)
        for folder, problem in skipped:
            say(f"--resume: skipping {folder}: {problem}")
        if found is None:
            say(f"--resume: no complete checkpoint in {output_dir}; starting from step 0")
            return None
        if skipped:
            say(f"--resume: resuming from {found}")
        return str(found)
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint directory; use --resume (auto) or a path")
    problem = checkpoint_problem(resume)
    if problem is not None:
        earlier = [str(p) for p in checkpoints(Path(resume).parent) if checkpoint_problem(p) is None]
        hint = f"resume from {earlier[0]}" if earlier else "start again with --overwrite"
        raise ValueError(f"--resume {resume}: incomplete checkpoint: {problem}; {hint} (or --resume auto)")
    return resume


NO_SPACE_TEXT = ("No space left on device", "StorageFull", "os error 28", "Disk quota exceeded")
"""How a full disk reads in an error's text: the OS's message (Python), safetensors' Rust ``io::Error``."""
TORCH_WRITE_FAILED = ("inline_container", "iostream error", "file write failed")
"""How ``torch.save`` reports a failed write: its C++ zip writer raises a RuntimeError (``unexpected pos``) with no
errno, so whether the disk is full is read from the free space left."""
NEARLY_FULL_BYTES = 64 << 20


def disk_full(err: BaseException, folder: str | Path) -> bool:
    """Whether ``err`` (or an error it was raised from) is a write that failed for want of space on ``folder``'s disk:
    an ``ENOSPC`` / ``EDQUOT`` OSError, a message saying so, or ``torch.save``'s failed write with under
    :data:`NEARLY_FULL_BYTES` left."""
    chain, seen = [], err
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(text in str(e) for text in NO_SPACE_TEXT):
            return True
    if any(text in str(e) for e in chain for text in TORCH_WRITE_FAILED):
        return free_bytes(folder) < NEARLY_FULL_BYTES
    return False


def free_bytes(folder: str | Path) -> int:
    """Bytes free for this user on the disk of ``folder`` (or of its nearest existing parent)."""
    path = Path(folder).resolve()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free
