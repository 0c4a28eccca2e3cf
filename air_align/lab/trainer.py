"""The lab's trainer: ``AIRTrainer`` without TRL's extra forward for the sampling policy's log-probs.

The lab trains with ``num_iterations = 2`` and one generation batch per optimiser step (``steps_per_generation ==
gradient_accumulation_steps``). TRL then runs, after every generation, a gradient-free forward of the whole batch
for ``old_per_token_logps`` (π_old, the policy that sampled it), which the second pass over the batch needs. But the
first pass's loss forward runs at those same weights: no optimiser step happens between the generation and the
last micro-batch of the first pass. Its log-probs *are* π_old's — the same kernels on the same inputs give the same
bits on one thread (``tests/test_lab_fast_paths.py`` compares them and the trained weights) — so this trainer takes
π_old from there and skips TRL's forward: a third of a forward-backward's compute per generation batch, nothing
else changed.

How: during generation TRL's test for the extra forward (``gradient_accumulation_steps % (steps_per_generation ×
num_iterations) != 0``) is made to see one iteration, so the batch carries no ``old_per_token_logps``; in the first
pass, as soon as the loss forward has run, its detached log-probs are stored in the micro-batch (the dict TRL
buffers and hands back on every pass), before TRL's loss and AIR's importance weight read them. Everything
downstream sees exactly what it saw with TRL's own forward: ratio 1 on the first pass, π_θ / π_old on the second.

Where the first pass is *not* at the sampling weights (several optimiser steps per generation batch, or vLLM, whose
sampler is another copy of the model), this is plain ``AIRTrainer``.

With ``padding_chunks`` (the lab's runs set it from ``runs.Training``, 3 by default) the log-prob forwards run
without most of their padding (``lab/padding.py``): the same maths with other rounding, shown to leave the lab's
metrics within seed noise (docs/performance.md, "The seed-noise check"). It sits under ``AIRTrainer`` in the method
order, so that AIR's capture of the loss forward's log-probs and π_old's capture above see the reassembled
``(B, T)`` tensor exactly as they see TRL's. With ``shared_prompts`` (``runs.Training``) each distinct prompt of a
batch runs once, in generation and in the loss forward (``lab/shared_prompts.py``), again the same maths with other
rounding, and the log-probs again come back as TRL's ``(B, T)`` tensor.
"""

from __future__ import annotations

from accelerate.data_loader import DataLoaderShard
from trl import GRPOTrainer

from air_align.lab.padding import trimmed_logps_and_entropies
from air_align.lab.shared_prompts import (
    prompts_can_be_shared,
    shared_prompt_cache,
    shared_prompt_logps_and_entropies,
    supports_shared_prompts,
)
from air_align.training.trainer import AIRTrainer


class TrimmedForward(GRPOTrainer):
    """TRL's log-prob forward with each distinct prompt run once (``lab/shared_prompts.py``) when
    ``shared_prompts``, else on row chunks with the padding removed (``lab/padding.py``) when ``padding_chunks`` is
    at least 1; TRL's own otherwise, and for what these forwards do not cover (a MoE model's load-balancing loss,
    images or other extra model inputs, a head that scales or caps its logits)."""

    padding_chunks: int = 0
    """At most this many row chunks per forward (``padding.cheapest_split``); 0: TRL's padded forward."""
    shared_prompts: bool = False
    """Run each distinct prompt once and its completions on its keys and values, in at most ``padding_chunks`` row
    chunks (1 when that is 0)."""

    def _generate_single_turn(self, *args, **kwargs):
        """TRL's generation; with ``shared_prompts`` (and transformers' sampler, not vLLM) each distinct prompt's
        prefill runs once (``shared_prompts.shared_prompt_cache``), through the model's ``generate`` wrapped for
        this call."""
        model = self.accelerator.unwrap_model(self.model)
        if not self.shared_prompts or self.use_vllm or "generate" in vars(model):
            return super()._generate_single_turn(*args, **kwargs)
        generate = model.generate

        def with_shared_prompts(input_ids=None, attention_mask=None, **options):
            if input_ids is not None and attention_mask is not None and options.get("cache") is None:
                cache = shared_prompt_cache(model, input_ids, attention_mask)
                if cache is not None:
                    options["cache"] = cache
            return generate(input_ids=input_ids, attention_mask=attention_mask, **options)

        model.generate = with_shared_prompts
        try:
            return super()._generate_single_turn(*args, **kwargs)
        finally:
            del model.generate

    def _shares_prompts(self, model, attention_mask, logits_to_keep) -> bool:
        return (
            self.shared_prompts
            and not self.args.cast_lm_head_to_fp32
            and supports_shared_prompts(model) is None
            and prompts_can_be_shared(attention_mask, logits_to_keep)
        )

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **extra,
    ):
        plain_text = not compute_aux_loss and all(value is None for value in extra.values())
        if plain_text and self._shares_prompts(model, attention_mask, logits_to_keep):
            logps, entropies = shared_prompt_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                max(1, self.padding_chunks),
                max_rows=batch_size,
                compute_entropy=compute_entropy,
                autocast=self.accelerator.autocast,
                temperature=self.temperature,
            )
            return logps, entropies, None  # None: no MoE load-balancing loss asked for
        if self.padding_chunks < 1 or not plain_text:
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **extra,
            )
        logps, entropies = trimmed_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            logits_to_keep,
            self.padding_chunks,
            max_rows=batch_size,
            compute_entropy=compute_entropy,
            autocast=self.accelerator.autocast,
        )
        return logps, entropies, None  # None: no MoE load-balancing loss asked for


class LabTrainer(AIRTrainer, TrimmedForward):
    """``AIRTrainer`` that takes π_old's log-probs from the first pass's loss forward (see the module docstring), and
    with ``padding_chunks`` runs its forwards without most of their padding. Method order: ``LabTrainer`` →
    ``AIRTrainer`` → ``TrimmedForward`` → TRL's ``GRPOTrainer``."""

    _first_pass_batch: dict | None = None
    """The micro-batch whose first-pass loss forward is running, while π_old's log-probs are still to be stored."""

    def first_pass_is_sampling_policy(self) -> bool:
        """Whether the first optimisation pass over a generation batch runs at the weights that sampled it, and a
        later pass needs π_old (so TRL would run its extra forward)."""
        args = self.args
        return (
            self.num_iterations > 1
            and args.steps_per_generation == args.gradient_accumulation_steps
            and not self.use_vllm
        )

    def get_train_dataloader(self):
        """TRL's loader of prompt rows, without accelerate's move of every batch to the model's device: the lab's
        rows hold only strings and numbers (``world.build_rows``), so that move walks every field of every row and
        moves nothing (about 2 % of a run's time: docs/performance.md, "One lab run")."""
        loader = super().get_train_dataloader()
        if isinstance(loader, DataLoaderShard):
            loader.device = None
        return loader

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.first_pass_is_sampling_policy()):
            return super()._generate_and_score_completions(inputs)
        iterations, self.num_iterations = self.num_iterations, 1  # TRL's test then finds no old log-probs needed
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self.num_iterations = iterations

    def _compute_loss(self, model, inputs):
        first_pass = (
            self.model.training and self.first_pass_is_sampling_policy() and inputs.get("old_per_token_logps") is None
        )
        self._first_pass_batch = inputs if first_pass else None
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._first_pass_batch = None

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        if self._first_pass_batch is not None and result[0].requires_grad:
            self._first_pass_batch["old_per_token_logps"] = result[0].detach()  # (B, T): π_old, for every pass
            self._first_pass_batch = None
        return result
