"""Batched generation for evaluation: chat template, left padding, greedy by default, only new tokens decoded.

Prompts are sorted by length before batching (less padding) and returned in the input order. With
``num_samples > 1`` each prompt is sampled ``num_samples`` times at ``temperature`` (> 0 required), seeded.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm


def render_prompts(tokenizer, prompts: list[list[dict]]) -> list[str]:
    """Chat-template each message list with the assistant generation prompt appended."""
    return [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    prompts: list[list[dict]],
    *,
    max_new_tokens: int = 256,
    batch_size: int = 8,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> list[list[str]]:
    """``num_samples`` completions for each chat prompt (list of messages); ``out[i][j]`` = sample j of prompt i.

    Greedy when ``temperature == 0`` (then ``num_samples`` must be 1: greedy samples would be identical).
    """
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"num_samples ({num_samples}), batch_size ({batch_size}) and max_new_tokens ({max_new_tokens}) "
            "must all be >= 1"
        )
    if num_samples > 1 and temperature <= 0:
        raise ValueError(
            f"num_samples={num_samples} with greedy decoding gives identical samples; set temperature > 0"
        )
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to the eos token)")
    texts = render_prompts(tokenizer, prompts)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    gen_kwargs = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
    if temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=temperature, top_p=1.0, top_k=0)
    else:
        gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    out: list[list[str]] = [[] for _ in texts]
    try:
        bar = tqdm(total=len(texts) * num_samples, desc="generate", unit="completion", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            for _ in range(num_samples):
                seqs = model.generate(**enc, **gen_kwargs)  # (b, T_prompt + T_new)
                new = seqs[:, enc["input_ids"].shape[1] :]  # (b, T_new): left padding aligns the prompt ends
                for i, text in zip(idx, tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    out[i].append(text)
                bar.update(len(idx))
        bar.close()
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    return out
