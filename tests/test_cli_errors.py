"""Bad input through the commands: ``train`` and ``eval`` check their data file before any
model loads, and every command prints ``error: …`` with the fix (exit 2), not a traceback; ``--debug`` or
``AIR_ALIGN_DEBUG=1`` shows the traceback; an unexpected error keeps it. ``--version``.

In-process runs (``air_align.cli.main``) replace the model loader by one that fails the test if called, which proves
that the check came first; subprocess runs check what a user sees on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _messages import assert_error, assert_facts
from test_data_validate_hardening import ROW_CASES, assert_problem, rows_of, write

import air_align
from air_align.cli import INPUT_ERROR, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny-cpu.yaml")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m air_align.cli ARGS`` in a fresh interpreter, this checkout first on the path."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "air_align.cli", *args], capture_output=True, text=True, env=full_env, cwd=ROOT
    )


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: what is checked must be checked before."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr("air_align.training.recipe.load_model", refuse)
    monkeypatch.setattr("air_align.models.load_model", refuse)


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_file_fails_before_any_model_loads(case, command, tmp_path, no_model, capsys):
    mutate, facts = ROW_CASES[case]
    rows = rows_of(split="train" if command == "train" else "test_id")
    mutate(rows)
    path = write(tmp_path / "bad.jsonl", rows)
    if command == "train":
        args = ["train", "--config", TINY, f"dataset={path}", f"output_dir={tmp_path / 'run'}"]
    else:
        args = ["eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "eval")]
    assert main(args) == INPUT_ERROR
    err = capsys.readouterr().err
    assert_error(err.splitlines(keepends=True)[0], f"problem(s) in {path}")
    assert "Traceback" not in err, err
    # the row's line, the problem and the fix, as `air-align data validate` reports them
    where, in_file = f"  - line 2 (id {rows[1]['id']!r}): ", [fact.replace("{first}", "line 1") for fact in facts]
    assert_problem(err.splitlines(), where, in_file)
    assert not (tmp_path / "run").exists() and not (tmp_path / "eval").exists()


def test_empty_and_missing_data_files(tmp_path, no_model, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for data in (empty, tmp_path / "missing.jsonl"):
        assert main(["eval", "--model", "tiny", "--data", str(data), "--out", str(tmp_path / "e")]) == INPUT_ERROR
        assert main(["train", "--config", TINY, f"dataset={data}", f"output_dir={tmp_path}/r"]) == INPUT_ERROR
    err = capsys.readouterr().err.splitlines(keepends=True)
    assert len(err) == 4 and err[0] == err[1] and err[2] == err[3], err  # eval and train say the same
    assert_error(err[0], f"{empty}: ", "no rows", "one JSON object per line", "`air-align data build`")
    assert_error(err[2], f"{tmp_path / 'missing.jsonl'}: ", "no such file", "`air-align data build --domain")


def test_train_split_of_unequal_meta_groups_fails_before_loading(tmp_path, no_model, capsys):
    rows = rows_of()
    rows.append({**rows[2], "id": "g1/w1", "context": "w1", "family": "fam1"})  # g1 now has 4 rows, g2 has 3
    path = write(tmp_path / "unequal.jsonl", rows)
    assert main(["train", "--config", TINY, f"dataset={path}", f"output_dir={tmp_path}/r"]) == INPUT_ERROR
    err = capsys.readouterr().err
    head, problem = err.splitlines(keepends=True)  # the file and split, then the problem with its sizes
    assert_error(head, f"1 problem(s) in {path} (split train)")
    assert_facts(problem, "meta-groups of unequal size", "{3: 1, 4: 1}")


def test_every_command_reports_bad_input_without_traceback(tmp_path, capsys):
    cases = {  # the command's key facts: what is wrong (the option, the bad value) and the fix
        ("data", "build", "--domain", "nope", "--out", str(tmp_path / "x.jsonl")): (
            "unknown domain 'nope'",
            "safety, morality, math",
        ),
        ("data", "inspect", str(tmp_path / "nope.jsonl")): (f"{tmp_path / 'nope.jsonl'}: ", "no such file", "build"),
        ("report", str(tmp_path / "nowhere")): ("results.json not found", str(tmp_path / "nowhere"), "run `air-align"),
        ("audit", "--domain", "morality", "--out", str(tmp_path / "a"), "--judge", "gpt"): (
            "unknown --judge 'gpt'",
            "choose one of",
        ),
        ("study", "--methods", "grpo,dpo", "--out", str(tmp_path / "s")): (
            "unknown method 'dpo'",
            "choose one of grpo, grpo+vrex, grpo+air, gspo+air",
        ),
        ("study", "--judge", "gpt", "--no-base", "--out", str(tmp_path / "s")): (
            "unknown --judge 'gpt'",
            "choose one of",
        ),
        ("train", "--config", str(tmp_path / "nope.yaml")): (f"--config {tmp_path / 'nope.yaml'}", "no such file"),
        ("train", "max_steps"): ("override 'max_steps'", "key=value", "max_steps=10"),
        ("eval", "--model", "tiny", "--data", str(tmp_path / "d.jsonl"), "--out", "x", "--threads", "0"): (
            "--threads 0",
            "at least 1",
        ),
    }
    for args, facts in cases.items():
        assert main(list(args)) == INPUT_ERROR, args
        assert_error(capsys.readouterr().err, *facts)


def test_subprocess_train_and_eval_print_one_error_and_debug_shows_the_traceback(tmp_path):
    rows = rows_of()
    del rows[1]["family"]
    path = write(tmp_path / "bad.jsonl", rows)
    run = cli("train", "--config", TINY, f"dataset={path}", f"output_dir={tmp_path / 'run'}")
    assert run.returncode == INPUT_ERROR
    head, problem = run.stderr.splitlines(keepends=True)  # nothing else: no traceback, no progress
    assert_error(head, f"1 problem(s) in {path}")
    assert problem.startswith("  - line 2 (id 'g1/tf'): ")
    assert_facts(problem, "missing field(s) ['family']", "every row needs", "docs/data.md")
    trained = run.stderr
    run = cli("eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "eval"))
    assert (run.returncode, run.stderr) == (INPUT_ERROR, trained)  # eval says the same
    assert not (tmp_path / "run").exists() and not (tmp_path / "eval").exists()
    run = cli("eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "eval"), "--debug")
    assert run.returncode == 1 and "Traceback (most recent call last)" in run.stderr
    assert run.stderr.rstrip().endswith("(see docs/data.md)") and "ValidationError" in run.stderr
    run = cli("eval", "--model", "tiny", "--data", path, "--out", "x", env={"AIR_ALIGN_DEBUG": "1"})
    assert run.returncode == 1 and "Traceback" in run.stderr


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("air_align.cli.evaluate.run_report", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["report", "x"])  # not an input error: propagates (Python prints the traceback, exit 1)


def test_version():
    run = cli("--version")
    assert (run.returncode, run.stdout) == (0, f"air-align {air_align.__version__}\n")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'\nversion = "{air_align.__version__}"\n' in pyproject  # one version, two places that agree


def test_long_running_commands_take_threads():
    parser = build_parser()
    for args in (
        ["train", "--config", TINY],
        ["eval", "--model", "m", "--data", "d", "--out", "o"],
        ["audit", "--domain", "safety", "--out", "o"],
        ["study", "--out", "o"],
    ):
        assert parser.parse_args([*args, "--threads", "3"]).threads == 3, args
        assert parser.parse_args(args).threads is None, args  # default: $AIR_ALIGN_THREADS, else torch's


def test_results_of_a_valid_eval_file_are_unchanged_by_the_check(tmp_path, capsys):
    # the six rows of rows_of() are valid: the check lets them through, eval runs on the tiny model
    path = write(tmp_path / "ok.jsonl", rows_of(split="test_id"))
    args = ["eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "e"), "--max-new-tokens", "2"]
    assert main([*args, "--splits", "test_id", "--no-dispersion", "--bootstrap", "0", "--no-progress"]) == 0
    assert json.loads((tmp_path / "e" / "results.json").read_text())["n_prompts"] == 6


def test_unknown_options_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as code:
        main(["train", "--config", TINY, "--bogus", "max_steps=1"])
    assert code.value.code == INPUT_ERROR  # argparse's usage error, with the usage line
    assert "air-align: error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_every_command_has_the_one_error_path(tmp_path, capsys):
    # a missing input file, for every command that reads one: `error: <path>: …` and exit 2 from main(); with
    # --debug the same error propagates (its traceback), because handlers raise and only main() prints
    missing = str(tmp_path / "missing.jsonl")
    commands = [
        ["data", "validate", missing],
        ["data", "inspect", missing],
        ["calibrate", "--data", missing, "--reward", "toy", "--out", str(tmp_path / "cal")],
        ["eval", "--model", "tiny", "--data", missing, "--out", str(tmp_path / "ev")],
        ["report", str(tmp_path / "missing-run")],
        ["reproduce", "--world", missing, "--out", str(tmp_path / "lab")],
        ["train", "--config", str(tmp_path / "missing.yaml")],
    ]
    for args in commands:
        assert main(args) == INPUT_ERROR, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "missing" in err and "Traceback" not in err, (args, err)
        with pytest.raises((OSError, ValueError)):
            main([*args, "--debug"])
        capsys.readouterr()
