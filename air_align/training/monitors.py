"""Live monitors of ``AIRTrainer`` (docs/monitoring.md): what a researcher needs to see while AIR trains, logged
through TRL.

Every number here is computed from tensors the trainer already has (the gathered rewards of a generation batch, the
Δ it applies, the losses of its one forward/backward): no extra pass. Names are stable; ``docs/monitoring.md`` says
how to read them.

- ``air/delta/open`` (and ``air/delta/anchor`` under V-REx): mean Δ_s per role over the batch's prompts; under
  ``invariance="none"`` the Δ AIR *would* apply (nothing is applied), so a baseline run shows it too.
- ``air/delta/<domain>/<label>``: mean Δ_s over the open prompts of one (domain, label), when the rows carry a
  ``label`` column. A mean Δ ≈ 0 can hide Δ = −1.12 on benign and +1.12 on harmful prompts (the lab's miscalibrated
  reward, docs/calibration.md); the per-label Δ shows it.
- ``air/zero_std/anchor``, ``air/zero_std/open``: share of prompts whose scored K rewards are all equal (or fewer
  than 2 are scored): GRPO's advantage is 0 there, no learning signal.
- ``air/anchor_start``, ``air/anchor_level``, ``air/anchor_drift``: the anchors' mean reward over the first
  ``anchor_monitor_batches`` generation batches, over the latest ones, and their difference
  (:class:`AnchorDriftMonitor`, which also warns and, opt-in, stops).
- ``air/policy_loss``, ``air/aux_to_policy``: TRL's loss beside the AIR term (``AIRTrainer._compute_loss``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import deque

import torch
from torch import Tensor
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class AnchorDropWarning(UserWarning):
    """The anchors' reward fell more than ``anchor_drop_margin`` below its starting level during training."""


def _first_of_prompt(prompt_ids: Tensor) -> tuple[Tensor, Tensor]:
    """``(first (P,), inverse (N,))``: the first completion of each prompt (in order of first appearance) and each
    completion's prompt index."""
    unique, inverse = torch.unique(prompt_ids, return_inverse=True)
    positions = torch.arange(prompt_ids.numel())
    first = torch.full((unique.numel(),), prompt_ids.numel(), dtype=torch.long)
    first = first.scatter_reduce(0, inverse, positions, reduce="amin")
    order = torch.argsort(first)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return first[order], rank[inverse]


def no_signal(rewards: Tensor, prompt_ids: Tensor) -> Tensor:
    """Per prompt (order of first appearance): True when its scored rewards are all equal or fewer than 2 are scored,
    i.e. GRPO's advantage is 0 for every completion (equality as ``torch.isclose``, TRL's test of a zero std).

    Shape:
        rewards, prompt_ids (N,) -> (P,) bool

    >>> nan = float("nan")
    >>> no_signal(torch.tensor([1.0, 1.0, 0.0, 2.0, 3.0, nan]), torch.tensor([0, 0, 1, 1, 2, 2]))
    tensor([ True, False,  True])
    """
    _, inverse = _first_of_prompt(prompt_ids)
    num_prompts = int(inverse.max()) + 1
    scored = ~torch.isnan(rewards)
    count = torch.zeros(num_prompts, dtype=torch.long).index_add_(0, inverse, scored.long())
    high = torch.full((num_prompts,), -math.inf, dtype=rewards.dtype)
    high = high.scatter_reduce(0, inverse, torch.where(scored, rewards, -math.inf), reduce="amax")
    low = torch.full((num_prompts,), math.inf, dtype=rewards.dtype)
    low = low.scatter_reduce(0, inverse, torch.where(scored, rewards, math.inf), reduce="amin")
    return (count < 2) | torch.isclose(high, low)


def batch_monitors(
    rewards: Tensor,
    prompt_ids: Tensor,
    is_anchor: Tensor,
    coefficients: Tensor,
    defined: Tensor,
    label_keys: list[str] | None,
    anchor_delta: bool,
) -> dict[str, float]:
    """The per-generation-batch monitors (module docstring), one float each; a name is absent when nothing defines
    it (e.g. no open prompt has a defined Δ).

    Args:
        rewards: (N,) gathered composite rewards, NaN = unscored.
        prompt_ids: (N,) prompt of each completion.
        is_anchor: (N,) bool role.
        coefficients: (N,) the Δ_s of each completion's prompt (the monitored form).
        defined: (N,) bool, completions whose Δ is defined (``trainer.scored_rows``).
        label_keys: per completion ``"domain/label"`` (``config.offset_key``), or None without a label column.
        anchor_delta: also report Δ on anchors (V-REx gives them one; AIR's is 0 by definition).

    >>> m = batch_monitors(torch.tensor([2.0, 2.0, 1.0, 3.0, 0.0, 0.0]), torch.tensor([0, 0, 1, 1, 2, 2]),
    ...                    torch.tensor([True, True, False, False, False, False]),
    ...                    torch.tensor([0.0, 0.0, 0.0, 0.0, 2.0, 2.0]), torch.ones(6, dtype=torch.bool),
    ...                    ["s/1", "s/1", "s/1", "s/1", "s/0", "s/0"], anchor_delta=False)
    >>> m  # the open prompts' Δ: 0 (label 1) and 2 (label 0); the open prompt 1 has signal, prompt 2 none
    {'air/zero_std/anchor': 1.0, 'air/zero_std/open': 0.5, 'air/delta/open': 1.0, 'air/delta/s/1': 0.0, \
'air/delta/s/0': 2.0}
    """
    first, _ = _first_of_prompt(prompt_ids)
    anchor = is_anchor.bool()[first]  # (P,)
    silent = no_signal(rewards, prompt_ids)  # (P,)
    delta, ok = coefficients[first].double(), defined.bool()[first]  # (P,)
    out: dict[str, float] = {}
    for role, select in (("anchor", anchor), ("open", ~anchor)):
        if select.any():
            out[f"air/zero_std/{role}"] = float(silent[select].double().mean())
    roles = (("anchor", anchor), ("open", ~anchor)) if anchor_delta else (("open", ~anchor),)
    for role, select in roles:
        if (select & ok).any():
            out[f"air/delta/{role}"] = float(delta[select & ok].mean())
    if label_keys is not None:
        keys = [label_keys[int(i)] for i in first]
        for key in dict.fromkeys(k for k, a, d in zip(keys, anchor.tolist(), ok.tolist(), strict=True) if d and not a):
            select = torch.tensor([k == key for k in keys]) & ~anchor & ok
            out[f"air/delta/{key}"] = float(delta[select].mean())
    return out


def anchor_reward(rewards: Tensor, prompt_ids: Tensor, is_anchor: Tensor) -> float:
    """Mean over anchor prompts of their mean scored reward (the batch's ``r̄`` of anchors, ``reward/anchor``);
    NaN when no anchor completion is scored.

    >>> anchor_reward(torch.tensor([1.0, 3.0, 0.0, 0.0, float("nan"), 4.0]), torch.tensor([0, 0, 1, 1, 2, 2]),
    ...               torch.tensor([True, True, False, False, True, True]))
    3.0
    """
    _, inverse = _first_of_prompt(prompt_ids)
    num_prompts = int(inverse.max()) + 1
    scored = ~torch.isnan(rewards) & is_anchor.bool()
    values = rewards.double().nan_to_num() * scored  # (N,) 0 where not a scored anchor completion
    total = torch.zeros(num_prompts, dtype=torch.float64).index_add_(0, inverse, values)
    count = torch.zeros(num_prompts, dtype=torch.float64).index_add_(0, inverse, scored.double())
    means = total[count > 0] / count[count > 0]
    return float(means.mean()) if means.numel() else math.nan


class AnchorDriftMonitor(TrainerCallback):
    """The anchors' reward against its starting level; warns once per crossing, stops on request.

    ``start`` = mean of the anchors' reward over the first ``batches`` generation batches of the run; ``level`` =
    mean over the latest ``batches`` (a moving window: one batch is noisy); ``drift = level − start``. When
    ``drift < −margin`` for the first time since it was last above, an :class:`AnchorDropWarning` is issued (main
    process) and, with ``stop``, training stops at the end of the optimiser step (``control.should_training_stop``).
    On resume from a checkpoint, ``start`` is read back from the last ``air/anchor_start`` of the log history.
    """

    def __init__(self, batches: int, margin: float | None, stop: bool, warn: bool = True):
        if batches < 1:
            raise ValueError(f"anchor_monitor_batches must be >= 1, got {batches}")
        self.batches, self.margin, self.stop, self.warn = batches, margin, stop, warn
        self.reset()

    def reset(self) -> None:
        self.first: list[float] = []  # anchor rewards of the first `batches` generation batches
        self.window: deque[float] = deque(maxlen=self.batches)
        self.start: float | None = None
        self.below = False
        self.restored = False
        self.stop_reason: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.reset()  # a fresh train() call; a resumed run's start is read back on the first update

    def _restore(self, log_history: list[dict]) -> None:
        self.restored = True
        starts = [e["air/anchor_start"] for e in log_history if isinstance(e.get("air/anchor_start"), int | float)]
        if starts:
            self.start = float(starts[-1])

    def update(self, value: float, step: int, log_history: list[dict] = ()) -> dict[str, float]:
        """Record one generation batch's anchor reward (``step``: the optimiser step it trains, as logged); returns
        the metrics to log (none before ``start`` is set)."""
        if not self.restored:
            self._restore(list(log_history))
        if math.isnan(value):  # no scored anchor in this batch
            return {}
        self.window.append(value)
        if self.start is None:
            self.first.append(value)
            if len(self.first) < self.batches:
                return {}
            self.start = sum(self.first) / len(self.first)
        level = sum(self.window) / len(self.window)
        drift = level - self.start
        if self.margin is not None and drift < -self.margin:
            if not self.below:
                self.below = True
                self._crossed(level, drift, step)
        else:
            self.below = False
        return {"air/anchor_start": self.start, "air/anchor_level": level, "air/anchor_drift": drift}

    def _crossed(self, level: float, drift: float, step: int) -> None:
        message = (
            f"the anchors' mean reward fell to {level:.4g} (mean of the last {len(self.window)} generation batches) "
            f"from its starting level {self.start:.4g} (first {self.batches}), a drop of {-drift:.4g} > "
            f"anchor_drop_margin={self.margin} in step {step}. AIR keeps the anchors behind a stop-gradient, so "
            "their reward should not fall: the policy is losing its verifiable behaviour (V-REx's 'downgrading "
            "anchor' failure, a learning rate or λ too large, or a reward whose anchor payout moved). Look at "
            "air/anchor_drift and the Δ per label (docs/monitoring.md)."
        )
        if self.stop:
            self.stop_reason = f"stopped by stop_on_anchor_drop: {message}"
            message += " Training stops at the end of this optimiser step (stop_on_anchor_drop=True)."
        else:
            message += " Set stop_on_anchor_drop=True to stop such a run."
        if self.warn:
            warnings.warn(message, AnchorDropWarning, stacklevel=3)

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_reason is not None and not control.should_training_stop:
            control.should_training_stop = True
            control.should_log = True  # the step that crossed is logged before the run ends
            if state.is_world_process_zero:
                logger.error("air-align: %s", self.stop_reason)
        return control
