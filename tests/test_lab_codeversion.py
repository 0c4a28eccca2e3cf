"""Recorded code: a lab run's resume key carries the hash of the package's source tree, so a run finished by other
code is not reused; the hash follows the code and nothing else."""

from __future__ import annotations

from air_align.files import write_json
from air_align.lab.codeversion import code_version, tree_hash
from air_align.lab.runner import load_finished, run_dir
from air_align.lab.runs import RunSpec


def _run(tmp_path) -> RunSpec:
    return RunSpec(world="safety", method="grpo", lam=0.0, seed=0, warm_start=str(tmp_path / "warmstart-x"))


def test_a_run_recorded_with_other_code_is_not_reused(tmp_path):
    run = _run(tmp_path)
    record = {"method": "grpo", "seed": 0, "code": code_version()}
    key = run.key()
    assert key["code"] == code_version()["hash"] and len(key["code"]) == 64
    write_json(run_dir(tmp_path, run) / "result.json", {"key": key, "record": record})
    assert load_finished(tmp_path, run) == record  # same spec, same code: reused
    other = {**key, "code": "0" * 64}
    write_json(run_dir(tmp_path, run) / "result.json", {"key": other, "record": record})
    assert load_finished(tmp_path, run) is None  # same spec, other code: trained again
    before = {k: v for k, v in key.items() if k != "code"}
    write_json(run_dir(tmp_path, run) / "result.json", {"key": before, "record": record})
    assert load_finished(tmp_path, run) is None  # recorded before code hashes: trained again


def test_the_tree_hash_follows_code_and_data_files_only(tmp_path):
    (tmp_path / "pkg" / "worlds").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "pkg" / "worlds" / "w.yaml").write_text("name: w\n")
    first = tree_hash(tmp_path / "pkg")
    (tmp_path / "pkg" / "notes.md").write_text("docs do not change what runs\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.py").write_text("stale\n")
    assert tree_hash(tmp_path / "pkg") == first
    (tmp_path / "pkg" / "worlds" / "w.yaml").write_text("name: v\n")
    second = tree_hash(tmp_path / "pkg")
    assert second != first  # a world spec is code
    (tmp_path / "pkg" / "a.py").rename(tmp_path / "pkg" / "b.py")
    assert tree_hash(tmp_path / "pkg") not in (first, second)  # so is a file's name


def test_the_unit_of_a_run_is_its_world_and_warm_start(tmp_path):
    unit = _run(tmp_path).unit()
    assert unit == {"world": "safety", "world_seed": 0, "warm_start": "warmstart-x"}
