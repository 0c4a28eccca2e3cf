"""AIRTrainer on TRL's GRPOTrainer: pinned TRL hooks, coefficients = objectives, exact aux gradient, no second forward,
GSPO, gradient-accumulation invariance, a short run that moves parameters, resume."""

from __future__ import annotations

import inspect

import pytest
import torch
import trl
from _toy import toy_trainer
from trl import GRPOTrainer
from trl.trainer.utils import split_tensor_dict

from air_align.objectives import aux_loss, invariance_coefficients, sequence_logprob
from air_align.training.toy import toy_reward
from air_align.training.trainer import AIRTrainer, compact_ids

# The TRL methods AIRTrainer overrides, with their trl==1.16.0 signatures (names, order, defaults; annotations
# dropped). If TRL changes one, this test fails: re-read the new TRL code before bumping the pin.
PINNED_SIGNATURES = {
    "_get_train_sampler": "(self, dataset=None)",
    "_calculate_rewards": "(self, inputs, prompts, completions, completion_ids_list)",
    "_generate_and_score_completions": "(self, inputs)",
    "_get_per_token_logps_and_entropies": (
        "(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None, compute_entropy=False, "
        "compute_aux_loss=False, pixel_values=None, image_grid_thw=None, num_images=None, pixel_attention_mask=None, "
        "spatial_shapes=None, num_tiles=None, image_sizes=None, token_type_ids=None, mm_token_type_ids=None, "
        "image_position_ids=None)"
    ),
    "_compute_loss": "(self, model, inputs)",
}


def bare_signature(func) -> str:
    sig = inspect.signature(func)
    empty = inspect.Parameter.empty
    params = [p.replace(annotation=empty) for p in sig.parameters.values()]
    return str(sig.replace(parameters=params, return_annotation=empty))


def test_trl_version_and_overridden_signatures_are_pinned():
    assert trl.__version__ == "1.16.0"
    overridden = {name for name in vars(AIRTrainer) if name in vars(GRPOTrainer) and callable(vars(GRPOTrainer)[name])}
    assert overridden - {"__init__"} == set(PINNED_SIGNATURES)
    for name, pinned in PINNED_SIGNATURES.items():
        assert bare_signature(getattr(GRPOTrainer, name)) == pinned, name
    # TRL's _compute_loss must still call the log-prob hook we capture (no second forward pass).
    assert "self._get_per_token_logps_and_entropies(" in inspect.getsource(GRPOTrainer._compute_loss)


class RewardRecorder:
    """toy_reward that remembers every batch it scored (rewards, group ids, roles), in call order."""

    __name__ = "toy_reward"

    def __init__(self):
        self.calls = []

    def __call__(self, completions, role, group_id, **kwargs):
        out = toy_reward(completions, role)
        self.calls.append((out, list(group_id), list(role)))
        return out


def expected_coefficients(call, k: int, invariance: str = "air"):
    rewards, groups, roles = call
    r = torch.tensor([float("nan") if x is None else x for x in rewards])
    coef = invariance_coefficients(
        r, torch.arange(len(r)) // k, compact_ids(groups), torch.tensor([x == "anchor" for x in roles]), invariance
    )
    return r, coef


def first_generation_batch(trainer):
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = next(iter(trainer.get_train_dataloader()))
    return trainer._generate_and_score_completions(batch)  # unshuffled, one process: the reward-call order


def grads(loss, params):
    return torch.autograd.grad(loss, params, allow_unused=True, retain_graph=False)


def flat(gs, params):
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(gs, params, strict=True)])


def plain_completion_logps(trainer, out):
    """Completion token log-probs (B, C) through a separate plain forward (unfused head, log_softmax by hand)."""
    input_ids = torch.cat([out["prompt_ids"], out["completion_ids"]], 1)  # (B, P+C)
    attention_mask = torch.cat([out["prompt_mask"], out["completion_mask"]], 1)
    logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, P+C, V)
    c = out["completion_ids"].shape[1]
    logits = logits[:, -c - 1 : -1] / trainer.temperature  # position t predicts token t+1
    return torch.log_softmax(logits, -1).gather(-1, out["completion_ids"].unsqueeze(-1)).squeeze(-1)  # (B, C)


def independent_aux_gradient(trainer, out, rewards, coef, params):
    """∇ of objectives.aux_loss through a separate plain forward (:func:`plain_completion_logps`)."""
    logps = plain_completion_logps(trainer, out)
    seq = sequence_logprob(logps, out["completion_mask"], trainer.args.aux_logprob_reduction)  # (B,)
    loss = aux_loss(seq, rewards.to(seq.dtype), coef.to(seq.dtype), trainer.args.invariance_coef, len(seq))
    return flat(grads(loss, params), params)


# TRL's fused LM head returns float32 log-probs even for a float64 model, so gradients through TRL's forward match
# an independent float64 computation to float32 precision (observed: max error ≈ 1e-6 of the largest component).
REL_TOL = 2e-5


@pytest.mark.parametrize(
    ("loss_type", "level"),
    [("grpo", "token"), ("dapo", "token"), ("dr_grpo", "token"), ("bnpo", "token"), ("grpo", "sequence")],
)
def test_air_minus_none_gradient_equals_independent_aux_gradient(f64_batch, loss_type, level):
    # The only difference between the AIR loss and TRL's loss must be the aux term, whatever TRL's loss_type;
    # ("grpo", "sequence") is GSPO.
    trainer, out, call = f64_batch
    trainer.loss_type, trainer.importance_sampling_level = loss_type, level
    trainer.current_gradient_accumulation_steps = 1
    rewards, coef = expected_coefficients(call, k=3)
    assert torch.equal(out["air_coef"], coef)  # exactly objectives' Δ on the same rewards
    assert torch.equal(torch.isnan(out["air_reward"]), torch.isnan(rewards))
    assert torch.equal(out["air_reward"].nan_to_num(), rewards.nan_to_num())
    assert (coef > 0).any()  # open variants lag anchors: a non-trivial term

    params = [p for p in trainer.model.parameters() if p.requires_grad]
    g_air = flat(grads(trainer.compute_loss(trainer.model, out), params), params)
    g_none = flat(grads(GRPOTrainer._compute_loss(trainer, trainer.model, out), params), params)
    g_aux = independent_aux_gradient(trainer, out, rewards, coef, params)
    scale = g_aux.abs().max().item()
    assert scale > 1e-3
    assert (g_air - g_none - g_aux).abs().max().item() <= REL_TOL * scale


def test_aux_gradient_is_the_same_with_gradient_accumulation(f64_batch):
    # One optimiser step of 18 completions: as one micro-batch (G = 1), or two micro-batches of 9 (G = 2) whose
    # gradients add up. The aux term's share must be identical: −λ (1/18) Σ Δ r ∇log π either way. A wrong
    # normaliser would be off by a factor 2.
    trainer, out, _ = f64_batch
    trainer.loss_type, trainer.importance_sampling_level = "dapo", "token"  # TRL's default loss_type
    params = [p for p in trainer.model.parameters() if p.requires_grad]

    def aux_grad(batch):
        g_air = flat(grads(trainer.compute_loss(trainer.model, batch), params), params)
        return g_air - flat(grads(GRPOTrainer._compute_loss(trainer, trainer.model, batch), params), params)

    trainer.current_gradient_accumulation_steps = 1
    whole = aux_grad(out)
    trainer.current_gradient_accumulation_steps = 2
    halves = sum(aux_grad(half) for half in split_tensor_dict(out, 2))
    scale = whole.abs().max().item()
    assert scale > 1e-3
    assert (halves - whole).abs().max().item() <= REL_TOL * scale


def test_no_second_forward_pass(tmp_path):
    # Count backbone forwards in one training step (generation + TRL's loss forward): equal for none and air.
    counts = {}
    for mode in ("none", "air"):
        trainer = toy_trainer(mode, str(tmp_path / mode))
        calls = {"grad": 0, "no_grad": 0}
        backbone = trainer.model.model

        def hook(module, args, kwargs, output, calls=calls):
            calls["grad" if torch.is_grad_enabled() else "no_grad"] += 1

        backbone.register_forward_hook(hook, with_kwargs=True)
        trainer.train()
        counts[mode] = calls
    assert counts["air"] == counts["none"]
    assert counts["air"]["grad"] == 1  # one micro-batch, one grad-enabled forward: TRL's own


def test_training_applies_objectives_coefficients_with_accumulation_and_moves_parameters(tmp_path):
    # K = 3, steps_per_generation = 4 (generation batch: 4 × 9 = 36 completions = 4 meta-groups), gradient
    # accumulation 2: each generation batch serves 2 optimiser steps of 2 shuffled micro-batches. 4 steps = 2
    # generation batches. The (reward, Δ) pairs applied in the loss must be exactly objectives' on each batch.
    recorder = RewardRecorder()
    trainer = toy_trainer(
        "air",
        str(tmp_path),
        reward_funcs=recorder,
        steps_per_generation=4,
        gradient_accumulation_steps=2,
        max_steps=4,
        learning_rate=1e-2,
    )
    applied = []
    original = trainer._compute_loss

    def recording_compute_loss(model, inputs):
        applied.append(torch.stack([inputs["air_reward"].nan_to_num(-99.0), inputs["air_coef"]], 1))
        return original(model, inputs)

    trainer._compute_loss = recording_compute_loss
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()

    assert len(recorder.calls) == 2 and len(applied) == 8
    for g, call in enumerate(recorder.calls):
        rewards, coef = expected_coefficients(call, k=3)
        assert len(call[0]) == 36 and len(set(call[1])) == 4  # whole meta-groups: 4 groups × 3 prompts × K
        expected = torch.stack([rewards.nan_to_num(-99.0), coef], 1)
        got = torch.cat(applied[4 * g : 4 * g + 4])
        key = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731  (shuffled by TRL: compare as multisets)
        assert key(got) == key(expected)

    moved = max((p.detach() - before[n]).abs().max().item() for n, p in trainer.model.named_parameters())
    assert moved > 1e-4
    logs = [h for h in trainer.state.log_history if "reward/anchor" in h]
    assert len(logs) == 2  # reward metrics are logged at the steps that generate: one per generation batch
    for h in logs:
        assert h["reward/anchor"] > h["reward/open"]  # anchors get toy_reward's +0.5 bonus
        assert h["invariance/delta"] > 0 and h["invariance/aux_loss"] != 0.0
        assert {"invariance/gap", "invariance/abs_delta"} <= set(h)


def test_vrex_gives_anchors_a_coefficient_and_none_adds_nothing(tmp_path):
    recorder = RewardRecorder()
    trainer = toy_trainer("vrex", str(tmp_path / "v"), reward_funcs=recorder)
    out = first_generation_batch(trainer)
    rewards, coef = expected_coefficients(recorder.calls[0], k=3, invariance="vrex")
    assert torch.equal(out["air_coef"], coef)
    anchors = torch.tensor([r == "anchor" for r in recorder.calls[0][2]])
    assert (coef[anchors] < 0).all()  # anchors above the meta-group mean: the "downgrading anchor" direction

    trainer = toy_trainer("none", str(tmp_path / "n"))
    assert "air_coef" not in first_generation_batch(trainer)


def test_leave_one_out_baseline_option_centres_the_aux_reward_only(tmp_path):
    from air_align.objectives import leave_one_out_baseline

    recorder = RewardRecorder()
    trainer = toy_trainer("air", str(tmp_path / "b"), reward_funcs=recorder, aux_baseline="leave_one_out")
    out = first_generation_batch(trainer)
    rewards, coef = expected_coefficients(recorder.calls[0], k=3)
    assert torch.equal(out["air_coef"], coef)  # Δ still from the raw rewards
    centred = rewards - leave_one_out_baseline(rewards, torch.arange(len(rewards)) // 3)
    assert torch.equal(torch.isnan(out["air_reward"]), torch.isnan(rewards))
    torch.testing.assert_close(out["air_reward"].nan_to_num(), centred.nan_to_num())
    assert not torch.equal(out["air_reward"].nan_to_num(), rewards.nan_to_num())


def test_unscorable_prompts_get_zero_coefficient_instead_of_stopping_the_run(tmp_path):
    # Every completion of toy-4's anchor is unscorable: meta-group toy-4 has no r̄_acr, so Δ = 0 on all its rows;
    # open prompt toy/0/open/wrap0 has no r̄_s, Δ = 0 there. The other rows keep objectives' Δ.
    unscored = ("toy/4/anchor/mc", "toy/0/open/wrap0")
    seen = []

    def reward(completions, role, id, **kwargs):
        seen.extend(id)
        scores = toy_reward(completions, role)
        return [None if i in unscored else s for s, i in zip(scores, id, strict=True)]

    reward.__name__ = "toy_reward"
    trainer = toy_trainer("air", str(tmp_path), reward_funcs=reward, per_device_train_batch_size=36)
    out = first_generation_batch(trainer)  # does not raise
    assert set(unscored) <= set(seen)  # seed 0: both meta-groups are in the first generation batch
    zero = torch.tensor([i.startswith("toy/4/") or i == unscored[1] for i in seen])
    assert (out["air_coef"][zero] == 0).all()
    opens = torch.tensor(["/open/" in i for i in seen])
    assert (out["air_coef"][~zero & opens] != 0).all()
    assert trainer._metrics["train"]["invariance/unscored_rows"][-1] == zero.sum().item()  # 9 + 3 = 12 rows


def test_resume_from_checkpoint_continues_the_same_run(tmp_path):
    straight = toy_trainer("air", str(tmp_path / "a"), max_steps=2, save_strategy="steps", save_steps=1)
    straight.train()
    resumed = toy_trainer("air", str(tmp_path / "b"), max_steps=2, save_strategy="steps", save_steps=1)
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-1"))
    assert resumed.state.global_step == 2
    for (name, p), q in zip(straight.model.named_parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-6, msg=name)
    step2 = [h for h in straight.state.log_history if h.get("step") == 2 and "reward" in h][0]
    step2_resumed = [h for h in resumed.state.log_history if h.get("step") == 2 and "reward" in h][0]
    assert step2_resumed["reward"] == pytest.approx(step2["reward"], abs=1e-6)


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="invariance must be one of"):
        toy_trainer("airr", str(tmp_path))
    with pytest.raises(ValueError, match="aux_baseline must be one of"):
        toy_trainer("air", str(tmp_path), aux_baseline="mean")
    # 2 prompts per generation batch cannot hold meta-groups of 3: the message names sizes that work. The recipe
    # checks it while building (recipe.check_batch_geometry), the sampler again when the dataloader is made.
    with pytest.raises(ValueError, match=r"generation_batch_size in \[9, 18, 27, 36\]"):
        toy_trainer("air", str(tmp_path), per_device_train_batch_size=6)
