"""Helper script (not a test module) for tests/test_train_distributed_monitors.py.

Run under ``torchrun --nproc_per_node 2`` with ``ACCELERATE_USE_CPU=1``: trains the toy AIRTrainer on labelled rows
with anchors whose reward falls with each generation batch and ``stop_on_anchor_drop``, and dumps, per rank, the
monitors of its log history, its final step and the anchor-drop warnings it issued to ``OUT_DIR/rank{r}.json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings

import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main(out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the helper _toy beside this script
    from _toy import toy_trainer

    from air_align.data.schema import to_dataset
    from air_align.training.monitors import AnchorDropWarning
    from air_align.training.toy import toy_meta_groups, toy_reward

    torch.set_num_threads(1)
    calls = []

    def reward(completions, role, **kwargs):  # anchors: +0.0, −1.0, −2.0, … per generation batch; open: toy_reward
        drop = -1.0 * len(calls)
        calls.append(1)
        base = toy_reward(completions, role)
        return [None if b is None else (2.0 + drop if r == "anchor" else b) for b, r in zip(base, role, strict=True)]

    reward.__name__ = "falling_anchors"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    trainer = toy_trainer(
        "air",
        os.path.join(out_dir, "run"),
        reward_funcs=reward,
        per_device_train_batch_size=18 // world,
        max_steps=5,
        anchor_monitor_batches=1,
        stop_on_anchor_drop=True,
    )
    rows = toy_meta_groups(8, 2)
    for row in rows:  # two labels, so the per-label Δ is gathered across ranks
        row["domain"], row["label"] = "toy", int(row["group_id"].split("-")[1]) % 2
    trainer.train_dataset = to_dataset(rows)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.train()
    logs = [
        {k: v for k, v in h.items() if k.startswith(("air/", "invariance/", "reward/"))}
        for h in trainer.state.log_history
        if "reward/anchor" in h
    ]
    dump = {
        "rank": trainer.accelerator.process_index,
        "world": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "logs": logs,
        "warnings": [str(w.message) for w in record if issubclass(w.category, AnchorDropWarning)],
    }
    tmp = os.path.join(out_dir, f"rank{dump['rank']}.json.tmp")
    with open(tmp, "w") as f:
        json.dump(dump, f)
    os.replace(tmp, os.path.join(out_dir, f"rank{dump['rank']}.json"))


if __name__ == "__main__":
    main(sys.argv[1])
