"""No command writes over a file it reads (``files.refuse_overwriting_inputs``, called by every command that writes),
and ``reproduce --out`` writes only into a new, empty or lab folder (``lab.reproduce.claim_lab_folder``). Each refusal
is ``error: …``, exit 2, with the folder as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _messages import assert_error, assert_facts

from air_align.cli import INPUT_ERROR, main
from air_align.files import refuse_overwriting_inputs
from air_align.lab.reproduce import LAB_MARKER

TINY = str(Path(__file__).resolve().parents[1] / "configs" / "tiny-cpu.yaml")
FIX = ("another folder", "copy the input elsewhere")  # what a refusal to overwrite an input tells the user to do


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    assert main(["data", "build", "--domain", "safety", "--out", str(path), "--n-intents", "4"]) == 0
    return path


def test_eval_refuses_data_it_would_overwrite(rows, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    data = out / "records.jsonl"  # the name of eval's own per-prompt records
    data.write_bytes(rows.read_bytes())
    before = contents(out)
    capsys.readouterr()
    assert main(["eval", "--model", "tiny", "--data", str(data), "--out", str(out)]) == INPUT_ERROR
    err = capsys.readouterr().err  # the option and its file, the output it would overwrite, and the fix
    assert_error(err, f"--data {data} ", "also an output", str(out / "records.jsonl"), *FIX)
    assert contents(out) == before
    link = tmp_path / "link.jsonl"  # through a symbolic link, or a hard link, it is the same file
    link.symlink_to(data)
    assert main(["eval", "--model", "tiny", "--data", str(link), "--out", str(out)]) == INPUT_ERROR
    hard = tmp_path / "hard.jsonl"
    os.link(data, hard)
    assert main(["eval", "--model", "tiny", "--data", str(hard), "--out", str(out)]) == INPUT_ERROR
    assert contents(out) == before


def test_report_build_and_calibrate_refuse_their_inputs_as_outputs(rows, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text("{}")
    assert main(["report", str(run), "--out", str(run / "results.json")]) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"RUN_DIR {run / 'results.json'} ", "also an output", *FIX)
    assert (run / "results.json").read_text() == "{}"
    templates = tmp_path / "templates.yaml"
    templates.write_text("- name: mine\n  template: 'Please: {intent}'\n")
    args = ["data", "build", "--domain", "safety", "--templates", str(templates), "--out", str(templates)]
    assert main(args) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"--templates {templates} ", "also an output", *FIX)
    assert templates.read_text().startswith("- name: mine")
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "scored.jsonl").write_bytes(rows.read_bytes())
    args = ["calibrate", "--data", str(cal / "scored.jsonl"), "--reward", "toy", "--out", str(cal)]
    assert main(args) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"--data {cal / 'scored.jsonl'} ", "also an output", *FIX)
    assert (cal / "scored.jsonl").read_bytes() == rows.read_bytes()


def test_train_refuses_a_model_inside_the_run_it_would_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["train", "--config", TINY, f"output_dir={out}", "save_steps=1"]
    assert main([*base, "max_steps=1"]) == 0
    before = contents(out / "final")
    capsys.readouterr()
    assert main([*base, "max_steps=1", f"model={out / 'final'}", "--overwrite"]) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"model={out / 'final'} ", "also an output", *FIX)
    assert contents(out / "final") == before
    assert main([*base, "max_steps=1", f"model={out / 'checkpoint-1'}", "--overwrite"]) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"model={out / 'checkpoint-1'} ", "also an output", *FIX)


def test_the_helper_compares_resolved_paths_and_patterns(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jsonl").write_text("{}")
    refuse_overwriting_inputs({"--data": tmp_path / "a" / "x.jsonl"}, [tmp_path / "b" / "x.jsonl"])  # elsewhere
    refuse_overwriting_inputs({"--model": "tiny"}, [Path("tiny")])  # not a file: a model name, nothing to lose
    with pytest.raises(ValueError, match="is also an output"):
        refuse_overwriting_inputs({"--data": tmp_path / "a" / ".." / "a" / "x.jsonl"}, [tmp_path / "a" / "x.jsonl"])
    with pytest.raises(ValueError, match="is also an output"):  # inside a folder the command writes
        refuse_overwriting_inputs({"--data": tmp_path / "a" / "x.jsonl"}, [tmp_path / "a"])
    with pytest.raises(ValueError, match="is also an output"):
        refuse_overwriting_inputs([("--data", tmp_path / "a" / "x.jsonl")], [tmp_path / "a" / "*.jsonl"])


def test_reproduce_refuses_a_folder_that_is_not_a_lab_folder(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text('{"my": "results"}')
    (out / "table.md").write_text("| my | table |\n")
    before = contents(out)
    assert main(["reproduce", "--preset", "smoke", "--out", str(out)]) == INPUT_ERROR
    err = capsys.readouterr().err  # the folder, the marker it lacks, the user's files, what would be replaced
    assert_error(err, f"--out {out} ", "not a lab folder", LAB_MARKER, "results.json, table.md")
    assert_facts(err, "outcomes.json.gz", "replacing", "a new or empty folder")  # and the fix
    assert contents(out) == before
    assert main(["demo", "--out", str(out)]) == INPUT_ERROR
    assert contents(out) == before


def test_a_lab_folder_from_before_the_marker_is_still_resumed(tmp_path):
    from air_align.lab.reproduce import claim_lab_folder

    out = tmp_path / "grid"
    (out / "runs" / "main-safety-x").mkdir(parents=True)
    (out / "runs" / "main-safety-x" / "result.json").write_text(json.dumps({"key": {}, "record": {}}))
    (out / "results.json").write_text("{}")
    claim_lab_folder(out)  # a grid's saved run: a lab folder, now marked
    assert json.loads((out / LAB_MARKER).read_text())["kind"] == "lab grid"
    claim_lab_folder(tmp_path / "new")  # a new folder becomes a lab folder
    assert (tmp_path / "new" / LAB_MARKER).is_file()


def test_lab_analyse_out_refuses_a_folder_that_is_not_a_lab_folder(tmp_path, capsys):
    grid = Path(__file__).resolve().parent / "data" / "lab-grid-smoke"
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.json").write_text('{"my": "results"}')
    before = contents(out)
    assert main(["lab", "analyse", str(grid), "--out", str(out)]) == INPUT_ERROR
    err = capsys.readouterr().err
    assert_error(err, f"--out {out} ", "not a lab folder", LAB_MARKER, ": results.json.", "a new or empty folder")
    assert contents(out) == before
    assert main(["lab", "analyse", str(grid), "--out", str(tmp_path / "new")]) == 0  # a new folder: rebuilt there
    assert (tmp_path / "new" / "table.md").read_text() == (grid / "table.md").read_text()
