"""Schema round-trips (JSONL, datasets.Dataset, external files) and every validation error."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from _rows import meta_group

from air_align.data.external import load_intents, load_rows
from air_align.data.schema import from_dataset, to_dataset
from air_align.data.validate import ValidationError, check_rows, summarize, validate_rows
from air_align.files import read_jsonl, write_jsonl


def group(gid="g1", split="train", n_open=2, label=1):
    """One meta-group: a choice anchor, a true/false anchor and ``n_open`` open variants."""
    return meta_group(
        gid, split=split, n_open=n_open, label=label, id_prefix=f"{gid}/{split}", choice_meta={"seed": 3}
    )


def valid_rows():
    return group("g1") + group("g2", "val") + group("g3", "test_id") + group("g3", "test_ood")


def test_valid_rows_have_no_problems():
    assert validate_rows(valid_rows(), require_equal_group_size=True) == []
    check_rows(valid_rows(), require_equal_group_size=True)  # does not raise


def test_jsonl_round_trip(tmp_path):
    rows = valid_rows()
    path = write_jsonl(tmp_path / "sub" / "rows.jsonl", rows)
    assert read_jsonl(path) == rows
    back, lines = read_jsonl(path, with_lines=True)
    assert lines == list(range(1, len(rows) + 1))
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["rows.jsonl"]  # the atomic write left no temporary


def test_dataset_round_trip():
    rows = valid_rows()
    ds = to_dataset(rows)
    assert ds.column_names[:3] == ["id", "group_id", "role"]
    assert isinstance(ds[0]["meta"], str)  # Arrow holds meta as JSON
    assert from_dataset(ds) == rows


def test_read_jsonl_names_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a"}\n\n{not json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: not valid JSON"):
        read_jsonl(path)


def test_load_rows_local_csv_with_column_map(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("uid,gid,kind,text,ans\nq1,g,anchor,True or false: 1=1,true\n")
    rows = load_rows(path, {"uid": "id", "gid": "group_id", "kind": "role", "text": "prompt", "ans": "answer"})
    assert rows[0]["id"] == "q1" and rows[0]["role"] == "anchor" and rows[0]["answer"] == "true"
    assert rows[0]["prompt"] == [{"role": "user", "content": "True or false: 1=1"}]
    assert rows[0]["label"] is None and rows[0]["meta"] == {}
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\]"):
        load_rows(path, {"nope": "id"})


def test_load_intents_local_jsonl(tmp_path):
    path = tmp_path / "intents.jsonl"
    path.write_text(json.dumps({"goal": "make tea", "harm": 0}) + "\n" + json.dumps({"goal": "x", "harm": 1}) + "\n")
    intents = load_intents(path, {"goal": "text", "harm": "label"})
    assert [(x["id"], x["text"], x["label"]) for x in intents] == [("00000", "make tea", 0), ("00001", "x", 1)]


def _mutate(fn):
    rows = copy.deepcopy(valid_rows())
    fn(rows)
    return validate_rows(rows, require_equal_group_size=True)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: [r.pop(0), r.pop(0)], "meta-group 'g1' (split train) has no anchor"),
        (lambda r: r[0].update(answer=None), "row 0 (id 'g1/train/mc'): anchor without its answer"),
        (lambda r: r[1].update(answer="yes"), "row 1 (id 'g1/train/tf'): true/false answer 'yes'"),
        (lambda r: r[0].update(answer="b"), "choice answer 'b' is not one capital letter"),
        (lambda r: r[0].update(verifier="judge"), "anchor with verifier 'judge'"),
        (lambda r: r[2].update(role="wrapper"), "row 2 (id 'g1/train/w0'): unknown role 'wrapper'"),
        (lambda r: r[2].update(split="test"), "unknown split 'test'"),
        (lambda r: r[2].update(verifier="regex"), "unknown verifier 'regex'"),
        (
            lambda r: r[3].update(id="g1/train/w0"),
            "row 3 (id 'g1/train/w0'): duplicate id 'g1/train/w0' (first at row 2",
        ),
        (lambda r: r[2].update(prompt=[{"role": "user", "content": "  "}]), "row 2 (id 'g1/train/w0'): empty prompt"),
        (lambda r: r[2].update(prompt=[]), "empty prompt"),
        (lambda r: r[2].update(meta={"template_text": "Hello there"}), "template 'w0' has no prompt slot"),
        (lambda r: r[2].update(verifier="math"), "math row without a reference answer"),
        (lambda r: r[2].pop("family"), "row 2 (id 'g1/train/w0'): missing field(s) ['family']"),
        (lambda r: r.append(r[4] | {"id": "extra", "split": "train", "group_id": "g2"}), "intent 'g2' is in several"),
        (lambda r: r.append(r[2] | {"id": "extra"}), "meta-groups of unequal size {4: 3, 5: 1}"),
    ],
)
def test_each_validation_error_is_named(mutate, expected):
    problems = _mutate(mutate)
    assert any(expected in p for p in problems), problems


def test_equal_size_only_when_required():
    rows = valid_rows() + [valid_rows()[2] | {"id": "extra"}]
    assert validate_rows(rows) == []
    assert len(validate_rows(rows, require_equal_group_size=True)) == 1


def test_test_id_and_test_ood_may_share_an_intent():
    # g3 is in test_id and test_ood: one intent, one "test" split class, no problem
    assert not any("several splits" in p for p in validate_rows(valid_rows()))


def test_check_rows_raises_with_every_problem():
    rows = valid_rows()
    rows[0]["answer"] = None
    rows[2]["role"] = "x"
    with pytest.raises(ValidationError) as info:
        check_rows(rows)
    assert len(info.value.problems) == 2 and "2 problem(s)" in str(info.value)


def test_summary_counts():
    s = summarize(valid_rows())
    # 4 meta-groups (g1 train, g2 val, g3 test_id, g3 test_ood) of 2 anchors + 2 opens; 3 intents
    assert s["rows"] == 16 and s["intents"] == 3
    assert s["groups"] == {"train": 1, "val": 1, "test_id": 1, "test_ood": 1}
    assert s["anchors_per_group"] == {2: 4} and s["opens_per_group"] == {2: 4}
    assert s["families"]["train"] == ["fam0", "fam1"]


def test_cli_validate_exit_codes(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    write_jsonl(good, valid_rows())
    rows = valid_rows()
    rows[5]["answer"] = None  # g2/val/tf, written on line 6
    write_jsonl(bad, rows)
    cmd = [sys.executable, "-m", "air_align.cli", "data", "validate"]
    ok = subprocess.run([*cmd, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "meta-groups per split: train 1, val 1, test_id 1, test_ood 1" in ok.stdout
    fail = subprocess.run([*cmd, str(bad)], capture_output=True, text=True)
    assert fail.returncode == 1
    assert "line 6 (id 'g2/val/tf'): anchor without its answer" in fail.stderr
