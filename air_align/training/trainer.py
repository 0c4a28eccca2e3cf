"""``AIRTrainer``: TRL's ``GRPOTrainer`` (GRPO, or GSPO with ``importance_sampling_level="sequence"``) plus AIR.

Five small overrides, each on the narrowest TRL hook (TRL pinned to 1.16.0; ``tests/test_train_trainer.py`` fails
if a signature changes, ``tests/test_trl_contract.py`` if their behaviour does):

1. ``_get_train_sampler`` → ``MetaGroupSampler``: whole meta-groups in every generation batch.
2. ``_calculate_rewards`` → TRL's, then a completion with a ±inf reward is made unscored (see below), and the
   **gathered** ``rewards_per_func`` of the call is kept.
3. ``_generate_and_score_completions`` → after TRL (advantages, slicing), computes ``Δ_s`` with
   ``objectives.invariance_coefficients`` over the gathered rewards of the whole generation batch (so every process
   uses the same anchor means ``r̄_acr(z)``, the paper's synchronisation), *before* TRL shuffles and splits the
   batch, and slices them back to the local process as two extra per-completion tensors (``air_coef``,
   ``air_reward``) that TRL's shuffle/split keeps aligned.
4. ``_get_per_token_logps_and_entropies`` → unchanged, but keeps the grad-carrying log-probs of the policy forward
   that ``_compute_loss`` runs: the auxiliary term needs **no second forward pass**.
5. ``_compute_loss`` → TRL's loss + ``objectives.aux_loss`` on those log-probs.

Scaling of the auxiliary term. Its gradient over one optimiser step is exactly
``−λ (1/N) Σ_i Δ_i r_i ∇log π(y_i|s_i)``, the sum over the step's N completions on all processes, whatever the
``loss_type``, the number of micro-batches and of processes: each micro-batch of B local completions contributes
``−λ Σ_b Δ r log π / (B · G)`` with G = ``current_gradient_accumulation_steps``, and data-parallel training averages
gradients over P processes, so the step total is ``−λ Σ / (B·G·P) = −λ Σ / N``. The term is independent of TRL's
policy normalisation (which differs between ``loss_type`` values), as it must be.

Off-policy passes (not in the paper, whose Algorithm 1 is on-policy). With ``num_iterations > 1`` or
``steps_per_generation > gradient_accumulation_steps`` (and always with vLLM) TRL passes ``old_per_token_logps``:
the batch was sampled from an older policy π_old. The aux term of completion i is then weighted by the
detached, truncated sequence ratio ``ρ_i = min(π_θ(y_i|s_i) / π_old(y_i|s_i), aux_is_cap)``
(``objectives.aux_importance_weights``), so its expected gradient is the on-policy AIR gradient at the current θ
(exact while ``ρ ≤ aux_is_cap``; proved on an enumerated tabular policy in ``tests/test_objectives_off_policy.py``);
without ``old_per_token_logps`` every
sample is on-policy and ``ρ = 1`` exactly. With vLLM's importance-sampling correction, TRL's
``importance_sampling_ratio`` multiplies the aux term as it multiplies the policy term (per sequence or per token,
as its mode says). TRL's ``top_entropy_quantile`` and ``off_policy_mask_threshold`` act on the policy term only and
are refused by ``AIRConfig`` with an invariance term (docs/paper-map.md, "Off-policy passes").

Rewards used by AIR: the weighted sum ``r = Σ_f w_f r_f`` of the reward functions (the paper's
``r_task + r_fmt``), NaN when no function scored the completion, as TRL computes it; unaffected by
``multi_objective_aggregation`` and ``scale_rewards``, which only shape the GRPO advantages. Prompts are TRL's groups
of ``num_generations`` consecutive completions. Evaluation (``prediction_step``) uses the plain TRL loss: eval batches
need not hold whole meta-groups. A prompt none of whose K completions could be scored (all rewards None) has no
``r̄_s``, and a meta-group whose anchors are all unscored has no ``r̄_acr(z)``: those rows get ``Δ = 0`` (logged as
``invariance/unscored_rows``) instead of stopping the run.

Infinite rewards are treated like None: every reward function's value for that completion is set to NaN, so the
completion is unscored (advantage 0, no ``r̄_s`` contribution, ``Δ`` as above), and the number of such completions
is logged as ``rewards/non_finite`` with a warning. Why not keep TRL's behaviour or stop the run: in TRL, one ±inf
makes its group's mean infinite, ``inf − inf`` gives NaN advantages, ``nan_to_num`` turns the infinite ones into
±3.4e38, and the step's loss and parameters become non-finite; refusing would end a long run over one broken score
(e.g. ``log 0`` in a user's reward), where dropping that completion loses one sample. The whole completion is
dropped, not only the broken function's value, because the others' partial sum would put it on a different scale
than its K − 1 siblings. Judges never return ±inf (``air_align.rewards.server_judge`` retries, then raises).

Calibrated Δ (``AIRConfig.invariance_offsets``, not in the paper): each open row's (domain, label) offset b enters
``objectives.invariance_coefficients`` as ``Δ_s = r̄_acr(z) + b − r̄_s`` (anchors and rows without a matching key:
b = 0).

Constant anchor level (``AIRConfig.anchor_target="constant"``, not in the paper): each open row's (domain, label)
level c from ``anchor_constant`` replaces the measured ``r̄_acr(z)``: ``Δ_s = c + b − r̄_s``; the anchors stay in the
batch and in GRPO's loss. Rows are kept or given ``Δ = 0`` by the same rule as ``"air"`` (a scored anchor in the
meta-group), so that with ``c = r̄_acr(z)`` the term is AIR's exactly. Reward shift (``AIRConfig.reward_shift``, not
in the paper): the aux term's raw reward is ``r − shift``; Δ and GRPO's advantages are computed on ``r`` (both are
unchanged by a shift: differences of rewards, and the constant level is in the reward's own units).

Live monitors (``training/monitors.py``, ``docs/monitoring.md``), from the same gathered rewards and the same loss
forward, logged through TRL's ``_metrics``: Δ per role and per (domain, label), the share of prompts without GRPO
signal, the anchors' reward against its starting level (an ``AnchorDropWarning`` when it falls by more than
``anchor_drop_margin``; a stop with ``stop_on_anchor_drop``, through the ``AnchorDriftMonitor`` callback), and the
aux term's gradient weight beside the policy term's.

Construction refuses what would otherwise train silently wrong: an ``IterableDataset`` (TRL bypasses samplers for
it, so batches would hold partial meta-groups) and, for ``invariance="air"``, a meta-group without an anchor row
(its open variants would get ``Δ = 0`` on every step).
"""

from __future__ import annotations

import logging
import math
import warnings

import datasets
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from air_align.objectives import (
    aux_importance_weights,
    aux_loss,
    invariance_coefficients,
    leave_one_out_baseline,
    meta_group_diagnostics,
    sequence_logprob,
    weighted_rewards,
)
from air_align.training.config import AIRConfig, offset_key
from air_align.training.monitors import AnchorDriftMonitor, anchor_reward, batch_monitors
from air_align.training.sampler import MetaGroupSampler

logger = logging.getLogger(__name__)


def unscore_non_finite(rewards_per_func: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``rewards_per_func`` with every row that holds a ±inf set to NaN (all functions: the completion is unscored),
    and the number of such rows.

    Shape:
        rewards_per_func (N, F) -> (N, F), int

    >>> inf, nan = float("inf"), float("nan")
    >>> unscore_non_finite(torch.tensor([[1.0, inf], [2.0, nan], [-inf, 0.5]]))
    (tensor([[nan, nan],
            [2., nan],
            [nan, nan]]), 2)
    """
    bad = torch.isinf(rewards_per_func).any(dim=1)  # (N,)
    if not bad.any():
        return rewards_per_func, 0
    out = rewards_per_func.clone()
    out[bad] = torch.nan
    return out, int(bad.sum())


def groups_without_anchor(group_ids: list, roles: list, anchor_role: str) -> list:
    """Meta-groups (in order of first appearance) none of whose rows has role ``anchor_role``.

    >>> groups_without_anchor(["a", "a", "b", "b", "c"], ["anchor", "open", "open", "open", "open"], "anchor")
    ['b', 'c']
    """
    anchored: dict = {}
    for g, role in zip(group_ids, roles, strict=True):
        anchored[g] = anchored.get(g, False) or role == anchor_role
    return [g for g, ok in anchored.items() if not ok]


def compact_ids(values: list) -> torch.Tensor:
    """Integer ids for arbitrary hashable values, numbered by first appearance.

    >>> compact_ids(["b", "a", "b"])
    tensor([0, 1, 0])
    """
    index: dict = {}
    return torch.tensor([index.setdefault(v, len(index)) for v in values], dtype=torch.long)


def scored_rows(
    rewards: torch.Tensor, prompt_ids: torch.Tensor, group_ids: torch.Tensor, is_anchor: torch.Tensor, invariance: str
) -> torch.Tensor:
    """Rows whose ``Δ`` is defined: their prompt has a scorable completion and, for ``"air"``, their meta-group a
    scored anchor. The rest get ``Δ = 0``: with no ``r̄_s`` (or no ``r̄_acr(z)``) there is nothing to compare, as
    TRL gives such a prompt advantage 0.

    Shape:
        all (N,) -> (N,) bool

    >>> nan = float("nan")
    >>> scored_rows(torch.tensor([1.0, 2.0, nan, nan, 0.0, 1.0]), torch.tensor([0, 0, 1, 1, 2, 2]),
    ...             torch.tensor([0, 0, 1, 1, 1, 1]), torch.tensor([True, True, True, True, False, False]), "air")
    tensor([ True,  True, False, False, False, False])
    """
    scored = (~torch.isnan(rewards)).long()
    prompt_scored = torch.zeros(int(prompt_ids.max()) + 1, dtype=torch.long).index_add_(0, prompt_ids, scored) > 0
    keep = prompt_scored[prompt_ids]
    if invariance == "air":  # a meta-group needs a scored anchor prompt
        anchored = (keep & is_anchor).long()
        group_anchored = torch.zeros(int(group_ids.max()) + 1, dtype=torch.long).index_add_(0, group_ids, anchored) > 0
        keep = keep & group_anchored[group_ids]
    return keep


@torch.no_grad()
def aux_policy_weights(
    advantages: torch.Tensor,
    coefficients: torch.Tensor,
    rewards: torch.Tensor,
    completion_mask: torch.Tensor,
    invariance_coef: float,
    reduction: str = "sum",
) -> torch.Tensor:
    """``(Σ_i |λ Δ_i r_i| · T_i, Σ_i |Â_i|)``: the L1 masses of the weights the aux term and GRPO's surrogate put on
    the token gradients ``∇log π``, in the same units. Their ratio (``air/aux_to_policy_weight``) says how hard the aux
    term pushes beside the policy term, which loss values cannot (GRPO's surrogate is ≈ 0 on-policy: the advantages
    are centred within each prompt).

    Why: at importance ratio 1, TRL's ``loss_type="grpo"`` gives each token of completion i the weight
    ``Â_i / (N T_i)`` and the aux term (``aux_logprob_reduction="sum"``) gives it ``λ Δ_i r_i / N``; so completion i's
    aux weight equals a GRPO advantage of ``λ Δ_i r_i T_i``. With ``"mean"``, ``T_i = 1``. Exact for
    ``loss_type="grpo"``; the other loss types normalise tokens differently (within length variation of this).
    Unscored rewards (NaN) count 0; ``T_i`` is the completion's token count under ``completion_mask``.

    Shape:
        advantages (B,) or (B, T); coefficients, rewards (B,); completion_mask (B, T) -> (2,)

    >>> aux_policy_weights(torch.tensor([1.0, -1.0]), torch.tensor([0.5, 0.5]), torch.tensor([2.0, float("nan")]),
    ...                    torch.tensor([[1, 1, 0], [1, 1, 1]]), 0.1)
    tensor([0.2000, 2.0000])
    """
    if advantages.dim() == 2:  # per-token advantages (TRL subclasses): a completion's mean |Â| over its tokens
        mask = completion_mask.to(advantages.dtype)
        policy = (advantages.abs() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    else:
        policy = advantages.abs()  # (B,)
    lengths = completion_mask.sum(-1).to(rewards.dtype) if reduction == "sum" else torch.ones_like(rewards)
    aux = (invariance_coef * coefficients * torch.nan_to_num(rewards, nan=0.0)).abs() * lengths  # (B,)
    return torch.stack([aux.sum(), policy.sum().to(aux.dtype)])


class AIRTrainer(GRPOTrainer):
    """``GRPOTrainer`` with AIR / V-REx invariance regularisation (docs/design.md §1). Takes an ``AIRConfig``."""

    _tag_names = ["trl", "grpo", "air"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, AIRConfig):
            raise TypeError(f"AIRTrainer needs an AIRConfig (a GRPOConfig subclass), got {type(self.args).__name__}")
        self._air_rewards_per_func: torch.Tensor | None = None  # gathered (N, F) of the last _calculate_rewards
        self._air_capture = False  # True while our _compute_loss runs TRL's
        self._air_logps: torch.Tensor | None = None  # (B, T) policy log-probs of that forward
        self._air_step_weights = torch.zeros(2, dtype=torch.float64)  # aux_policy_weights summed over the step
        self._check_not_iterable()
        self._check_meta_group_columns()
        self._check_anchors()
        self._check_offsets()
        self._check_anchor_constant()
        self.anchor_monitor = AnchorDriftMonitor(
            self.args.anchor_monitor_batches,
            self.args.anchor_drop_margin,
            self.args.stop_on_anchor_drop,
            warn=self.accelerator.is_main_process,
        )
        self.add_callback(self.anchor_monitor)

    # -- data ---------------------------------------------------------------------------------------------------------

    def _has_meta_groups(self, dataset) -> bool:
        names = getattr(dataset, "column_names", None)
        return names is not None and self.args.group_column in names and self.args.role_column in names

    def _check_not_iterable(self) -> None:
        dataset = self.train_dataset
        iterable = isinstance(dataset, datasets.IterableDataset | torch.utils.data.IterableDataset)
        if iterable and (self.args.invariance != "none" or self._has_meta_groups(dataset)):
            raise ValueError(
                f"train_dataset is an {type(dataset).__name__}: the meta-group sampler needs a map-style dataset "
                "(TRL skips samplers for iterable ones), else generation batches hold partial meta-groups without "
                "their anchors. Load it as a datasets.Dataset, e.g. Dataset.from_list(list(stream)) or "
                "load_dataset(..., streaming=False); or, for plain GRPO/GSPO, use invariance='none' on data without "
                f"the {self.args.group_column!r} / {self.args.role_column!r} columns."
            )

    def _check_anchors(self) -> None:
        if self.args.invariance != "air" or self.train_dataset is None:
            return
        dataset = self.train_dataset
        missing = groups_without_anchor(
            dataset[self.args.group_column], dataset[self.args.role_column], self.args.anchor_role
        )
        if missing:
            shown = ", ".join(repr(g) for g in missing[:5]) + (
                f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            )
            raise ValueError(
                f"invariance='air' compares every open variant with its meta-group's anchors, but {len(missing)} "
                f"meta-group(s) have no row with {self.args.role_column}={self.args.anchor_role!r}: {shown}. Add an "
                "anchor to each or drop them (`air-align data validate FILE` lists them), or use invariance='vrex' "
                "or 'none'."
            )

    def _check_meta_group_columns(self) -> None:
        if self.args.invariance == "none" or self.train_dataset is None:
            return
        if not self._has_meta_groups(self.train_dataset):
            names = getattr(self.train_dataset, "column_names", None)
            raise ValueError(
                f"invariance={self.args.invariance!r} needs a map-style dataset with columns "
                f"{self.args.group_column!r} and {self.args.role_column!r} (set group_column / role_column); got "
                f"columns {names}. Use invariance='none' for plain GRPO/GSPO."
            )
        if self.args.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True would drop the meta-group columns AIR needs; set it to False "
                "(TRL's GRPO default)"
            )

    def _check_offsets(self) -> None:
        offsets = self.args.invariance_offsets
        if not offsets or self.train_dataset is None:
            return
        names = getattr(self.train_dataset, "column_names", None) or []
        missing = [c for c in ("domain", "label") if c not in names]
        if missing:
            raise ValueError(
                f"invariance_offsets are keyed by 'domain/label', but train_dataset has no {missing} column(s) "
                f"(columns: {names}); add them (the meta-group schema has both) or drop invariance_offsets"
            )
        dataset = self.train_dataset
        present = {
            offset_key(d, lab)
            for d, lab, role in zip(dataset["domain"], dataset["label"], dataset[self.args.role_column], strict=True)
            if role != self.args.anchor_role
        }
        unused = [k for k in offsets if k not in present]
        if unused:
            warnings.warn(
                f"invariance_offsets {unused} match no open row of train_dataset (its open rows' keys: "
                f"{sorted(present)}); those offsets are unused. Rows without a matching key get b = 0.",
                stacklevel=3,
            )

    def _check_anchor_constant(self) -> None:
        """With ``anchor_target="constant"``, every open row's (domain, label) has a level: a missing one cannot be
        guessed (0 would pull that row's rewards to 0)."""
        levels = self.args.anchor_constant
        if self.args.anchor_target != "constant" or self.train_dataset is None:
            return
        names = getattr(self.train_dataset, "column_names", None) or []
        missing = [c for c in ("domain", "label") if c not in names]
        if missing:
            raise ValueError(
                f"anchor_constant is keyed by 'domain/label', but train_dataset has no {missing} column(s) (columns: "
                f"{names}); add them (the meta-group schema has both) or use anchor_target='anchors'"
            )
        dataset = self.train_dataset
        needed = sorted(
            {
                offset_key(d, lab)
                for d, lab, role in zip(
                    dataset["domain"], dataset["label"], dataset[self.args.role_column], strict=True
                )
                if role != self.args.anchor_role
            }
        )
        uncovered = [k for k in needed if k not in levels]
        if uncovered:
            raise ValueError(
                f"anchor_target='constant' needs a level for every open row's (domain, label), but anchor_constant "
                f"{levels} has none for {uncovered}: add them (the reward of a correct anchor of that label, from the "
                "calibration table)"
            )

    def _get_train_sampler(self, dataset=None):
        dataset = self.train_dataset if dataset is None else dataset
        if not self._has_meta_groups(dataset):  # plain GRPO data: TRL's RepeatSampler
            return super()._get_train_sampler(dataset)
        # With meta-groups, every mode (none included) sees the same whole-meta-group batches: a fair comparison.
        return MetaGroupSampler(
            group_ids=dataset[self.args.group_column],
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    # -- coefficients over the gathered generation batch --------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        inf_per_func = torch.isinf(rewards_per_func).any(dim=0).tolist()  # (F,)
        rewards_per_func, non_finite = unscore_non_finite(rewards_per_func)  # gathered: the same on every process
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["rewards/non_finite"].append(float(non_finite))
        if non_finite:
            funcs = [name for name, bad in zip(self.reward_func_names, inf_per_func, strict=True) if bad]
            logger.warning(
                "%d completion(s) got an infinite reward (reward functions: %s); they are unscored, like None",
                non_finite,
                ", ".join(funcs),
            )
        self._air_rewards_per_func = rewards_per_func  # gathered over processes: (N_global, F)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        rewards_per_func, self._air_rewards_per_func = self._air_rewards_per_func, None
        mode = "train" if self.model.training else "eval"
        if mode != "train" or not inputs or self.args.group_column not in inputs[0]:
            return output

        # Same order as the gathered rewards: processes in rank order, each its local rows in order.
        groups = gather_object([inputs[i][self.args.group_column] for i in range(len(inputs))])
        roles = gather_object([inputs[i][self.args.role_column] == self.args.anchor_role for i in range(len(inputs))])
        rewards = weighted_rewards(rewards_per_func, self.reward_weights).float().cpu()  # (N,)
        if len(groups) != rewards.numel():
            raise RuntimeError(f"gathered {len(groups)} group ids for {rewards.numel()} gathered rewards")
        prompt_ids = torch.arange(rewards.numel()) // self.num_generations  # TRL's grouping: K consecutive rows
        group_ids = compact_ids(groups)
        is_anchor = torch.tensor(roles, dtype=torch.bool)
        label_keys = None  # per row "domain/label" (config.offset_key), when the rows carry a label
        if "label" in inputs[0]:
            label_keys = gather_object([offset_key(row.get("domain"), row["label"]) for row in inputs])
        offsets = self._row_offsets(label_keys, is_anchor)  # (N,) b, or None for the paper's Δ
        levels = self._row_anchor_levels(label_keys, is_anchor)  # (N,) c, or None for the measured r̄_acr(z)

        invariance = self.args.invariance
        keep = scored_rows(rewards, prompt_ids, group_ids, is_anchor, invariance)  # (N,) bool
        self._metrics[mode]["invariance/unscored_rows"].append(float((~keep).sum()))
        args = (rewards[keep], prompt_ids[keep], group_ids[keep], is_anchor[keep])
        kept_offsets = None if offsets is None else offsets[keep]
        kept_levels = None if levels is None else levels[keep]
        if keep.any():
            for name, value in meta_group_diagnostics(*args, invariance, kept_offsets, kept_levels).items():
                self._metrics[mode][name].append(value)

        coef = torch.zeros_like(rewards)  # (N,) Δ, detached; 0 where no Δ is defined
        if invariance != "none" and keep.any():
            coef[keep] = invariance_coefficients(*args, invariance, kept_offsets, kept_levels)
        self._log_monitors(mode, rewards, prompt_ids, group_ids, is_anchor, label_keys, offsets, coef, keep)
        if invariance == "none":
            return output

        rank, local = self.accelerator.process_index, len(inputs)
        process_slice = slice(rank * local, (rank + 1) * local)  # the slice TRL takes for the advantages
        device = self.accelerator.device
        output["air_coef"] = coef[process_slice].to(device)  # (B_local,)
        if self.args.aux_baseline == "leave_one_out":  # not in the paper: see AIRConfig.aux_baseline
            rewards = rewards - leave_one_out_baseline(rewards, prompt_ids)
        rewards = rewards - self.args.reward_shift  # not in the paper: see AIRConfig.reward_shift (0 by default)
        output["air_reward"] = rewards[process_slice].to(device)  # (B_local,) NaN = unscorable
        return output

    def _row_offsets(self, label_keys: list[str] | None, is_anchor: torch.Tensor) -> torch.Tensor | None:
        """Per-row calibrated-Δ offset b (N,): the row's (domain, label) offset for open rows, 0 for anchors and for
        rows without a matching key; None without offsets (the paper's Δ)."""
        offsets = self.args.invariance_offsets
        if not offsets:
            return None
        if label_keys is None:
            raise RuntimeError("invariance_offsets need the rows' 'domain' and 'label' columns; the batch has none")
        b = torch.tensor([offsets.get(k, 0.0) for k in label_keys], dtype=torch.float32)  # (N,)
        return torch.where(is_anchor, torch.zeros_like(b), b)

    def _row_anchor_levels(self, label_keys: list[str] | None, is_anchor: torch.Tensor) -> torch.Tensor | None:
        """Per-row constant anchor level c (N,): the row's (domain, label) level for open rows, 0 for anchors (Δ = 0
        there whatever c); None with ``anchor_target="anchors"`` (the measured r̄_acr(z))."""
        if self.args.anchor_target != "constant":
            return None
        if label_keys is None:
            raise RuntimeError(
                "anchor_target='constant' needs the rows' 'domain' and 'label' columns; the batch has none"
            )
        levels = self.args.anchor_constant
        c = torch.tensor([levels.get(k, math.nan) for k in label_keys], dtype=torch.float32)  # (N,)
        c = torch.where(is_anchor, torch.zeros_like(c), c)
        if torch.isnan(c).any():  # _check_anchor_constant covers the training set: a batch from elsewhere
            key = label_keys[int(torch.nonzero(torch.isnan(c))[0])]
            raise RuntimeError(f"anchor_constant has no level for an open row of (domain, label) {key!r}")
        return c

    @torch.no_grad()
    def _log_monitors(self, mode, rewards, prompt_ids, group_ids, is_anchor, label_keys, offsets, coef, keep) -> None:
        """The live monitors of ``training/monitors.py`` for one gathered generation batch (no extra pass)."""
        invariance = self.args.invariance
        if invariance == "none":  # show the Δ AIR would apply: the baseline's calibration, nothing applied
            keep = scored_rows(rewards, prompt_ids, group_ids, is_anchor, "air")
            coef = torch.zeros_like(rewards)
            if keep.any():
                b = None if offsets is None else offsets[keep]
                coef[keep] = invariance_coefficients(
                    rewards[keep], prompt_ids[keep], group_ids[keep], is_anchor[keep], "air", b
                )
        metrics = batch_monitors(rewards, prompt_ids, is_anchor, coef, keep, label_keys, invariance == "vrex")
        level = anchor_reward(rewards, prompt_ids, is_anchor)
        # global_step + 1: the step this batch trains and is logged under
        metrics.update(self.anchor_monitor.update(level, self.state.global_step + 1, self.state.log_history))
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)

    # -- loss: reuse TRL's policy forward -----------------------------------------------------------------------------

    def _get_per_token_logps_and_entropies(self, *args, **kwargs):
        result = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        # Only a grad-carrying result is the forward of TRL's loss: a gradient-free call (e.g. reference log-probs in
        # a later TRL) would silently leave the aux term without gradient, and a second grad-carrying one would be
        # ambiguous (tests/test_trl_contract.py).
        if self._air_capture and result[0].requires_grad:
            if self._air_logps is not None:
                raise RuntimeError(
                    "TRL's _compute_loss ran two gradient-carrying log-prob forwards; AIRTrainer cannot tell which is "
                    "the policy's: the TRL version changed; AIRTrainer is pinned to trl==1.16.0"
                )
            self._air_logps = result[0]  # (B, T): the forward of TRL's loss
        return result

    def _aux_importance(self, per_token_logps, inputs, mask) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The aux term's importance weights for this micro-batch: a per-sequence ρ (B,) and per-token vLLM ratios
        (B, T), each None when it does not apply.

        ρ = min(π_θ / π_old, aux_is_cap) over the sequence when TRL passes ``old_per_token_logps`` (samples from an
        older θ: ``num_iterations > 1``, ``steps_per_generation > gradient_accumulation_steps``, or vLLM); None when
        it does not (on-policy: every sample is from the current θ, ρ = 1 exactly). With vLLM's importance-sampling
        correction on, TRL's ``importance_sampling_ratio`` (π_old / π_vLLM, truncated or masked as its mode says)
        multiplies too, as it multiplies TRL's policy term: per sequence in the ``sequence_*`` modes, per token in
        the ``token_*`` modes. Logged as ``invariance/aux_is_ratio/{mean,min,max}`` and
        ``invariance/aux_is_truncated``."""
        old = inputs.get("old_per_token_logps")
        ratio = token_ratio = None
        truncated = torch.zeros(per_token_logps.shape[0], dtype=torch.bool, device=per_token_logps.device)
        if old is not None:
            ratio, truncated = aux_importance_weights(per_token_logps, old, mask, self.args.aux_is_cap)
        vllm_ratio = inputs.get("importance_sampling_ratio")
        if self.use_vllm and self.vllm_importance_sampling_correction and vllm_ratio is not None:
            if self.vllm_importance_sampling_mode in ("sequence_mask", "sequence_truncate"):
                seq = vllm_ratio.detach().reshape(-1).to(per_token_logps.dtype)  # (B, 1) -> (B,)
                ratio = seq if ratio is None else ratio * seq
            else:
                token_ratio = vllm_ratio.detach()  # (B, T)
        if ratio is None and token_ratio is None:
            return None, None
        shown = torch.ones_like(truncated, dtype=per_token_logps.dtype) if ratio is None else ratio.detach()
        if token_ratio is not None:  # for the log only: the tokens' mean ratio stands for the sequence's
            m = mask.to(shown.dtype)
            shown = shown * (token_ratio.to(shown.dtype) * m).sum(-1) / m.sum(-1).clamp(min=1)
        mode = "train" if self.model.training else "eval"
        stats = torch.stack([shown.min(), shown.sum(), shown.max(), truncated.sum().to(shown.dtype)]).float()
        count = torch.tensor([float(shown.numel())], device=stats.device)
        gathered = self.accelerator.gather(torch.cat([stats, count])).view(-1, 5)  # (P, 5)
        total = gathered[:, 4].sum().clamp(min=1)
        self._metrics[mode]["invariance/aux_is_ratio/min"].append(gathered[:, 0].min().item())
        self._metrics[mode]["invariance/aux_is_ratio/mean"].append((gathered[:, 1].sum() / total).item())
        self._metrics[mode]["invariance/aux_is_ratio/max"].append(gathered[:, 2].max().item())
        self._metrics[mode]["invariance/aux_is_truncated"].append((gathered[:, 3].sum() / total).item())
        return ratio, token_ratio

    def _compute_loss(self, model, inputs):
        if "air_coef" not in inputs:
            return super()._compute_loss(model, inputs)
        self._air_capture, self._air_logps = True, None
        try:
            loss = super()._compute_loss(model, inputs)
        finally:
            self._air_capture = False
        per_token_logps, self._air_logps = self._air_logps, None
        if per_token_logps is None:
            raise RuntimeError(
                "TRL's _compute_loss did not call _get_per_token_logps_and_entropies with gradients: the TRL "
                "version changed; AIRTrainer is pinned to trl==1.16.0"
            )
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:  # tool output tokens are not sampled from π: not part of log π(y|s)
            mask = mask * inputs["tool_mask"]
        ratio, token_ratio = self._aux_importance(per_token_logps, inputs, mask)  # (B,), (B, T) or None
        seq_logps = sequence_logprob(per_token_logps, mask, self.args.aux_logprob_reduction, token_ratio)  # (B,)

        mode = "train" if self.model.training else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        # N of this micro-batch's share: B local completions × G micro-batches; DDP's gradient mean supplies 1/P.
        num_completions = seq_logps.shape[0] * accumulation
        aux = aux_loss(
            seq_logps, inputs["air_reward"], inputs["air_coef"], self.args.invariance_coef, num_completions, ratio
        )
        aux_coef = inputs["air_coef"] if ratio is None else inputs["air_coef"] * ratio  # ρ Δ: the weight applied
        weights = aux_policy_weights(
            inputs["advantages"],
            aux_coef,
            inputs["air_reward"],
            mask,
            self.args.invariance_coef,
            self.args.aux_logprob_reduction,
        )
        # Losses as this micro-batch's share of the step's loss, averaged over processes (as DDP averages gradients);
        # gradient weights summed over processes.
        both = torch.stack([aux.detach().float(), loss.detach().float(), *weights.float()])  # (4,)
        gathered = self.accelerator.gather(both).view(-1, 4)  # (P, 4)
        aux_value, policy_value = gathered[:, :2].mean(0).tolist()
        self._metrics[mode]["invariance/aux_loss"].append(aux_value * accumulation)
        self._metrics[mode]["air/policy_loss"].append(policy_value * accumulation)
        if mode == "train":
            self._air_step_weights += gathered[:, 2:].sum(0).double().cpu()
            if self.accelerator.sync_gradients:  # last micro-batch of the optimiser step
                aux_weight, policy_weight = self._air_step_weights.tolist()
                ratio = aux_weight / policy_weight if policy_weight > 0 else math.nan
                self._metrics[mode]["air/aux_to_policy_weight"].append(ratio)
                self._air_step_weights = torch.zeros(2, dtype=torch.float64)
        return loss + aux
