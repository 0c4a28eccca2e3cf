"""Each prompt run once, its keys and values shared by the completions sampled from it: the loss forward, and
generation's prefill (:func:`shared_prompt_cache`).

GRPO samples K completions of every prompt, and TRL's loss forward (``GRPOTrainer._get_per_token_logps_and_entropies``)
runs each of them with its own copy of the prompt: in the lab (K = 4, prompts about as long as completions) more than
half of the batch's real tokens are prompt tokens computed K times over (docs/performance.md, "Each prompt once").
In the loss forward:

1. the batch's distinct prompts run once, through the backbone (``use_cache=True``): their keys and values at every
   layer, and the last prompt position's hidden state, which predicts the first completion token;
2. the completions run on those keys and values (the backbone's ``cache``), each row reading its prompt's
   (``index_select``, differentiable: the gradients of a prompt's K completions meet in its one forward), in a few
   row chunks as wide as their longest completion (``padding.cheapest_split``, rows sorted by completion length);
3. TRL's fused log-prob head (``trl.kernels.ChunkedLogProbFunction``, the kernel TRL's own forward calls) scores the
   completion tokens only, and the values go back to TRL's ``(B, logits_to_keep)`` layout, padding 0.

In exact arithmetic this is TRL's computation:

- every token keeps its position id, its batch column (TRL's padded forward leaves ``position_ids`` None, which
  transformers makes the column indices ``0, …, L - 1`` whatever the padding);
- a completion token attends to its prompt's real tokens and to its own completion's earlier real tokens, as in the
  padded batch: the attention mask is the row's own (its prompt part is its prompt's, which is the same for every row
  sharing it), and the causal mask puts every prompt key before every completion query;
- a completion token's log-prob is read from the hidden state of the position before it, the last prompt position's
  for the first completion token.

What differs is the rounding: other matrix shapes, and each prompt's gradient summed over its K completions in another
order. ``tests/test_lab_shared_prompts.py`` measures it. The lab's ``Training.shared_prompts`` turns it on.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import DynamicCache
from trl.kernels import ChunkedLogProbFunction

from air_align.lab.padding import cheapest_split

HEAD_ROWS_PER_TILE = 32768
"""Rows the fused head projects at a time (a memory bound only: every row is scored alike)."""

_LOGIT_SCALERS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def supports_shared_prompts(model) -> str | None:
    """Why ``model``'s log-probs cannot come from :func:`shared_prompt_logps_and_entropies` (None when they can): the
    fused head here applies temperature only, as TRL's does for a model whose config scales or caps no logit."""
    config = model.config.get_text_config()
    scalers = [name for name in _LOGIT_SCALERS if getattr(config, name, None) is not None]
    if scalers:
        return f"the model's config scales or caps its logits ({', '.join(scalers)})"
    if model.config.is_encoder_decoder:
        return "the model is an encoder-decoder"
    return None


def distinct_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's distinct prompts (token and mask rows together) and, for each row, the index of its own.

    Shape:
        prompt_ids, prompt_mask (B, P) -> (U, 2P), (B,)

    >>> ids = torch.tensor([[0, 5, 6], [0, 5, 6], [7, 8, 9], [0, 5, 6]])
    >>> unique, owner = distinct_prompts(ids, (ids != 0).long())
    >>> unique.shape, owner.tolist()
    (torch.Size([2, 6]), [0, 0, 1, 0])
    """
    rows = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    unique, owner = torch.unique(rows, dim=0, return_inverse=True)
    return unique, owner


def completion_chunks(completion_mask: torch.Tensor, chunks: int, max_rows: int | None = None) -> list:
    """Rows sorted by completion length (one past the last real token, at least 1) and cut into at most ``chunks``
    runs by ``padding.cheapest_split`` (each at most ``max_rows`` rows): ``[(rows, width), …]``.

    >>> mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0]])
    >>> [(rows.tolist(), width) for rows, width in completion_chunks(mask, chunks=2)]
    [([1, 3], 2), ([0, 2], 4)]
    """
    columns = torch.arange(completion_mask.shape[1], device=completion_mask.device)
    ends = (torch.where(completion_mask.bool(), columns, -1).max(dim=1).values + 1).clamp(min=1)
    lengths, order = torch.sort(ends, stable=True)
    plan = []
    for i, j in cheapest_split(lengths.tolist(), chunks):
        pieces = -(-(j - i) // max_rows) if max_rows else 1
        for rows in torch.tensor_split(order[i:j], pieces):
            plan.append((rows, int(ends[rows].max())))
    return plan


def _score(model, hidden: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor, temperature: float, entropy: bool):
    """TRL's fused head on the valid positions only; ``(b, w)`` log-probs (and entropies), 0 elsewhere."""
    head = model.get_output_embeddings()
    outputs = ("log_probs", "entropy") if entropy else ("log_probs",)
    logps, entropies, *_ = ChunkedLogProbFunction.apply(
        hidden[valid], head.weight, head.bias, labels[valid], temperature, HEAD_ROWS_PER_TILE, None, 1.0, outputs
    )
    # masked_scatter keeps a chunk without a valid token connected to the graph (a differentiable zero), as TRL does
    logps = logps.new_zeros(valid.shape).masked_scatter(valid, logps)
    return logps, (entropies.new_zeros(valid.shape).masked_scatter(valid, entropies) if entropy else None)


def shared_prompt_logps_and_entropies(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    chunks: int = 3,
    max_rows: int | None = None,
    compute_entropy: bool = False,
    autocast=None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the completion tokens, as TRL's ``_get_per_token_logps_and_entropies``
    gives them for a text-only batch (``temperature`` as TRL's fused head divides the logits), with each distinct
    prompt run once (module docstring). Prompts are left-padded, so every row's last prompt column must be real
    (:func:`prompts_can_be_shared`). ``autocast``: a context manager factory (the accelerator's), None for none.

    Shape:
        input_ids, attention_mask (B, L) -> (B, logits_to_keep), (B, logits_to_keep) or None
    """
    autocast = autocast or contextlib.nullcontext
    prompt_width = input_ids.shape[1] - logits_to_keep
    unique, owner = distinct_prompts(input_ids[:, :prompt_width], attention_mask[:, :prompt_width])
    unique_ids, unique_mask = unique[:, :prompt_width], unique[:, prompt_width:].to(attention_mask.dtype)
    first = int(unique_mask.any(dim=0).long().argmax())  # columns before it are padding in every prompt
    backbone = model.base_model
    columns = torch.arange(first, prompt_width, device=input_ids.device)
    with autocast():
        prompts = backbone(
            input_ids=unique_ids[:, first:],
            attention_mask=unique_mask[:, first:],
            position_ids=columns.expand(unique.shape[0], -1),
            use_cache=True,
        )
    last = prompts.last_hidden_state[:, -1]  # (U, hidden): predicts each prompt's first completion token

    completion_ids, completion_mask = input_ids[:, prompt_width:], attention_mask[:, prompt_width:]
    plan = completion_chunks(completion_mask, chunks, max_rows)
    logps, entropies = [], []
    for rows, width in plan:
        own = owner[rows]
        past = _rows_of(prompts.cache, own, model.config)  # (b, heads, P', d) keys and values at every layer
        ids, mask = completion_ids[rows, :width], completion_mask[rows, :width]
        with autocast():
            hidden = backbone(
                input_ids=ids,
                attention_mask=torch.cat([unique_mask[own, first:], mask], dim=1),
                position_ids=(prompt_width + torch.arange(width, device=ids.device)).expand(rows.numel(), -1),
                cache=past,
                use_cache=True,
            ).last_hidden_state  # (b, width, hidden)
            before = torch.cat([last.index_select(0, own)[:, None], hidden[:, :-1]], dim=1)  # predicts each token
            values = _score(model, before, ids, mask.bool(), temperature, compute_entropy)
        pad = logits_to_keep - width
        logps.append(torch.nn.functional.pad(values[0], (0, pad)))
        if compute_entropy:
            entropies.append(torch.nn.functional.pad(values[1], (0, pad)))
    order = torch.argsort(torch.cat([rows for rows, _ in plan]))
    logps = torch.cat(logps).index_select(0, order.to(input_ids.device))
    return logps, (torch.cat(entropies).index_select(0, order.to(input_ids.device)) if compute_entropy else None)


def prompts_can_be_shared(attention_mask: torch.Tensor, logits_to_keep: int) -> bool:
    """Whether every row's prompt ends at the last prompt column (TRL left-pads prompts): what
    :func:`shared_prompt_logps_and_entropies` reads the first completion token's log-prob from."""
    prompt_width = attention_mask.shape[1] - logits_to_keep
    return prompt_width > 0 and bool(attention_mask[:, prompt_width - 1].bool().all())


def shared_prompt_cache(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> DynamicCache | None:
    """For ``model.generate`` on left-padded prompts that repeat (GRPO's K copies of each): the keys and values of
    every row's prompt but its last token, computed once per distinct prompt and read by each of its rows. Passed
    as ``generate``'s ``cache``, the prefill then runs the last prompt token only (transformers slices the inputs
    past the cache's length). Position ids as ``generate`` makes them (the attention mask's running count, from 0 at
    a row's first token). None when no prompt repeats (the plain prefill costs the same).

    Shape:
        input_ids, attention_mask (B, P) -> a cache of P - 1 positions for B rows
    """
    width = input_ids.shape[1] - 1
    if width < 1:
        return None
    unique, owner = distinct_prompts(input_ids[:, :width], attention_mask[:, :width])
    if unique.shape[0] == input_ids.shape[0]:
        return None
    ids, mask = unique[:, :width], unique[:, width:].to(attention_mask.dtype)
    positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    prefix = model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True).cache
    return _rows_of(prefix, owner, model.config)


def _rows_of(cache, rows: torch.Tensor, config) -> DynamicCache:
    """A new cache holding, for each of ``rows``, the keys and values of that row of ``cache`` (differentiable)."""
    selected = [(layer.keys.index_select(0, rows), layer.values.index_select(0, rows)) for layer in cache.layers]
    return DynamicCache(ddp_cache_data=selected, config=config)
