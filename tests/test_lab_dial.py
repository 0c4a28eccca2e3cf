"""The hack dial's analysis (``lab/dial.py``; rules (b) and (c) of docs/results/lab-v3/conditions.md, E2) on a
synthetic grid whose gains are hand-set: 4 worlds × 2 warm starts, GRPO hacked 0 %, 50 %, 100 % at cue 1, 4, 6."""

from __future__ import annotations

import pytest

from air_align.lab.dial import beyond_unhacked, dial_points, dial_tables, plot_dial, slope, tracking

HACK = {"cue1": 0.0, "cue4": 0.5, "cue6": 1.0}  # plain GRPO's ID hack rate per level
GRPO_LEVEL = {"cue1": 0.4, "cue4": 0.0, "cue6": 0.0}  # its balanced OOD Acc_group: 0.4 unhacked, 0 once hacked
SLOPES = (0.2, 0.3, 0.4, 0.5)  # AIR − GRPO = slope_w × hack rate in world w


def run(world: int, warm: str, regime: str, method: str, g: float) -> dict:
    return {
        "cell": f"gen-safety/{regime}",
        "method": method,
        "seed": 0,
        "unit": {"world": f"gen-safety-{world}", "world_seed": 0, "warm_start": warm},
        "metrics": {
            "test_id": {"hack_rate": HACK[regime] if method == "grpo" else 0.0},
            "test_ood": {"balanced_acc_group": g, "acc_group": g + 0.05},
        },
    }


def grid() -> list[dict]:
    runs = []
    for w, s in enumerate(SLOPES):
        for warm in ("ws0", "ws1"):
            for regime in HACK:
                runs.append(run(w, warm, regime, "grpo", GRPO_LEVEL[regime]))
                runs.append(run(w, warm, regime, "grpo+air", GRPO_LEVEL[regime] + s * HACK[regime]))
    runs.append({**run(0, "ws0", "cue1", "grpo", 0.4), "cell": "gen-safety/main"})  # not on the dial: ignored
    return runs


def test_points_are_per_world_means_of_paired_gains():
    points = dial_points(grid())
    assert len(points) == 3 * 4
    p = next(p for p in points if p["regime"] == "cue4" and p["world"] == "gen-safety-1/0")
    assert p["grpo_hack_rate"] == 0.5
    assert p["balanced_acc_group"] == pytest.approx(0.15, abs=1e-12)  # 0.3 × 0.5
    assert p["acc_group"] == pytest.approx(0.15, abs=1e-12)


def test_tracking_rule_hand_computed():
    found = tracking(dial_points(grid()))["gen-safety"]
    assert [round(s, 9) for s in found["slopes"].values()] == list(SLOPES)
    # slopes 0.2..0.5: mean 0.35, sd 0.129099, se 0.0645497, t(3) = 3.182446 -> ± 0.205426
    assert found["mean"] == pytest.approx(0.35, abs=1e-12)
    assert found["ci"] == pytest.approx([0.35 - 0.205426, 0.35 + 0.205426], abs=1e-5)
    assert found["verdict"] == "yes"
    flat = [{**p, "grpo_hack_rate": 0.3} for p in dial_points(grid())]  # the dial did not move GRPO
    assert tracking(flat)["gen-safety"]["verdict"] == "undefined"
    assert slope([0.0, 0.5, 1.0], [0.1, 0.2, 0.5]) == 0.4 and slope([1.0, 1.0], [0.0, 1.0]) is None


def test_beyond_unhacked_rule_hand_computed():
    found = beyond_unhacked(grid())
    # at cue 6, AIR = slope_w against GRPO's unhacked 0.4: −0.2, −0.1, 0.0, +0.1 -> mean −0.05, ± 0.205426
    assert found["gen-safety/cue6"]["diff"] == pytest.approx(-0.05, abs=1e-12)
    assert found["gen-safety/cue6"]["ci"] == pytest.approx([-0.05 - 0.205426, -0.05 + 0.205426], abs=1e-5)
    assert (found["gen-safety/cue6"]["verdict"], found["gen-safety/cue6"]["n_units"]) == ("no", 4)
    assert found["gen-safety/cue1"]["diff"] == pytest.approx(0.0, abs=1e-12)  # AIR at GRPO's own unhacked level
    lifted = [
        {**r, "metrics": {**r["metrics"], "test_ood": {"balanced_acc_group": 0.9, "acc_group": 0.9}}}
        if r["method"] == "grpo+air" and r["cell"] == "gen-safety/cue6"
        else r
        for r in grid()
    ]
    assert beyond_unhacked(lifted)["gen-safety/cue6"]["verdict"] == "yes"  # 0.9 − 0.4 in every world


def test_dial_tables_and_plot(tmp_path):
    text, found = dial_tables(grid())
    assert set(found) == {"grpo+air"}  # no V-REx runs in this grid
    assert "| gen-safety/cue6 | 100.0 | +35.0 | +35.0 | -5.0 [-25.5, +15.5] | no |" in text
    assert "| gen-safety | +0.20, +0.30, +0.40, +0.50 | +0.35 [+0.14, +0.56] | yes |" in text
    assert dial_tables([r for r in grid() if r["cell"] == "gen-safety/main"]) == ("", {})
    plot_dial(found, tmp_path / "hack_dial.png")
    assert (tmp_path / "hack_dial.png").stat().st_size > 1000
