"""Two CPU processes: every rank logs the same monitors (computed from the gathered batch), only the main process
warns, and ``stop_on_anchor_drop`` stops both ranks at the same step. Runs ``tests/_dist_monitors.py`` under
``torchrun --nproc_per_node 2`` (gloo, ``ACCELERATE_USE_CPU=1``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_dist_monitors.py")
VENV_BIN = Path(sys.executable).parent


@pytest.mark.slow  # ~45 s: two interpreter start-ups plus a gloo process group
def test_two_processes_log_the_same_monitors_and_stop_together(tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    cmd = [str(VENV_BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29519", str(SCRIPT), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert [r0["world"], r1["world"]] == [2, 2]
    # anchors earn 2.0, 1.0, 0.0 …: start 2.0 (one batch), drift −1.0 in step 2 (< −0.5): stop at the end of step 2
    assert r0["global_step"] == r1["global_step"] == 2
    assert r0["logs"] == r1["logs"] and len(r0["logs"]) == 2
    assert [h["air/anchor_drift"] for h in r0["logs"]] == [0.0, -1.0]
    assert {"air/zero_std/open", "air/aux_to_policy_weight"} <= set(r0["logs"][0])
    assert {k for h in r0["logs"] for k in h if k.startswith("air/delta/toy/")}  # per-label Δ of the gathered rows
    assert len(r0["warnings"]) == 1 and r1["warnings"] == []  # the main process warns, once
