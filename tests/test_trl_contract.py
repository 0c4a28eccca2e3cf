"""What ``AIRTrainer``'s five overrides assume of TRL 1.16's control flow, checked by running it (the signatures are
pinned in tests/test_train_trainer.py; a TRL that kept them but changed the flow would pass there and fail here):

- ``_get_train_sampler`` / ``_calculate_rewards``: TRL asks for rewards once per generation batch, over the whole
  batch, and that batch holds whole meta-groups (two processes: tests/test_train_distributed.py).
- ``_get_per_token_logps_and_entropies`` / ``_compute_loss``: inside TRL's loss the hook runs exactly once, with
  gradients, and the aux term uses that very tensor; a TRL that also ran it without gradients there must not take
  the aux term's gradient away silently.
- ``_generate_and_score_completions``: the per-row tensors ``air_coef`` and ``air_reward`` stay with their rows
  through TRL's shuffle and split (``_prepare_inputs``).
- ``_compute_loss`` with the loss types ``cispo``, ``sapo``, ``luspo``, ``vespo``: the same aux gradient as with
  ``grpo`` (the others are in tests/test_train_trainer.py). VESPO needs ``importance_sampling_level="token"`` and,
  with vLLM's importance-sampling correction, a token-level correction mode; LUSPO is meant for ``"sequence"``.

Every gradient check is on-policy (one iteration, one optimiser step per generation batch, no vLLM): there the aux
term's importance weight is 1 and the identity ``∇(AIR loss) − ∇(TRL loss) = ∇ aux`` is exact.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from _toy import toy_trainer
from test_train_trainer import (
    REL_TOL,
    expected_coefficients,
    flat,
    grads,
    independent_aux_gradient,
)
from trl import GRPOTrainer

import air_align.training.trainer as trainer_module
from air_align.objectives import invariance_coefficients
from air_align.training.trainer import AIRTrainer, compact_ids

K = 3  # the toy trainer's num_generations
ROWS_PER_META_GROUP = 3 * K  # toy meta-groups: an anchor and 2 open variants, K completions each


def recording(records: list, method):
    """``method`` that appends its return value to ``records``."""

    def wrapper(*args, **kwargs):
        out = method(*args, **kwargs)
        records.append(out)
        return out

    return wrapper


# -- rewards: once per generation batch, over the whole batch -----------------------------------------------------


@pytest.mark.parametrize(
    ("steps_per_generation", "accumulation", "iterations"),
    [(4, 2, 1), (2, 2, 2)],  # generation batches of 36 and 18 completions; each serves 4 micro-batches
)
def test_rewards_are_gathered_once_per_generation_batch(tmp_path, steps_per_generation, accumulation, iterations):
    trainer = toy_trainer(
        "air",
        str(tmp_path),
        steps_per_generation=steps_per_generation,
        gradient_accumulation_steps=accumulation,
        num_iterations=iterations,
        max_steps=4,
    )
    rewards_calls, generations, batches = [], [], []
    trainer._calculate_rewards = recording(rewards_calls, trainer._calculate_rewards)
    generate = recording(generations, trainer._generate_and_score_completions)
    trainer._generate_and_score_completions = lambda inputs: (batches.append(inputs), generate(inputs))[1]
    trainer.train()

    size = 9 * steps_per_generation  # per_device_train_batch_size × steps_per_generation (one process)
    micro_batches = 4 * accumulation
    assert len(generations) == micro_batches // (steps_per_generation * iterations) == 2
    assert len(rewards_calls) == len(generations)  # once per generation batch, never per micro-batch
    for rewards_per_func, out, rows in zip(rewards_calls, generations, batches, strict=True):
        assert rewards_per_func.shape == (size, 1)  # the whole batch (gathered; one reward function)
        # Δ and the aux reward come from that very call (unshuffled output, one process: same rows, same order).
        assert torch.equal(out["air_reward"].isnan(), rewards_per_func[:, 0].isnan())
        assert torch.equal(out["air_reward"].nan_to_num(), rewards_per_func[:, 0].nan_to_num())
        # The sampler TRL used gave whole meta-groups: every group present with all its prompts × K rows.
        assert set(Counter(row["group_id"] for row in rows).values()) == {ROWS_PER_META_GROUP}
    assert trainer._air_rewards_per_func is None  # consumed by the generation batch it was computed for
    assert {r["group_id"] for r in batches[0]} != {r["group_id"] for r in batches[1]}


# -- log-probs: the policy forward of TRL's loss, captured once, with gradients -----------------------------------


def test_log_probs_are_captured_once_per_compute_loss_with_gradients(tmp_path, monkeypatch):
    # 2 micro-batches of 9 per optimiser step, on-policy (TRL computes no old log-probs): every hook call is TRL's
    # loss forward.
    trainer = toy_trainer("air", str(tmp_path), steps_per_generation=2, gradient_accumulation_steps=2, max_steps=2)
    hook_calls, aux_inputs, per_loss = [], [], []
    hook = trainer._get_per_token_logps_and_entropies

    def counting_hook(*args, **kwargs):
        result = hook(*args, **kwargs)
        hook_calls.append((trainer._air_capture, torch.is_grad_enabled(), result[0]))
        return result

    compute_loss = trainer._compute_loss

    def bracketing_compute_loss(model, inputs):
        start = len(hook_calls)
        loss = compute_loss(model, inputs)
        per_loss.append(hook_calls[start:])
        return loss

    sequence_logprob = trainer_module.sequence_logprob
    monkeypatch.setattr(
        trainer_module,
        "sequence_logprob",
        lambda logps, *a: (aux_inputs.append(logps), sequence_logprob(logps, *a))[1],
    )
    trainer._get_per_token_logps_and_entropies = counting_hook
    trainer._compute_loss = bracketing_compute_loss
    trainer.train()

    assert len(per_loss) == len(aux_inputs) == 4  # 2 steps × 2 micro-batches
    assert sum(map(len, per_loss)) == len(hook_calls)  # no hook call outside TRL's loss
    for calls, used in zip(per_loss, aux_inputs, strict=True):
        assert len(calls) == 1  # exactly one log-prob forward per loss: no second pass, no second capture
        capture, grad_enabled, logps = calls[0]
        assert capture and grad_enabled
        assert logps.requires_grad and logps.grad_fn is not None
        assert used is logps  # the aux term takes the tensor TRL's loss got, not a copy or another forward


def test_captured_log_probs_carry_both_the_policy_and_the_aux_gradient(f64_batch):
    # d loss / d(captured log-probs), by hand for loss_type="grpo" at importance ratio 1 (B completions, G = 1):
    # TRL's term gives −Â_b m_bt / (T_b B), the aux term −λ Δ_b r_b m_bt / B. Both must flow through the captured
    # tensor: a capture of any other forward would miss TRL's part.
    trainer, out, _ = f64_batch
    trainer.loss_type, trainer.importance_sampling_level = "grpo", "token"
    trainer.current_gradient_accumulation_steps = 1
    captured = []
    original = AIRTrainer._get_per_token_logps_and_entropies

    def capturing(*args, **kwargs):
        result = original(trainer, *args, **kwargs)
        captured.append(result[0])
        return result

    trainer._get_per_token_logps_and_entropies = capturing
    try:
        loss = trainer.compute_loss(trainer.model, out)
    finally:
        del trainer._get_per_token_logps_and_entropies
    [logps] = captured
    (got,) = torch.autograd.grad(loss, logps)

    mask = out["completion_mask"].to(got.dtype)  # (B, T)
    b = mask.shape[0]
    advantages = out["advantages"].to(got.dtype)
    aux_weight = trainer.args.invariance_coef * out["air_coef"] * out["air_reward"].nan_to_num()  # (B,)
    expected = -(advantages / mask.sum(-1) / b + aux_weight.to(got.dtype) / b).unsqueeze(1) * mask
    assert advantages.abs().max() > 0.1 and aux_weight.abs().max() > 0.01  # both terms present
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


class FutureGRPO(GRPOTrainer):
    """A simulated later TRL whose ``_compute_loss`` runs the log-prob hook a second time: without gradients (e.g.
    reference log-probs of the same model) before or after its policy forward, or ``"twice"``: after it, with
    gradients."""

    ref_call = "before"

    def _compute_loss(self, model, inputs):
        def extra_logps():
            input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
            attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
            with torch.set_grad_enabled(self.ref_call == "twice"):
                self._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, inputs["completion_ids"].shape[1]
                )

        if self.ref_call == "before":
            extra_logps()
        loss = super()._compute_loss(model, inputs)
        if self.ref_call in ("after", "twice"):
            extra_logps()
        return loss


class FutureAIRTrainer(AIRTrainer, FutureGRPO):
    """``AIRTrainer`` on ``FutureGRPO``: its ``super()._compute_loss`` is the simulated TRL's."""


@pytest.mark.parametrize("ref_call", ["before", "after"])
def test_gradient_free_log_prob_call_in_trl_loss_never_takes_the_aux_gradient(f64_batch, ref_call):
    # Either the trainer refuses such a TRL (RuntimeError naming the pin) or it still applies the exact aux
    # gradient; never a silent aux term without gradient.
    trainer, out, call = f64_batch
    trainer.loss_type, trainer.importance_sampling_level = "grpo", "token"
    trainer.current_gradient_accumulation_steps = 1
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    g_none = flat(grads(GRPOTrainer._compute_loss(trainer, trainer.model, out), params), params)
    rewards, coef = expected_coefficients(call, k=K)
    g_aux = independent_aux_gradient(trainer, out, rewards, coef, params)

    trainer.__class__ = FutureAIRTrainer
    FutureGRPO.ref_call = ref_call
    try:
        loss = trainer.compute_loss(trainer.model, out)
    except RuntimeError as err:
        assert "trl==1.16.0" in str(err)
        return
    finally:
        trainer.__class__ = AIRTrainer
    g_air = flat(grads(loss, params), params)
    scale = g_aux.abs().max().item()
    assert scale > 1e-3
    assert (g_air - g_none - g_aux).abs().max().item() <= REL_TOL * scale


def test_second_gradient_carrying_log_prob_call_in_trl_loss_is_refused(f64_batch):
    # Two policy forwards in one TRL loss: which one feeds TRL's terms is TRL's business, so the trainer cannot know
    # that the aux term took the right one. It must say so, naming the TRL pin.
    trainer, out, _ = f64_batch
    trainer.loss_type, trainer.importance_sampling_level = "grpo", "token"
    trainer.current_gradient_accumulation_steps = 1
    trainer.__class__ = FutureAIRTrainer
    FutureGRPO.ref_call = "twice"
    try:
        with pytest.raises(RuntimeError, match=r"trl==1\.16\.0"):
            trainer.compute_loss(trainer.model, out)
    finally:
        trainer.__class__ = AIRTrainer


# -- per-row AIR tensors through TRL's shuffle and split ----------------------------------------------------------


def indexed_rollout(prompts, trainer):
    """Row i of the generation batch gets the completion ``row{i}``: every row's text names its position."""
    tokenizer = trainer.processing_class
    prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
    completion_ids = [
        tokenizer.encode(f"row{i}", add_special_tokens=False) + [tokenizer.eos_token_id] for i in range(len(prompts))
    ]
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def planted_reward(completions, **kwargs):
    """A distinct reward for every row, from the position its completion names (0.0, 0.19, 0.38, … mod 1)."""
    return [(19 * int(c[-1]["content"].removeprefix("row")) % 100) / 100 for c in completions]


def row_index(trainer, completion_ids, completion_mask) -> int:
    text = trainer.processing_class.decode(completion_ids[completion_mask.bool()], skip_special_tokens=True)
    return int(text.removeprefix("row"))


def test_air_tensors_stay_with_their_rows_through_trl_shuffle_and_split(tmp_path):
    # One generation batch of 36 rows (4 meta-groups), shuffled by TRL and split into 4 micro-batches of 9. Each row
    # the loss sees must carry its own reward and Δ: those of the row its completion names.
    trainer = toy_trainer(
        "air",
        str(tmp_path),
        reward_funcs=planted_reward,
        steps_per_generation=4,
        gradient_accumulation_steps=2,
        max_steps=2,
    )
    trainer.rollout_func = indexed_rollout
    generations, batches, seen = [], [], []
    generate = recording(generations, trainer._generate_and_score_completions)
    trainer._generate_and_score_completions = lambda inputs: (batches.append(inputs), generate(inputs))[1]
    compute_loss = trainer._compute_loss

    def recording_compute_loss(model, inputs):
        seen.append({key: inputs[key].detach().clone() for key in ("completion_ids", "completion_mask", "air_coef")})
        seen[-1]["air_reward"] = inputs["air_reward"].clone()
        return compute_loss(model, inputs)

    trainer._compute_loss = recording_compute_loss
    trainer.train()

    [out] = generations  # unshuffled, in the rewards' order
    n = out["completion_ids"].shape[0]
    rows = [row_index(trainer, ids, m) for ids, m in zip(out["completion_ids"], out["completion_mask"], strict=True)]
    assert rows == list(range(n)) == list(range(36))
    planted = torch.tensor([(19 * i % 100) / 100 for i in range(n)])
    assert torch.equal(out["air_reward"], planted) and len(set(planted.tolist())) == n  # one value per row
    [batch] = batches
    expected = invariance_coefficients(
        planted,
        torch.arange(n) // K,
        compact_ids([row["group_id"] for row in batch]),
        torch.tensor([row["role"] == "anchor" for row in batch]),
        "air",
    )
    assert torch.equal(out["air_coef"], expected) and len(set(expected.tolist())) >= 5  # Δ varies across prompts

    order = []
    for micro in seen:
        for ids, mask, coef, reward in zip(
            micro["completion_ids"], micro["completion_mask"], micro["air_coef"], micro["air_reward"], strict=True
        ):
            i = row_index(trainer, ids, mask)
            order.append(i)
            assert reward.item() == planted[i].item(), f"row {i} carries another row's reward"
            assert coef.item() == out["air_coef"][i].item(), f"row {i} carries another row's Δ"
    assert len(seen) == 4 and sorted(order) == list(range(n))  # every row once ...
    assert order != list(range(n))  # ... in TRL's shuffled order: the check is not vacuous


# -- the other loss types: the same aux gradient -------------------------------------------------------------------


def aux_part(trainer, out, params):
    """∇(AIR loss) − ∇(TRL's loss) on ``out``: what the aux term adds."""
    g_air = flat(grads(trainer.compute_loss(trainer.model, out), params), params)
    return g_air, g_air - flat(grads(GRPOTrainer._compute_loss(trainer, trainer.model, out), params), params)


@pytest.mark.parametrize(
    ("loss_type", "level"),
    [("cispo", "token"), ("sapo", "token"), ("luspo", "sequence"), ("luspo", "token"), ("vespo", "token")],
)
def test_other_loss_types_get_the_same_aux_gradient(f64_batch, loss_type, level):
    trainer, out, call = f64_batch
    trainer.current_gradient_accumulation_steps = 1
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    trainer.loss_type, trainer.importance_sampling_level = "grpo", "token"
    g_grpo, aux_grpo = aux_part(trainer, out, params)
    trainer.loss_type, trainer.importance_sampling_level = loss_type, level
    try:
        g_air, aux = aux_part(trainer, out, params)
    finally:
        trainer.loss_type, trainer.importance_sampling_level = "grpo", "token"
    rewards, coef = expected_coefficients(call, k=K)
    g_aux = independent_aux_gradient(trainer, out, rewards, coef, params)
    scale = g_aux.abs().max().item()
    assert scale > 1e-3
    assert (aux - g_aux).abs().max().item() <= REL_TOL * scale  # the aux term, exactly
    assert (aux - aux_grpo).abs().max().item() <= REL_TOL * scale  # as with grpo
    assert g_air.isfinite().all()
    if loss_type != "sapo":  # SAPO's soft gate has slope 1 at ratio 1: on-policy its policy gradient is GRPO's
        assert (g_air - g_grpo).abs().max().item() > 10 * REL_TOL * scale  # TRL's loss type did change


@pytest.mark.parametrize(
    ("loss_type", "level"), [("cispo", "token"), ("sapo", "token"), ("luspo", "sequence"), ("vespo", "token")]
)
def test_other_loss_types_train_with_air(tmp_path, loss_type, level):
    # Two micro-batches per step (the normalisers of cispo and vespo use num_items_in_batch): a step runs, logs a
    # non-zero aux loss and moves the parameters.
    trainer = toy_trainer(
        "air",
        str(tmp_path),
        loss_type=loss_type,
        importance_sampling_level=level,
        steps_per_generation=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    [logged] = [h for h in trainer.state.log_history if "invariance/aux_loss" in h]
    assert logged["invariance/aux_loss"] != 0.0 and torch.isfinite(torch.tensor(logged["loss"]))
    moved = max((p.detach() - q).abs().max().item() for p, q in zip(trainer.model.parameters(), before, strict=True))
    assert moved > 1e-4
