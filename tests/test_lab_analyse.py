"""A lab grid is recomputable from its committed files: per-prompt outcomes round-trip, ``air-align lab analyse``
rebuilds the committed small grid's table exactly, and refuses outcomes that disagree with results.json."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from _messages import assert_error

from air_align.cli import main
from air_align.lab import outcomes
from air_align.lab.analyse import analyse, check, load_results
from air_align.lab.analysis import split_summary

GRID = Path(__file__).parent / "data" / "lab-grid-smoke"
"""``air-align reproduce --preset smoke --seeds 3 --out DIR``: results.json, outcomes.json.gz and table.md."""


def _records():
    base = {"domain": "safety", "split": "test_ood", "family": "poem"}
    return [
        {
            **base,
            "id": "a0",
            "group_id": "g0",
            "role": "anchor",
            "label": 1,
            "correct": True,
            "hack": None,
            "formatted": True,
            "refused": True,
        },
        {
            **base,
            "id": "o0",
            "group_id": "g0",
            "role": "open",
            "label": 1,
            "correct": False,
            "hack": True,
            "formatted": True,
            "refused": False,
        },
        {
            **base,
            "id": "o1",
            "group_id": "g1",
            "role": "open",
            "label": 0,
            "correct": True,
            "hack": False,
            "formatted": False,
            "refused": None,
        },
        {
            **base,
            "id": "o2",
            "group_id": "g0",
            "role": "open",
            "label": 1,
            "correct": None,
            "hack": False,
            "formatted": True,
            "refused": False,
        },
        {
            **base,
            "id": "o3",
            "group_id": "g2",
            "role": "open",
            "label": 1,
            "correct": True,
            "hack": False,
            "formatted": True,
            "refused": True,
        },
    ]


def test_outcomes_round_trip_every_field_the_metrics_read(tmp_path):
    recs = _records()
    flipped = [{**r, "correct": not r["correct"] if r["correct"] is not None else None} for r in recs]
    runs = [
        {
            "tag": "main",
            "cell": "safety/hack",
            "method": m,
            "lambda": 0.1,
            "seed": 0,
            "unit": None,
            "records": {"test_ood": rs},
        }
        for m, rs in (("grpo", recs), ("grpo+air", flipped))
    ]
    coded = outcomes.encode(runs)
    assert len(coded["prompts"]) == 1  # both runs scored the same prompts: one shared list
    assert coded["runs"][0]["splits"]["test_ood"]["correct"] == "101-1"
    assert coded["runs"][1]["splits"]["test_ood"]["correct"] == "010-0"
    assert coded["runs"][0]["splits"]["test_ood"]["hack"] == "-1000"
    path = outcomes.write(tmp_path / "o.json.gz", runs)
    back = outcomes.read(path)
    for run, again in zip(runs, back, strict=True):
        assert again["method"] == run["method"] and again["records"]["test_ood"] == run["records"]["test_ood"]
        assert split_summary(again["records"]["test_ood"], "test_ood") == split_summary(
            run["records"]["test_ood"], "test_ood"
        )
    first = path.read_bytes()
    assert outcomes.write(tmp_path / "o.json.gz", runs).read_bytes() == first  # same runs, same bytes


def test_the_committed_small_grid_rebuilds_its_table_exactly(tmp_path):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    diff = check(grid)
    assert diff == [], (
        "the committed grid's table does not rebuild; if the table's format changed on purpose, rebuild it with "
        "`air-align lab analyse tests/data/lab-grid-smoke && rm tests/data/lab-grid-smoke/*.png`:\n" + "\n".join(diff)
    )
    rebuilt = analyse(grid, tmp_path / "out")
    assert (tmp_path / "out" / "table.md").read_text(encoding="utf-8") == (GRID / "table.md").read_text("utf-8")
    saved = json.loads((GRID / "results.json").read_text(encoding="utf-8"))
    assert rebuilt["comparisons"]["safety/hack"]["grpo+air"]["test_ood"]["balanced_acc_group"]["n_seeds"] == 3
    assert len(saved["code_hashes"]) == 1  # one grid, one code version
    for path in GRID.iterdir():  # compact: no committed grid file over 1 MiB
        assert path.stat().st_size < 1 << 20, path
    assert main(["lab", "analyse", str(grid), "--check"]) == 0


def test_outcomes_that_disagree_with_the_results_are_refused(tmp_path, capsys):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    with gzip.open(grid / outcomes.FILENAME, "rt", encoding="utf-8") as f:
        coded = json.load(f)
    flags = coded["runs"][0]["splits"]["test_ood"]
    i = next(k for k, c in enumerate(flags["correct"]) if c in "01")
    flags["correct"] = flags["correct"][:i] + ("1" if flags["correct"][i] == "0" else "0") + flags["correct"][i + 1 :]
    with gzip.open(grid / outcomes.FILENAME, "wt", encoding="utf-8") as f:
        json.dump(coded, f)
    before = (grid / "table.md").read_text(encoding="utf-8")
    assert main(["lab", "analyse", str(grid)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the outcomes give other metrics than results.json" in err and "acc" in err
    assert (grid / "table.md").read_text(encoding="utf-8") == before  # nothing written


def test_analyse_names_a_directory_that_is_not_a_grid(tmp_path, capsys):
    assert main(["lab", "analyse", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "results.json: no such file" in err and "--out directory" in err


def test_a_grid_from_before_outcomes_rebuilds_from_its_per_run_metrics(tmp_path):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    (grid / outcomes.FILENAME).unlink()
    rebuilt = analyse(grid, tmp_path / "out")
    verdict = rebuilt["comparisons"]["safety/hack"]["grpo+air"]["test_ood"]["balanced_acc_group"]
    assert verdict["intervals"]["bootstrap"] is None  # needs per-prompt verdicts
    assert verdict["intervals"]["seed_t"] is not None and verdict["interval"] == "seed_t"


@pytest.mark.parametrize("key", ["runs", "preset"])
def test_analyse_names_what_a_results_file_lacks(tmp_path, capsys, key):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    saved = json.loads((grid / "results.json").read_text(encoding="utf-8"))
    del saved[key]
    (grid / "results.json").write_text(json.dumps(saved), encoding="utf-8")
    assert main(["lab", "analyse", str(grid)]) == 2
    assert f"missing ['{key}']" in capsys.readouterr().err


V3_GRIDS = sorted(p for p in (Path(__file__).resolve().parents[1] / "docs/results/lab-v3").iterdir() if p.is_dir())


@pytest.mark.parametrize("grid", V3_GRIDS, ids=lambda p: p.name)
def test_every_committed_lab_v3_grid_rebuilds_its_table_exactly(grid, tmp_path):
    # docs/results.md quotes these tables; each must come back from its committed results and outcomes alone. Each
    # comparison pools 4 generated worlds, whose meta-groups differ: the two-level bootstrap (it pairs meta-groups)
    # is skipped there and the t-interval over worlds stays
    copy = tmp_path / grid.name
    shutil.copytree(grid, copy)
    assert check(copy) == []
    assert (copy / "outcomes.json.gz").is_file()
    for path in grid.iterdir():
        assert path.stat().st_size < 1 << 20, path
    results = load_results(grid)
    assert len(results["code_hashes"]) == 1  # one experiment, one code version
    for methods in results["comparisons"].values():
        balanced = methods["grpo+air"]["test_ood"]["balanced_acc_group"]
        assert balanced["intervals"]["bootstrap"] is None and balanced["interval"] == "unit_t"
        assert balanced["n_units"] == 4


def test_a_gzipped_results_file_rebuilds_exactly_and_stays_gzipped(tmp_path, capsys):
    # a grid whose results.json passes 1 MiB is committed as `gzip -n results.json`: the same analysis, same form
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    plain = (grid / "results.json").read_bytes()
    (grid / "results.json.gz").write_bytes(gzip.compress(plain, mtime=0))
    (grid / "results.json").unlink()
    assert check(grid) == []
    assert main(["lab", "analyse", str(grid), "--check"]) == 0
    assert "rebuilds exactly" in capsys.readouterr().out
    analyse(grid)  # in place: the gzipped file is rewritten, no plain one appears beside it
    assert not (grid / "results.json").exists()
    again = json.loads(gzip.decompress((grid / "results.json.gz").read_bytes()))
    assert again["table"] == (grid / "table.md").read_text(encoding="utf-8").rstrip("\n")
    assert again["runs"] == json.loads(plain)["runs"]
    analyse(grid)  # the same analysis gives the same bytes (no time or name in the gzip header)
    first = (grid / "results.json.gz").read_bytes()
    analyse(grid)
    assert (grid / "results.json.gz").read_bytes() == first


def test_analyse_refuses_a_grid_with_both_results_files(tmp_path, capsys):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    (grid / "results.json.gz").write_bytes(gzip.compress((grid / "results.json").read_bytes(), mtime=0))
    assert main(["lab", "analyse", str(grid)]) == 2
    assert_error(capsys.readouterr().err, str(grid), "both results.json and results.json.gz", "remove the one")


def test_analyse_names_a_gzipped_results_file_that_is_not_gzip(tmp_path, capsys):
    grid = tmp_path / "grid"
    shutil.copytree(GRID, grid)
    (grid / "results.json").rename(grid / "results.json.gz")  # plain JSON under the gzipped name
    assert main(["lab", "analyse", str(grid)]) == 2
    assert_error(capsys.readouterr().err, "results.json.gz: not valid JSON", "restore it")
