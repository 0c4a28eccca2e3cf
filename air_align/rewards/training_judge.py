"""The training judge where the policy is: an in-process model judge that ``build_trainer`` places on the trainer's
device, in the policy's dtype, once the trainer's accelerator exists (docs/rewards.md, "Where the training judge
lives").

:func:`training_judge` decides where the judge's weights come from, before the trainer is built; the returned
:class:`DeferredJudge` loads or moves them when :meth:`DeferredJudge.bind` is called with
``trainer.accelerator.device``. Its sources, for the paper's frozen copy of the initial policy (App. C.2.1):

- the policy's path (``source``): loaded again from it, straight onto the device. ``build_trainer`` gives
  ``run.model`` when it loaded the policy itself; nothing is copied in host memory.
- no path, outside DeepSpeed ZeRO-3: a deep copy of the policy taken now, before LoRA is attached, moved at bind.
- under ZeRO-3 (``transformers.integrations.is_deepspeed_zero3_enabled``) the policy's parameters are partitioned
  across ranks and a copy of them is empty: the judge is loaded from the model's path (``config._name_or_path`` of
  a model passed in), or refused with an error that names the fix.

A named judge model (``judge: {model: NAME}``) is loaded at bind, on the device, in the policy's dtype.

Under ZeRO-3 every rank loads a whole, unpartitioned judge: ranks score different numbers of judge rows (their own
completions, their own cache hits), so a partitioned judge, whose forward gathers parameters collectively, would
wait forever for the ranks that have finished.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from transformers.integrations import is_deepspeed_zero3_enabled

from air_align.rewards.judges import LogprobJudge

ModelLoader = Callable[[torch.device, torch.dtype], tuple]
"""``(device, dtype) -> (model, tokenizer)``: the judge's model, placed or not yet."""


class DeferredJudge:
    """A yes/no judge (``name``, ``identity``, ``log_odds``) whose model is built by :meth:`bind`: on the device
    given, in the dtype given, in eval mode, every parameter with ``requires_grad`` False; ``log_odds`` runs under
    ``torch.no_grad`` (:class:`air_align.rewards.judges.LogprobJudge`). Used before :meth:`bind`, it raises.

    Args:
        load: ``(device, dtype) -> (model, tokenizer)``; called once, by :meth:`bind`.
        name: the judge's label in logs (the reward's cache key is its ``identity``, known after :meth:`bind`).
        judge_kwargs: passed to :class:`LogprobJudge` (``batch_size``, ...).
    """

    def __init__(self, load: ModelLoader, name: str, **judge_kwargs):
        self._load, self.name, self._judge_kwargs = load, name, judge_kwargs
        self.judge: LogprobJudge | None = None

    def bind(self, device: torch.device | str, dtype: torch.dtype) -> LogprobJudge:
        """Build the judge on ``device`` in ``dtype`` (once; a second call returns the same judge)."""
        if self.judge is None:
            model, tokenizer = self._load(torch.device(device), dtype)
            model = model.to(device)
            if next(model.parameters()).dtype != dtype:  # loaders load in dtype; a cast would also round fp32 buffers
                model = model.to(dtype)
            model.eval().requires_grad_(False)
            self.judge = LogprobJudge(model, tokenizer, name=self.name, **self._judge_kwargs)
            self._load = None  # drop the loader's references (a copy of the policy) once they are placed
        return self.judge

    def _bound(self) -> LogprobJudge:
        if self.judge is None:
            raise RuntimeError(
                f"judge {self.name!r} has no model yet: call bind(device, dtype) first (build_trainer does, once the "
                "trainer's accelerator exists)"
            )
        return self.judge

    @property
    def model(self):
        """The judge's model (after :meth:`bind`)."""
        return self._bound().model

    @property
    def identity(self) -> str:
        """The bound judge's identity: model path and a fingerprint of the placed weights."""
        return self._bound().identity

    def log_odds(self, prompts: list[str]) -> list[float]:
        """``log p(yes) − log p(no)`` per prompt, by the bound judge."""
        return self._bound().log_odds(prompts)


@contextmanager
def whole_model_under_zero3() -> Iterator[None]:
    """Load a model whole, not partitioned, while DeepSpeed ZeRO-3 is on: ``from_pretrained`` partitions every model
    it builds while transformers holds a ZeRO-3 config (``zero.Init``); the config is set aside meanwhile."""
    from transformers.integrations import deepspeed as hf_deepspeed

    held_ref = hf_deepspeed._hf_deepspeed_config_weak_ref  # the config object itself, to put back unchanged
    held = held_ref() if held_ref is not None else None
    if held is None or not held.is_zero3():
        yield
        return
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(held)


def load_from(name_or_path: str) -> ModelLoader:
    """A loader of ``name_or_path`` (any ``load_model`` name or path) onto the bind device, whole under ZeRO-3."""
    from air_align import models  # the module, looked up at call time (tests watch models.load_model)

    def load(device: torch.device, dtype: torch.dtype):
        with whole_model_under_zero3():
            return models.load_model(name_or_path, dtype=dtype, device=device)

    return load


def model_path(model) -> str | None:
    """The path or hub id a model was loaded from (``config._name_or_path``), or None for one built in memory."""
    return getattr(getattr(model, "config", None), "_name_or_path", None) or None


def training_judge(config, policy=None, source: str | None = None) -> DeferredJudge | None:
    """The in-process judge of ``config`` (a ``JudgeConfig``), to be placed by :meth:`DeferredJudge.bind`; None when
    ``config`` names none in process (a server judge, ``model: none``, or ``policy`` without a policy).

    ``policy`` is the ``(model, tokenizer)`` pair about to be trained, before LoRA is attached; ``source`` a name or
    path that ``load_model`` loads to exactly its weights (``build_trainer`` gives ``run.model`` when it loaded the
    policy itself), or None for a model passed in (copied now; under ZeRO-3 loaded from its ``config._name_or_path``,
    whose weights it is then taken to be).

    Raises:
        ValueError: under ZeRO-3, for the frozen-policy judge of a model without a path.
    """
    if config.base_url or config.model == "none" or (config.model == "policy" and policy is None):
        return None
    if config.model != "policy":
        return DeferredJudge(load_from(config.model), name=config.model, batch_size=config.batch_size)
    model, tokenizer = policy
    if source is None and is_deepspeed_zero3_enabled():
        source = model_path(model)
        if source is None:
            raise ValueError(
                "the composite reward's frozen-policy judge (reward_config judge model 'policy') cannot be copied "
                "from a policy under DeepSpeed ZeRO-3 (its parameters are partitioned, a copy is empty) and the "
                "model passed in has no path (config._name_or_path is empty): load the policy from a path, or set "
                "reward_config judge model to the initial policy's path (e.g. reward_config='{judge: {model: "
                "Qwen/Qwen2.5-14B-Instruct}}'), or serve the judge (judge base_url)"
            )
    if source is not None:
        load = load_from(source)

        def reload(device: torch.device, dtype: torch.dtype):
            return load(device, dtype)[0], tokenizer  # the policy's own tokenizer

        return DeferredJudge(reload, name="frozen-policy", batch_size=config.batch_size)
    frozen = copy.deepcopy(model).eval()  # the initial policy: taken before the trainer attaches LoRA
    frozen.requires_grad_(False)
    return DeferredJudge(lambda device, dtype: (frozen, tokenizer), name="frozen-policy", batch_size=config.batch_size)
