"""Every YAML air-align reads from a user goes through ``air_align.safe_yaml``: aliases, deep nesting and oversized
files are refused with an ``error:`` line naming the file, in bounded memory and time.

The bomb is the classic one: ten levels of ten aliases, under 600 bytes on disk, 10^10 strings to anything that
walks it (PyYAML's ``safe_load`` builds it with shared references, and the first ``repr`` in an error message, or
TRL's handling of ``report_to``, expands it). The CLI runs are in a subprocess whose address space is capped
(``tests/_bounded_cli.py``) and whose time is bounded by a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _messages import assert_error, assert_facts

from air_align.safe_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH, YAMLInputError, brief, load_yaml, read_yaml

ROOT = Path(__file__).resolve().parents[1]
ALIAS = ("an alias (*", "not allowed", "write the value out in full")  # an alias's message: what, and the fix
DEEP = (f"nested more than {MAX_YAML_DEPTH}", "flatten the document")  # a deep document's


def bomb_list(levels: int = 10, width: int = 10) -> str:
    """``[&a0 ["lol", …], &a1 [*a0, …], …]`` in flow style: ``width ** levels`` strings once expanded."""
    items = ["&a0 [" + ", ".join(['"lol"'] * width) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def bomb_mapping(levels: int = 10, width: int = 10) -> str:
    """The same bomb as a mapping ``{a0: &a0 [...], a1: &a1 [*a0, ...], ...}``."""
    items = ["a0: &a0 [" + ", ".join(['"lol"'] * width) + "]"]
    items += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "{" + ", ".join(items) + "}"


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- the loader ------------------------------------------------------------------------------------------------------


def test_the_bomb_is_small_and_safe_load_would_build_it():
    assert len(bomb_list()) < 600
    small = yaml.safe_load(bomb_list(levels=3, width=3))  # what PyYAML alone does: shared references, expanded 3^3
    assert small[2][0] is small[2][1] is small[1] and json.dumps(small[2]).count("lol") == 3 * 3 * 3


@pytest.mark.parametrize("text", [bomb_list(), bomb_mapping(), "a: &x {b: 1}\nc:\n  <<: *x\n", "a: &x 1\nb: *x\n"])
def test_aliases_are_refused_with_the_line(text):
    with pytest.raises(YAMLInputError) as err:
        load_yaml(text, "bomb.yaml")
    message = str(err.value)
    assert message.startswith("bomb.yaml: ") and "not usable YAML" in message, message  # the source first
    assert_facts(message, *ALIAS)
    assert "(line " in message and len(message) < 300


def test_anchors_without_aliases_load():
    assert load_yaml("a: &x [1, 2]\nb: 3", "x.yaml") == {"a": [1, 2], "b": 3}


def test_nesting_is_capped_at_max_depth_quickly():
    assert load_yaml(deep(MAX_YAML_DEPTH), "x.yaml") == json.loads(deep(MAX_YAML_DEPTH))  # 64 lists: fine
    block = "".join("  " * i + "- \n" for i in range(MAX_YAML_DEPTH + 1))  # block style, 65 deep
    for text in (deep(MAX_YAML_DEPTH + 1), deep(100_000), block, "{a: " * 100_000):
        start = time.perf_counter()
        with pytest.raises(YAMLInputError, match=rf"^x\.yaml: .*nested more than {MAX_YAML_DEPTH} .*flatten"):
            load_yaml(text, "x.yaml")
        assert time.perf_counter() - start < 5  # refused when met, not after parsing 100,000 levels


def test_syntax_errors_name_the_source_the_line_and_the_hint():
    with pytest.raises(YAMLInputError) as err:
        load_yaml("- a\n- [b\n", "t.yaml", hint="templates are a list")
    message = str(err.value)  # the source, what the parser said and where, and the caller's hint
    assert message.startswith("t.yaml: ") and message.endswith("templates are a list"), message
    assert_facts(message, "not valid YAML", "did not find expected ',' or ']'", "(line 3, column 1)")


def test_files_over_the_size_cap_and_not_utf8_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * MAX_YAML_BYTES + b"\n")
    with pytest.raises(YAMLInputError, match=rf"^{big}: more than {MAX_YAML_BYTES:,} bytes of YAML"):
        read_yaml(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("a: caf\xe9".encode("latin-1"))
    with pytest.raises(YAMLInputError, match=rf"^{latin}: .*not UTF-8.*byte 6.*save it as UTF-8"):
        read_yaml(latin)


def test_shipped_configs_and_worlds_load_as_with_safe_load():
    files = sorted((ROOT / "configs").glob("*.yaml")) + sorted((ROOT / "air_align/lab/worlds").glob("*.yaml"))
    assert len(files) >= 5
    for path in files:
        assert read_yaml(path) == yaml.safe_load(path.read_text()), path


def test_brief_is_bounded_on_a_value_of_ten_billion_strings():
    level = ["lol"] * 10
    for _ in range(9):
        level = [level] * 10  # shared references, as PyYAML builds an alias bomb: 10^10 strings if walked
    start = time.perf_counter()
    shown = brief({"report_to": level})
    assert time.perf_counter() - start < 1 and len(shown) < 200, shown
    assert (
        shown
        == "{'report_to': [[[...], [...], [...], [...], ...], " + "[[...], [...], [...], [...], ...], " * 3 + "...]}"
    )


# --- the commands ----------------------------------------------------------------------------------------------------


def run_bounded(commands: list[list[str]], extra_mib: int = 1024, timeout: int = 300) -> list[dict]:
    """The commands run by ``tests/_bounded_cli.py`` with 1 GiB of address space beyond the imports."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/_bounded_cli.py"), str(extra_mib), json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_command_refuses_yaml_bombs_deep_yaml_and_syntax_errors_in_bounded_memory(tmp_path):
    files = {
        "templates.yaml": bomb_list(),
        "world.yaml": f"name: bomb\nkind: safety\nintents: {bomb_list()}\n",
        "world_deep.yaml": f"name: deep\nkind: safety\nintents: {deep(100_000)}\n",
        "report_to.yaml": f"model: tiny\ndataset: toy\nreward: toy\nreport_to: {bomb_list()}\n",
        "reward_config.yaml": f"model: tiny\ndataset: toy\nreward: composite\nreward_config: {bomb_mapping()}\n",
        "model_init_kwargs.yaml": f"model: tiny\ndataset: toy\nreward: toy\nmodel_init_kwargs: {bomb_mapping()}\n",
        "config_deep.yaml": f"model: tiny\nreport_to: {deep(100)}\n",  # 100,000 deep: as world_deep.yaml
        "templates_syntax.yaml": "- name: a\n  family: f\n  template: [oops\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    commands = {
        "templates.yaml": ["data", "build", "--domain", "safety", "--templates", "{f}", "--out", f"{out}/d.jsonl"],
        "world.yaml": ["calibrate", "--world", "{f}"],
        "world_deep.yaml": ["reproduce", "--world", "{f}", "--out", str(out)],
        "report_to.yaml": ["train", "--config", "{f}", f"output_dir={out}"],
        "reward_config.yaml": ["train", "--config", "{f}", f"output_dir={out}"],
        "model_init_kwargs.yaml": ["train", "--config", "{f}", f"output_dir={out}"],
        "config_deep.yaml": ["train", "--config", "{f}", f"output_dir={out}"],
        "templates_syntax.yaml": ["data", "build", "--domain", "safety", "--templates", "{f}", "--out", str(out)],
    }
    commands["world.yaml (reproduce)"] = ["reproduce", "--world", "{f}", "--out", str(out)]
    argvs = [[a.replace("{f}", str(tmp_path / name.split(" ")[0])) for a in argv] for name, argv in commands.items()]
    results = run_bounded(argvs)
    expected = {  # after the file: where in it, what is wrong, and the fix
        "templates.yaml": ("(line 1, column 83)", *ALIAS),
        "world.yaml": ("(line 3, column 92)", *ALIAS),
        "world_deep.yaml": ("(line 3, column 1009)", *DEEP),  # where libyaml stops: 1000 levels
        "report_to.yaml": ("(line 4, column 94)", *ALIAS),
        "reward_config.yaml": ("(line 4, column 106)", *ALIAS),
        "model_init_kwargs.yaml": ("(line 4, column 110)", *ALIAS),
        "config_deep.yaml": ("(line 2, column 75)", *DEEP),
        "templates_syntax.yaml": ("(line 4, column 1)", "not valid YAML", "a list of {name, family, template}"),
        "world.yaml (reproduce)": ("(line 3, column 92)", *ALIAS),
    }
    for name, result in zip(commands, results, strict=True):
        assert result["rc"] == 2, (name, result)
        assert_error(result["stderr"], f"{tmp_path / name.split(' ')[0]}: ", *expected[name])
    assert not out.exists()  # nothing written
