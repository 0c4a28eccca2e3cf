"""Checkpoints (docs/scaling.md): ``--resume`` skips an incomplete checkpoint with a message and resumes from the last
complete one, exactly; a used ``output_dir`` needs ``--resume`` or ``--overwrite``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from _messages import assert_error, assert_facts
from safetensors.torch import load_file

from air_align.cli import INPUT_ERROR, main
from air_align.training.checkpoints import checkpoint_problem, last_complete_checkpoint, resolve_checkpoint

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml")


def train(out: Path, *extra: str) -> int:
    return main(["train", "--config", TINY, f"output_dir={out}", "save_steps=1", "logging_steps=1", *extra])


def weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two identical 3-step runs, a checkpoint a step: ``straight`` and ``torn`` (torn below)."""
    tmp = tmp_path_factory.mktemp("resume")
    assert train(tmp / "straight", "max_steps=3") == 0
    assert train(tmp / "torn", "max_steps=3") == 0
    return tmp


def test_torn_checkpoints_are_skipped_and_the_run_resumes_exactly(runs, capsys):
    # As a kill -9 while saving leaves it: checkpoint-3 without trainer_state.json (transformers writes it last),
    # checkpoint-2's weights cut short, no final/.
    torn = runs / "torn"
    (torn / "checkpoint-3" / "trainer_state.json").unlink()
    weights_2 = torn / "checkpoint-2" / "model.safetensors"
    weights_2.write_bytes(weights_2.read_bytes()[:1000])
    shutil.rmtree(torn / "final")
    capsys.readouterr()
    assert train(torn, "--resume", "max_steps=3") == 0  # `--resume key=value`: the override is not a path
    err = capsys.readouterr().err
    assert (
        f"--resume: skipping {torn / 'checkpoint-3'}: no trainer_state.json (the run stopped while saving this "
        f"checkpoint)\n--resume: skipping {torn / 'checkpoint-2'}: model.safetensors is cut short (its header alone "
    ) in err
    assert f"--resume: resuming from {torn / 'checkpoint-1'}\n" in err
    straight, resumed = weights(runs / "straight" / "final"), weights(torn / "final")
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():  # resuming from step 1 replays steps 2 and 3 exactly, bit for bit
        assert resumed[name].equal(tensor), name
    log = [json.loads(line) for line in (torn / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3]  # steps 2, 3 of the killed run dropped, logged once
    assert sum("train_runtime" in e for e in log) == 1


@pytest.mark.parametrize("tear", ["trainer_state", "safetensors", "optimizer"])
def test_checkpoint_problem_finds_torn_files(runs, tmp_path, tear):
    folder = tmp_path / "checkpoint-1"
    shutil.copytree(runs / "straight" / "checkpoint-1", folder)
    assert checkpoint_problem(folder) is None
    name = {"trainer_state": "trainer_state.json", "safetensors": "model.safetensors", "optimizer": "optimizer.pt"}
    path = folder / name[tear]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the file a kill -9 leaves mid-write
    expected = {
        "trainer_state": "trainer_state.json is cut short or not JSON",
        "safetensors": "model.safetensors is cut short (",
        "optimizer": "optimizer.pt is cut short (not a whole torch.save archive)",
    }[tear]
    assert checkpoint_problem(folder).startswith(expected)
    assert last_complete_checkpoint(tmp_path) == (None, [(folder, checkpoint_problem(folder))])
    with pytest.raises(ValueError, match=rf"--resume {folder}: incomplete checkpoint: {expected[:20]}"):
        resolve_checkpoint(str(folder), tmp_path)
    messages = []
    assert resolve_checkpoint("auto", tmp_path, say=messages.append) is None
    assert_facts(messages[-1], "--resume: ", f"no complete checkpoint in {tmp_path}", "from step 0")  # a notice


def test_used_output_dir_needs_resume_or_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(runs / "straight", out)  # checkpoint-1..3 and final/
    capsys.readouterr()
    assert train(out, "max_steps=1") == INPUT_ERROR
    err = capsys.readouterr().err  # the folder, the run it holds, and the three ways on
    assert_error(err, f"{out} ", "already holds a run", "checkpoint-2, checkpoint-3, final")
    assert_facts(err, "add --resume", "--overwrite", "output_dir=... to another folder")
    assert train(out, "max_steps=1", "--resume", "--overwrite") == INPUT_ERROR
    assert_error(capsys.readouterr().err, "--resume", "--overwrite", "choose one")
    (out / "notes.txt").write_text("mine")
    assert train(out, "--overwrite", "max_steps=1") == 0  # overrides on both sides of an option
    # what its run marker lists: checkpoint-1..3, final/, log, record, plot, model card (not notes.txt)
    assert "--overwrite: deleted 8 item(s) of the previous run" in capsys.readouterr().err
    kept = [
        ".air_align.lock",
        ".air_align_run.json",
        "README.md",
        "air_align_run.yaml",
        "checkpoint-1",
        "final",
        "log.jsonl",
        "notes.txt",
        "training_curves.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == kept  # README.md: TRL's model card, rewritten by every save
    assert len((out / "log.jsonl").read_text().splitlines()) == 2  # step 1 and the end-of-training entry
