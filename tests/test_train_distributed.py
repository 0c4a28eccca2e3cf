"""Two CPU processes: a meta-group (and a prompt) split across processes gets the same coefficients as in one process.

Runs ``tests/_dist_coefficients.py`` under ``torchrun --nproc_per_node 2`` (gloo, ``ACCELERATE_USE_CPU=1``;
accelerate's CPU launcher needs MPI) and plainly in one process, with a deterministic rollout so both see the same
completions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from air_align.objectives import invariance_coefficients
from air_align.training.trainer import compact_ids

SCRIPT = Path(__file__).with_name("_dist_coefficients.py")
VENV_BIN = Path(sys.executable).parent


def _run(cmd, out_dir: Path) -> list[dict]:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run([*cmd, str(SCRIPT), str(out_dir)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))]


@pytest.mark.slow  # ~45 s: two interpreter start-ups plus a gloo process group
def test_meta_group_split_across_two_processes_gets_single_process_coefficients(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    [single] = _run([sys.executable], tmp_path / "one")
    ranks = _run([str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517"], tmp_path / "two")
    assert single["world"] == 1 and [r["world"] for r in ranks] == [2, 2] and [r["rank"] for r in ranks] == [0, 1]
    r0, r1 = ranks
    assert len(r0["ids"]) == len(r1["ids"]) == 9
    # Each process scored its 9 rows and got all 18 back from _calculate_rewards, in one call.
    assert single["rewards_calls"] == r0["rewards_calls"] == r1["rewards_calls"] == [[18, 1]]

    # Same global batch, in the same order, on both layouts.
    assert r0["ids"] + r1["ids"] == single["ids"]
    # A meta-group and one of its prompts straddle the ranks: rank 0 ends and rank 1 starts inside them.
    assert r0["groups"][-1] == r1["groups"][0] and r0["ids"][-1] == r1["ids"][0]
    straddling = r0["groups"][-1]
    anchor_rows = [
        i for i, (g, role) in enumerate(zip(single["groups"], single["roles"])) if g == straddling and role == "anchor"
    ]
    assert anchor_rows and max(anchor_rows) < 9  # its anchor lives on rank 0 only

    # Each rank applies exactly the single-process coefficients for its rows ...
    assert r0["air_coef"] + r1["air_coef"] == single["air_coef"]
    assert r0["air_reward"] + r1["air_reward"] == single["air_reward"]
    # ... which are objectives' Δ over the whole batch.
    rewards = torch.tensor([float("nan") if r is None else r for r in single["air_reward"]])
    expected = invariance_coefficients(
        rewards,
        torch.arange(18) // 2,
        compact_ids(single["groups"]),
        torch.tensor([r == "anchor" for r in single["roles"]]),
        "air",
    )
    assert torch.tensor(single["air_coef"]).tolist() == expected.tolist()
    # Rank 1's open rows of the straddling meta-group use rank 0's anchor mean: a non-zero Δ.
    assert any(
        c != 0 for c, g, role in zip(r1["air_coef"], r1["groups"], r1["roles"]) if g == straddling and role == "open"
    )
