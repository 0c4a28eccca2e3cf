"""Real-tier training: GRPO, GRPO+AIR or GRPO+V-REx on SmolLM2-135M with real meta-groups (docs/design.md §5).

:func:`train_real` wires the shared pieces together the way the paper does, through the project's one trainer recipe
(``air_align.training.recipe.build_trainer``):

- data: ``air_align.data.build.build_meta_groups`` (AdvBench/HarmBench + benign intents with PyRIT templates,
  ETHICS, GSM-Symbolic), the ``train`` split;
- reward: ``composite`` — ``r = r_task + r_fmt``, anchors by rule, open safety / morality variants by a **frozen
  copy of the initial policy** as judge (paper App. C.2.1; loaded again from ``config.model``, so LoRA and training
  never reach it, and placed on the trainer's device by the recipe); maths needs no judge;
- method: a row of ``air_align.training.methods.METHODS``, every other setting shared between methods
  (docs/design.md §5.1: only the regulariser differs);
- LoRA (PEFT) optional; the returned model has the adapter merged, ready to audit.

Seconds per optimiser step are measured by a callback (generation + judge + backward), and an optional wall-clock
budget stops training early (the GPU study's 10-minute limit). The settings are a :class:`StudyConfig`.
"""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback

from air_align.data.build import build_meta_groups
from air_align.real.config import StudyConfig
from air_align.training.console import LOG_NAME, log_to_file
from air_align.training.methods import method_label, method_name
from air_align.training.recipe import RunConfig, air_config, build_trainer


def train_rows(config: StudyConfig) -> list[dict]:
    """All rows of a real build (every split); training uses ``split == "train"``, the study audits the test intents.

    Jailbreak templates longer than ``config.max_template_chars`` are dropped (prompt length drives a step's cost).
    """
    return build_meta_groups(
        config.domain,
        n_intents=config.n_intents,
        anchors=config.anchors,
        opens=config.opens,
        ood_families=config.ood_families,
        seed=config.seed,
        max_template_chars=config.max_template_chars,
    )


class StepTimer(TrainerCallback):
    """Wall seconds of every optimiser step; stops training once ``time_budget_s`` has elapsed."""

    def __init__(self, time_budget_s: float | None):
        self.time_budget_s = time_budget_s
        self.start = self.step_start = None
        self.seconds: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()

    def on_step_begin(self, args, state, control, **kwargs):
        self.step_start = time.time()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.time() - self.step_start)
        if self.time_budget_s is not None and time.time() - self.start > self.time_budget_s:
            control.should_training_stop = True


def train_real(config: StudyConfig, method: str, out_dir: str | Path, rows: list[dict] | None = None) -> dict:
    """Train ``method`` (``grpo`` | ``grpo+air`` | ``grpo+vrex`` | …) on ``config.domain``; returns the merged model
    and timings. ``rows``: a build to train on (its ``train`` split; default ``train_rows(config)``).

    One optimiser step = ``groups_per_step`` whole meta-groups of ``anchors + opens`` prompts × ``num_generations``
    (K) completions. ``invariance_coef`` (λ) is ignored by GRPO.

    Returns ``{"model", "tokenizer", "method", "label", "steps", "seconds_per_step", "step_seconds",
    "log_history", "train_seconds"}``; ``seconds_per_step`` is the median over steps after the first (the first
    includes one-off set-up), or the first step's time when there is only one.
    """
    method = method_name(method)
    rows = rows if rows is not None else train_rows(config)
    train = [r for r in rows if r["split"] == "train"]
    if not train:
        raise ValueError(f"no train rows for {config.domain}: raise n_intents (test/val take a share of the intents)")
    group_size = sum(r["group_id"] == train[0]["group_id"] for r in train)

    judge = {"model": "none"} if config.domain == "math" else {"model": "policy", "batch_size": 16}
    run = RunConfig(
        model=config.model,
        reward="composite",
        reward_config={"judge": judge},
        use_lora=config.use_lora,
        lora_r=config.lora_r,
        lora_alpha=2 * config.lora_r,
        lora_dropout=0.0,
        method=method,
    )
    args = air_config(
        method,
        output_dir=str(out_dir),
        invariance_coef=config.invariance_coef,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.groups_per_step * group_size * config.num_generations,
        gradient_accumulation_steps=1,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        learning_rate=config.learning_rate,
        max_steps=config.max_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=config.device == "cpu",
        bf16=False,
        seed=config.seed,
        disable_tqdm=not config.progress,
    )
    timer = StepTimer(config.time_budget_s)
    # the recipe loads config.model and places the frozen-policy judge beside the policy, on the trainer's device
    trainer = build_trainer(run, args, rows=train, callbacks=[timer])
    log_to_file(trainer, Path(out_dir) / LOG_NAME)  # each step's metrics to the run's log.jsonl, not the console
    start = time.time()
    trainer.train()
    train_seconds = time.time() - start
    trained = trainer.model
    if config.use_lora:
        trained = trained.merge_and_unload()
    trained.eval()
    steps = timer.seconds
    later = sorted(steps[1:]) or steps
    return {
        "model": trained,
        "tokenizer": trainer.processing_class,
        "method": method,
        "label": method_label(method),
        "steps": len(steps),
        "step_seconds": [round(s, 2) for s in steps],
        "seconds_per_step": round(later[len(later) // 2], 2) if later else None,
        "train_seconds": round(train_seconds, 1),
        "log_history": trainer.state.log_history,
    }
