"""``StudyConfig``: every setting of a real-tier study (``air-align study``) and of its training runs (``train_real``).

Defaults: the GPU study of docs/real-tier.md (``scripts/gpu_study.sh``), sized for < 10 minutes on one GPU. Every
method of a study shares every field (docs/design.md §5.1: only the regulariser differs).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class StudyConfig:
    """The settings of a real-tier study."""

    domain: str = "safety"
    """``safety``, ``morality`` or ``math`` (``air_align.data.build``'s built-in domains)."""
    methods: tuple[str, ...] = ("grpo", "grpo+air", "grpo+vrex")
    """Methods to train (``air_align.training.methods.METHODS``; ``air`` / ``vrex`` are accepted aliases)."""
    model: str = "smollm2-135m"
    """The policy: a ``load_model`` name or path; the training judge is a frozen copy of it (paper App. C.2.1)."""
    device: str = "cpu"
    """torch device to train on: "cpu" (use_cpu) or a GPU ("cuda"); the recipe puts the frozen-policy judge there."""
    max_steps: int = 40
    """Optimiser steps per method (at most)."""
    time_budget_s: float | None = 100.0
    """Wall-clock budget per method's training; None: no budget."""
    n_intents: int = 32
    """Intents of the build; a quarter are held out as test intents, which the study audits."""
    anchors: int = 2
    """Anchor renderings per meta-group (``mc``, ``tf``)."""
    opens: int = 2
    """Open variants per meta-group in training."""
    ood_families: int = 2
    """Wrapper families held out as OOD (drawn by seed, as ``air-align data build`` does)."""
    num_generations: int = 3
    """K completions per prompt (paper §4: K = 3)."""
    groups_per_step: int = 2
    """Whole meta-groups per optimiser step."""
    max_completion_length: int = 48
    """Tokens per training completion."""
    learning_rate: float = 2e-5
    """Our choice for LoRA at this scale (the paper's 5e-7 is for full fine-tuning of Qwen2.5-14B)."""
    invariance_coef: float = 0.05
    """λ for AIR and V-REx; our choice at this scale (docs/design.md §5.1: choose it on ID validation data)."""
    use_lora: bool = True
    """Train a LoRA adapter (merged before the audit)."""
    lora_r: int = 8
    """LoRA rank (α = 2r, no dropout, every linear layer)."""
    temperature: float = 1.0
    """Sampling temperature of the training rollouts."""
    max_template_chars: int = 1200
    """Jailbreak templates longer than this are dropped (prompt length drives a step's cost)."""
    audit_max_new_tokens: int = 96
    """Greedy tokens per audited prompt."""
    audit_batch_size: int = 64
    """Prompts per generation batch in the audits."""
    judge: str = "oracle-label"
    """The evaluation judge of the audits (``air-align eval --judge``); never the training judge."""
    seed: int = 0
    """Seed of the build, the training runs and the audits."""
    audit_base: bool = True
    """Audit the untrained model too (the ``base`` row)."""
    progress: bool = False
    """Show the trainer's progress bar."""

    def as_dict(self) -> dict:
        """The settings, for study.json / study.md."""
        return dataclasses.asdict(self)
