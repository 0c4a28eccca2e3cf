"""``AIRConfig``: TRL's ``GRPOConfig`` plus the few fields AIR needs (``DESIGN.md`` §1, §4).

A TRL user switches to AIR by changing ``GRPOConfig`` → ``AIRConfig`` (and ``GRPOTrainer`` → ``AIRTrainer``) and
setting ``invariance`` / ``invariance_coef``; every GRPO/GSPO option keeps its TRL meaning. GSPO is TRL's
``importance_sampling_level="sequence"`` (with ``loss_type="grpo"``, as TRL recommends for GSPO).

The auxiliary term (Algorithm 1, line 8) is ``−λ · (1/N) · Σ_i Δ_i r_i log π(y_i|s_i)`` where ``N`` is the number of
completions in **one optimiser step, over all processes** (``per_device_train_batch_size × gradient_accumulation_steps
× num_processes``). With TRL's default ``steps_per_generation = gradient_accumulation_steps`` this is the whole
generation batch, the paper's "N completions in the batch". Normalising per optimiser step keeps the term's size
independent of how a step is split into micro-batches and processes (tested), and of ``steps_per_generation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from trl import GRPOConfig

from air_align.objectives import AUX_BASELINES, INVARIANCE_MODES

LOGPROB_REDUCTIONS = ("sum", "mean")


@dataclass
class AIRConfig(GRPOConfig):
    """``GRPOConfig`` with AIR's invariance regulariser. Only the fields below are new."""

    invariance: str = field(
        default="air",
        metadata={
            "help": "Invariance regulariser: 'air' (Anchor Invariance Regularization: open variants pulled toward "
            "their meta-group's anchor reward, anchors behind a stop-gradient; paper Algorithm 1), 'vrex' (V-REx "
            "baseline: every context, anchors included, pulled toward the meta-group mean; the 'downgrading anchor' "
            "failure mode of paper §3) or 'none' (plain GRPO/GSPO).",
            "choices": list(INVARIANCE_MODES),
        },
    )
    invariance_coef: float = field(
        default=8e-4,  # paper §4 (Qwen2.5-14B settings): λ = 8e-4
        metadata={
            "help": "λ, the weight of the auxiliary term −λ·(1/N)·Σ Δ_s·r·log π(y|s) (paper Algorithm 1; 8e-4 for "
            "Qwen2.5-14B). N = completions per optimiser step over all processes. The right λ depends on the reward "
            "scale and on `aux_logprob_reduction`: sweep it over orders of magnitude on ID validation data."
        },
    )
    aux_logprob_reduction: str = field(
        default="sum",
        metadata={
            "help": "How log π(y|s) of the auxiliary term is reduced over completion tokens: 'sum' (the paper's "
            "sequence log-probability, Algorithm 1) or 'mean' (length-normalised; a variant that changes the "
            "effective λ by about the completion length).",
            "choices": list(LOGPROB_REDUCTIONS),
        },
    )
    aux_baseline: str = field(
        default="none",
        metadata={
            "help": "Baseline subtracted from r in the auxiliary term: 'none' (the paper's Algorithm 1: Δ·r·log π) or "
            "'leave_one_out' (Δ·(r − b)·log π with b the mean reward of the prompt's other K−1 completions; NOT in "
            "the paper: same expected gradient, lower variance, and with Δ < 0 it lowers only above-average "
            "samples instead of every rewarded one; see docs/results.md for why the lab tried it).",
            "choices": list(AUX_BASELINES),
        },
    )
    group_column: str = field(
        default="group_id",
        metadata={
            "help": "Dataset column holding the meta-group (intent z) of each prompt; all prompts of one meta-group "
            "S_z = A_z ∪ O_z share it (paper §3). The sampler keeps each meta-group inside one generation batch."
        },
    )
    role_column: str = field(
        default="role",
        metadata={"help": "Dataset column holding each prompt's role: `anchor_role` (A_z) or anything else (O_z)."},
    )
    # TRL's default (gradient checkpointing on) under the name transformers 5 reads: TRL sets the deprecated
    # `gradient_checkpointing=True`, which made every AIRConfig print a FutureWarning (issue 12, item 10).
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Recompute activations in the backward pass to save memory (~20% slower). Default (null): on, as "
            "TRL's GRPOConfig has it, unless the deprecated `gradient_checkpointing` is set."
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated alias of `activation_checkpointing` (transformers 5); prefer that name."},
    )
    anchor_role: str = field(
        default="anchor",
        metadata={
            "help": "Value of `role_column` that marks a verifiable anchor prompt (paper §3: multiple-choice, "
            "true/false, rule-checkable renderings); every other value is an open variant."
        },
    )

    def __post_init__(self):
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True  # TRL's default, without the deprecated name's warning
        super().__post_init__()
        if self.invariance not in INVARIANCE_MODES:
            raise ValueError(f"AIRConfig.invariance must be one of {INVARIANCE_MODES}, got {self.invariance!r}")
        if self.aux_logprob_reduction not in LOGPROB_REDUCTIONS:
            raise ValueError(
                f"AIRConfig.aux_logprob_reduction must be one of {LOGPROB_REDUCTIONS}, "
                f"got {self.aux_logprob_reduction!r}"
            )
        if self.aux_baseline not in AUX_BASELINES:
            raise ValueError(f"AIRConfig.aux_baseline must be one of {AUX_BASELINES}, got {self.aux_baseline!r}")
        if not math.isfinite(self.invariance_coef) or self.invariance_coef < 0:
            raise ValueError(
                f"AIRConfig.invariance_coef (λ) must be a finite number >= 0, got {self.invariance_coef}; e.g. "
                "invariance_coef=8e-4 (the paper's), or invariance=none for no invariance term"
            )
