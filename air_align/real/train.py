"""Real-tier training: GRPO, GRPO+AIR or GRPO+V-REx on SmolLM2-135M with real meta-groups (DESIGN.md §5).

One function, :func:`train_real`, wires the shared pieces together the way the paper does:

- data: ``air_align.data.build.build_meta_groups`` (AdvBench/HarmBench + benign intents with PyRIT templates,
  ETHICS, GSM-Symbolic), the ``train`` split;
- reward: ``air_align.rewards.build_reward`` — ``r = r_task + r_fmt``, anchors by rule, open safety / morality
  variants by a **frozen copy of the initial policy** as judge (paper App. C.2.1; the copy is taken before LoRA is
  attached, so training never reaches it); maths needs no judge;
- trainer: ``air_align.training.AIRTrainer`` with ``invariance`` = ``none`` (GRPO) | ``air`` | ``vrex``, every other
  setting shared between methods (DESIGN.md §5: only the regulariser differs);
- LoRA (PEFT) optional; the returned model has the adapter merged, ready to audit.

Seconds per optimiser step are measured by a callback (generation + judge + backward), and an optional wall-clock
budget stops training early (the GPU study's 10-minute limit).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

METHODS = {"grpo": ("none", "GRPO"), "air": ("air", "GRPO+AIR"), "vrex": ("vrex", "GRPO+V-REx")}


def train_rows(
    domain: str,
    n_intents: int = 32,
    anchors: int = 1,
    opens: int = 2,
    seed: int = 0,
    max_template_chars: int | None = 1200,
    ood_families: int | str = 2,
) -> list[dict]:
    """All rows of a real build (every split); training uses ``split == "train"``, the study audits the test intents.

    Jailbreak templates longer than ``max_template_chars`` are dropped (prompt length drives the cost of a step).
    """
    from air_align.data.build import build_meta_groups

    return build_meta_groups(
        domain,
        n_intents=n_intents,
        anchors=anchors,
        opens=opens,
        ood_families=ood_families,
        seed=seed,
        max_template_chars=max_template_chars,
    )


def _step_timer(time_budget_s: float | None):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall seconds of every optimiser step; stops training once ``time_budget_s`` has elapsed."""

        def __init__(self):
            self.start = self.step_start = None
            self.seconds: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.time()

        def on_step_begin(self, args, state, control, **kwargs):
            self.step_start = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.time() - self.step_start)
            if time_budget_s is not None and time.time() - self.start > time_budget_s:
                control.should_training_stop = True

    return StepTimer()


def train_real(
    domain: str,
    method: str,
    out_dir: str | Path,
    *,
    model: str = "smollm2-135m",
    rows: list[dict] | None = None,
    n_intents: int = 32,
    anchors: int = 1,
    opens: int = 2,
    max_steps: int = 2,
    num_generations: int = 3,
    groups_per_step: int = 1,
    max_completion_length: int = 32,
    learning_rate: float = 1e-5,
    invariance_coef: float = 0.05,
    use_lora: bool = True,
    lora_r: int = 8,
    temperature: float = 1.0,
    device: str = "cpu",
    seed: int = 0,
    time_budget_s: float | None = None,
    progress: bool = False,
) -> dict:
    """Train ``method`` (``grpo`` | ``air`` | ``vrex``) on ``domain``; returns the merged model and timings.

    One optimiser step = ``groups_per_step`` whole meta-groups of ``anchors + opens`` prompts × ``num_generations``
    (K) completions. ``invariance_coef`` (λ) is ignored by GRPO; its default is our choice for this small scale (the
    paper's 8e-4 is for Qwen2.5-14B rewards and learning rate; DESIGN.md §5 says sweep it on ID validation data).

    Returns ``{"model", "tokenizer", "method", "label", "steps", "seconds_per_step", "step_seconds",
    "log_history", "train_seconds"}``; ``seconds_per_step`` is the median over steps after the first (the first
    includes one-off set-up), or the first step's time when there is only one.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose one of {sorted(METHODS)} (grpo = invariance none)")
    import torch
    from datasets import Dataset

    from air_align.models import load_model
    from air_align.rewards.composite import JudgeConfig, RewardConfig, build_reward
    from air_align.training.config import AIRConfig
    from air_align.training.trainer import AIRTrainer

    invariance, label = METHODS[method]
    rows = rows if rows is not None else train_rows(domain, n_intents, anchors, opens, seed)
    train = [dict(r, meta=json.dumps(r.get("meta") or {}, sort_keys=True)) for r in rows if r["split"] == "train"]
    if not train:
        raise ValueError(f"no train rows for {domain}: raise n_intents (test/val take a share of the intents)")
    group_size = sum(r["group_id"] == train[0]["group_id"] for r in train)

    torch.manual_seed(seed)
    policy, tokenizer = load_model(model)
    policy.to(device)
    judge = JudgeConfig(model="none") if domain == "math" else JudgeConfig(model="policy", batch_size=16)
    reward = build_reward(RewardConfig(judge=judge), policy=(policy, tokenizer))  # frozen copy taken here
    peft_config = None
    if use_lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules="all-linear")
    args = AIRConfig(
        output_dir=str(out_dir),
        invariance=invariance,
        invariance_coef=invariance_coef,
        num_generations=num_generations,
        per_device_train_batch_size=groups_per_step * group_size * num_generations,
        gradient_accumulation_steps=1,
        max_completion_length=max_completion_length,
        temperature=temperature,
        learning_rate=learning_rate,
        max_steps=max_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=device == "cpu",
        bf16=False,
        seed=seed,
        disable_tqdm=not progress,
    )
    timer = _step_timer(time_budget_s)
    trainer = AIRTrainer(
        model=policy,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    start = time.time()
    trainer.train()
    train_seconds = time.time() - start
    trained = trainer.model
    if use_lora:
        trained = trained.merge_and_unload()
    trained.eval()
    steps = timer.seconds
    later = sorted(steps[1:]) or steps
    return {
        "model": trained,
        "tokenizer": tokenizer,
        "method": method,
        "label": label,
        "steps": len(steps),
        "step_seconds": [round(s, 2) for s in steps],
        "seconds_per_step": round(later[len(later) // 2], 2) if later else None,
        "train_seconds": round(train_seconds, 1),
        "log_history": trainer.state.log_history,
    }
