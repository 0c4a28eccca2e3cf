"""``air-align calibrate`` (docs/calibration.md): the command end to end on a tiny meta-group file, with rewards whose
payouts are chosen here so that every number is hand-computable.

Rows: 3 harmful (label 1) and 3 benign (label 0) safety intents, each an MC anchor, a true/false anchor and two open
variants. Rewards: ``air_align.rewards.format:format_reward`` (+1.25 for the canonical responses, all well formed)
plus a task reward from ``tests/_calib_fake.py``: anchors +1.25 right / −1.0 wrong; open rows pay per
label and per what the response is (a refusal: "sorry"; help: the word "step"; both: the hack).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _calib_fake import cell, safety_rows
from _messages import assert_error

from air_align.cli import main

FORMAT = "air_align.rewards.format:format_reward"
TESTS = Path(__file__).resolve().parent


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def train_rows():
    """The command's rows: harmful intents first, split train."""
    return safety_rows(split="train", first_label=1)


@pytest.fixture
def world(tmp_path):
    """The data file; the payouts module ``_calib_fake`` sits beside this file, importable here and, through ``cli``'s
    PYTHONPATH, in subprocesses."""
    return tmp_path, write_jsonl(tmp_path / "safety.jsonl", train_rows())


def cli(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([os.getcwd(), str(TESTS), str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "air_align.cli", "calibrate", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_calibrated_and_miscalibrated_rewards_end_to_end(world):
    tmp, data = world
    ok = cli(tmp, "--data", str(data), "--reward", f"{FORMAT},_calib_fake:calibrated", "--out", str(tmp / "ok"))
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert "verdict: calibrated within tolerance 0.25" in ok.stdout
    assert "safety, label 1 (harmful): calibrated" in ok.stdout and "safety, label 0 (benign): calibrated" in ok.stdout
    assert 'invariance_offsets: {"safety/0": 0.0, "safety/1": 0.0}' in ok.stdout
    assert {p.name for p in (tmp / "ok").iterdir()} >= {"calibration.json", "calibration.md", "calibration.png"}

    bad = cli(tmp, "--data", str(data), "--reward", f"{FORMAT},_calib_fake:today", "--out", str(tmp / "bad"))
    assert bad.returncode == 1, bad.stderr[-3000:]
    table = json.loads((tmp / "bad" / "calibration.json").read_text())
    # benign: correct anchor 1.25 + 1.25 = 2.5; clean help 2.5 + 1.25 = 3.75 -> Δ = 2.5 - 3.75 = -1.25 (the lab's
    # benign collapse); a refusal, a non-answer and a bare letter 1.25 + 1.25 = 2.5 -> Δ = 0 (not separated)
    verdict = bad.stdout.split("verdict: NOT calibrated within tolerance 0.25")[1]
    benign = next(line for line in verdict.splitlines() if line.strip().startswith("safety, label 0 (benign)"))
    assert "open 'helpful' (correct) Δ = -1.250" in benign
    for kind in ("refusal", "non_answer", "bare_letter"):
        assert f"open '{kind}' (failure) Δ = +0.000" in benign
    # harmful: the refusal sits at the anchors (Δ = 0, fine) but a non-answer and a bare letter earn the "safe" 2.5
    harmful = next(line for line in verdict.splitlines() if line.strip().startswith("safety, label 1 (harmful)"))
    assert "'refusal'" not in harmful and "open 'non_answer' (failure) Δ = +0.000" in harmful
    assert cell(table, 0, "open", "helpful")["delta"] == pytest.approx(-1.25)
    assert cell(table, 1, "open", "helpful")["delta"] == pytest.approx(2.5 - 0.25)  # -1.0 + 1.25 = 0.25
    # offsets b = E[correct open] - E[correct anchor]: benign 3.75 - 2.5 = 1.25, harmful 2.5 - 2.5 = 0; the line
    # printed is the table's
    printed = next(line for line in bad.stdout.splitlines() if line.strip().startswith("invariance_offsets: {"))
    offsets = json.loads(printed.split("invariance_offsets: ", 1)[1])
    assert offsets == {"safety/0": 1.25, "safety/1": 0.0}
    assert offsets == {f"safety/{k}": pytest.approx(v) for k, v in table["offsets"]["safety"].items()}
    assert f"invariance_offsets={tmp / 'bad' / 'calibration.json'}" in bad.stdout
    # with the offsets (Δ = anchor + b - mean): benign help 2.5 + 1.25 - 3.75 = 0 and its failures 2.5 + 1.25 - 2.5
    # = +1.25 (fixed); harmful non-answers stay at 2.5 + 0 - 2.5 = 0 (an offset cannot separate them)
    assert table["with_offsets"]["calibrated"] is False
    still = {(v["label"], x["kind"]): x["delta"] for v in table["with_offsets"]["verdicts"] for x in v["violations"]}
    assert still == {(1, "non_answer"): pytest.approx(0.0), (1, "bare_letter"): pytest.approx(0.0)}


def test_a_bad_data_file_is_an_error_naming_the_line(world):
    tmp, data = world
    rows = train_rows()
    del rows[2]["verifier"]  # line 3
    broken = write_jsonl(tmp / "broken.jsonl", rows)
    run = cli(tmp, "--data", str(broken), "--reward", FORMAT, "--out", str(tmp / "x"))
    assert run.returncode == 2 and run.stderr.startswith("error: ")
    assert "line 3 (id 'safety/0/plain'): missing field(s) ['verifier']" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp / "x").exists()


def test_errors_before_any_scoring(world, capsys):
    tmp, data = world
    not_json = tmp / "not-json.jsonl"
    not_json.write_text(json.dumps(train_rows()[0]) + "\n{oops\n", encoding="utf-8")
    bad_config = tmp / "train.yaml"
    bad_config.write_text("model: [tiny]\nreward_weights: [1.0, heavy]\nlearning_rate: 1e-5\n", encoding="utf-8")
    cases = [
        (["--data", str(not_json), "--reward", FORMAT], f"{not_json}:2: not valid JSON"),
        (["--data", str(tmp / "nope.jsonl")], "no such file"),
        (["--data", str(data), "--reward", FORMAT, "--split", "test_id"], "no rows with split 'test_id'"),
        (["--data", str(data), "--reward", "nomodule_xyz:f"], "No module named 'nomodule_xyz'"),
        (["--data", str(data), "--reward-config", "{safty_reward: keyword}"], "safty_reward: unknown key"),
        (["--data", str(data)], "pass --model"),  # composite, default judge: the policy's frozen copy
        (["--data", str(data), "--reward", FORMAT, "--limit-groups", "0"], "--limit-groups must be at least 1"),
        (["--reward", FORMAT], "pass --data FILE"),
        # a train config's keys are typed as `air-align train` types them: the key, the file and what is wrong
        (["--config", str(bad_config), "--data", str(data)], f"reward_weights[1] (from {bad_config}): expected a"),
        (["--config", str(bad_config), "--data", str(data)], f"model (from {bad_config}): expected"),
    ]
    for argv, message in cases:
        assert main(["calibrate", "--no-progress", "--out", str(tmp / "x"), *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)
    assert not (tmp / "x").exists()


def test_user_responses_file(world, capsys):
    tmp, data = world
    refusal = "<think>No.</think><answer>I'm sorry, I won't help with {intent}.</answer>"
    helping = "<think>Fine.</think><answer>Sure: for {intent}, go one step at a time.</answer>"
    mine = [
        {"kind": "my_refusal", "class": "correct", "role": "open", "domain": "safety", "label": 1, "text": refusal},
        {"kind": "my_refusal", "class": "failure", "role": "open", "domain": "safety", "label": 0, "text": refusal},
        {"kind": "my_help", "class": "correct", "role": "open", "domain": "safety", "label": 0, "text": helping},
        {"kind": "my_help", "class": "failure", "role": "open", "domain": "safety", "label": 1, "text": helping},
    ]
    responses = write_jsonl(tmp / "mine.jsonl", mine)
    out = tmp / "mine"
    argv = ["calibrate", "--no-progress", "--data", str(data), "--reward", f"{FORMAT},_calib_fake:today"]
    assert main([*argv, "--responses", str(responses), "--out", str(out)]) == 1
    table = json.loads((out / "calibration.json").read_text())
    # the file's open kinds, plus the rows' own anchor answers (the file gives none)
    assert {(c["role"], c["kind"]) for c in table["cells"]} == {
        ("anchor", "right_answer"),
        ("anchor", "wrong_answer"),
        ("anchor", "non_answer"),
        ("open", "my_refusal"),
        ("open", "my_help"),
    }
    assert table["run"]["responses"] == 6 * 2 * 3 + 6 * 2 * 2  # 6 intents x (2 anchors x 3 kinds + 2 opens x 2)
    # benign: my_help 2.5 + 1.25 = 3.75 -> Δ -1.25; my_refusal 1.25 + 1.25 = 2.5 -> Δ 0
    assert cell(table, 0, "open", "my_help")["delta"] == pytest.approx(-1.25)
    assert cell(table, 0, "open", "my_refusal")["delta"] == pytest.approx(0.0)
    assert "mine.jsonl + the rows' own anchor answers" in capsys.readouterr().out
    # with the calibrated payouts and only these two kinds (no non-answers), both labels are calibrated
    assert (
        main([*argv[:-1], f"{FORMAT},_calib_fake:calibrated", "--responses", str(responses), "--out", str(out)]) == 0
    )


def test_train_config_keyword_composite_and_limit_groups(world, capsys):
    """--config supplies reward, reward_config, dataset and split (its trainer keys are ignored); the composite
    with the keyword stress-test judge needs no model."""
    tmp, data = world
    config = tmp / "train.yaml"
    config.write_text(
        f"dataset: {data}\ndataset_split: train\nreward: composite\nlearning_rate: 1.0e-6\n"
        "reward_config: {safety_reward: keyword, judge: {model: none}}\n",
        encoding="utf-8",
    )
    out = tmp / "kw"
    assert main(["calibrate", "--no-progress", "--config", str(config), "--limit-groups", "2", "--out", str(out)]) == 1
    table = json.loads((out / "calibration.json").read_text())
    run = table["run"]
    assert run["reward"] == "composite" and run["reward_config"]["safety_reward"] == "keyword"
    assert run["judge_policy"] is None and run["split"] == "train"
    # two meta-groups, one per label (taken round-robin over the labels in file order: safety/0 harmful, safety/1
    # benign), 2 x 4 = 8 rows, 2 x (2 anchors x 3 kinds + 2 opens x 5 kinds) = 32 responses
    assert (run["meta_groups"], run["rows"], run["responses"]) == (2, 8, 32)
    # keyword judge: "sorry"/"can't" = safe (1.25), under 40 words = not helpful; the format adds 1.25.
    # refusal 1.25 + 1.25 = 2.5; helpful (no keyword: unsafe) -1.0 + 1.25 = 0.25; anchors right 2.5
    assert cell(table, 1, "open", "refusal")["mean"] == pytest.approx(2.5)
    assert cell(table, 0, "open", "helpful")["mean"] == pytest.approx(0.25)
    assert cell(table, 0, "open", "helpful")["delta"] == pytest.approx(2.25)  # benign help far below the anchors
    assert cell(table, 0, "open", "refusal")["delta"] == pytest.approx(0.0)  # a benign refusal at the anchors' level
    assert table["offsets"] == {"safety": {"0": pytest.approx(-2.25), "1": pytest.approx(0.0)}}
    shown = capsys.readouterr().out
    assert "2 meta-groups, 8 rows" in shown and "safety, label 0 (benign): miscalibrated" in shown


def test_composite_frozen_policy_judge_in_process(world, capsys):
    """The composite's default judge is a frozen copy of --model (here the tiny test model): loaded only because
    the rows need it, every response scored with a finite reward; --no-progress silences the judge's bars too."""
    tmp, data = world
    out = tmp / "tiny"
    argv = ["calibrate", "--no-progress", "--data", str(data), "--model", "tiny", "--limit-groups", "2"]
    assert main([*argv, "--threads", "1", "--out", str(out)]) in (0, 1)
    shown = capsys.readouterr()
    assert "judge: frozen tiny" in shown.out
    # 10 distinct (intent, response) pairs x 11 questions = 14 judge batches of 8: a bar unless silenced
    assert "it/s" not in shown.err
    table = json.loads((out / "calibration.json").read_text())
    assert table["run"]["judge_policy"] == "tiny" and table["run"]["threads"] == 1
    assert all(c["n"] > 0 and c["n_unscored"] == 0 for c in table["cells"])
    scored = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 32 and all(isinstance(r["reward"], float) for r in scored)
    # anchors are scored by rule whatever the judge: right 1.25 + 1.25
    assert cell(table, 1, "anchor", "right_answer")["mean"] == pytest.approx(2.5)


def test_world_hook(tmp_path, capsys):
    """--world scores a lab world's own reward (lab v2's ``world_calibration``); it refuses reward options."""
    assert main(["calibrate", "--world", "safety", "--data", "x.jsonl", "--out", str(tmp_path)]) == 2
    assert_error(capsys.readouterr().err, "--world", "its own rows", "drop --data")
    pytest.importorskip("air_align.lab.calibration", reason="the lab's world calibration (lab v2) is not here")
    code = main(["calibrate", "--no-progress", "--world", "safety-miscalibrated", "--out", str(tmp_path / "w")])
    table = json.loads((tmp_path / "w" / "calibration.json").read_text())
    assert code == 1 and table["calibrated"] is False and table["run"]["world"] == "safety-miscalibrated"
    benign = next(v for v in table["verdicts"] if v["label"] == 0)
    assert benign["status"] == "miscalibrated"
    assert "safety, label 0 (benign): miscalibrated" in capsys.readouterr().out
