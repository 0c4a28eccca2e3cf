"""The maths of AIR (Anchor Invariance Regularization), pure torch, no TRL.

Paper: "Towards Context-Invariant Safety Alignment for Large Language Models" (ICML 2026, arXiv 2605.20994),
Algorithm 1 and §3; notation and signs as in docs/design.md §1.

Everything works on *flat per-completion tensors*, the layout every trainer already has::

    rewards     (N,)  float   r_{s,k}; NaN marks a completion no reward function could score
    prompt_ids  (N,)  int     which prompt s produced the completion (any integers)
    group_ids   (N,)  int     which meta-group S_z (intent z) the prompt belongs to
    is_anchor   (N,)  bool    role of the prompt: anchor (A_z) or open variant (O_z)

Objective to *maximise* (Algorithm 1)::

    J(θ) = J_policy(θ) + λ · (1/N) · Σ_{s,k} Δ_s · r_{s,k} · log π_θ(y_{s,k} | s)

so the loss to minimise is ``L_policy + aux_loss(...)`` with ``aux_loss = −λ (1/N) Σ Δ_s r_{s,k} log π``.

Departures from the paper, each deliberate:

1. NaN-aware statistics. An unscorable completion is excluded from every mean and std and contributes zero to
   the auxiliary term; it is never silently counted as reward 0.
2. The per-prompt std is the *unbiased* one (``correction=1``), the convention of TRL's GRPOTrainer, so the
   advantages here equal the trainer's exactly.
3. The anchor mean ``r̄_acr(z)`` is the mean of the anchors' *prompt means*, as the paper defines it, not a
   pooled mean of anchor completions (they differ when anchors have different numbers of scorable samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Invariance = Literal["none", "vrex", "air"]
INVARIANCE_MODES: tuple[str, ...] = ("none", "vrex", "air")
LogprobReduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class MetaGroupStats:
    """Per-prompt and per-meta-group reward statistics of one batch.

    Prompts and meta-groups are renumbered ``0..P-1`` and ``0..M-1`` in order of first appearance.

    Shape:
        prompt_of_completion (N,), prompt_mean / prompt_std / prompt_valid / prompt_group / prompt_is_anchor (P,),
        anchor_mean / open_mean / context_mean / num_anchors / num_opens (M,).
    """

    prompt_of_completion: Tensor  # (N,) long, compact prompt index of each completion
    prompt_mean: Tensor  # (P,) r̄_s, mean over scorable completions
    prompt_std: Tensor  # (P,) σ_s, unbiased std over scorable completions (0 if fewer than 2)
    prompt_valid: Tensor  # (P,) long, number of scorable completions
    prompt_group: Tensor  # (P,) long, compact meta-group index of each prompt
    prompt_is_anchor: Tensor  # (P,) bool
    anchor_mean: Tensor  # (M,) r̄_acr(z) = mean of r̄_s over s ∈ A_z; NaN if the group has no anchor
    open_mean: Tensor  # (M,) mean of r̄_s over s ∈ O_z; NaN if the group has no open variant
    context_mean: Tensor  # (M,) mean of r̄_c over every c ∈ S_z (the V-REx centre)
    num_anchors: Tensor  # (M,) long
    num_opens: Tensor  # (M,) long


def _compact(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Renumber arbitrary integer ids to ``0..U-1`` in order of first appearance.

    Returns ``(compact (N,), first_position (U,))``.
    """
    unique, inverse = torch.unique(ids, return_inverse=True)
    # first occurrence of each unique id, then order unique ids by it
    positions = torch.arange(ids.numel(), device=ids.device)
    first = torch.full((unique.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=ids.device)
    return rank[inverse], first[order]


def _check_inputs(rewards: Tensor, prompt_ids: Tensor, group_ids: Tensor, is_anchor: Tensor) -> None:
    if rewards.dim() != 1:
        raise ValueError(
            f"rewards must be a flat (N,) tensor of per-completion rewards, got shape {tuple(rewards.shape)}"
        )
    if not torch.is_floating_point(rewards):
        raise ValueError(f"rewards must be a floating-point tensor (NaN marks unscorable), got {rewards.dtype}")
    n = rewards.shape[0]
    if n == 0:
        raise ValueError("rewards is empty: a batch needs at least one prompt with 2 completions")
    for name, t in (("prompt_ids", prompt_ids), ("group_ids", group_ids), ("is_anchor", is_anchor)):
        if tuple(t.shape) != (n,):
            raise ValueError(
                f"shape mismatch: {name} has shape {tuple(t.shape)} but rewards has ({n},); "
                "pass one entry per completion"
            )


def meta_group_stats(
    rewards: Tensor, prompt_ids: Tensor, group_ids: Tensor, is_anchor: Tensor, min_completions: int = 2
) -> MetaGroupStats:
    """Per-prompt mean/std and per-meta-group anchor, open and context means (Algorithm 1, lines 4-6).

    ``r̄_s = mean_k r_{s,k}``,  ``σ_s = std_k r_{s,k}``,  ``r̄_acr(z) = (1/|A_z|) Σ_{s∈A_z} r̄_s``.

    Raises:
        ValueError: shapes differ; a prompt has fewer than ``min_completions`` completions, or only NaN
            rewards; a prompt's completions disagree on their meta-group or role.
    """
    _check_inputs(rewards, prompt_ids, group_ids, is_anchor)
    device, dtype = rewards.device, rewards.dtype
    prompt_idx, prompt_first = _compact(prompt_ids)
    num_prompts = prompt_first.numel()

    # Each prompt must map to one meta-group and one role.
    group_of_prompt = group_ids[prompt_first]
    role_of_prompt = is_anchor.bool()[prompt_first]
    bad_group = group_ids != group_of_prompt[prompt_idx]
    bad_role = is_anchor.bool() != role_of_prompt[prompt_idx]
    if bad_group.any() or bad_role.any():
        i = int(torch.nonzero(bad_group | bad_role)[0])
        what = "meta-group" if bad_group[i] else "role"
        raise ValueError(
            f"completion {i} of prompt id {int(prompt_ids[i])} has a different {what} than the prompt's first "
            "completion; every completion of a prompt must carry the same group id and role"
        )

    count = torch.zeros(num_prompts, dtype=torch.long, device=device).index_add_(
        0, prompt_idx, torch.ones_like(prompt_idx)
    )
    if (count < min_completions).any():
        p = int(torch.nonzero(count < min_completions)[0])
        raise ValueError(
            f"prompt id {int(prompt_ids[prompt_first[p]])} has {int(count[p])} completion(s); GRPO needs at least "
            f"{min_completions} per prompt (set num_generations >= {min_completions})"
        )

    valid = ~torch.isnan(rewards)
    r0 = torch.where(valid, rewards, torch.zeros_like(rewards))
    n_valid = torch.zeros(num_prompts, dtype=torch.long, device=device).index_add_(0, prompt_idx, valid.long())
    if (n_valid == 0).any():
        p = int(torch.nonzero(n_valid == 0)[0])
        raise ValueError(
            f"prompt id {int(prompt_ids[prompt_first[p]])}: all {int(count[p])} rewards are NaN (no reward function "
            "scored any completion); check that a reward function covers this prompt's role and domain"
        )
    # r̄_s = Σ_k r_{s,k} / K_s
    total = torch.zeros(num_prompts, dtype=dtype, device=device).index_add_(0, prompt_idx, r0)
    mean = total / n_valid.to(dtype)
    # σ_s = sqrt( Σ_k (r_{s,k} − r̄_s)² / (K_s − 1) ), 0 when K_s = 1
    sq = torch.where(valid, (rewards - mean[prompt_idx]) ** 2, torch.zeros_like(rewards))
    ss = torch.zeros(num_prompts, dtype=dtype, device=device).index_add_(0, prompt_idx, sq)
    std = torch.where(n_valid > 1, ss / (n_valid - 1).clamp(min=1).to(dtype), torch.zeros_like(ss)).sqrt()

    group_idx, group_first_prompt = _compact(group_of_prompt)
    num_groups = group_first_prompt.numel()

    def group_mean_of(select: Tensor) -> tuple[Tensor, Tensor]:
        k = torch.zeros(num_groups, dtype=torch.long, device=device).index_add_(0, group_idx, select.long())
        s = torch.zeros(num_groups, dtype=dtype, device=device).index_add_(
            0, group_idx, torch.where(select, mean, torch.zeros_like(mean))
        )
        m = torch.where(k > 0, s / k.clamp(min=1).to(dtype), torch.full_like(s, float("nan")))
        return m, k

    anchor_mean, num_anchors = group_mean_of(role_of_prompt)
    open_mean, num_opens = group_mean_of(~role_of_prompt)
    context_mean, _ = group_mean_of(torch.ones_like(role_of_prompt))
    return MetaGroupStats(
        prompt_of_completion=prompt_idx,
        prompt_mean=mean,
        prompt_std=std,
        prompt_valid=n_valid,
        prompt_group=group_idx,
        prompt_is_anchor=role_of_prompt,
        anchor_mean=anchor_mean,
        open_mean=open_mean,
        context_mean=context_mean,
        num_anchors=num_anchors,
        num_opens=num_opens,
    )


def grpo_advantages(rewards: Tensor, prompt_ids: Tensor, scale_by_std: bool = True, eps: float = 1e-4) -> Tensor:
    """GRPO group-normalised advantages (§3, Algorithm 1 line 5).

    ``Â_{s,k} = (r_{s,k} − r̄_s) / (σ_s + ε)``, or ``r_{s,k} − r̄_s`` when ``scale_by_std`` is False
    (Dr. GRPO). ``ε = 1e-4`` as in TRL. Unscorable (NaN) completions get advantage 0.

    Shape:
        rewards, prompt_ids: (N,) -> (N,)

    >>> grpo_advantages(torch.tensor([1.0, 3.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1]), scale_by_std=False)
    tensor([-1.,  1.,  0.,  0.])
    """
    # Roles and groups do not enter the advantage: one dummy meta-group.
    zeros = torch.zeros_like(prompt_ids)
    stats = meta_group_stats(rewards, prompt_ids, zeros, zeros.bool())
    p = stats.prompt_of_completion
    adv = rewards - stats.prompt_mean[p]
    if scale_by_std:
        adv = adv / (stats.prompt_std[p] + eps)
    return torch.nan_to_num(adv, nan=0.0)


def invariance_coefficients(
    rewards: Tensor,
    prompt_ids: Tensor,
    group_ids: Tensor,
    is_anchor: Tensor,
    invariance: Invariance,
    offsets: Tensor | None = None,
    anchor_levels: Tensor | None = None,
) -> Tensor:
    """Per-completion invariance coefficient ``Δ_s``, detached (Algorithm 1, line 7).

    - ``"air"``:  ``Δ_s = r̄_acr(z) − r̄_s`` for open prompts ``s ∈ O_z``; ``0`` for anchors.
      Gradient of the expected surrogate = ``−½ ∇Ω_AIR``, ``Ω_AIR = Σ_{c∈O_z} (R_c − sg[R_acr])²`` (Lemma A.4).
    - ``"vrex"``: ``Δ_s = mean_{c∈S_z} r̄_c − r̄_s`` for **every** prompt, anchors included.
      Gradient of the expected surrogate = ``−½ ∇ Σ_{c∈S_z} (R_c − R̄)² = −(|S_z|/2) ∇Var_c[R_c]``.
    - ``"none"``: zeros (plain GRPO/GSPO).

    **Calibrated Δ** (not in the paper; ``docs/calibration.md``). ``offsets`` gives each completion the
    offset ``b_s`` of its prompt: the measured gap ``E[correct open reward] − E[correct anchor reward]`` of its
    (domain, label). Each prompt is then compared at its *calibrated level* ``r̄_s − b_s``:

        air:   Δ_s = r̄_acr(z) + b_s − r̄_s                          (open s; 0 for anchors, whose b is ignored)
        vrex:  Δ_s = mean_{c∈S_z} (r̄_c − b_c) − (r̄_s − b_s)        (every s; pass b = 0 for anchors)

    so that a policy whose open variants earn exactly their correct-behaviour reward gets ``Δ = 0``. ``offsets =
    None`` (or zeros) is the paper's form.

    **Constant anchor level** (not in the paper; ``AIRConfig.anchor_target="constant"``, docs/design.md §1.2).
    ``anchor_levels`` gives each completion a fixed level ``c_s`` that replaces the measured ``r̄_acr(z)``: the
    reward of a correct anchor, known from the calibration table. Under ``"air"`` only:

        air:   Δ_s = c_s + b_s − r̄_s                                  (open s; 0 for anchors)

    The anchors stay in the batch (GRPO trains them) but no longer enter Δ, so comparing it with the measured
    level asks whether the anchors carry information beyond a reward target. With ``c_s = r̄_acr(z)`` it is AIR
    exactly (``tests/test_objectives_anchor_target.py``).

    Shape:
        all inputs (N,) -> (N,), one value per completion (constant within a prompt); ``offsets`` (N,), constant
        within a prompt.

    Raises:
        ValueError: unknown mode; under ``"air"`` with measured levels, a meta-group without an anchor; ``offsets``
            or ``anchor_levels`` of the wrong shape, not finite, or different between two completions of one prompt;
            ``anchor_levels`` with a mode other than ``"air"``.

    >>> r = torch.tensor([1.0, 1.0, 0.0, 0.5])          # anchor prompt 0 (r̄=1), open prompt 1 (r̄=0.25)
    >>> invariance_coefficients(r, torch.tensor([0, 0, 1, 1]), torch.zeros(4, dtype=torch.long),
    ...                         torch.tensor([True, True, False, False]), "air")
    tensor([0.0000, 0.0000, 0.7500, 0.7500])
    """
    if invariance not in INVARIANCE_MODES:
        raise ValueError(f"invariance must be one of {INVARIANCE_MODES}, got {invariance!r}")
    if anchor_levels is not None and invariance != "air":
        raise ValueError(
            f"anchor_levels replace AIR's anchor level r̄_acr(z); invariance={invariance!r} has none (V-REx's centre "
            "is the mean over every context): pass anchor_levels=None, or use invariance='air'"
        )
    stats = meta_group_stats(rewards, prompt_ids, group_ids, is_anchor)
    if invariance == "none":
        return torch.zeros_like(rewards)
    g = stats.prompt_group
    b = _prompt_offsets(offsets, stats, prompt_ids)  # (P,) b_s, zeros without offsets
    if anchor_levels is not None:  # Δ_s = c_s + b_s − r̄_s: a fixed target, the anchors' rewards unused
        c = _prompt_offsets(anchor_levels, stats, prompt_ids, what="anchor_levels")  # (P,)
        delta = torch.where(stats.prompt_is_anchor, torch.zeros_like(c), c + b - stats.prompt_mean)
        return delta[stats.prompt_of_completion].detach()
    if invariance == "air":
        if (stats.num_anchors == 0).any():
            m = int(torch.nonzero(stats.num_anchors == 0)[0])
            gid = int(group_ids[stats.prompt_of_completion == torch.nonzero(g == m)[0, 0]][0])
            raise ValueError(
                f"meta-group {gid} has no anchor prompt: AIR pulls open variants toward their anchors' reward, so "
                "every meta-group needs at least one anchor (role='anchor') in the same generation batch"
            )
        delta = stats.anchor_mean[g] + b - stats.prompt_mean  # (P,) r̄_acr(z) + b_s − r̄_s
        delta = torch.where(stats.prompt_is_anchor, torch.zeros_like(delta), delta)
    else:  # vrex: mean_{c∈S_z} (r̄_c − b_c) − (r̄_s − b_s); the group means of r̄ and of b, over the same prompts
        num_prompts = torch.zeros_like(stats.context_mean).index_add_(0, g, torch.ones_like(b))  # (M,) |S_z|
        mean_b = torch.zeros_like(stats.context_mean).index_add_(0, g, b) / num_prompts  # (M,)
        delta = (stats.context_mean[g] - mean_b[g]) - (stats.prompt_mean - b)  # (P,)
    return delta[stats.prompt_of_completion].detach()


_PER_PROMPT_VALUES = {
    "offsets": (
        "offset b",
        "0 for the paper's Δ",
        "use 0 where no offset applies",
        "an offset b belongs to a prompt's (domain, label)",
    ),
    "anchor_levels": (
        "anchor level c",
        "the reward of a correct anchor of its (domain, label)",
        "a level is a reward",
        "a level belongs to a prompt's (domain, label)",
    ),
}
"""How errors name each per-prompt value: (noun, what to pass, what a finite value is, why a prompt has one)."""


def _prompt_offsets(
    offsets: Tensor | None, stats: MetaGroupStats, prompt_ids: Tensor, what: str = "offsets"
) -> Tensor:
    """Per-prompt values (P,) of a per-completion, per-prompt-constant tensor (N,), checked; zeros when None. Used
    for the calibrated-Δ offsets ``b_s`` and the constant anchor levels ``c_s`` (``what`` names it in errors)."""
    noun, expected, finite, why = _PER_PROMPT_VALUES[what]
    num_prompts = stats.prompt_mean.numel()
    if offsets is None:
        return torch.zeros_like(stats.prompt_mean)
    n = stats.prompt_of_completion.numel()
    if tuple(offsets.shape) != (n,):
        raise ValueError(
            f"shape mismatch: {what} has shape {tuple(offsets.shape)} but rewards has ({n},); pass one {noun} "
            f"per completion (its prompt's, {expected})"
        )
    offsets = offsets.to(device=stats.prompt_mean.device, dtype=stats.prompt_mean.dtype)
    if not torch.isfinite(offsets).all():
        raise ValueError(f"{what} must be finite; got NaN or ±inf ({finite})")
    positions = torch.arange(n, device=offsets.device)
    first = torch.full((num_prompts,), n, dtype=torch.long, device=offsets.device)
    first = first.scatter_reduce(0, stats.prompt_of_completion, positions, reduce="amin")  # (P,) first completion
    b = offsets[first]  # (P,) the value of each prompt's first completion
    bad = offsets != b[stats.prompt_of_completion]
    if bad.any():
        i = int(torch.nonzero(bad)[0])
        raise ValueError(
            f"completion {i} of prompt id {int(prompt_ids[i])} has {noun.split()[0]} {float(offsets[i])} but the "
            f"prompt's first completion has {float(b[stats.prompt_of_completion[i]])}; {why}: give every completion "
            "of a prompt the same one"
        )
    return b


def sequence_logprob(
    per_token_logps: Tensor,
    completion_mask: Tensor,
    reduction: LogprobReduction = "sum",
    token_weights: Tensor | None = None,
) -> Tensor:
    """``log π(y|s)``: the masked **sum** of token log-probs (Algorithm 1), or their mean with ``"mean"``.

    ``"mean"`` (length-normalised) is a documented variant, not the paper's; it changes the effective λ.
    ``token_weights`` (detached, e.g. a sampler's per-token importance ratios) multiply each token's log-prob:
    ``Σ_t w_t log π(y_t | s, y_<t)``; the mean still divides by the number of unmasked tokens.

    Shape:
        per_token_logps, completion_mask, token_weights: (B, T) -> (B,)
    """
    if per_token_logps.shape != completion_mask.shape:
        raise ValueError(
            f"shape mismatch: per_token_logps {tuple(per_token_logps.shape)} vs "
            f"completion_mask {tuple(completion_mask.shape)}"
        )
    mask = completion_mask.to(per_token_logps.dtype)
    weighted = mask if token_weights is None else mask * token_weights.detach().to(per_token_logps.dtype)
    total = (per_token_logps * weighted).sum(-1)  # (B,)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(-1).clamp(min=1.0)
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def aux_loss(
    seq_logps: Tensor,
    rewards: Tensor,
    coefficients: Tensor,
    invariance_coef: float,
    num_completions: int | float,
    weights: Tensor | None = None,
) -> Tensor:
    """The auxiliary surrogate loss (Algorithm 1, line 8; docs/design.md §1).

    ``L_aux = −λ · (1/N) · Σ_i ρ_i · Δ_i · r_i · log π(y_i|s_i)``

    ``ρ_i Δ_i r_i`` is a constant weight (stop-gradient); only ``log π`` carries gradient. NaN rewards contribute 0.
    ``ρ_i = weights`` are the importance weights of samples drawn from an older policy
    (:func:`aux_importance_weights`); None means on-policy, ``ρ = 1`` exactly (the paper's term).

    Normaliser: ``N = num_completions`` is the number of completions of the **whole generation batch** (every
    prompt × K, anchors and unscorable ones included), as in the paper's ``1/N``. A trainer that evaluates the
    loss on micro-batches passes the global ``N`` to every micro-batch, so the micro-batch losses *sum* to the
    paper's term over the batch, whatever the split.

    Shape:
        seq_logps, rewards, coefficients: (B,) -> scalar

    >>> aux_loss(torch.tensor([-2.0, -1.0]), torch.tensor([1.0, float("nan")]), torch.tensor([0.5, 0.5]), 0.1, 2)
    tensor(0.0500)
    """
    if not (seq_logps.shape == rewards.shape == coefficients.shape) or seq_logps.dim() != 1:
        raise ValueError(
            "shape mismatch: seq_logps, rewards and coefficients must all be (B,), got "
            f"{tuple(seq_logps.shape)}, {tuple(rewards.shape)}, {tuple(coefficients.shape)}"
        )
    if num_completions <= 0:
        raise ValueError(f"num_completions must be positive, got {num_completions}")
    weight = coefficients * torch.nan_to_num(rewards, nan=0.0)  # (B,)
    if weights is not None:
        if weights.shape != seq_logps.shape:
            raise ValueError(f"shape mismatch: weights {tuple(weights.shape)} vs seq_logps {tuple(seq_logps.shape)}")
        weight = weight * weights
    weight = weight.detach().to(seq_logps.dtype)
    return -invariance_coef * (weight * seq_logps).sum() / num_completions


def aux_importance_weights(
    per_token_logps: Tensor, sampling_logps: Tensor, completion_mask: Tensor, cap: float
) -> tuple[Tensor, Tensor]:
    """Truncated sequence importance weights for the aux term on samples from an older policy μ (a replayed pass).

    ``ρ_i = min(π_θ(y_i|s_i) / μ(y_i|s_i), c) = min(exp Σ_t m_t (log π_θ − log μ)_t, c)``, detached.

    Why: the aux gradient is ``−λ Δ ∇_θ E_{y~π_θ}[r(y)] = −λ Δ E_{y~π_θ}[r ∇log π_θ]``; on samples from μ,
    ``E_{y~μ}[ρ r ∇log π_θ]`` equals it exactly when ``ρ = π_θ/μ`` (untruncated), and the unweighted
    ``E_μ[r ∇log π_θ]`` does not (``tests/test_objectives_off_policy.py`` checks both on an enumerated tabular
    policy in float64). The ratio is over the whole sequence, not a per-token or length-normalised one, because
    ``log π(y|s)`` is the whole sequence's. Truncation at ``c`` (truncated importance sampling, as TRL's own
    vLLM correction ``vllm_importance_sampling_clip_max = 3``) bounds the variance; it biases only samples whose
    ratio exceeds ``c``, which the logged ``invariance/aux_is_truncated`` counts. NaN sampling log-probs (a
    sampler that gave none) count as ratio 1 for that token, as TRL does.

    Returns ``(ρ, truncated)``: ``(B,)`` float weights and ``(B,)`` bool, ratio above ``c``.

    Shape:
        per_token_logps, sampling_logps, completion_mask: (B, T) -> (B,), (B,)

    >>> w, cut = aux_importance_weights(torch.tensor([[-1.0, -2.0], [-1.0, -1.0]]),
    ...                                 torch.tensor([[-1.5, -2.0], [-0.5, -1.0]]), torch.ones(2, 2), 1.5)
    >>> w, cut  # ratios e^0.5 = 1.65 (truncated at 1.5) and e^-0.5 = 0.61
    (tensor([1.5000, 0.6065]), tensor([ True, False]))
    """
    if not (per_token_logps.shape == sampling_logps.shape == completion_mask.shape):
        raise ValueError(
            f"shape mismatch: per_token_logps {tuple(per_token_logps.shape)}, sampling_logps "
            f"{tuple(sampling_logps.shape)}, completion_mask {tuple(completion_mask.shape)}"
        )
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    diff = torch.nan_to_num(per_token_logps.detach() - sampling_logps.detach(), nan=0.0)  # (B, T)
    log_ratio = (diff * completion_mask.to(diff.dtype)).sum(-1)  # (B,) log π_θ(y|s) − log μ(y|s)
    log_cap = torch.log(torch.tensor(float(cap), dtype=log_ratio.dtype))
    truncated = log_ratio > log_cap
    return torch.exp(torch.minimum(log_ratio, log_cap)), truncated  # min before exp: no overflow


AuxBaseline = Literal["none", "leave_one_out"]
AUX_BASELINES = ("none", "leave_one_out")


def leave_one_out_baseline(rewards: Tensor, prompt_ids: Tensor) -> Tensor:
    """Per-completion baseline ``b_i = mean_{j ≠ i, same prompt} r_j`` (NaN rewards skipped; 0 where no other
    completion of the prompt has a reward). **Not in the paper**: an optional variance reduction of the auxiliary term.

    Because ``b_i`` does not depend on ``y_i``, ``E[(r_i − b_i) ∇log π(y_i|s)] = E[r_i ∇log π(y_i|s)]``: replacing
    ``r`` by ``r − b`` in ``aux_loss`` keeps the expected gradient ``−½∇Ω`` (tested by exact enumeration), but turns
    "lower every rewarded sample" into "lower the above-average samples, raise the below-average ones" when Δ < 0.

    Shape:
        rewards, prompt_ids: (B,) -> (B,)

    >>> leave_one_out_baseline(torch.tensor([1.0, 2.0, 6.0, 5.0, float("nan")]), torch.tensor([0, 0, 0, 1, 1]))
    tensor([4.0000, 3.5000, 1.5000, 0.0000, 5.0000])
    """
    if rewards.shape != prompt_ids.shape or rewards.dim() != 1:
        raise ValueError(
            f"rewards and prompt_ids must both be (B,), got {tuple(rewards.shape)}, {tuple(prompt_ids.shape)}"
        )
    ids, first = _compact(prompt_ids)
    n = first.numel()
    finite = torch.isfinite(rewards)
    values = torch.where(finite, rewards, torch.zeros_like(rewards))
    sums = torch.zeros(n, dtype=rewards.dtype, device=rewards.device).index_add_(0, ids, values)  # (P,)
    counts = torch.zeros(n, dtype=rewards.dtype, device=rewards.device).index_add_(0, ids, finite.to(rewards.dtype))
    other_sum = sums[ids] - values  # (B,)
    other_count = counts[ids] - finite.to(rewards.dtype)  # (B,)
    return torch.where(other_count > 0, other_sum / other_count.clamp(min=1), torch.zeros_like(rewards))


@torch.no_grad()
def meta_group_diagnostics(
    rewards: Tensor,
    prompt_ids: Tensor,
    group_ids: Tensor,
    is_anchor: Tensor,
    invariance: Invariance = "air",
    offsets: Tensor | None = None,
    anchor_levels: Tensor | None = None,
) -> dict[str, float]:
    """Scalar diagnostics for logging, with stable names (``offsets``: the calibrated Δ's ``b``; ``anchor_levels``:
    the constant anchor level ``c``; see :func:`invariance_coefficients`; the Δ entries use them, ``invariance/gap``
    does not).

    - ``reward/anchor``, ``reward/open``: mean prompt reward by role;
    - ``invariance/gap``: mean over meta-groups of ``r̄_acr(z) − mean_{s∈O_z} r̄_s`` (positive: opens lag anchors);
    - ``invariance/abs_delta``: mean ``|Δ_s|`` over the prompts the mode regularises;
    - ``invariance/delta``: mean signed ``Δ_s`` over the same prompts.
    Groups lacking one of the two roles are left out of the gap.
    """
    stats = meta_group_stats(rewards, prompt_ids, group_ids, is_anchor)
    nan = float("nan")

    def mean_or_nan(x: Tensor) -> float:
        x = x[~torch.isnan(x)]
        return float(x.mean()) if x.numel() else nan

    a, o = stats.prompt_is_anchor, ~stats.prompt_is_anchor
    out = {
        "reward/anchor": mean_or_nan(stats.prompt_mean[a]),
        "reward/open": mean_or_nan(stats.prompt_mean[o]),
        "invariance/gap": mean_or_nan(stats.anchor_mean - stats.open_mean),
    }
    measured_level = invariance == "air" and anchor_levels is None
    if invariance == "none" or (measured_level and (stats.num_anchors == 0).any()):
        out["invariance/abs_delta"] = 0.0 if invariance == "none" else nan
        out["invariance/delta"] = 0.0 if invariance == "none" else nan
        return out
    coef = invariance_coefficients(rewards, prompt_ids, group_ids, is_anchor, invariance, offsets, anchor_levels)
    per_prompt = torch.zeros_like(stats.prompt_mean).index_copy_(0, stats.prompt_of_completion, coef)
    active = o if invariance == "air" else torch.ones_like(o)
    out["invariance/abs_delta"] = mean_or_nan(per_prompt[active].abs())
    out["invariance/delta"] = mean_or_nan(per_prompt[active])
    return out


def weighted_rewards(rewards_per_func: Tensor, reward_weights: Tensor) -> Tensor:
    """The composite reward ``r = Σ_f w_f r_f`` exactly as TRL's ``GRPOTrainer`` forms it: a function that returned
    None (NaN) is skipped, and the result is NaN where every function returned None. The trainer's AIR term and the
    calibration check (``calibration/check.py``) both use this one implementation.

    Shape:
        rewards_per_func (N, F), reward_weights (F,) -> (N,)

    >>> weighted_rewards(torch.tensor([[1.0, float("nan")], [float("nan")] * 2]), torch.tensor([2.0, 1.0]))
    tensor([2., nan])
    """
    rewards = (rewards_per_func * reward_weights.to(rewards_per_func.device).unsqueeze(0)).nansum(dim=1)  # (N,)
    rewards[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
    return rewards
