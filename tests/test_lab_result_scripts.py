"""The scripts behind docs/results.md's lab v3 tables recompute them from the committed grids.

``scripts/lab_shared_cue_lift.py`` (E3's measure (a)) is checked against a hand computation from the committed
results, and ``scripts/lab_anchor_levels.py`` (the anchors' training reward) tabulates its committed per-run file.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from air_align.lab.analyse import load_results

ROOT = Path(__file__).resolve().parents[1]
V3 = ROOT / "docs/results/lab-v3"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shared_cue_lift_is_grpo_minus_its_warm_start_paired_with_the_control():
    lift = _script("lab_shared_cue_lift")
    results = load_results(V3 / "e3")
    # by hand, world gen-safety-0: its two warm starts' (cue lift − control lift), averaged
    warm = {
        Path(w["warm_start"]).name: w["metrics"]["metrics"]["test_ood"]["balanced_acc_group"]
        for w in results["worlds"].values()
    }
    grpo = {(r["unit"]["world"], r["warm_seed"]): r for r in results["runs"] if r["method"] == "grpo"}

    def one(world, seed):
        run = grpo[world, seed]
        return run["metrics"]["test_ood"]["balanced_acc_group"] - warm[run["unit"]["warm_start"]]

    by_hand = statistics.fmean(one("gen-safety-0-cue", s) - one("gen-safety-0", s) for s in (0, 1))
    found = lift.cue_minus_control(results)
    assert found["safety"]["worlds"]["gen-safety-0"] == pytest.approx(by_hand, abs=1e-12)
    assert set(found) == {"safety", "morality"} and all(len(v["worlds"]) == 4 for v in found.values())
    low, high = found["safety"]["ci"]
    assert low < found["safety"]["mean"] < high  # a t-interval over the 4 world means, around their mean
    table = lift.table(results)
    assert f"{100 * found['safety']['mean']:+.1f}" in table and "gen-morality-3" in table


def test_anchor_levels_tabulate_the_committed_per_run_file(tmp_path, capsys):
    levels = _script("lab_anchor_levels")
    rows = json.loads((V3 / "e1/anchor_levels.json").read_text(encoding="utf-8"))
    assert len(rows) == 160  # E1's table runs: 40 units × 4 methods
    maths = [r["mean"] for r in rows if r["cell"] == "gen-math/main" and r["method"] == "grpo"]
    assert levels.main([str(V3 / "e1/anchor_levels.json")]) == 0
    out = capsys.readouterr().out
    assert f"| gen-math/main | grpo | {statistics.fmean(maths):.2f} |" in out
