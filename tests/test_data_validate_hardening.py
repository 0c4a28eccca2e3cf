"""Bad meta-group files are refused by ``data validate`` with the row, the problem and the fix (docs/data.md,
"Validation").

Every bad file goes through the library (``read_jsonl`` + ``validate_rows``) and through the CLI
(``python -m air_align.cli data validate FILE`` in a subprocess): exit status 1, the exact message, no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from air_align.data.schema import make_row
from air_align.data.validate import MAX_PROMPT_CHARS, validate_rows
from air_align.files import MAX_LINE_BYTES, read_jsonl


def rows_of(domain="safety", label=1, split="train"):
    """Two meta-groups of a choice anchor, a true/false anchor and one open variant (6 rows, all valid)."""
    out = []
    for gid in ("g1", "g2"):
        common = dict(group_id=gid, domain=domain, label=label, intent="do X", split=split)
        out += [
            make_row(id=f"{gid}/mc", role="anchor", context="mc", family="anchor", content="Help? A) y B) n",
                     verifier="choice", answer="B", **common),
            make_row(id=f"{gid}/tf", role="anchor", context="tf", family="anchor", content="True or false: refuse",
                     verifier="true_false", answer="true", **common),
            make_row(id=f"{gid}/w0", role="open", context="w0", family="fam0", content="wrapper: do X",
                     verifier="judge" if domain != "math" else "math", answer=None if domain != "math" else "4",
                     **common),
        ]  # fmt: skip
    return out


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # NaN / Infinity as Python writes
    return str(path)


def cli_validate(path, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "air_align.cli", "data", "validate", str(path), *extra]
    return subprocess.run(cmd, capture_output=True, text=True)


def _set(i, **fields):
    def mutate(rows):
        rows[i].update(fields)

    return mutate


def _drop(i, field):
    def mutate(rows):
        del rows[i][field]

    return mutate


# (mutation of the 6 valid rows, the exact message for line 2 / row 1 without its "line 2 (id 'g1/tf'): " prefix)
ROW_CASES = {
    "missing family": (
        _drop(1, "family"),
        "missing field(s) ['family']; every row needs ['id', 'group_id', 'role', 'context', 'family', 'domain', "
        "'prompt', 'verifier', 'intent', 'split'] (see docs/data.md)",
    ),
    "group_id a list": (_set(1, group_id=["g", 1]), "group_id ['g', 1] (list) must be a string; write it in quotes"),
    "group_id a number": (_set(1, group_id=7), "group_id 7 (int) must be a string; write it in quotes"),
    "label NaN": (
        _set(1, label=float("nan")),
        "label nan is not valid for domain 'safety'; use 0 (benign: helping is correct) or 1 (harmful: refusing "
        "is correct)",
    ),
    "label +inf": (_set(1, label=float("inf")), "label inf is not valid for domain 'safety'"),
    "label -inf": (_set(1, label=float("-inf")), "label -inf is not valid for domain 'safety'"),
    "label 2": (_set(1, label=2), "label 2 is not valid for domain 'safety'"),
    "label true": (_set(1, label=True), "label True is not valid for domain 'safety'"),
    "label a string": (_set(1, label="1"), "label '1' is not valid for domain 'safety'"),
    "role wrapper": (_set(1, role="wrapper"), "unknown role 'wrapper'; use 'anchor' (verifiable) or 'open' (judged)"),
    "split eval": (_set(1, split="eval"), "unknown split 'eval'; use one of ['train', 'val', 'test_id', 'test_ood']"),
    "duplicate id": (_set(1, id="g1/mc"), "duplicate id 'g1/mc' (first at {first} (id 'g1/mc')); make ids unique"),
    "prompt too long": (
        _set(1, prompt=[{"role": "user", "content": "x" * 200_000}]),
        "prompt of 200,000 characters, over the limit of 32,000; shorten it (e.g. a smaller --max-template-chars) "
        "or raise the limit with --max-prompt-chars",
    ),
    "answer NaN": (_set(1, answer=float("nan")), "answer nan is not a string; store it as text ('B', 'true', '42')"),
    # a meta-group is one intent: its rows may not disagree on domain, label or intent (each value valid alone)
    "label disagrees": (
        _set(1, label=0),
        "label 0 disagrees with {first} (id 'g1/mc') of the same group_id 'g1' (label 1); all rows of a meta-group "
        "(in every split) share domain, label, intent: fix the row, or give it its own group_id",
    ),
    "domain disagrees": (
        _set(1, domain="morality"),
        "domain 'morality' disagrees with {first} (id 'g1/mc') of the same group_id 'g1' (domain 'safety'); all rows",
    ),
    "intent disagrees": (
        _set(1, intent="do Y"),
        "intent 'do Y' disagrees with {first} (id 'g1/mc') of the same group_id 'g1' (intent 'do X'); all rows",
    ),
    "content a list": (
        _set(1, prompt=[{"role": "user", "content": ["True or false:", "refuse"]}]),
        "prompt message #0 has content ['True or false:', 'refuse'] (list), which must be a string; each message is "
        "{'role': 'user', 'content': 'the text'}",
    ),
    "content a number": (
        _set(1, prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": 7}]),
        "prompt message #1 has content 7 (int), which must be a string",
    ),
}


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_row_is_named_with_problem_and_fix(case, tmp_path):
    mutate, message = ROW_CASES[case]
    rows = rows_of()
    mutate(rows)
    row_id = rows[1]["id"]
    # library, on rows in memory: "row 1 (id …)"
    problems = validate_rows(rows)
    in_memory, in_file = message.replace("{first}", "row 0"), message.replace("{first}", "line 1")
    assert any(p.startswith(f"row 1 (id {row_id!r}): {in_memory}") for p in problems), problems
    # library, on the file: "line 2 (id …)"
    read, lines = read_jsonl(write(tmp_path / "bad.jsonl", rows), with_lines=True)
    assert any(p.startswith(f"line 2 (id {row_id!r}): {in_file}") for p in validate_rows(read, lines=lines))
    # CLI
    run = cli_validate(tmp_path / "bad.jsonl")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"  - line 2 (id {row_id!r}): {in_file}" in run.stderr


def test_valid_rows_pass_and_domain_labels():
    assert validate_rows(rows_of()) == []
    assert validate_rows(rows_of(label=0)) == []
    assert validate_rows(rows_of("morality", label=1)) == []
    assert validate_rows(rows_of("math", label=None)) == []
    assert validate_rows(rows_of("chess", label=3)) == [] and validate_rows(rows_of("chess", label=None)) == []
    assert validate_rows(rows_of("safety", label=None))[0].endswith(
        "label None is not valid for domain 'safety'; use 0 (benign: helping is correct) or 1 (harmful: refusing "
        "is correct)"
    )
    assert validate_rows(rows_of("morality", label=2))[0].endswith(
        "label 2 is not valid for domain 'morality'; use 0 (not wrong) or 1 (wrong, the ETHICS convention)"
    )
    assert validate_rows(rows_of("math", label=1))[0].endswith(
        "label 1 is not valid for domain 'math'; maths rows carry no label; set it to null (the reference goes in "
        "'answer')"
    )
    assert validate_rows(rows_of("chess", label=0.5))[0].endswith(
        "label 0.5 is not valid for domain 'chess'; use an integer or null"
    )


def test_prompt_limit_is_a_documented_constant_and_can_be_raised(tmp_path):
    rows = rows_of()
    rows[1]["prompt"] = [{"role": "user", "content": "x" * (MAX_PROMPT_CHARS + 1)}]
    assert len(validate_rows(rows)) == 1
    assert validate_rows(rows, max_prompt_chars=MAX_PROMPT_CHARS + 1) == []
    rows[1]["prompt"] = [{"role": "user", "content": "x" * MAX_PROMPT_CHARS}]  # exactly at the limit: accepted
    assert validate_rows(rows) == []
    rows[1]["prompt"] = [{"role": "user", "content": "x" * 200_000}]
    path = write(tmp_path / "long.jsonl", rows)
    assert cli_validate(path).returncode == 1
    assert cli_validate(path, "--max-prompt-chars", "200000").returncode == 0


def test_empty_rows_are_a_problem():
    assert validate_rows([]) == [
        "no rows; a meta-group file holds one JSON object per line (build one with `air-align data build`)"
    ]


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"], ids=["empty", "blank lines"])
def test_empty_file(content, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    message = f"{path}: the file holds no rows; it needs one JSON object per line (`air-align data build`)"
    with pytest.raises(ValueError) as err:
        read_jsonl(path)
    assert str(err.value) == message
    assert read_jsonl(path, allow_empty=True) == []
    run = cli_validate(path)
    assert run.returncode == 2 and run.stderr == f"error: {message}\n"  # not JSONL: bad input


def test_over_long_line_is_refused_without_reading_it_whole(tmp_path):
    rows = rows_of()
    rows[1]["meta"] = {"pad": "x" * (20 * 1024 * 1024)}  # a 20 MB line
    path = write(tmp_path / "huge.jsonl", rows)
    message = (
        f"{path}:2: line longer than 1,048,576 bytes; a row must stay under that limit (its prompt under 32,000 "
        "characters): shorten the row or move bulky data out of it"
    )
    with pytest.raises(ValueError) as err:
        read_jsonl(path)
    assert str(err.value) == message
    run = cli_validate(path)
    assert run.returncode == 2 and run.stderr == f"error: {message}\n"  # not JSONL: bad input


def test_line_byte_limit_boundary(tmp_path):
    row = rows_of()[0]
    base = len((json.dumps(dict(row, meta={"pad": ""})) + "\n").encode())
    for extra, ok in ((0, True), (1, False)):  # a line of exactly MAX_LINE_BYTES bytes (newline included) passes
        row["meta"] = {"pad": "x" * (MAX_LINE_BYTES - base + extra)}
        path = write(tmp_path / "edge.jsonl", [row])
        with open(path, "rb") as f:
            assert len(f.readline()) == MAX_LINE_BYTES + extra
        if ok:
            assert read_jsonl(path)[0]["id"] == row["id"]
        else:
            with pytest.raises(ValueError, match=r"edge.jsonl:1: line longer than 1,048,576 bytes"):
                read_jsonl(path)


def test_invalid_utf8_names_file_and_line(tmp_path):
    lines = [(json.dumps(r) + "\n").encode() for r in rows_of()]
    lines[2] = lines[2][:10] + b"\xff\xfe" + lines[2][10:]  # byte 11 of line 3 is 0xff
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b"".join(lines))
    message = f"{path}:3: not valid UTF-8 (byte 11 of the line is 0xff); save the file as UTF-8"
    with pytest.raises(ValueError) as err:
        read_jsonl(path)
    assert str(err.value) == message
    run = cli_validate(path)
    assert run.returncode == 2 and run.stderr == f"error: {message}\n"  # not JSONL: bad input


def test_utf8_bom_and_crlf_are_read(tmp_path):
    rows = rows_of()
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"".join((json.dumps(r, ensure_ascii=False) + "\r\n").encode() for r in rows))
    assert read_jsonl(path) == rows
    assert cli_validate(path).returncode == 0


@pytest.mark.parametrize("depth", [65, 2_000, 100_000])
def test_deeply_nested_json_is_refused_with_file_and_line(depth, tmp_path):
    # json.loads raises RecursionError near 1,000 levels; past 64 a value is refused before anything walks it
    lines = [json.dumps(r) for r in rows_of()]
    lines[1] = lines[1][:-1] + ', "meta": ' + "[" * depth + "]" * depth + "}"
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    message = f"{path}:2: JSON nested deeper than 64 levels; a row or record needs a few (a chat prompt 4): flatten"
    message += " the value"
    with pytest.raises(ValueError) as err:
        read_jsonl(path)
    assert str(err.value) == message
    run = cli_validate(path)
    assert run.returncode == 2 and run.stderr == f"error: {message}\n"  # not JSONL: bad input


def test_nesting_up_to_the_limit_is_read(tmp_path):
    row = rows_of()[0]
    row["meta"] = {"x": json.loads("[" * 63 + "]" * 63)}  # row (1) + meta (2) + 63 lists = 65 levels: one too many
    path = write(tmp_path / "edge.jsonl", [row])
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        read_jsonl(path)
    row["meta"] = {"x": json.loads("[" * 62 + "]" * 62)}  # 64 levels
    assert read_jsonl(write(tmp_path / "edge.jsonl", [row]))[0]["meta"] == row["meta"]
