"""The output folder of ``air-align train``: what a run may write there, delete there, and who holds it.

A run writes a marker, ``OUTPUT_DIR/.air_align_run.json``, naming the tool, its version and every path of the folder
the run writes, each recorded *before* it is written (a checkpoint too: a run killed while saving one still lists
it). The marker is the proof that air-align wrote a path:

- ``--overwrite`` deletes exactly the paths the marker lists, and refuses a folder without one (the folder holds
  files air-align did not write) or a listed path that is a symbolic link;
- a fresh run refuses a folder whose marker lists paths that exist (``--resume`` or ``--overwrite``), and a non-empty
  folder without a marker (``--into-existing`` writes the run beside those files, replacing none of them: a run
  never writes over a file it did not write, and a ``README.md`` of the user keeps TRL's model card out);
- the marker records when the run finished (``finished``), so ``--resume`` of a finished run is a no-op.

A run folder without a marker, made by an air-align that wrote none, is still a run (``checkpoint-N``, ``final/``):
``--resume`` continues it and from then on records it; ``--overwrite`` refuses it (nothing proves who wrote it).

While a run trains, it holds an exclusive ``fcntl.flock`` on ``OUTPUT_DIR/.air_align.lock``: a second ``train``
into the same folder fails at once instead of interleaving its log and checkpoints with the first
(tests/test_train_folder.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from air_align.files import write_json
from air_align.training.checkpoints import CHECKPOINT, checkpoints, resolve_checkpoint

MARKER = ".air_align_run.json"
LOCK = ".air_align.lock"
RUN_FILES = ("air_align_run.yaml", "log.jsonl", "training_curves.png", "final")
"""What a run writes besides its checkpoints, its marker and lock, and TRL's model card ``README.md``."""
MODEL_CARD = "README.md"
SHOWN = 5
"""Names shown in a message about a folder's contents (then a count)."""


def read_marker(folder: str | Path) -> dict | None:
    """The run marker of ``folder`` (None when there is none).

    Raises:
        ValueError: a marker that is not the JSON object air-align writes.
    """
    path = Path(folder) / MARKER
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        marker = None
    ours = isinstance(marker, dict) and marker.get("tool") == "air-align"
    if not ours or not isinstance(marker.get("written"), list):
        raise ValueError(
            f"{path}: not a run marker written by air-align; it lists what a run wrote, so that --overwrite deletes "
            "only that: restore it, or choose another output_dir"
        )
    return marker


def new_marker() -> dict:
    from air_align.version import __version__

    return {"tool": "air-align", "version": __version__, "written": [MARKER, LOCK], "finished": None}


def record_written(folder: str | Path, marker: dict, *names: str) -> None:
    """Add ``names`` to ``marker["written"]`` and save it in ``folder``, before those paths are written."""
    new = [n for n in names if n not in marker["written"]]
    if new or not (Path(folder) / MARKER).is_file():
        marker["written"] = [*marker["written"], *new]
        write_json(Path(folder) / MARKER, marker)


def shown(names: list[str]) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 3 more``."""
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def is_run_path(name: str) -> bool:
    """A name a run writes: its files, ``final/`` and ``checkpoint-N``."""
    return name in RUN_FILES or CHECKPOINT.match(name) is not None


class Folder:
    """What ``output_dir`` holds, read once: its entries, its marker, and which entries air-align wrote."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"output_dir={self.path} is a file, not a folder; set output_dir=... to a folder")
        self.entries = sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []
        self.marker = read_marker(self.path)
        listed = set(self.marker["written"]) if self.marker else set()
        self.ours = [n for n in self.entries if n in listed and n not in (MARKER, LOCK)]
        self.foreign = [n for n in self.entries if n not in listed and n not in (MARKER, LOCK)]
        # a run of an air-align that wrote no marker: its checkpoints and final/ are all there is to go by
        self.unmarked_run = []
        if self.marker is None:
            self.unmarked_run = [p.name for p in reversed(checkpoints(self.path))]
            self.unmarked_run += ["final"] if (self.path / "final").exists() else []

    def previous_run(self) -> list[str]:
        """The paths of a previous run, marked or not, oldest checkpoint first."""
        if self.marker is None:
            return self.unmarked_run
        steps = [n for n in self.ours if CHECKPOINT.match(n)]
        return sorted(steps, key=lambda n: int(CHECKPOINT.match(n).group(1))) + [n for n in self.ours if n == "final"]


def check_output_dir(folder: Folder, resume: str | None, overwrite: bool, into_existing: bool) -> None:
    """Refuse, before anything loads or is written, a run that could mix with or replace what it did not write.

    Raises:
        ValueError: the message names the folder, what is in the way and the choices.
    """
    out = folder.path
    if resume is not None and overwrite:
        raise ValueError("--resume continues the run in output_dir and --overwrite deletes it: choose one")
    if overwrite and folder.foreign and folder.marker is None:
        raise ValueError(
            f"--overwrite: {out} holds files air-align did not write, or wrote before it recorded what it wrote "
            f"(no run marker {MARKER}): {shown(folder.foreign)}. --overwrite deletes only what a run of air-align "
            "recorded writing: choose another output_dir, or delete those files yourself"
        )
    if overwrite:
        for name in folder.ours:
            if (out / name).is_symlink():
                raise ValueError(
                    f"--overwrite: {out / name} is a symbolic link (to {os.readlink(out / name)}), not what a run "
                    "wrote; nothing was deleted. Remove the link yourself, or choose another output_dir"
                )
    previous = folder.previous_run()
    if resume is None and not overwrite and previous:
        raise ValueError(
            f"{out} already holds a run ({shown(previous[-3:])}); add --resume to continue it from its last complete "
            "checkpoint, --overwrite to delete it and start again, or set output_dir=... to another folder"
        )
    adopting = resume is not None and folder.marker is None and previous
    foreign = [n for n in folder.foreign if not (adopting and is_run_path(n))]
    if folder.marker is None and foreign and not into_existing and not adopting:
        raise ValueError(
            f"{out} is not empty and holds no air-align run ({shown(foreign)}); a run there would write beside "
            f"those files. Set output_dir=... to a new or empty folder, or add --into-existing to write the run "
            "into this folder (air-align then replaces none of its files)"
        )
    clash = [n for n in foreign if is_run_path(n)]
    if clash:
        raise ValueError(
            f"{out} holds {shown(clash)}, which a run writes but air-align did not write there; move them away or "
            "set output_dir=... to another folder"
        )


def delete_previous_run(folder: Folder, say) -> None:
    """``--overwrite``: delete the paths the marker lists (checked by :func:`check_output_dir`), nothing else."""
    for name in folder.ours:
        path = folder.path / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if folder.ours:
        say(f"--overwrite: deleted {len(folder.ours)} item(s) of the previous run in {folder.path}")


def prepare_output_dir(
    output_dir: str | Path,
    resume: str | None,
    overwrite: bool,
    into_existing: bool = False,
    is_main_process: bool = True,
    say=None,
) -> str | None:
    """Check ``output_dir`` (:func:`check_output_dir`) and, with ``overwrite``, delete the previous run (the main
    process); returns the checkpoint to resume from (None: from step 0). Messages go to ``say`` (stderr)."""
    say = say or print_err
    folder = Folder(output_dir)
    check_output_dir(folder, resume, overwrite, into_existing)
    if overwrite and is_main_process:
        delete_previous_run(folder, say)
    return resolve_checkpoint(resume, output_dir, say=say if is_main_process else (lambda message: None))


def print_err(message: str) -> None:
    import sys

    print(message, file=sys.stderr)


def start_marker(output_dir: str | Path, fresh: bool) -> dict:
    """Write the marker of a run about to write into ``output_dir`` and return it: a new one for a ``fresh`` run
    (after ``--overwrite`` deleted the old run), else the folder's own (a resumed run; one without a marker records
    the checkpoints it resumes), with the run's files recorded (``README.md`` only when it is not the user's) and
    ``finished`` cleared."""
    folder = Folder(output_dir)
    marker = new_marker() if fresh or folder.marker is None else folder.marker
    if folder.marker is None:
        marker["written"] += [n for n in folder.unmarked_run if n not in marker["written"]]
    names = [*RUN_FILES] + ([] if MODEL_CARD in folder.foreign else [MODEL_CARD])
    marker["written"] += [n for n in names if n not in marker["written"]]
    marker["finished"] = None
    write_json(Path(output_dir) / MARKER, marker)
    return marker


def finished_step(output_dir: str | Path) -> int | None:
    """The step at which the run in ``output_dir`` finished (``final/`` written), None when it has not."""
    out = Path(output_dir)
    if not (out / "final").is_dir():
        return None
    marker = read_marker(out)
    if marker is not None:
        return (marker.get("finished") or {}).get("step")
    steps = [int(CHECKPOINT.match(p.name).group(1)) for p in checkpoints(out)]  # an unmarked run: its checkpoints
    return steps[0] if steps else None


@contextmanager
def locked(output_dir: str | Path) -> Iterator[None]:
    """Hold ``output_dir/.air_align.lock`` (``fcntl.flock``, exclusive) for the block; created with the folder if
    needed, and both removed again when the block ends before the run recorded the lock in its marker (a refused
    run leaves nothing behind).

    Raises:
        BlockingIOError: another process holds the lock (the message names it).
    """
    out = Path(output_dir)
    made = [p for p in (out, *out.parents) if not p.exists()]
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir={out} is a file, not a folder; set output_dir=... to a folder")
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK
    made_lock = not lock.exists()
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 500, 0).decode("utf-8", "replace").strip() or "another process"
            raise BlockingIOError(
                f"{out} is in use by another `air-align train` ({holder}); two runs in one folder would interleave "
                "their logs and checkpoints: wait for it to end, or set output_dir=... to another folder"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}\n".encode(), 0)
        yield
    finally:
        recorded = (out / MARKER).is_file() and LOCK in (_quiet_marker(out) or {}).get("written", [])
        if made_lock and not recorded:
            lock.unlink(missing_ok=True)
            for folder in made:  # innermost first: only the folders this call made, and only if empty
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        os.close(fd)


def _quiet_marker(out: Path) -> dict | None:
    try:
        return read_marker(out)
    except ValueError:
        return None
