"""Inputs that used to pass the command line and fail late (or write NaN into JSON) are refused up front, each with
the house error: numeric options (finite, in range), ``eval``'s splits / limit / dispersion layer, ``train``'s config
keys, ``output_dir``, ``model_dtype`` and ``module:function`` rewards, and the runs ``report`` puts side by side.

In-process runs use the ``no_model`` fixture of ``test_cli_errors``: a model load fails the test, which proves that
the check came before it.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from _messages import assert_error, assert_facts
from test_cli_errors import TINY, no_model  # noqa: F401 - the fixture
from test_data_validate_hardening import rows_of, write

from air_align.cli import INPUT_ERROR, build_parser, main
from air_align.cli.options import number, whole
from air_align.models import load_model
from air_align.training.reward_spec import check_reward_function, resolve_rewards
from air_align.training.run import build_configs


def _actions(parser: argparse.ArgumentParser, prefix: str = ""):
    """``(command path, action)`` of every option of the ``air-align`` parser, subcommands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{prefix} {name}".strip())
        else:
            yield prefix, action


def test_no_option_parses_a_bare_float_or_accepts_nan():
    # every number option goes through air_align.cli.options: a bare `type=float` would take nan, inf and 1e999
    actions = list(_actions(build_parser()))
    assert not [(cmd, a.option_strings) for cmd, a in actions if a.type is float]
    numbers = [(cmd, a) for cmd, a in actions if getattr(a.type, "__name__", "") == "number"]
    assert {(cmd, a.option_strings[0]) for cmd, a in numbers} >= {
        ("eval", "--temperature"),
        ("calibrate", "--tolerance"),
        ("data build", "--val-fraction"),
        ("data build", "--test-fraction"),
        ("data build", "--benign-fraction"),
        ("study", "--lr"),
        ("study", "--lam"),
        ("study", "--train-seconds"),
    }
    for cmd, action in numbers:
        for bad in ("nan", "inf", "-inf", "1e999", "x"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(bad)
        if action.default is not None:  # the default passes its own check
            assert action.type(str(action.default)) == action.default, (cmd, action.option_strings)


def test_number_and_whole_ranges():
    fraction = number(0, 1, high_open=True)
    assert fraction("0") == 0.0 and fraction("0.999") == 0.999
    # each message leads with the value given, and names the range to give instead
    with pytest.raises(argparse.ArgumentTypeError, match=r"^1 .*out of range.*\[0, 1\)"):
        fraction("1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^-0.1 .*out of range.*\[0, 1\)"):
        fraction("-0.1")
    with pytest.raises(argparse.ArgumentTypeError, match=r"^0 .*out of range.*> 0"):
        number(0, low_open=True)("0")
    assert whole(1)("1") == 1
    with pytest.raises(argparse.ArgumentTypeError, match=r"^'2.5' .*not a whole number.*≥ 1"):
        whole(1)("2.5")


@pytest.mark.parametrize(
    "args, usage, facts",  # argparse's `air-align CMD: error: argument OPTION: `, then the value and the range to give
    [
        (
            ["eval", "--model", "tiny", "--data", "d.jsonl", "--out", "o", "--temperature", "nan"],
            "air-align eval: error: argument --temperature: ",
            ("'nan'", "not a finite number", "≥ 0"),
        ),
        (
            ["calibrate", "--data", "d.jsonl", "--tolerance", "nan"],
            "air-align calibrate: error: argument --tolerance: ",
            ("'nan'", "not a finite number", "≥ 0"),
        ),
        (
            ["data", "build", "--domain", "safety", "--out", "o.jsonl", "--n-intents", "-3"],
            "air-align data build: error: argument --n-intents: ",
            ("-3", "out of range", "whole number ≥ 1", "intents"),
        ),
        (
            ["eval", "--model", "tiny", "--data", "d.jsonl", "--out", "o", "--limit", "0"],
            "air-align eval: error: argument --limit: ",
            ("0", "out of range", "whole number ≥ 1", "meta-groups"),
        ),
        (
            ["study", "--out", "o", "--methods", "dpo", "--lr", "inf"],
            "air-align study: error: argument --lr: ",
            ("'inf'", "not a finite number", "> 0"),
        ),
    ],
)
def test_bad_numbers_are_usage_errors(args, usage, facts, capsys):
    with pytest.raises(SystemExit) as code:
        main(args)
    assert code.value.code == INPUT_ERROR
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(usage), last
    assert_facts(last.removeprefix(usage), *facts)


def test_eval_checks_splits_against_the_file_before_loading(tmp_path, no_model, capsys):  # noqa: F811
    rows = rows_of(split="test_id") + [{**r, "id": r["id"] + "/ood", "split": "test_ood"} for r in rows_of()]
    path = write(tmp_path / "d.jsonl", rows)
    # before: with --limit the rows were cut to none first, and the message said "(the data has splits [])"
    args = ["eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "e"), "--limit", "1"]
    assert main([*args, "--splits", "nosuch"]) == INPUT_ERROR
    err = capsys.readouterr().err  # the option, the file, the splits it has, and the option as it could be given
    assert_error(err, "--splits nosuch: ", str(path), "no rows in split 'nosuch'", "test_id, test_ood")
    assert_facts(err, "--splits test_id,test_ood")
    assert main([*args, "--splits", ","]) == INPUT_ERROR
    assert "has no rows in split (none)" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_dispersion_layer_is_checked_before_generation(tmp_path, monkeypatch, capsys):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation ran before the layer was checked")

    monkeypatch.setattr("air_align.evaluation.evaluate.generate_completions", no_generation)
    path = write(tmp_path / "d.jsonl", rows_of(split="test_id"))
    args = ["eval", "--model", "tiny", "--data", path, "--out", str(tmp_path / "e"), "--splits", "test_id"]
    for layer in ("99", "3", "-4"):  # tiny: 2 layers, hidden_states[0..2], i.e. -3..2
        assert main([*args, "--dispersion-layer", layer]) == INPUT_ERROR
        err = capsys.readouterr().err  # the option and value, the model's size, the range to use or the way out
        assert_error(err, f"--dispersion-layer {layer}: ", "2 layers", "use -3 to 2", "--no-dispersion")
    assert not (tmp_path / "e").exists()
    monkeypatch.undo()
    ok = [*args, "--dispersion-layer", "-3", "--max-new-tokens", "2", "--bootstrap", "0", "--no-progress"]
    assert main(ok) == 0  # the embeddings layer is a valid index
    assert json.loads((tmp_path / "e" / "results.json").read_text())["dispersion"]["layer"] == -3


@pytest.mark.parametrize("command", ["validate", "train", "eval"])
def test_deep_json_row_is_an_error_line(command, tmp_path, no_model, capsys):  # noqa: F811
    lines = [json.dumps(r) for r in rows_of(split="train" if command == "train" else "test_id")]
    lines[2] = lines[2][:-1] + ', "meta": ' + "[" * 100_000 + "]" * 100_000 + "}"  # RecursionError before
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    args = {
        "validate": ["data", "validate", str(path)],
        "train": ["train", "--config", TINY, f"dataset={path}", f"output_dir={tmp_path / 'run'}"],
        "eval": ["eval", "--model", "tiny", "--data", str(path), "--out", str(tmp_path / "e")],
    }[command]
    # a file that is not JSONL is bad input for every command (2); `data validate` exits 1 for problems in its rows
    assert main(args) == INPUT_ERROR
    assert_error(capsys.readouterr().err, f"{path}:3: ", "nested deeper than 64 levels", "flatten")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.jsonl"]


CLI = "(from the command line)"  # where a config key came from


@pytest.mark.parametrize(
    "override, facts",  # the key (and where it came from), the bad value, and the fix
    [
        ("output_dir=", ("output_dir", "empty", CLI, "output_dir=runs/air")),
        ("zzzqqq=1", ("zzzqqq", CLI, "unknown key", "RunConfig fields")),
        ("learnin_rate=1", ("learnin_rate", CLI, "unknown key", "did you mean 'learning_rate'")),
        ("learning_rate=nan", ("learning_rate", CLI, "finite number")),
        ("temperature=1e999", ("temperature", CLI, "finite number")),
        ("model_dtype=load", ("model_dtype='load'", "float32, bfloat16, float16")),
        ("model_dtype=int8", ("model_dtype='int8'", "float32, bfloat16, float16")),
        ("reward=os:system", ("reward 'os:system'", "signature (command)", "def my_reward(completions, **kwargs)")),
    ],
)
def test_train_config_errors_come_before_any_model(override, facts, tmp_path, no_model, capsys):  # noqa: F811
    output = [] if override.startswith("output_dir") else [f"output_dir={tmp_path / 'run'}"]
    assert main(["train", "--config", TINY, *output, override, "max_steps=1"]) == INPUT_ERROR
    assert_error(capsys.readouterr().err, *facts)
    assert not (tmp_path / "run").exists()


def test_model_dtype_is_applied_to_the_tiny_model_too():
    run, _ = build_configs(TINY, ["model_dtype=bfloat16"])
    assert run.model_dtype == "bfloat16"
    model, _ = load_model("tiny", dtype=torch.bfloat16)  # was silently float32
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_reward_contract():
    import os

    from air_align.training.toy import toy_reward

    for func in (toy_reward, *resolve_rewards("air_align.rewards.verifiers:choice_reward,toy")):
        check_reward_function(func, "ok")  # the project's own rewards keep TRL's contract
    composite = resolve_rewards("composite", reward_config={"safety_reward": "keyword", "judge": {"model": "none"}})
    check_reward_function(composite[0], "composite")

    def positional(completions, answer, /, **kwargs):  # TRL passes everything by keyword
        return [0.0]

    def no_kwargs(prompts, completions):  # the data columns and trainer_state would not fit
        return [0.0]

    for bad in (os.system, positional, no_kwargs, print):
        with pytest.raises(ValueError, match=r"reward 'x' .*a reward function is `def my_reward\(completions"):
            check_reward_function(bad, "x")


def test_calibrate_refuses_a_bad_reward_before_loading_the_policy(tmp_path, no_model, capsys):  # noqa: F811
    path = write(tmp_path / "d.jsonl", rows_of())
    out = tmp_path / "cal"
    assert main(["calibrate", "--data", path, "--reward", "os:system", "--model", "tiny", "--out", str(out)]) == 2
    assert_error(capsys.readouterr().err, "reward 'os:system'", "signature (command)", "def my_reward(completions")
    assert not out.exists()


# ----------------------------------------------------------------------------------------------------------- report


def _results(path: Path, data: str, method: str, acc=0.5) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    block = {"acc": acc, "acc_group": 0.25, "acc_ci": [0.1, 0.9], "n_prompts": 4, "by_domain": {}}
    res = {
        "method": method,
        "model": "tiny",
        "judge": "oracle-label",
        "data": data,
        "data_sha256": data * 8,
        "slices": {"test_id": {"label": "ID", **block}},
    }
    (path / "results.json").write_text(json.dumps(res))  # json writes nan and 1e300 as NaN and 1e+300
    return path


@pytest.mark.parametrize("bad, shown", [(math.nan, "nan"), (1e300, "1e+300"), (-0.5, "-0.5"), (True, "True")])
def test_report_refuses_metrics_that_are_not_shares(bad, shown, tmp_path, capsys):
    good = _results(tmp_path / "a", "d.jsonl", "GRPO")
    broken = _results(tmp_path / "b", "d.jsonl", "AIR", acc=bad)
    assert main(["report", str(good), str(broken), "--out", str(tmp_path / "r.md")]) == INPUT_ERROR
    err = capsys.readouterr().err  # the file, the metric's key path and value, the range it should be in, the fix
    assert_error(err, f"{broken / 'results.json'}: ", f"slices.test_id.acc = {shown}", "out of range", "[0, 1]")
    assert_facts(err, "re-run `air-align eval`")
    assert not (tmp_path / "r.md").exists()


def test_report_flags_runs_on_different_data(tmp_path, capsys):
    a = _results(tmp_path / "a", "safety.jsonl", "GRPO")
    b = _results(tmp_path / "b", "morality.jsonl", "GRPO")
    target = tmp_path / "r.md"
    assert main(["report", str(a), str(b), "--out", str(target)]) == 0
    text = target.read_text()
    warning = "**Warning: these runs were evaluated on different data (method GRPO appears on more than one)"
    assert warning in text
    assert f"- data `safety.jsonl (sha256 {('safety.jsonl' * 8)[:12]})`: `{a}` (GRPO)" in text
    # the two GRPO rows no longer read alike: each names its run
    assert f"| ID | GRPO ({a}) | 50.00% / 25.00% |" in text and f"| ID | GRPO ({b}) |" in text
    assert "these runs were evaluated on different data" in capsys.readouterr().err
    # one data file, distinct methods: no warning, plain method names
    shutil.rmtree(b)
    b = _results(tmp_path / "b", "safety.jsonl", "GRPO+AIR")
    assert main(["report", str(a), str(b), "--out", str(target)]) == 0
    text = target.read_text()
    assert "Warning" not in text and "| ID | GRPO | 50.00% / 25.00% |" in text and "| ID | GRPO+AIR |" in text
