"""Helper script (not a test module) for tests/test_train_distributed.py.

Run under ``torchrun --nproc_per_node N`` with ``ACCELERATE_USE_CPU=1`` (accelerate's own CPU multi-process launcher
needs MPI), or plainly with python for one process: builds the toy AIRTrainer, scores one generation batch and
dumps, per rank, the rows it held, the AIR coefficients/rewards it will apply and the gathered rewards/groups it saw,
to ``OUT_DIR/rank{r}.json``.

Generation is replaced by a deterministic ``rollout_func`` (the completion is a function of the prompt and of the
completion's index k among its prompt's K copies) so that 1-process and 2-process runs produce the same completions
and the comparison tests only the synchronisation of the coefficients.
"""

from __future__ import annotations

import os
import sys

import torch

from air_align.files import write_json

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def deterministic_rollout(prompts, trainer):
    """Completion k of a prompt = a slice of its text chosen by k (global position mod K)."""
    rank, k_total = trainer.accelerator.process_index, trainer.num_generations
    prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
    tokenizer = trainer.processing_class
    completion_ids = []
    for i, prompt in enumerate(prompts):
        k = (rank * len(prompts) + i) % k_total
        text = prompt[-1]["content"]
        piece = (text[5 * k :] + "Z9")[: 4 + 2 * k]  # varied lowercase shares across k
        completion_ids.append(tokenizer.encode(piece, add_special_tokens=False) + [tokenizer.eos_token_id])
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def main(out_dir: str) -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the helper _toy beside this script
    from _toy import toy_trainer

    from air_align.training.toy import toy_reward

    torch.set_num_threads(1)
    seen = {}

    def reward(completions, role, group_id, id, **kwargs):
        seen["ids"] = list(id)
        return toy_reward(completions, role)

    reward.__name__ = "toy_reward"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # 3 meta-groups × 3 prompts × K = 2 = 18 completions per generation batch. Over 2 processes (9 each) the
    # second meta-group *and* its middle prompt straddle the two ranks.
    trainer = toy_trainer(
        "air",
        os.path.join(out_dir, "run"),
        reward_funcs=reward,
        num_generations=2,
        per_device_train_batch_size=18 // world,
    )
    trainer.rollout_func = deterministic_rollout
    rewards_calls = []  # the shape of every tensor _calculate_rewards returns: TRL's gathered (N_global, F)
    calculate_rewards = trainer._calculate_rewards

    def recording_calculate_rewards(*args):
        rewards_per_func = calculate_rewards(*args)
        rewards_calls.append(list(rewards_per_func.shape))
        return rewards_per_func

    trainer._calculate_rewards = recording_calculate_rewards
    trainer.model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    out = trainer._generate_and_score_completions(batch)
    rank = trainer.accelerator.process_index
    dump = {
        "world": trainer.accelerator.num_processes,
        "rank": rank,
        "ids": seen["ids"],
        "rewards_calls": rewards_calls,
        "groups": [row["group_id"] for row in batch],
        "roles": [row["role"] for row in batch],
        "air_coef": out["air_coef"].tolist(),
        "air_reward": [None if torch.isnan(r) else float(r) for r in out["air_reward"]],
    }
    write_json(os.path.join(out_dir, f"rank{rank}.json"), dump)


if __name__ == "__main__":
    main(sys.argv[1])
