"""Bad meta-group files are refused by ``data validate`` with the row, the problem and the fix (docs/data.md,
"Validation").

Every bad file goes through the library (``read_jsonl`` + ``validate_rows``) and through the CLI
(``python -m air_align.cli data validate FILE`` in a subprocess): exit status 1, the message's key facts, no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _messages import assert_error, assert_facts, raises_with
from _rows import meta_group

from air_align.data.validate import MAX_PROMPT_CHARS, validate_rows
from air_align.files import MAX_LINE_BYTES, read_jsonl


def rows_of(domain="safety", label=1, split="train"):
    """Two meta-groups of a choice anchor, a true/false anchor and one open variant (6 rows, all valid)."""
    return [
        row
        for gid in ("g1", "g2")
        for row in meta_group(gid, domain=domain, label=label, split=split, open_content="wrapper: do X")
    ]


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


# (mutation of the 6 valid rows, the key facts of the problem reported for line 2 / row 1: the field and its bad
# value, and the fix; "{first}" stands for where the row it clashes with is, "row 0" in memory or "line 1" in a file)
ROW_CASES = {
    "missing family": (_drop(1, "family"), ("missing field(s) ['family']", "every row needs", "docs/data.md")),
    "group_id a list": (_set(1, group_id=["g", 1]), ("group_id ['g', 1] (list)", "must be a string", "in quotes")),
    "group_id a number": (_set(1, group_id=7), ("group_id 7 (int)", "must be a string", "in quotes")),
    "label NaN": (
        _set(1, label=float("nan")),
        ("label nan", "domain 'safety'", "use 0 (benign", "1 (harmful"),
    ),
    "label +inf": (_set(1, label=float("inf")), ("label inf", "domain 'safety'", "use 0")),
    "label -inf": (_set(1, label=float("-inf")), ("label -inf", "domain 'safety'", "use 0")),
    "label 2": (_set(1, label=2), ("label 2", "domain 'safety'", "use 0")),
    "label true": (_set(1, label=True), ("label True", "domain 'safety'", "use 0")),
    "label a string": (_set(1, label="1"), ("label '1'", "domain 'safety'", "use 0")),
    "role wrapper": (_set(1, role="wrapper"), ("role 'wrapper'", "use 'anchor'", "'open'")),
    "split eval": (_set(1, split="eval"), ("split 'eval'", "['train', 'val', 'test_id', 'test_ood']")),
    "duplicate id": (_set(1, id="g1/mc"), ("duplicate id 'g1/mc'", "{first} (id 'g1/mc')", "make ids unique")),
    "prompt too long": (
        _set(1, prompt=[{"role": "user", "content": "x" * 200_000}]),
        ("prompt of 200,000 characters", "limit of 32,000", "--max-template-chars", "--max-prompt-chars"),
    ),
    "answer NaN": (_set(1, answer=float("nan")), ("answer nan", "not a string", "store it as text")),
    # a meta-group is one intent: its rows may not disagree on domain, label or intent (each value valid alone)
    "label disagrees": (
        _set(1, label=0),
        ("label 0", "{first} (id 'g1/mc')", "group_id 'g1' (label 1)", "fix the row", "its own group_id"),
    ),
    "domain disagrees": (
        _set(1, domain="morality"),
        ("domain 'morality'", "{first} (id 'g1/mc')", "group_id 'g1' (domain 'safety')", "its own group_id"),
    ),
    "intent disagrees": (
        _set(1, intent="do Y"),
        ("intent 'do Y'", "{first} (id 'g1/mc')", "group_id 'g1' (intent 'do X')", "its own group_id"),
    ),
    "content a list": (
        _set(1, prompt=[{"role": "user", "content": ["True or false:", "refuse"]}]),
        ("message #0", "['True or false:', 'refuse'] (list)", "must be a string", "'content': 'the text'"),
    ),
    "content a number": (
        _set(1, prompt=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": 7}]),
        ("message #1", "content 7 (int)", "must be a string"),
    ),
}


def assert_problem(problems, where: str, facts) -> None:
    """One of ``problems`` starts with ``where`` (e.g. ``line 2 (id 'g1/tf'): ``) and carries every fact (a row can
    have several problems: a NaN answer is both not a string and not 'true' or 'false')."""
    at = [p for p in problems if p.startswith(where)]
    assert any(all(fact in p for fact in facts) for p in at), (where, facts, problems)


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_bad_row_is_named_with_problem_and_fix(case, tmp_path):
    mutate, facts = ROW_CASES[case]
    rows = rows_of()
    mutate(rows)
    row_id = rows[1]["id"]
    in_memory = [fact.replace("{first}", "row 0") for fact in facts]
    in_file = [fact.replace("{first}", "line 1") for fact in facts]
    # library, on rows in memory: "row 1 (id …)"
    assert_problem(validate_rows(rows), f"row 1 (id {row_id!r}): ", in_memory)
    # library, on the file: "line 2 (id …)"
    read, lines = read_jsonl(write(tmp_path / "bad.jsonl", rows), with_lines=True)
    assert_problem(validate_rows(read, lines=lines), f"line 2 (id {row_id!r}): ", in_file)
    # CLI: one problem a line, under the file's header
    run = cli_validate(tmp_path / "bad.jsonl")
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert_problem(run.stderr.splitlines(), f"  - line 2 (id {row_id!r}): ", in_file)


def test_valid_rows_pass_and_domain_labels():
    assert validate_rows(rows_of()) == []
    assert validate_rows(rows_of(label=0)) == []
    assert validate_rows(rows_of("morality", label=1)) == []
    assert validate_rows(rows_of("math", label=None)) == []
    assert validate_rows(rows_of("chess", label=3)) == [] and validate_rows(rows_of("chess", label=None)) == []
    # each domain's own labels, named in the fix
    safety = ("label None", "domain 'safety'", "use 0 (benign", "1 (harmful")
    assert_facts(validate_rows(rows_of("safety", label=None))[0], *safety)
    morality = ("label 2", "domain 'morality'", "use 0 (not wrong)", "1 (wrong")
    assert_facts(validate_rows(rows_of("morality", label=2))[0], *morality)
    assert_facts(validate_rows(rows_of("math", label=1))[0], "label 1", "domain 'math'", "set it to null")
    assert_facts(validate_rows(rows_of("chess", label=0.5))[0], "label 0.5", "domain 'chess'", "an integer or null")


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
    [problem] = validate_rows([])
    assert_facts(problem, "no rows", "one JSON object per line", "`air-align data build`")


@pytest.mark.parametrize("content", [b"", b"\n  \n\n"], ids=["empty", "blank lines"])
def test_empty_file(content, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    facts = (f"{path}: ", "no rows", "one JSON object per line", "`air-align data build`")  # the file and the fix
    with raises_with(ValueError, *facts):
        read_jsonl(path)
    assert read_jsonl(path, allow_empty=True) == []
    run = cli_validate(path)
    assert run.returncode == 2  # not JSONL: bad input
    assert_error(run.stderr, *facts)


def test_over_long_line_is_refused_without_reading_it_whole(tmp_path):
    rows = rows_of()
    rows[1]["meta"] = {"pad": "x" * (20 * 1024 * 1024)}  # a 20 MB line
    path = write(tmp_path / "huge.jsonl", rows)
    facts = (f"{path}:2: ", "longer than 1,048,576 bytes", "shorten the row", "move bulky data out")
    with raises_with(ValueError, *facts):
        read_jsonl(path)
    run = cli_validate(path)
    assert run.returncode == 2  # not JSONL: bad input
    assert_error(run.stderr, *facts)


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
    facts = (f"{path}:3: ", "not valid UTF-8", "byte 11", "0xff", "save the file as UTF-8")
    with raises_with(ValueError, *facts):
        read_jsonl(path)
    run = cli_validate(path)
    assert run.returncode == 2  # not JSONL: bad input
    assert_error(run.stderr, *facts)


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
    facts = (f"{path}:2: ", "nested deeper than 64 levels", "flatten")
    with raises_with(ValueError, *facts):
        read_jsonl(path)
    run = cli_validate(path)
    assert run.returncode == 2  # not JSONL: bad input
    assert_error(run.stderr, *facts)


def test_nesting_up_to_the_limit_is_read(tmp_path):
    row = rows_of()[0]
    row["meta"] = {"x": json.loads("[" * 63 + "]" * 63)}  # row (1) + meta (2) + 63 lists = 65 levels: one too many
    path = write(tmp_path / "edge.jsonl", [row])
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        read_jsonl(path)
    row["meta"] = {"x": json.loads("[" * 62 + "]" * 62)}  # 64 levels
    assert read_jsonl(write(tmp_path / "edge.jsonl", [row]))[0]["meta"] == row["meta"]
