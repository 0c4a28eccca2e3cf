"""Each prompt run once (``air_align/lab/shared_prompts.py``, docs/performance.md "One lab run"): the loss forward
computes what TRL's padded forward computes (float64: the same log-probs, entropies and gradients; float32: the same
up to rounding), generation's shared prefill samples what the plain prefill samples, and the lab trains with it like
without it."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch
import trl.trainer.utils as trl_utils
from test_lab_padding import TIMING, _batch, _model, _trl, _with_gradients, assert_trained_alike
from transformers.models.qwen2 import modeling_qwen2

from air_align.lab import shared_prompts, world
from air_align.lab import trainer as lab_trainer
from air_align.lab.runs import RunSpec, Training, build_run_trainer
from air_align.lab.shared_prompts import (
    completion_chunks,
    distinct_prompts,
    prompts_can_be_shared,
    shared_prompt_cache,
    shared_prompt_logps_and_entropies,
    supports_shared_prompts,
)
from air_align.lab.tokenizer import build_lab_tokenizer
from air_align.models import tiny_causal_lm

TEMPERATURE = 0.7  # _model's fused head's


def _grouped_batch(tokenizer, groups: int = 4, k: int = 4, seed: int = 0):
    """GRPO's layout: ``groups`` prompts of random lengths, each repeated ``k`` times with its own completion."""
    ids, mask, keep = _batch(tokenizer, rows=groups * k, seed=seed)
    prompt_width = ids.shape[1] - keep
    owner = torch.arange(groups * k) // k * k  # rows k·g … k·g + k − 1 read row k·g's prompt
    ids[:, :prompt_width], mask[:, :prompt_width] = ids[owner, :prompt_width], mask[owner, :prompt_width]
    return ids, mask, keep


def _compare(model, ids, mask, keep, chunks: int, max_rows: int | None = None):
    """Max abs differences from TRL's forward: ``[log-probs, entropies]`` and per parameter ``(difference,
    largest gradient)``; checks the shapes and that padding is exactly 0."""
    weights = torch.randn(ids.shape[0], keep, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    weights = weights.to(next(model.parameters()).dtype)
    reference = _with_gradients(model, lambda: _trl(model, ids, mask, keep), weights)
    shared = _with_gradients(
        model,
        lambda: shared_prompt_logps_and_entropies(
            model, ids, mask, keep, chunks, max_rows=max_rows, compute_entropy=True, temperature=TEMPERATURE
        ),
        weights,
    )
    padding = mask[:, -keep:] == 0
    for ours, theirs in zip(shared[:2], reference[:2], strict=True):
        assert ours.shape == theirs.shape == (ids.shape[0], keep) and ours.dtype == theirs.dtype
        assert (ours[padding] == 0).all() and (theirs[padding] == 0).all()
    diffs = [(a - b).abs().max().item() for a, b in zip(shared[:2], reference[:2], strict=True)]
    gradients = {
        name: ((a - b).abs().max().item(), b.abs().max().item())
        for (name, _), a, b in zip(model.named_parameters(), shared[2], reference[2], strict=True)
    }
    return diffs, gradients


class _Float64Head:
    """TRL's fused head's maths (``trl.kernels.ChunkedLogProbFunction``'s arguments and outputs) in plain float64
    autograd: TRL's kernel accumulates its backward in float32 whatever the input's dtype. With it and
    :func:`_rms_norm_in_its_dtype` both forwards are float64 throughout, and what is compared is the rest:
    positions, attention, the sharing of the prompts."""

    @staticmethod
    def apply(hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs):
        assert softcap is None
        logits = (hidden @ weight.T + (0 if bias is None else bias)) * logit_scale / temperature
        logp = torch.log_softmax(logits, dim=-1)
        entropy = -(logp.exp() * logp).sum(-1) if "entropy" in outputs else None
        return logp.gather(-1, targets[:, None]).squeeze(-1), entropy, None, None, None


def _rms_norm_in_its_dtype(self, hidden_states):
    """Qwen2's RMSNorm without its cast to float32 (transformers computes the norm in float32 whatever the model's
    dtype). With the prompts shared, a prompt token's K gradients are summed before the norm's backward, not after
    it as in TRL's padded batch: through a float32 norm the two agree to float32 rounding only."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


@pytest.mark.parametrize(("k", "chunks", "max_rows"), [(4, 1, None), (4, 3, None), (4, 3, 5), (1, 2, None)])
def test_the_shared_prompt_forward_is_trl_s_maths_in_float64(monkeypatch, k, chunks, max_rows):
    model, tokenizer = _model(torch.float64, temperature=TEMPERATURE)
    ids, mask, keep = _grouped_batch(tokenizer, groups=16 // k, k=k)
    with_trl_head = _compare(model, ids, mask, keep, chunks, max_rows)
    assert with_trl_head[0] == [0.0, 0.0]  # the forward values: TRL's kernel computes them in the input's dtype
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", _Float64Head)  # what TRL's padded forward calls
    monkeypatch.setattr(shared_prompts, "ChunkedLogProbFunction", _Float64Head)
    monkeypatch.setattr(modeling_qwen2.Qwen2RMSNorm, "forward", _rms_norm_in_its_dtype)
    (logps, entropies), gradients = _compare(model, ids, mask, keep, chunks, max_rows)
    assert logps < 1e-12 and entropies < 1e-12
    assert all(diff < 1e-12 * max(1.0, largest) for diff, largest in gradients.values())
    assert distinct_prompts(ids[:, : ids.shape[1] - keep], mask[:, : ids.shape[1] - keep])[0].shape[0] == 16 // k


def test_the_shared_prompt_forward_in_float32_differs_by_rounding_only():
    torch.set_num_threads(1)
    model, tokenizer = _model(torch.float32, temperature=TEMPERATURE)
    ids, mask, keep = _grouped_batch(tokenizer)
    (logps, entropies), gradients = _compare(model, ids, mask, keep, chunks=3)
    # Measured on the development machine (one thread): log-probs and entropies 4.8e-07 apart, every gradient within
    # 5.4e-07 of its parameter's largest.
    assert logps < 1e-5 and entropies < 1e-5
    assert max(diff / largest for diff, largest in gradients.values()) < 1e-5


def test_completion_chunks_cover_every_row_once_and_every_real_token():
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 0, 1, 0]])
    for chunks in (1, 2, 3, 5):
        plan = completion_chunks(mask, chunks, max_rows=2)
        rows = torch.cat([r for r, _ in plan])
        assert sorted(rows.tolist()) == [0, 1, 2, 3, 4] and len(plan) >= 3  # ≤ 2 rows a chunk
        for r, width in plan:
            assert r.numel() <= 2 and (mask[r, width:] == 0).all() and 1 <= width <= mask.shape[1]
    assert [width for _, width in completion_chunks(mask, chunks=1)] == [5]


def test_only_left_padded_prompts_and_plain_heads_are_shared():
    mask = torch.ones(2, 6, dtype=torch.long)
    assert prompts_can_be_shared(mask, logits_to_keep=2)
    mask[1, 3] = 0  # row 1's prompt ends before the last prompt column: not TRL's layout
    assert not prompts_can_be_shared(mask, logits_to_keep=2)
    assert not prompts_can_be_shared(mask, logits_to_keep=6)  # no prompt
    model, _ = _model()
    assert supports_shared_prompts(model) is None
    model.config.final_logit_softcapping = 30.0
    assert "final_logit_softcapping" in supports_shared_prompts(model)


def test_generation_with_the_shared_prefill_samples_the_same_tokens():
    torch.set_num_threads(1)
    model, tokenizer = _model(torch.float64)
    model.eval()
    ids, mask, keep = _grouped_batch(tokenizer)
    prompt_ids, prompt_mask = ids[:, : ids.shape[1] - keep], mask[:, : ids.shape[1] - keep]
    widths = []
    hook = model.model.register_forward_pre_hook(
        lambda _, args, kw: widths.append(kw["input_ids"].shape), with_kwargs=True
    )
    options = dict(max_new_tokens=6, do_sample=True, top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        torch.manual_seed(3)
        plain = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, **options)
        plain_widths, widths[:] = list(widths), []
        cache = shared_prompt_cache(model, prompt_ids, prompt_mask)
        torch.manual_seed(3)
        shared = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, cache=cache, **options)
    hook.remove()
    assert torch.equal(plain, shared)
    width = prompt_ids.shape[1]
    assert plain_widths[0] == (16, width)  # the plain prefill: every row's whole prompt
    # shared: the 4 distinct prompts but their last token once, then the last prompt token of each row
    assert widths[:2] == [(4, width - 1), (16, 1)] and len(widths) == len(plain_widths) + 1
    distinct = torch.cat([prompt_ids, prompt_mask], dim=1)
    assert shared_prompt_cache(model, prompt_ids[::4], prompt_mask[::4]) is None  # nothing repeats: plain prefill
    assert torch.unique(distinct, dim=0).shape[0] == 4


def _train(tmp_path, monkeypatch, shared_prompts: bool, steps: int = 4):
    """A 4-step lab GRPO+AIR run from an untrained tiny model: ``(parameters, logged rows, calls)``."""
    tokenizer = build_lab_tokenizer("safety")
    model = tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=2, max_positions=128, seed=0)
    rows = world.build_rows("safety", seed=0, splits=("train",))
    training = Training(
        max_steps=steps, groups_per_step=1, max_completion_length=8, padding_chunks=0, shared_prompts=shared_prompts
    )
    run = RunSpec(world="safety", method="grpo+air", lam=0.5, seed=0, warm_start="unused", training=training)
    trainer = build_run_trainer(run, model, tokenizer, rows, tmp_path)
    assert trainer.shared_prompts is shared_prompts
    calls = {"forward": 0, "cache": 0}
    forward, cache = lab_trainer.shared_prompt_logps_and_entropies, lab_trainer.shared_prompt_cache

    def counted_forward(*args, **kwargs):
        calls["forward"] += 1
        return forward(*args, **kwargs)

    def counted_cache(*args, **kwargs):
        result = cache(*args, **kwargs)
        calls["cache"] += result is not None
        return result

    with monkeypatch.context() as patch:
        patch.setattr(lab_trainer, "shared_prompt_logps_and_entropies", counted_forward)
        patch.setattr(lab_trainer, "shared_prompt_cache", counted_cache)
        torch.set_num_threads(1)
        trainer.train()
    assert "generate" not in vars(trainer.model)  # the wrapper is gone after each generation
    logged = [{k: v for k, v in row.items() if k not in TIMING} for row in trainer.state.log_history]
    return [p.detach().clone() for p in trainer.model.parameters()], logged, calls


def test_the_lab_trains_alike_with_and_without_shared_prompts(tmp_path, monkeypatch):
    plain, plain_log, plain_calls = _train(tmp_path / "plain", monkeypatch, False)
    shared, shared_log, shared_calls = _train(tmp_path / "shared", monkeypatch, True)
    assert plain_calls == {"forward": 0, "cache": 0}
    # one loss forward per pass (2 generation batches × 2 passes), every one shared; one shared prefill a generation
    assert shared_calls == {"forward": 4, "cache": 2}
    assert_trained_alike(plain, plain_log, shared, shared_log)


def test_shared_prompts_must_be_true_or_false():
    with pytest.raises(ValueError, match=r"Training.shared_prompts must be true or false, got 1"):
        Training(shared_prompts=1)


def test_a_head_that_scales_its_logits_falls_back_to_trl_s_forward():
    model, tokenizer = _model(torch.float64, temperature=TEMPERATURE)
    model.config.logit_scale = 0.5  # the shared forward's head could not apply it: TRL's forward must run
    ids, mask, keep = _grouped_batch(tokenizer)
    host = SimpleNamespace(
        shared_prompts=True,
        padding_chunks=0,
        temperature=TEMPERATURE,
        args=SimpleNamespace(cast_lm_head_to_fp32=False),
        accelerator=SimpleNamespace(autocast=contextlib.nullcontext, is_main_process=True),
    )
    host._shares_prompts = lab_trainer.TrimmedForward._shares_prompts.__get__(host)
    assert not host._shares_prompts(model, mask, keep)
    host.args.cast_lm_head_to_fp32, model.config.logit_scale = True, None
    assert not host._shares_prompts(model, mask, keep)
    host.args.cast_lm_head_to_fp32 = False
    assert host._shares_prompts(model, mask, keep)
