"""The output folder of ``air-align train`` (``training/run_folder.py``, ``training/run_record.py``): ``--overwrite``
deletes only what a run recorded writing, a folder that holds no run needs ``--into-existing`` and keeps the user's
files, a lock keeps a second run out, a finished run resumes to a no-op, a resume that changes training needs
``--allow-config-change`` and is recorded, and a full disk while saving is an error naming the folder."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from _messages import assert_error, assert_facts, error_line

from air_align.cli import INPUT_ERROR, main
from air_align.training import checkpoints
from air_align.training import run as run_module
from air_align.training.run_folder import LOCK, MARKER

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml")


def train(out: Path, *extra: str) -> int:
    return main(["train", "--config", TINY, f"output_dir={out}", "save_steps=1", "logging_steps=1", *extra])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` (recursively) and its hash: what a refused command must leave as it was. The lock
    file is there, but its text (who holds it) is left out: each command that locks the folder rewrites it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): "lock" if p.name == LOCK else digest(p) for p in files}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step run, a checkpoint a step."""
    out = tmp_path_factory.mktemp("folder") / "run"
    assert train(out, "max_steps=2") == 0
    return out


def test_the_marker_lists_what_the_run_wrote(finished):
    marker = json.loads((finished / MARKER).read_text())
    assert marker["tool"] == "air-align" and marker["finished"] == {"step": 2, "max_steps": 2}
    on_disk = {p.name for p in finished.iterdir()}
    assert on_disk == set(marker["written"])  # every path of the folder is recorded, and nothing else
    assert {"checkpoint-1", "checkpoint-2", "final", "log.jsonl", "README.md", LOCK} <= on_disk


def test_overwrite_refuses_a_folder_air_align_did_not_write(tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "final").mkdir(parents=True)
    (out / "final" / "thesis.tex").write_text("\\section{Results}")
    (out / "log.jsonl").write_text('{"my": "notes"}\n')
    (out / "notes.txt").write_text("keep")
    before = snapshot(out)
    assert train(out, "max_steps=1", "--overwrite") == INPUT_ERROR
    err = capsys.readouterr().err
    # the folder, its files that are not the run's, the marker it lacks, and the two ways out
    facts = (f"--overwrite: {out} ", "final, log.jsonl, notes.txt", MARKER, "another output_dir", "delete those files")
    assert_error(err, *facts)
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["final", "log.jsonl", "notes.txt"]


def test_overwrite_refuses_a_symlinked_final_and_deletes_nothing(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "model.safetensors").write_text("not yours to delete")
    shutil.rmtree(out / "final")
    (out / "final").symlink_to(elsewhere)
    before = snapshot(out)
    assert train(out, "max_steps=1", "--overwrite") == INPUT_ERROR
    err = capsys.readouterr().err
    assert_error(err, f"--overwrite: {out / 'final'} ", "symbolic link", str(elsewhere), "nothing was deleted")
    assert_facts(err, "Remove the link", "another output_dir")  # the fix
    assert snapshot(out) == before and (elsewhere / "model.safetensors").read_text() == "not yours to delete"


def test_overwrite_deletes_the_listed_paths_only(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    (out / "notes.txt").write_text("mine")
    (out / "final" / "mine.txt").write_text("inside a folder the run wrote: goes with it")
    assert train(out, "max_steps=1", "--overwrite") == 0
    assert "--overwrite: deleted 7 item(s) of the previous run" in capsys.readouterr().err  # 2 checkpoints + 5
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "checkpoint-2").exists() and not (out / "final" / "mine.txt").exists()
    assert json.loads((out / MARKER).read_text())["finished"] == {"step": 1, "max_steps": 1}


def test_a_fresh_run_into_a_folder_holding_no_run_needs_a_choice(tmp_path, capsys):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "README.md").write_text("# my project\n")
    (out / "log.jsonl").write_text('{"mine": 1}\n')
    (out / "training_curves.png").write_bytes(b"my plot")
    before = snapshot(out)
    assert train(out, "max_steps=1") == INPUT_ERROR
    err = capsys.readouterr().err
    assert_error(err, f"{out} ", "holds no air-align run", "README.md, log.jsonl, training_curves.png")
    assert_facts(err, "output_dir=", "new or empty folder", "--into-existing")  # the two ways out
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == sorted(before)  # no lock left
    assert train(out, "max_steps=1", "--into-existing") == INPUT_ERROR  # its log.jsonl and plot are in the way
    assert "holds log.jsonl, training_curves.png, which a run writes but air-align did not write there" in (
        capsys.readouterr().err
    )
    assert snapshot(out) == before


def test_into_existing_keeps_the_users_readme(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# my project\n")
    (repo / "src.py").write_text("print('hi')\n")
    monkeypatch.chdir(repo)
    assert train(Path("."), "max_steps=2", "--into-existing") == 0  # output_dir=. inside a repository
    assert (repo / "README.md").read_text() == "# my project\n"  # TRL's model card did not replace it
    assert (repo / "src.py").read_text() == "print('hi')\n" and (repo / "final" / "model.safetensors").is_file()
    marker = json.loads((repo / MARKER).read_text())
    assert "README.md" not in marker["written"] and "src.py" not in marker["written"]
    assert train(Path("."), "max_steps=1", "--overwrite") == 0  # deletes the run, keeps README.md and src.py
    assert (repo / "README.md").read_text() == "# my project\n" and (repo / "src.py").exists()


def test_a_second_train_into_a_locked_folder_fails(tmp_path, capsys):
    out = tmp_path / "run"
    holder = (
        "import sys; from air_align.training.run_folder import locked\n"
        f"with locked({str(out)!r}):\n    print('locked', flush=True); sys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "locked\n"  # another process holds the folder, as a running train does
        assert train(out, "max_steps=1") == INPUT_ERROR
        err = capsys.readouterr().err
        assert_error(err, f"{out} ", "in use by another `air-align train`", f"pid {proc.pid}")
        assert_facts(err, "wait for it to end", "output_dir=... to another folder")  # the fix
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # the second run wrote nothing
    finally:
        proc.communicate("")
    assert proc.returncode == 0
    assert not out.exists()  # the holder made the folder and, having run nothing in it, removed it again


def test_resume_of_a_finished_run_is_a_no_op(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out)
    capsys.readouterr()
    assert train(out, "max_steps=2", "--resume") == 0
    note = capsys.readouterr().err  # a notice, not an error: the run, where it ended, its model, how to go on
    assert not note.startswith("error: ") and note.count("\n") == 1, note
    assert_facts(note, f"--resume: the run in {out} ", "finished at step 2 (max_steps=2)", str(out / "final"))
    assert_facts(note, "Nothing to do", "raise max_steps=", "--allow-config-change")
    assert snapshot(out) == before  # final/model.safetensors, the log, the checkpoints: all unchanged
    assert train(out, "max_steps=2", "--resume", "logging_steps=5", "save_steps=7") == 0  # bookkeeping only
    assert snapshot(out) == before


def test_resume_with_settings_that_change_training_is_refused_then_recorded(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    before = snapshot(out)
    capsys.readouterr()
    assert train(out, "max_steps=4", "invariance=vrex", "invariance_coef=0.5", "--resume") == INPUT_ERROR
    err = capsys.readouterr().err  # each change with its old and new value, the record, and the three ways out
    changes = ("invariance='air' → 'vrex'", "invariance_coef=0.1 → 0.5", "max_steps=2 → 4")
    assert_error(err, "--resume: ", *changes, str(out / "air_align_run.yaml"), "from step 3")
    assert_facts(err, "Drop the changes", "--allow-config-change", "another output_dir")
    assert snapshot(out) == before
    # the learning rate: the checkpoint's optimizer and scheduler state would override it, so not even on request
    assert train(out, "max_steps=4", "learning_rate=0.01", "--resume", "--allow-config-change") == INPUT_ERROR
    err = capsys.readouterr().err  # refused even with --allow-config-change, and why
    assert_error(err, "--resume: ", "learning_rate=0.0001 → 0.01", "cannot change on resume", "restored from the")
    assert snapshot(out) == before
    flags = ("max_steps=4", "invariance=vrex", "invariance_coef=0.5", "--resume", "--allow-config-change")
    assert train(out, *flags) == 0
    record = yaml.safe_load((out / "air_align_run.yaml").read_text())
    assert record["air"]["invariance"] == "air" and record["air"]["max_steps"] == 2  # what the first two steps ran
    assert record["changes"] == [
        {
            "after_step": 2,
            "settings": {
                "invariance": {"from": "air", "to": "vrex"},
                "invariance_coef": {"from": 0.1, "to": 0.5},
                "max_steps": {"from": 2, "to": 4},
                "output_dir": {"from": str(finished), "to": str(out)},  # copied: bookkeeping, recorded too
            },
        }
    ]
    steps = [e["step"] for e in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in e]
    assert steps == [1, 2, 3, 4] and digest(out / "final" / "model.safetensors") != before["final/model.safetensors"]
    assert train(out, *flags[:3], "--resume") == 0  # the settings in force now: nothing changes, nothing to do
    assert "finished at step 4 (max_steps=4)" in capsys.readouterr().err


REAL_TORCH_SAVE_ERROR = "[enforce fail at inline_container.cc:672] . unexpected pos 389760 vs 389648"
"""What torch.save raised when a 1 MiB tmpfs filled up while it wrote optimizer.pt (its cause: ``basic_ios::clear:
iostream error``); it carries no errno."""


def test_disk_full_is_recognised_in_every_form_it_takes(tmp_path, monkeypatch):
    enospc = OSError(errno.ENOSPC, "No space left on device")
    rust = Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left" })')
    try:
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError(REAL_TORCH_SAVE_ERROR)  # noqa: B904  (torch chains it this way)
    except RuntimeError as err:
        torch_full = err
    assert checkpoints.disk_full(enospc, tmp_path) and checkpoints.disk_full(rust, tmp_path)
    assert not checkpoints.disk_full(torch_full, tmp_path)  # this disk has room: some other write failure
    monkeypatch.setattr(checkpoints, "free_bytes", lambda folder: 4096)
    assert checkpoints.disk_full(torch_full, tmp_path)
    assert not checkpoints.disk_full(OSError(errno.EIO, "Input/output error"), tmp_path)


def test_a_full_disk_while_saving_says_so_and_resume_skips_the_torn_checkpoint(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_save = torch.save

    def save_until_full(obj, f, *args, **kwargs):
        if str(f).endswith(str(Path("checkpoint-2") / "optimizer.pt")):
            Path(f).write_bytes(b"PK\x03\x04 cut short")  # what the full disk left of it
            raise RuntimeError(REAL_TORCH_SAVE_ERROR)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_full)
    for module in (checkpoints, run_module):  # the check, and the message
        monkeypatch.setattr(module, "free_bytes", lambda folder: 4096)
    assert train(out, "max_steps=3") == INPUT_ERROR
    err = capsys.readouterr().err
    last = error_line(err)  # the progress bar goes on around it
    assert_error(last, f"no space left on {out} (0.0 MiB free)", "while saving step 2")
    assert_facts(last, "free some space", "output_dir=... to another disk", "--resume")  # the fix
    assert "Traceback" not in err and not (out / "final").exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert train(out, "max_steps=3", "--resume") == 0
    err = capsys.readouterr().err
    assert f"--resume: skipping {out / 'checkpoint-2'}: no trainer_state.json" in err
    assert f"--resume: resuming from {out / 'checkpoint-1'}" in err
    assert json.loads((out / MARKER).read_text())["finished"] == {"step": 3, "max_steps": 3}


def test_resuming_from_a_pickle_checkpoint_that_holds_more_than_weights_is_refused(finished, tmp_path, capsys):
    from test_models import RunsACommand

    out = tmp_path / "run"
    shutil.copytree(finished, out)
    shutil.rmtree(out / "final")  # killed before the end: --resume loads checkpoint-2
    weights = torch.load(out / "checkpoint-1" / "optimizer.pt", weights_only=True)  # any tensors will do
    ran = tmp_path / "ran"
    torch.save({"weights": weights, "payload": RunsACommand(ran)}, out / "checkpoint-2" / "pytorch_model.bin")
    (out / "checkpoint-2" / "model.safetensors").unlink()
    capsys.readouterr()
    assert train(out, "max_steps=2", "--resume") == INPUT_ERROR
    err = capsys.readouterr().err
    message = error_line(err)  # the file, what it refers to, what air-align loads instead, and why
    assert_error(message, f"{out / 'checkpoint-2' / 'pytorch_model.bin'}: ", "pickle checkpoint", "posix.system")
    assert_facts(message, "safetensors", "weights-only torch files", "arbitrary code")
    assert "weights_only" not in err and "Traceback" not in err and not ran.exists()


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.slow  # a fresh interpreter importing TRL, twice: ~1 min
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare and a user namespace to mount a small tmpfs")
def test_a_really_full_disk_says_no_space_left_and_resume_finishes_on_a_bigger_one(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    command = [sys.executable, "-m", "air_align.cli", "train", "--config", TINY, "max_steps=2", "save_steps=1"]
    script = f"mount -t tmpfs -o size=1m tmpfs {disk} && {' '.join(command)} output_dir={disk / 'run'}; status=$?; "
    script += f"cp -a {disk}/run {tmp_path}"
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script + "; exit $status"], capture_output=True, text=True)
    assert proc.returncode == INPUT_ERROR, proc.stderr[-2000:]
    assert f"error: no space left on {disk / 'run'} (0.0 MiB free) while saving step 1:" in proc.stderr
    assert "Traceback" not in proc.stderr
    run = tmp_path / "run"  # the folder as the full disk left it, on a disk with room
    assert checkpoints.checkpoint_problem(run / "checkpoint-1") is not None
    proc = subprocess.run([*command, f"output_dir={run}", "--resume"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"--resume: skipping {run / 'checkpoint-1'}: " in proc.stderr
    assert json.loads((run / MARKER).read_text())["finished"] == {"step": 2, "max_steps": 2}
