"""CPU threads: every air-align process waits passively (set before torch loads, unless the user
chose a policy), ``--threads`` / ``$AIR_ALIGN_THREADS`` set torch's threads. The measured cost of a busy machine
with and without the fix is in docs/performance.md ("Shared cores")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _messages import raises_with

from air_align.cli import main
from air_align.threads import THREADS_ENV, set_threads

ROOT = Path(__file__).resolve().parents[1]
PROBE = "import os, air_align, torch; print(os.environ['OMP_WAIT_POLICY'])"


def python(code: str, **env: str) -> str:
    full = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | {"PYTHONPATH": str(ROOT)} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, check=True).stdout


def test_passive_wait_is_set_before_torch_loads_unless_the_user_chose():
    assert python(PROBE) == "PASSIVE\n"
    assert python(PROBE, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE\n"


@pytest.fixture
def restore_threads(monkeypatch):
    before = torch.get_num_threads()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV):
        monkeypatch.delenv(name, raising=False)
    yield
    torch.set_num_threads(before)


def test_set_threads(restore_threads, monkeypatch):
    assert set_threads(1) == 1 == torch.get_num_threads()
    assert os.environ["OMP_NUM_THREADS"] == os.environ["MKL_NUM_THREADS"] == "1"  # child processes alike
    monkeypatch.setenv(THREADS_ENV, "2")
    assert set_threads() == 2 == torch.get_num_threads()
    assert set_threads(1) == 1  # the option wins over the environment
    monkeypatch.setenv(THREADS_ENV, "two")
    with raises_with(ValueError, "AIR_ALIGN_THREADS='two'", "a whole number of threads"):
        set_threads()
    with raises_with(ValueError, "--threads 0", "at least 1 thread"):
        set_threads(0)


def test_train_threads_option_sets_torch_threads(restore_threads, tmp_path):
    torch.set_num_threads(2)
    args = ["train", "--config", str(ROOT / "configs/tiny-cpu.yaml"), f"output_dir={tmp_path}", "max_steps=1"]
    assert main([*args, "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
