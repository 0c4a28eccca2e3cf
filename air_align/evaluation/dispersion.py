"""Intra-group representation dispersion (docs/design.md §4; the paper reports 86.47 for GRPO vs 71.54 for AIR).

For each prompt: the hidden states of one layer (default the last, ``hidden_states[-1]`` as transformers returns it,
which for Llama/Qwen2 is after the final norm), mean-pooled over the prompt's tokens (chat template applied with the
generation prompt, padding masked out). For each meta-group with at least two prompts: the mean Euclidean distance of
its prompts (anchors and open variants) to the group centroid. Dispersion = the mean of that over groups.

The value depends on the model's hidden size and layer scale, so compare it only between checkpoints of one model
(the paper's numbers are for Qwen-2.5-14B and are not comparable to a small model's).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm.auto import tqdm

from air_align.evaluation.generate import render_prompts


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (B, T, H) over positions where ``attention_mask`` (B, T) is 1 → (B, H).

    >>> masked_mean(torch.tensor([[[1.0], [3.0], [100.0]]]), torch.tensor([[1, 1, 0]]))
    tensor([[2.]])
    """
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # (B, H)


def group_dispersion(reps: torch.Tensor, group_ids: list[str]) -> dict:
    """Mean distance to the group centroid, per group and averaged over groups with >= 2 prompts.

    Args:
        reps: (N, H) one representation per prompt.
        group_ids: N meta-group ids.

    Returns ``{"mean": float, "n_groups": int, "n_singletons": int, "per_group": {group_id: float}}``; singleton groups
    (distance 0 by construction) are left out and counted.

    >>> group_dispersion(torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]]), ["a", "a", "b"])["mean"]
    1.0
    """
    if reps.dim() != 2 or reps.shape[0] != len(group_ids):
        raise ValueError(f"group_dispersion: reps must be (N, H) with N = len(group_ids) = {len(group_ids)}")
    members: dict[str, list[int]] = defaultdict(list)
    for i, gid in enumerate(group_ids):
        members[gid].append(i)
    per_group, singletons = {}, 0
    for gid, idx in members.items():
        if len(idx) < 2:
            singletons += 1
            continue
        x = reps[idx].double()  # (n, H)
        per_group[gid] = float((x - x.mean(0, keepdim=True)).norm(dim=1).mean())
    if not per_group:
        raise ValueError("group_dispersion: no meta-group has two or more prompts; dispersion is undefined")
    return {
        "mean": sum(per_group.values()) / len(per_group),
        "n_groups": len(per_group),
        "n_singletons": singletons,
        "per_group": per_group,
    }


def check_layer(model, layer: int) -> None:
    """Raise, before any work, when ``layer`` is not an index of the model's ``hidden_states`` (its ``L`` layers
    give ``L + 1`` entries: 0 the embeddings, ``L`` or -1 the last); a model whose config does not say ``L`` passes.

    >>> from types import SimpleNamespace
    >>> check_layer(SimpleNamespace(config=SimpleNamespace(num_hidden_layers=2)), 99)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --dispersion-layer 99: the model has 2 layers, so hidden_states has 3 entries; use -3 to 2 (0 the ...
    """
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text_config, "num_hidden_layers", None)
    if isinstance(n_layers, int) and not -(n_layers + 1) <= layer <= n_layers:
        raise ValueError(
            f"--dispersion-layer {layer}: the model has {n_layers} layers, so hidden_states has {n_layers + 1} "
            f"entries; use {-(n_layers + 1)} to {n_layers} (0 the embeddings, -1 the last, the default), or "
            "--no-dispersion"
        )


@torch.no_grad()
def prompt_representations(
    model, tokenizer, prompts: list[list[dict]], *, layer: int = -1, batch_size: int = 8, progress: bool = True
) -> torch.Tensor:
    """(N, H) mean-pooled hidden states of layer ``layer`` for each chat prompt (see the module docstring)."""

    texts = render_prompts(tokenizer, prompts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for start in tqdm(range(0, len(texts), batch_size), desc="dispersion", disable=not progress):
            enc = tokenizer(
                texts[start : start + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
            )
            enc = {k: v.to(device) for k, v in enc.items()}
            # Positions count real tokens only, so a left-padded prompt is encoded as it would be alone.
            position_ids = (enc["attention_mask"].long().cumsum(-1) - 1).clamp_min(0)  # (b, T)
            out = model(**enc, position_ids=position_ids, output_hidden_states=True, use_cache=False)
            chunks.append(masked_mean(out.hidden_states[layer].float(), enc["attention_mask"]).cpu())  # (b, H)
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def representation_dispersion(
    model, tokenizer, rows: list[dict], *, layer: int = -1, batch_size: int = 8, progress: bool = True
) -> dict:
    """``group_dispersion`` of ``rows`` (schema rows: ``prompt``, ``group_id``) under ``model``; adds ``layer``."""
    reps = prompt_representations(
        model, tokenizer, [r["prompt"] for r in rows], layer=layer, batch_size=batch_size, progress=progress
    )
    return {**group_dispersion(reps, [r["group_id"] for r in rows]), "layer": layer, "pooling": "mean over prompt"}
