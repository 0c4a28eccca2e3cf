"""Pieces of the GPU acceptance check (``scripts/gpu_check.py``; docs/performance.md, "GPU acceptance check"):
the model and tokenizer, trainers, the one-step identity, and timed runs with peak memory.

The identity is the one ``tests/test_train_trainer.py`` checks in float64 on the CPU: the gradient of the AIR loss
minus the gradient of TRL's own GRPO loss equals the gradient of ``air_align.objectives.aux_loss`` computed through
a separate plain forward (unfused head, ``log_softmax`` by hand).
"""

from __future__ import annotations

import gc
import string
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

# Qwen2.5-0.5B's shape (its config.json): 24 layers, width 896, 14 query / 2 key-value heads, MLP 4864, a
# 151 936-token vocabulary, tied embeddings: 494 M parameters. Random weights: enough for mechanics, time, memory.
QWEN05B_SHAPE = dict(
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    vocab_size=151936,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


@dataclass
class Sizes:
    """What one mode of the check runs; ``cuda`` and ``cpu`` instances are in ``scripts/gpu_check.py``."""

    device: str  # "cuda" or "cpu"
    model: str  # "qwen2.5-0.5b-shape" or "tiny"
    identity_batch: int  # completions in the identity's generation batch (meta-groups × 3 prompts × K = 3)
    identity_completion: int
    bench_batch: int
    bench_completion: int  # every completion has exactly this many tokens (EOS suppressed)
    bench_steps: int  # measured steps per run, after one warm-up step
    bench_rounds: int  # runs per mode, in alternating order
    ckpt_batch: int
    ckpt_completion: int
    ckpt_steps: int


def padded_char_tokenizer(vocab_size: int):
    """``air_align.models.build_char_tokenizer``'s character vocabulary padded with filler tokens ``<t123>`` to
    ``vocab_size``, so a model with Qwen2.5's vocabulary size (and its LM-head cost) can decode every id it samples."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    from air_align.models import chatml_fast_tokenizer

    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
    chars = sorted(set(string.printable))
    tokens = specials + chars
    tokens += [f"<t{i}>" for i in range(vocab_size - len(tokens))]
    backend = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    backend.decoder = decoders.Fuse()
    return chatml_fast_tokenizer(backend)


def build_policy(sizes: Sizes, seed: int = 0, device: str | None = None):
    """``(model, tokenizer)``, fp32, on ``device`` (default ``sizes.device``); the same ``seed`` gives the same
    weights on one device."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from air_align.models import build_char_tokenizer, tiny_causal_lm

    if sizes.model == "tiny":
        tokenizer = build_char_tokenizer()
        return tiny_causal_lm(tokenizer, hidden_size=32, num_layers=2, num_heads=4, seed=seed), tokenizer
    tokenizer = padded_char_tokenizer(QWEN05B_SHAPE["vocab_size"])
    config = Qwen2Config(
        **QWEN05B_SHAPE,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    with torch.device(device or sizes.device):  # initialised in place: no CPU init and copy
        model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


def checkpointing_kwargs(on: bool) -> dict:
    """AIRConfig's checkpointing switch under the name this AIRConfig has (transformers 5 renamed it)."""
    from dataclasses import fields

    from air_align.training.config import AIRConfig

    names = {f.name for f in fields(AIRConfig)}
    return {"activation_checkpointing": on} if "activation_checkpointing" in names else {"gradient_checkpointing": on}


def air_config(sizes: Sizes, output_dir: str, invariance: str, **overrides):
    """An ``AIRConfig`` for one run: K = 3, the toy meta-groups, no saving, no reporting; bf16 mixed precision on
    CUDA (fp32 master weights, as ``bf16=True`` trains), fp32 on CPU."""
    from air_align.training.config import AIRConfig

    values = dict(
        output_dir=output_dir,
        invariance=invariance,
        invariance_coef=0.1,
        num_generations=3,
        per_device_train_batch_size=9,
        max_completion_length=8,
        loss_type="grpo",
        learning_rate=1e-6,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        use_cpu=sizes.device == "cpu",
        bf16=sizes.device == "cuda",
        report_to="none",
        seed=0,
        **checkpointing_kwargs(False),
    )
    return AIRConfig(**{**values, **overrides})


def toy_rows(num_groups: int, domain: str = "toy") -> list[dict]:
    """``air_align.training.toy.toy_meta_groups`` (1 anchor + 2 open variants a group), relabelled to ``domain``."""
    from air_align.training.toy import toy_meta_groups

    rows = toy_meta_groups(num_groups, 2)
    for row in rows:
        row["domain"] = domain
    return rows


def make_trainer(sizes: Sizes, args, reward_funcs=None, run=None, rows=None, policy=None):
    """An ``AIRTrainer`` on ``policy`` (default: a fresh one, seed 0) through the project's recipe
    (``build_trainer``); ``run.reward`` decides the rewards when ``run`` is given, else ``reward_funcs`` or toy."""
    from air_align.training.recipe import RunConfig, build_trainer
    from air_align.training.toy import toy_reward

    model, tokenizer = policy or build_policy(sizes)
    return build_trainer(
        run or RunConfig(),
        args,
        model=model,
        tokenizer=tokenizer,
        rows=rows if rows is not None else toy_rows(8),
        reward_funcs=reward_funcs if reward_funcs is not None or run is not None else toy_reward,
    )


def fixed_length_kwargs(tokenizer) -> dict:
    """Generation kwargs that suppress EOS (and the pad token, which TRL counts as an ending): every completion runs
    to ``max_completion_length`` tokens, so runs of different modes compare the same amount of work (a policy
    drifting to other lengths would not). ``benchmarks/step_overhead.py --fixed-length`` does the same."""
    return {"suppress_tokens": sorted({tokenizer.eos_token_id, tokenizer.pad_token_id})}


# ---- the one-step identity -------------------------------------------------------------------------------------


def _flat_grad(loss, params):
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten().float() for g, p in zip(grads, params)])


def independent_aux_gradient(trainer, batch, params):
    """∇ of ``objectives.aux_loss`` through a plain forward of the batch (the check of tests/test_train_trainer.py)."""
    from air_align.objectives import aux_loss, sequence_logprob

    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)  # (B, P+C)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    logits = trainer.model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, P+C, V)
    c = batch["completion_ids"].shape[1]
    logits = logits[:, -c - 1 : -1].float() / trainer.temperature  # position t predicts token t+1
    logps = torch.log_softmax(logits, -1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)  # (B, C)
    seq = sequence_logprob(logps, batch["completion_mask"], trainer.args.aux_logprob_reduction)  # (B,)
    rewards, coef = batch["air_reward"].to(seq.dtype), batch["air_coef"].to(seq.dtype)
    return _flat_grad(aux_loss(seq, rewards, coef, trainer.args.invariance_coef, len(seq)), params)


def one_step_identity(sizes: Sizes, precision: str) -> dict:
    """``∇L_air − ∇L_none`` vs the independent aux gradient on one generation batch, λ = 0.5.

    ``precision``: ``"fp32"`` (fp32 weights and compute) or ``"bf16"`` (fp32 weights, bf16 autocast: what
    ``bf16=True`` trains with). Returns the relative error ``max|g_air − g_none − g_aux| / max|g_aux|`` and the size
    of the aux gradient relative to TRL's."""
    from trl import GRPOTrainer

    with tempfile.TemporaryDirectory() as tmp:
        args = air_config(
            sizes,
            tmp,
            "air",
            invariance_coef=0.5,
            per_device_train_batch_size=sizes.identity_batch,
            max_completion_length=sizes.identity_completion,
            bf16=False,
        )
        trainer = make_trainer(sizes, args)
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1
        batch = trainer._generate_and_score_completions(next(iter(trainer.get_train_dataloader())))
        params = [p for p in trainer.model.parameters() if p.requires_grad]
        autocast = torch.autocast(sizes.device, dtype=torch.bfloat16, enabled=precision == "bf16")
        with autocast:
            g_air = _flat_grad(trainer.compute_loss(trainer.model, batch), params)
            g_none = _flat_grad(GRPOTrainer._compute_loss(trainer, trainer.model, batch), params)
            g_aux = independent_aux_gradient(trainer, batch, params)
        aux_scale = g_aux.abs().max().item()
        error = (g_air - g_none - g_aux).abs().max().item()
        result = {
            "precision": precision,
            "completions": int(batch["completion_ids"].shape[0]),
            "nonzero_coefficients": int((batch["air_coef"] != 0).sum()),
            "max_abs_aux_grad": aux_scale,
            "aux_over_grpo_grad": aux_scale / max(g_none.abs().max().item(), 1e-30),
            "max_abs_error": error,
            "relative_error": error / max(aux_scale, 1e-30),
            "device": str(params[0].device),
        }
    del trainer, batch, params, g_air, g_none, g_aux
    release_memory(sizes.device)
    return result


# ---- timed runs ------------------------------------------------------------------------------------------------


def release_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMemory:
    """Peak memory of a block, in MiB above what was allocated when it began: CUDA's allocator peak on a GPU; on
    the CPU the peak RSS (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``; ``None`` where that is refused)."""

    def __init__(self, device: str):
        self.device, self.peak_mib, self.base_mib, self.note = device, None, None, ""

    def __enter__(self):
        release_memory(self.device)
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base_mib = torch.cuda.memory_allocated() / 2**20
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError as err:
                self.note = f"peak RSS cannot be reset here ({err.strerror})"
            self.base_mib = _rss_kib("VmRSS") / 1024
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = torch.cuda.max_memory_allocated() / 2**20 - self.base_mib
        elif not self.note:
            self.peak_mib = _rss_kib("VmHWM") / 1024 - self.base_mib
        return False


def timed_run(sizes: Sizes, invariance: str, steps: int, batch: int, completion: int, checkpointing: bool) -> dict:
    """Train a fresh policy ``steps`` optimiser steps on fixed-length completions; TRL's per-step ``step_time``
    (generation included), the logged mean completion length per step, peak memory, and whether the model had
    gradient checkpointing on after the trainer was built."""
    with tempfile.TemporaryDirectory() as tmp:
        policy = build_policy(sizes)
        args = air_config(
            sizes,
            tmp,
            invariance,
            invariance_coef=8e-4,
            per_device_train_batch_size=batch,
            max_completion_length=completion,
            max_steps=steps,
            generation_kwargs=fixed_length_kwargs(policy[1]),
            **checkpointing_kwargs(checkpointing),
        )
        trainer = make_trainer(sizes, args, policy=policy)
        model_probe = trainer.model
        checkpointing_after_build = bool(getattr(model_probe, "is_gradient_checkpointing", False))
        with PeakMemory(sizes.device) as memory:
            start = time.perf_counter()
            trainer.train()
            wall = time.perf_counter() - start
        logs = trainer.state.log_history
        result = {
            "invariance": invariance,
            "step_times": [h["step_time"] for h in logs if "step_time" in h],
            "mean_lengths": [h["completions/mean_length"] for h in logs if "completions/mean_length" in h],
            "clipped_ratios": [h["completions/clipped_ratio"] for h in logs if "completions/clipped_ratio" in h],
            "aux_losses": [h["invariance/aux_loss"] for h in logs if "invariance/aux_loss" in h],
            "peak_mib": memory.peak_mib,
            "memory_note": memory.note,
            "wall_s": wall,
            "checkpointing_after_build": checkpointing_after_build,
            "checkpointing_after_train": bool(getattr(model_probe, "is_gradient_checkpointing", False)),
        }
    del trainer, model_probe, policy
    release_memory(sizes.device)
    return result
