"""AIRTrainer refuses, at construction, data it would train on silently wrong, and survives an infinite reward."""

from __future__ import annotations

import math

import pytest
import torch
from _messages import assert_facts
from _toy import toy_trainer
from datasets import Dataset

from air_align.models import build_char_tokenizer, tiny_causal_lm
from air_align.training.config import AIRConfig
from air_align.training.toy import toy_meta_groups, toy_reward
from air_align.training.trainer import AIRTrainer, unscore_non_finite


def build(train_dataset, tmp_path, invariance="air"):
    """An AIRTrainer on the tiny model with ``train_dataset`` (the settings of ``toy_trainer``)."""
    tokenizer = build_char_tokenizer()
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=4)
    args = AIRConfig(
        output_dir=str(tmp_path),
        invariance=invariance,
        num_generations=3,
        per_device_train_batch_size=9,
        max_completion_length=8,
        max_steps=1,
        save_strategy="no",
        use_cpu=True,
        report_to="none",
    )
    return AIRTrainer(
        model=model, reward_funcs=toy_reward, args=args, train_dataset=train_dataset, processing_class=tokenizer
    )


def test_iterable_dataset_is_refused(tmp_path):
    stream = Dataset.from_list(toy_meta_groups(4, 2)).to_iterable_dataset()
    for invariance in ("air", "vrex", "none"):  # with meta-group columns every mode uses the meta-group sampler
        with pytest.raises(ValueError) as err:
            build(stream, tmp_path, invariance)
        facts = ("train_dataset", "IterableDataset", "map-style dataset", "partial meta-groups")  # what, and why
        assert_facts(str(err.value), *facts, "Dataset.from_list(list(stream))")  # and the fix
    # plain GRPO data (no meta-group columns) with invariance="none" is TRL's business: accepted
    plain = Dataset.from_list([{"prompt": r["prompt"], "role": "open"} for r in toy_meta_groups(4, 2)])
    build(plain.remove_columns("role").to_iterable_dataset(), tmp_path, "none")


def test_meta_group_without_anchor_is_refused_for_air(tmp_path):
    rows = toy_meta_groups(8, 2)
    for r in rows:
        if r["group_id"] in ("toy-2", "toy-5"):
            r["role"] = "open"  # these two meta-groups lose their anchor
    with pytest.raises(ValueError) as err:
        build(Dataset.from_list(rows), tmp_path, "air")
    # the setting, the meta-groups at fault, and the three fixes
    facts = ("invariance='air'", "2 meta-group(s)", "role='anchor'", "'toy-2', 'toy-5'", "Add an anchor")
    assert_facts(str(err.value), *facts, "`air-align data validate FILE`", "invariance='vrex' or 'none'")
    build(Dataset.from_list(rows), tmp_path, "vrex")  # V-REx compares with the group mean: no anchor needed
    build(Dataset.from_list(toy_meta_groups(8, 2)), tmp_path, "air")  # every group anchored: accepted


def test_unscore_non_finite_drops_the_whole_completion():
    inf, nan = math.inf, math.nan
    rewards = torch.tensor([[1.0, 0.5], [inf, 0.5], [nan, -inf], [nan, 2.0]])
    out, count = unscore_non_finite(rewards)
    assert count == 2
    assert torch.equal(out[[0, 3]].nan_to_num(-9), rewards[[0, 3]].nan_to_num(-9))  # untouched rows
    assert torch.isnan(out[[1, 2]]).all()  # the 0.5 of row 1 goes too: no partial score
    assert unscore_non_finite(rewards[[0, 3]])[1] == 0


class InfOnce:
    """toy_reward, except that the first completion of the first call scores +inf and the second −inf."""

    __name__ = "toy_reward"

    def __init__(self):
        self.calls = 0

    def __call__(self, completions, role, **kwargs):
        out = toy_reward(completions, role)
        if self.calls == 0:
            out[0], out[4] = math.inf, -math.inf
        self.calls += 1
        return out


@pytest.mark.parametrize("invariance", ["air", "none"])
def test_a_step_with_infinite_rewards_stays_finite_and_counts_them(tmp_path, invariance):
    trainer = toy_trainer(invariance, str(tmp_path), reward_funcs=InfOnce())
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    after = list(trainer.model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))  # the other 16 completions trained
    logged = next(h for h in trainer.state.log_history if "rewards/non_finite" in h)
    assert logged["rewards/non_finite"] == 2.0  # one generation batch, two infinite rewards
    assert math.isfinite(logged["loss"]) and math.isfinite(logged["reward"])
