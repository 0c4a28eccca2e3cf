"""``eval`` saves the generations before judging: a judge or dispersion failure loses none."""

from __future__ import annotations

import pytest
from test_eval_cli import write_data

from air_align.cli import INPUT_ERROR, main
from air_align.files import read_jsonl

N_COMPLETIONS = 18  # write_data's test_id + test_ood prompts (test_eval_cli.test_eval_outputs counts them)


def eval_args(tmp_path):
    write_data(tmp_path / "data.jsonl")
    return [
        "eval",
        "--model",
        "tiny",
        "--data",
        str(tmp_path / "data.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--max-new-tokens",
        "3",
        "--bootstrap",
        "0",
        "--no-progress",
    ]


def test_a_failing_judge_loses_no_generation(tmp_path, monkeypatch, capsys):
    calls = []

    def judge_down(rows, completions):
        calls.append(len(completions))
        raise ConnectionError("judge server http://judge:8000 unreachable after 5 tries")

    monkeypatch.setattr("air_align.evaluation.scoring.eval_verdict", lambda spec: judge_down)
    assert main(eval_args(tmp_path)) == INPUT_ERROR  # an OSError: `error: …`, exit 2
    assert capsys.readouterr().err == "error: judge server http://judge:8000 unreachable after 5 tries\n"
    assert calls == [N_COMPLETIONS]  # the judge was reached once, with every completion
    lines = read_jsonl(tmp_path / "out" / "completions.jsonl")
    assert len(lines) == N_COMPLETIONS == len({line["id"] for line in lines})
    assert all(isinstance(line["completion"], str) and "correct" not in line for line in lines)  # not judged yet
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_failing_dispersion_keeps_the_scored_completions(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("dispersion: out of memory")

    monkeypatch.setattr("air_align.evaluation.evaluate._dispersion", broken)
    with pytest.raises(RuntimeError, match="out of memory"):  # unexpected: propagates with its traceback
        main(eval_args(tmp_path))
    lines = read_jsonl(tmp_path / "out" / "completions.jsonl")
    assert len(lines) == N_COMPLETIONS and all("correct" in line and "details" in line for line in lines)
