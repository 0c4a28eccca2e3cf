"""The loss forward without its padding (``air_align/lab/padding.py``, docs/performance.md "One lab run") computes
what TRL's padded forward computes: in float64 the same log-probs, entropies and gradients to 1e-12 (the same
maths: positions, attention and layout), in float32 the same up to rounding (not bit for bit: other matrix shapes
and another summation order in the weights' gradients); and the lab's trainer trains with it like without it."""

from __future__ import annotations

import contextlib
import itertools
import random
from types import SimpleNamespace

import pytest
import torch
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from air_align.lab import trainer as lab_trainer
from air_align.lab import world
from air_align.lab.padding import cheapest_split, chunk_inputs, plan_chunks, trimmed_logps_and_entropies
from air_align.lab.runs import RunSpec, Training, build_run_trainer
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.models import tiny_causal_lm

TIMING = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def _model(dtype=torch.float32, temperature: float = 0.7):
    """A tiny lab Qwen2 with TRL's fused log-prob head, as ``GRPOTrainer`` builds it (a temperature ≠ 1 on purpose)."""
    tokenizer = build_lab_tokenizer("safety")
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=2, max_positions=128, seed=0)
    add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
    return model.to(dtype).train(), tokenizer


def _batch(tokenizer, rows: int = 12, prompt_width: int = 9, completion_width: int = 7, seed: int = 0):
    """TRL's layout: prompts left-padded to ``prompt_width``, completions right-padded to ``completion_width``, of
    random lengths (at least one real token each; one row of each side full)."""
    g = torch.Generator().manual_seed(seed)
    prompt_lengths = torch.randint(2, prompt_width + 1, (rows,), generator=g)
    completion_lengths = torch.randint(1, completion_width + 1, (rows,), generator=g)
    prompt_lengths[0], completion_lengths[1] = prompt_width, completion_width
    ids = torch.randint(4, len(tokenizer), (rows, prompt_width + completion_width), generator=g)
    columns = torch.arange(prompt_width + completion_width)
    prompt_mask = columns[None, :prompt_width] >= prompt_width - prompt_lengths[:, None]
    completion_mask = columns[None, :completion_width] < completion_lengths[:, None]
    mask = torch.cat([prompt_mask, completion_mask], dim=1).long()
    ids = ids.masked_fill(mask == 0, tokenizer.pad_token_id)
    return ids, mask, completion_width


def _trl(model, ids, mask, logits_to_keep, **kwargs):
    """TRL 1.16's own ``_get_per_token_logps_and_entropies`` (of its host it reads only the accelerator)."""
    host = SimpleNamespace(accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True))
    logps, entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        host, model, ids, mask, logits_to_keep, compute_entropy=True, **kwargs
    )
    return logps, entropies


def _with_gradients(model, forward, weights):
    """Log-probs, entropies and every parameter's gradient of ``Σ weights · (log p + entropy)``."""
    model.zero_grad(set_to_none=True)
    logps, entropies = forward()
    ((logps + entropies) * weights).sum().backward()
    return logps.detach(), entropies.detach(), [p.grad.clone() for p in model.parameters()]


def _compare(model, tokenizer, chunks: int, max_rows: int | None = None):
    """Max abs differences between TRL's forward and the trimmed one: ``[log-probs, entropies]``, and per parameter
    ``(difference, largest gradient)``; with the trimmed forward's plan. Checks the shapes, dtypes and padding."""
    ids, mask, keep = _batch(tokenizer)
    weights = torch.randn(ids.shape[0], keep, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = weights.to(next(model.parameters()).dtype)
    reference = _with_gradients(model, lambda: _trl(model, ids, mask, keep), weights)
    trimmed = _with_gradients(
        model,
        lambda: trimmed_logps_and_entropies(model, ids, mask, keep, chunks, max_rows=max_rows, compute_entropy=True),
        weights,
    )
    for ours, theirs in zip(trimmed[:2], reference[:2], strict=True):
        assert ours.shape == theirs.shape == (ids.shape[0], keep) and ours.dtype == theirs.dtype
    padding = mask[:, -keep:] == 0
    for ours, theirs in zip(trimmed[:2], reference[:2], strict=True):  # TRL's fused head gives padding exactly 0
        assert (theirs[padding] == 0).all() and (ours[padding] == 0).all()
    diffs = [(a - b).abs().max().item() for a, b in zip(trimmed[:2], reference[:2], strict=True)]
    gradients = {
        name: ((a - b).abs().max().item(), b.abs().max().item())
        for (name, _), a, b in zip(model.named_parameters(), trimmed[2], reference[2], strict=True)
    }
    return diffs, gradients, plan_chunks(mask, ids.shape[1] - keep, chunks, max_rows)


@pytest.mark.parametrize(("chunks", "max_rows"), [(1, None), (3, None), (12, None), (2, 5)])
def test_the_trimmed_forward_is_trl_s_maths_in_float64(chunks, max_rows):
    model, tokenizer = _model(torch.float64)
    (logps, entropies), gradients, plan = _compare(model, tokenizer, chunks, max_rows)
    assert logps < 1e-12 and entropies < 1e-12
    # TRL's fused head accumulates the LM head's weight gradient in float32 (trl/kernels/chunked_logprob.py), over
    # the rows in their order: the tied embedding's gradient agrees to float32 rounding only, every other to 1e-12.
    tied, largest = gradients.pop("model.embed_tokens.weight")
    assert tied < 1e-6 * largest
    assert all(diff < 1e-12 * max(1.0, largest) for diff, largest in gradients.values())
    if max_rows:
        assert all(chunk.rows.numel() <= max_rows for chunk in plan) and len(plan) >= 3  # 12 rows, ≤ 5 a chunk
    else:
        assert 1 <= len(plan) <= chunks
    ids, mask, keep = _batch(tokenizer)
    kept = sum(chunk.rows.numel() * chunk.width for chunk in plan)
    assert mask.sum() <= kept <= mask.numel()  # no real token went
    assert kept < mask.numel() or len(plan) == 1  # padding went (one chunk keeps the full row's width)


def test_the_trimmed_forward_in_float32_differs_by_rounding_only():
    torch.set_num_threads(1)
    model, tokenizer = _model(torch.float32)
    (logps, entropies), gradients, _ = _compare(model, tokenizer, chunks=3)
    grads = max(diff / largest for diff, largest in gradients.values())
    # Measured on the development machine (one thread): log-probs and entropies 4.8e-07 apart (bit for bit with one
    # chunk, where the rows only move), every gradient within 6.4e-07 of its parameter's largest. Not bit for bit:
    # the matrix products see other shapes and the weights' gradients sum their rows in another order.
    assert logps < 1e-5 and entropies < 1e-5 and grads < 1e-5


def test_each_token_keeps_its_position_id_and_its_column():
    model, tokenizer = _model(torch.float32)
    ids, mask, keep = _batch(tokenizer)
    prompt_width = ids.shape[1] - keep
    # The untrimmed forward's position ids are the column indices, whatever the left padding: the same bits as
    # passing them explicitly.
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :prompt_width] = -100
    implicit = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
    columns = torch.arange(ids.shape[1])[None, :].expand_as(ids)
    explicit = model(input_ids=ids, attention_mask=mask, labels=labels, position_ids=columns, fused_lm_head=True)
    assert torch.equal(implicit, explicit.log_probs)
    for chunk in plan_chunks(mask, prompt_width, chunks=3):
        inputs = chunk_inputs(ids, mask, chunk, prompt_width)
        real = inputs["attention_mask"].bool()
        rows = chunk.rows[:, None].expand_as(real)
        assert torch.equal(inputs["input_ids"][real], ids[rows[real], inputs["position_ids"][real]])
        assert int(real.sum()) == int(mask[chunk.rows].sum())  # every real token of the rows, once
        assert (real[:, 0] | (mask[chunk.rows, prompt_width - 1] == 0)).all()  # rows start at their first token
        scored = inputs["labels"] != -100
        assert torch.equal(scored, real & (inputs["position_ids"] >= prompt_width))


def _positions(lengths: list[int], bounds: list[int]) -> int:
    """What the runs ``[bounds[k], bounds[k + 1])`` of ascending ``lengths`` cost: rows × their longest length."""
    return sum((j - i) * lengths[j - 1] for i, j in zip(bounds, bounds[1:]))


def test_the_cheapest_split_is_the_cheapest_of_all_splits():
    rng = random.Random(0)
    for _ in range(300):
        lengths = sorted(rng.randint(1, 6) for _ in range(rng.randint(1, 9)))
        chunks = rng.randint(1, 4)
        cut = cheapest_split(lengths, chunks)
        assert cut[0][0] == 0 and cut[-1][1] == len(lengths) and len(cut) <= chunks
        assert all(a[1] == b[0] < b[1] for a, b in zip(cut, cut[1:]))

        every = [
            _positions(lengths, [0, *inner, len(lengths)])
            for count in range(1, chunks + 1)
            for inner in itertools.combinations(range(1, len(lengths)), count - 1)
        ]
        assert _positions(lengths, [i for i, _ in cut] + [len(lengths)]) == min(every)


def _train(tmp_path, monkeypatch, padding_chunks: int, steps: int = 4):
    """A 4-step lab GRPO+AIR run from an untrained tiny model: ``(parameters, logged rows, trimmed forwards,
    forwards without gradient)``."""
    tokenizer = build_lab_tokenizer("safety")
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=2, max_positions=128, seed=0)
    rows = world.build_rows("safety", seed=0, splits=("train",))
    options = dict(padding_chunks=padding_chunks, shared_prompts=False)
    training = Training(max_steps=steps, groups_per_step=1, max_completion_length=8, **options)
    run = RunSpec(world="safety", method="grpo+air", lam=0.5, seed=0, warm_start="unused", training=training)
    trainer = build_run_trainer(run, model, tokenizer, rows, tmp_path)
    assert trainer.padding_chunks == padding_chunks
    counts = {"trimmed": 0, "no_grad": 0}
    forward = trainer._get_per_token_logps_and_entropies

    def counted(*args, **kwargs):
        result = forward(*args, **kwargs)
        counts["no_grad"] += not result[0].requires_grad
        return result

    trainer._get_per_token_logps_and_entropies = counted
    trimmed = lab_trainer.trimmed_logps_and_entropies

    def counted_trimmed(*args, **kwargs):
        counts["trimmed"] += 1
        return trimmed(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(lab_trainer, "trimmed_logps_and_entropies", counted_trimmed)
        torch.set_num_threads(1)
        trainer.train()
    logged = [{k: v for k, v in row.items() if k not in TIMING} for row in trainer.state.log_history]
    return [p.detach().clone() for p in trainer.model.parameters()], logged, counts


def test_the_lab_trains_alike_with_and_without_the_padding(tmp_path, monkeypatch):
    padded, padded_log, padded_counts = _train(tmp_path / "padded", monkeypatch, 0)
    trimmed, trimmed_log, trimmed_counts = _train(tmp_path / "trimmed", monkeypatch, 3)
    assert padded_counts == {"trimmed": 0, "no_grad": 0}
    # one loss forward per pass (2 batches × 2 passes), all trimmed; π_old still from the first pass (no extra forward)
    assert trimmed_counts == {"trimmed": 4, "no_grad": 0}
    # Measured: parameters within 2.5e-06 after 4 steps (not bit for bit); the same completions and rewards.
    assert_trained_alike(padded, padded_log, trimmed, trimmed_log)


def assert_trained_alike(params, log, other_params, other_log):
    """Two short runs that differ by rounding only: parameters within 1e-4, the same completions, rewards and token
    counts in every logged row (what was sampled and judged), every other logged number within 1e-4 relative."""
    assert max((a - b).abs().max().item() for a, b in zip(params, other_params, strict=True)) < 1e-4
    assert len(log) == len(other_log)
    for ours, theirs in zip(other_log, log, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            if key.startswith(("reward", "completions/", "num_tokens")):  # what was sampled and judged: the same
                assert ours[key] == value, key
            elif isinstance(value, float):
                assert ours[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


def test_padding_chunks_must_be_a_whole_number():
    with pytest.raises(ValueError, match=r"Training.padding_chunks must be a whole number >= 0, got -1"):
        Training(padding_chunks=-1)
    with pytest.raises(ValueError, match=r"got True"):
        Training(padding_chunks=True)


def test_committed_grids_keep_trl_s_forward_and_the_others_take_the_fast_forwards():
    from air_align.lab.presets import PRESETS

    committed = {"regimes", "full", "control", "v3-e1", "v3-e2", "v3-e3", "v3-e3-wide", "v3-e4", "v3-main"}
    assert committed <= set(PRESETS)
    for name, preset in PRESETS.items():
        assert preset.training.padding_chunks == (0 if name in committed else 3), name
        assert preset.training.shared_prompts is (name not in committed), name
    # the committed grids' runs keep the training they ran under, field for field: TRL's forward and generation
    assert PRESETS["full"].training == Training(padding_chunks=0, shared_prompts=False)
    assert Training().padding_chunks == 3 and Training().shared_prompts
