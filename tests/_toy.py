"""The tests' toy trainer: an ``AIRTrainer`` on the tiny model and toy meta-groups, built by the project's one recipe
(``air_align.training.recipe.build_trainer``). A helper module, not a test module (``conftest.py`` puts this folder
on ``sys.path``; ``_dist_coefficients.py`` imports it the same way under torchrun)."""

from __future__ import annotations

from air_align.models import build_char_tokenizer, tiny_causal_lm
from air_align.training.config import AIRConfig
from air_align.training.recipe import RunConfig, build_trainer
from air_align.training.toy import toy_meta_groups, toy_reward


def toy_trainer(
    invariance: str = "air",
    output_dir: str = "/tmp/air-align-toy",
    num_groups: int = 8,
    opens_per_group: int = 2,
    reward_funcs=None,
    dtype=None,
    model=None,
    tokenizer=None,
    hidden_size: int = 32,
    rows: list[dict] | None = None,
    **config,
):
    """An ``AIRTrainer`` on the tiny model and toy meta-groups, CPU, no reporting; ``config`` overrides
    ``AIRConfig`` fields (defaults: K = 3, one generation batch of 3 meta-groups, 8-token completions). Without
    ``model``, a 2-layer Qwen2 of width ``hidden_size`` over the character tokenizer; ``rows`` replaces the toy
    meta-groups."""
    if model is None:
        tokenizer = build_char_tokenizer()
        model = tiny_causal_lm(tokenizer, hidden_size=hidden_size, num_layers=2, num_heads=4)
    if dtype is not None:
        model = model.to(dtype)
    defaults = dict(
        output_dir=output_dir,
        invariance=invariance,
        invariance_coef=0.1,
        num_generations=3,
        per_device_train_batch_size=9,
        max_completion_length=8,
        loss_type="grpo",
        learning_rate=1e-3,
        max_steps=1,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        seed=0,
    )
    return build_trainer(
        RunConfig(),
        AIRConfig(**{**defaults, **config}),
        model=model,
        tokenizer=tokenizer,
        rows=rows if rows is not None else toy_meta_groups(num_groups, opens_per_group),
        reward_funcs=reward_funcs if reward_funcs is not None else toy_reward,
    )
