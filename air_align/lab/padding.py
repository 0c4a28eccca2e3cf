"""The loss forward without most of its padding: rows regrouped by length, each moved to start at its first token.

TRL's loss forward (``GRPOTrainer._get_per_token_logps_and_entropies``) runs the whole micro-batch as one
``(B, L)`` tensor: prompts left-padded to the longest prompt, completions right-padded to the longest completion.
In the lab a third of those positions are padding, and a forward and backward cost about their number of positions
(docs/performance.md, "One lab run"). Here each row is shifted left to start at its first real token, the rows are
sorted by the length that remains and cut into a few chunks, and each chunk is only as wide as its longest row:

    row i, columns [s_i, e_i) of the batch  ->  columns [0, e_i - s_i) of its chunk, RoPE positions s_i, …, e_i - 1

The computation is the same up to floating-point rounding, in exact arithmetic identical:

- every token keeps its position id: the untrimmed forward's are the column indices ``0, …, L - 1`` (transformers'
  default when ``position_ids`` is None, whatever the padding), and ``position_ids`` passes each kept column's;
- every token attends to the same keys: the causal mask compares column indices within a row, and a row moves as a
  whole; the columns dropped are padding, which the attention mask hides from every query;
- the per-token values are put back into TRL's ``(B, logits_to_keep)`` layout; a completion position past a chunk's
  end is padding, whose value TRL's fused head sets to 0, and it gets 0 here too.

What can differ is the rounding: matrix products and the attention kernel see other shapes, and a weight's gradient
sums its rows' contributions in another order. ``tests/test_lab_padding.py`` measures it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Chunk:
    """Rows of the batch that run through the model together, each shifted to start at its first real column."""

    rows: torch.Tensor
    """(b,) long: the rows' indices in the batch."""
    starts: torch.Tensor
    """(b,) long: each row's first kept column of the batch (its first real token, at most the last prompt column)."""
    width: int
    """Columns of the chunk: its longest row's kept length."""

    def columns(self) -> torch.Tensor:
        """(b, width) long: the batch column of each chunk position (past the batch's end for a short row's tail)."""
        return self.starts[:, None] + torch.arange(self.width, device=self.starts.device)[None, :]


def row_spans(attention_mask: torch.Tensor, prompt_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's kept columns ``[start, end)``: from its first real token to one past its last. ``start`` is at
    most the last prompt column (the query that predicts the first completion token) and ``end`` past the first
    completion column, so that every completion position TRL scores lies in the span.

    Shape:
        attention_mask (B, L) -> (B,), (B,)

    >>> row_spans(torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]]), prompt_width=3)
    (tensor([2, 1, 2]), tensor([5, 6, 4]))
    """
    real = attention_mask.bool()
    columns = torch.arange(real.shape[1], device=real.device)
    first = torch.where(real, columns, real.shape[1]).min(dim=1).values
    last = torch.where(real, columns, -1).max(dim=1).values
    return first.clamp(max=prompt_width - 1), (last + 1).clamp(min=prompt_width + 1)


def cheapest_split(lengths: list[int], chunks: int) -> list[tuple[int, int]]:
    """The cut of ascending ``lengths`` into at most ``chunks`` runs ``[i, j)`` that minimises the positions the
    forwards cost, ``Σ_runs (j - i) · lengths[j - 1]`` (each run as wide as its longest, i.e. last, row). Cuts fall
    only between different lengths (a cut inside equal lengths saves nothing); dynamic programming over them.

    >>> cheapest_split([3, 3, 4, 9, 10, 10], chunks=2)
    [(0, 3), (3, 6)]
    >>> cheapest_split([3, 3, 4, 9, 10, 10], chunks=1)
    [(0, 6)]
    """
    bounds = [0] + [j for j in range(1, len(lengths)) if lengths[j] != lengths[j - 1]] + [len(lengths)]
    # cost[c][b]: cheapest cover of rows [0, bounds[b]) by c runs; back[c][b]: where its last run starts
    cost = [[0] + [math.inf] * (len(bounds) - 1)]
    back = [[0] * len(bounds)]
    for _ in range(max(1, chunks)):
        prev, row, links = cost[-1], [0] + [math.inf] * (len(bounds) - 1), [0] * len(bounds)
        for b in range(1, len(bounds)):
            for a in range(b):
                c = prev[a] + (bounds[b] - bounds[a]) * lengths[bounds[b] - 1]
                if c < row[b]:
                    row[b], links[b] = c, a
        cost.append(row)
        back.append(links)
    runs = min(range(1, len(cost)), key=lambda c: (cost[c][-1], c))  # the fewest runs among the cheapest
    cut, b = [], len(bounds) - 1
    for c in range(runs, 0, -1):
        a = back[c][b]
        cut.append((bounds[a], bounds[b]))
        b = a
    return cut[::-1]


def plan_chunks(attention_mask: torch.Tensor, prompt_width: int, chunks: int, max_rows: int | None = None) -> list:
    """The rows sorted by kept length and cut into at most ``chunks`` chunks by :func:`cheapest_split`, a chunk
    of more than ``max_rows`` rows (TRL's ``batch_size``: rows per forward) cut further; each chunk as wide as its
    longest row.

    >>> mask = torch.tensor([[0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0]])
    >>> [(c.rows.tolist(), c.starts.tolist(), c.width) for c in plan_chunks(mask, prompt_width=3, chunks=2)]
    [([0, 2], [1, 2], 3), ([1], [0], 6)]
    """
    starts, ends = row_spans(attention_mask, prompt_width)
    lengths, order = torch.sort(ends - starts, stable=True)  # (B,): shortest kept length first
    plan = []
    for i, j in cheapest_split(lengths.tolist(), chunks):
        pieces = -(-(j - i) // max_rows) if max_rows else 1
        for rows in torch.tensor_split(order[i:j], pieces):
            plan.append(Chunk(rows=rows, starts=starts[rows], width=int((ends[rows] - starts[rows]).max())))
    return plan


def chunk_inputs(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk: Chunk, prompt_width: int
) -> dict[str, torch.Tensor]:
    """The model inputs of one chunk: its rows' kept columns, left-aligned, with each token's position id (its
    batch column) and TRL's labels (the token where it is a real completion token, else -100). A position past the
    batch's end (a short row's tail) is padding: masked, position and token those of the batch's last column.

    Shape:
        input_ids, attention_mask (B, L) -> each (b, width)
    """
    length = input_ids.shape[1]
    columns = chunk.columns()  # (b, w)
    inside = columns < length
    kept = columns.clamp(max=length - 1)
    ids = input_ids[chunk.rows].gather(1, kept)  # (b, w)
    mask = attention_mask[chunk.rows].gather(1, kept) * inside  # (b, w): the tail past the batch is padding
    labels = ids.masked_fill((mask == 0) | (kept < prompt_width), -100)  # only completion tokens are scored
    return {"input_ids": ids, "attention_mask": mask, "position_ids": kept, "labels": labels}


def completion_values(values: torch.Tensor, chunk: Chunk, prompt_width: int, logits_to_keep: int) -> torch.Tensor:
    """A chunk's per-token values back in TRL's completion layout. ``values[:, j]`` belongs to the token at chunk
    column ``j + 1`` (the fused head's shift); the completion token ``t`` of row i sits at batch column
    ``prompt_width + t``, i.e. chunk column ``prompt_width + t - start_i``. Positions past the chunk are padding: 0,
    as TRL's fused head gives padding.

    Shape:
        values (b, width - 1) -> (b, logits_to_keep)

    >>> chunk = Chunk(rows=torch.tensor([0, 1]), starts=torch.tensor([1, 2]), width=4)
    >>> completion_values(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), chunk, prompt_width=3, logits_to_keep=3)
    tensor([[2., 3., 0.],
            [4., 5., 6.]])
    """
    offsets = torch.arange(logits_to_keep, device=values.device)[None, :]  # (1, C)
    index = (prompt_width - 1 - chunk.starts.to(values.device))[:, None] + offsets  # (b, C)
    inside = index < values.shape[1]
    picked = values.gather(1, index.clamp(max=values.shape[1] - 1))
    return picked.masked_fill(~inside, 0)


def in_batch_order(per_chunk: list[torch.Tensor], plan: list) -> torch.Tensor:
    """The chunks' ``(b, C)`` values as one ``(B, C)`` tensor in the batch's row order (differentiable)."""
    rows = torch.cat([chunk.rows for chunk in plan])  # (B,): the batch row of each stacked row
    stacked = torch.cat(per_chunk)
    return stacked.index_select(0, torch.argsort(rows).to(stacked.device))


def trimmed_logps_and_entropies(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    chunks: int,
    max_rows: int | None = None,
    compute_entropy: bool = False,
    autocast=None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (and entropies) of the completion tokens, as TRL's ``_get_per_token_logps_and_entropies``
    gives them for a text-only batch, from forwards on :func:`plan_chunks`' chunks. ``model`` carries TRL's fused
    LM head (``trl.trainer.utils.add_fused_lm_head``, which TRL adds at the trainer's build); ``autocast`` is a
    context manager factory (the accelerator's), None for none.

    Shape:
        input_ids, attention_mask (B, L) -> (B, logits_to_keep), (B, logits_to_keep) or None
    """
    prompt_width = input_ids.shape[1] - logits_to_keep
    plan = plan_chunks(attention_mask, prompt_width, chunks, max_rows)
    logps, entropies = [], []
    for chunk in plan:
        inputs = chunk_inputs(input_ids, attention_mask, chunk, prompt_width)
        with (autocast or contextlib.nullcontext)():
            outputs = model(**inputs, fused_lm_head=True)
        logps.append(completion_values(outputs.log_probs, chunk, prompt_width, logits_to_keep))
        if compute_entropy:
            entropies.append(completion_values(outputs.entropy, chunk, prompt_width, logits_to_keep))
    return in_batch_order(logps, plan), (in_batch_order(entropies, plan) if compute_entropy else None)
