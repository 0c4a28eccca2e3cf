"""``AIRConfig``: TRL's ``GRPOConfig`` plus the few fields AIR needs (docs/design.md §1).

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

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from transformers import TrainingArguments
from trl import GRPOConfig

from air_align.configs import Problems
from air_align.objectives import AUX_BASELINES, INVARIANCE_MODES, AuxBaseline, Invariance, LogprobReduction
from air_align.safe_yaml import brief

LOGPROB_REDUCTIONS = ("sum", "mean")
AnchorTarget = Literal["anchors", "constant"]
ANCHOR_TARGETS: tuple[str, ...] = get_args(AnchorTarget)


def trainer_reads_activation_checkpointing() -> bool:
    """Whether the installed transformers' ``TrainingArguments`` has the ``activation_checkpointing`` field (5.20
    on); older 5.x versions read only ``gradient_checkpointing``."""
    return "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}


def offset_key(domain, label) -> str:
    """The ``"domain/label"`` key of a row's calibration offset, as ``calibration/check.py`` names the pair
    (``str(domain)``; a missing label is ``"none"``).

    >>> offset_key("safety", 0), offset_key("math", None)
    ('safety/0', 'math/none')
    """
    return f"{domain}/{'none' if label is None else label}"


def normalize_offsets(value, where: str = "AIRConfig.invariance_offsets") -> dict[str, float]:
    """Calibrated-Δ offsets as a flat ``{"domain/label": b}`` dict, from any accepted form, checked.

    Accepted: a flat dict ``{"safety/0": 1.25}``; a nested one ``{"safety": {"0": 1.25}}`` (the ``offsets`` of
    ``calibration.check.calibration_table``; YAML's integer label keys are fine); a JSON string of either; the path
    of a JSON file holding either, or a ``calibration.json`` (its ``offsets`` are used); None or ``{}`` (no offsets).

    >>> normalize_offsets({"safety": {0: 1.25, 1: 0}, "math/none": -0.5})
    {'safety/0': 1.25, 'safety/1': 0.0, 'math/none': -0.5}

    Raises:
        ConfigError: every key that is not ``"domain/label"`` (one ``/``, both parts non-empty) and every value that
            is not a finite number, at once.
        ValueError: a string that is neither JSON nor an existing file; a value that is not a mapping.
    """
    if value is None:
        return {}
    if isinstance(value, str | Path):
        text = str(value).strip()
        path = Path(text).expanduser()
        if not text.startswith("{") and path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: {path} is not a JSON file ({err})") from None
            if isinstance(value, dict) and "verdicts" in value and "offsets" in value:  # a calibration.json
                value = value["offsets"]
            where = f"{where} (from {path})"
        else:
            try:
                value = json.loads(text) if text else {}
            except json.JSONDecodeError:
                raise ValueError(
                    f"{where}={text!r} is neither a JSON mapping nor an existing file; give e.g. "
                    '{"safety/0": 1.25} or the path of a calibration.json'
                ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{where} must map 'domain/label' to an offset b (e.g. {{'safety/0': 1.25}}), got {type(value).__name__}"
        )
    flat: dict[str, float] = {}
    problems = Problems()
    for key, b in value.items():
        if isinstance(b, dict):  # nested {domain: {label: b}}
            if not str(key) or "/" in str(key):
                problems.add(str(key), "a domain must be a non-empty name without '/'")
                continue
            items = [(offset_key(key, label), inner) for label, inner in b.items()]
        else:
            items = [(key, b)]
        for k, v in items:
            parts = str(k).split("/")
            if not isinstance(k, str) or len(parts) != 2 or not all(p.strip() for p in parts):
                problems.add(
                    str(k),
                    "not a 'domain/label' key (e.g. 'safety/0', 'math/none': the domain, one '/', the label as "
                    "calibration.check names it)",
                )
            elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                problems.add(k, f"an offset must be a finite number (reward units), got {brief(v)}")
            elif k in flat:
                problems.add(k, "given twice (flat and nested)")
            else:
                flat[k] = float(v)
    problems.raise_if_any(f"invalid {where}")
    return flat


def normalize_anchor_levels(value, where: str = "AIRConfig.anchor_constant") -> dict[str, float]:
    """Constant anchor levels as a flat ``{"domain/label": c}`` dict: every form :func:`normalize_offsets` takes,
    except that a ``calibration.json`` gives its measured **correct-anchor rewards** (each verdict's
    ``anchor_reward``), not its offsets.

    >>> normalize_anchor_levels({"safety": {0: 2.5, 1: 2.5}})
    {'safety/0': 2.5, 'safety/1': 2.5}
    """
    if isinstance(value, str | Path) and not str(value).strip().startswith("{"):
        path = Path(str(value).strip()).expanduser()
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: {path} is not a JSON file ({err})") from None
            if isinstance(loaded, dict) and "verdicts" in loaded:  # a calibration.json: its correct-anchor rewards
                missing = [
                    offset_key(v.get("domain"), v.get("label"))
                    for v in loaded["verdicts"]
                    if v.get("anchor_reward") is None
                ]
                if missing:
                    raise ValueError(
                        f"{where} (from {path}): no correct-anchor reward was measured for {missing}; the calibration "
                        "needs scored correct anchors of every (domain, label)"
                    )
                value = {offset_key(v["domain"], v["label"]): v["anchor_reward"] for v in loaded["verdicts"]}
            else:
                value = loaded
            where = f"{where} (from {path})"
    return normalize_offsets(value, where)


@dataclass
class AIRConfig(GRPOConfig):
    """``GRPOConfig`` with AIR's invariance regulariser. Only the fields below are new."""

    invariance: Invariance = field(
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
            "fix": "e.g. invariance_coef=8e-4 (the paper's), or invariance=none for no invariance term",
            "help": "λ, the weight of the auxiliary term −λ·(1/N)·Σ Δ_s·r·log π(y|s) (paper Algorithm 1; 8e-4 for "
            "Qwen2.5-14B). N = completions per optimiser step over all processes. The right λ depends on the reward "
            "scale and on `aux_logprob_reduction`: sweep it over orders of magnitude on ID validation data.",
        },
    )
    aux_logprob_reduction: LogprobReduction = field(
        default="sum",
        metadata={
            "help": "How log π(y|s) of the auxiliary term is reduced over completion tokens: 'sum' (the paper's "
            "sequence log-probability, Algorithm 1) or 'mean' (length-normalised; a variant that changes the "
            "effective λ by about the completion length).",
            "choices": list(LOGPROB_REDUCTIONS),
        },
    )
    aux_baseline: AuxBaseline = field(
        default="none",
        metadata={
            "help": "Baseline subtracted from r in the auxiliary term: 'none' (the paper's Algorithm 1: Δ·r·log π) or "
            "'leave_one_out' (Δ·(r − b)·log π with b the mean reward of the prompt's other K−1 completions; NOT in "
            "the paper: same expected gradient, lower variance, and with Δ < 0 it lowers only above-average "
            "samples instead of every rewarded one; docs/results-history.md says why the lab tried it).",
            "choices": list(AUX_BASELINES),
        },
    )
    aux_is_cap: float = field(
        default=3.0,  # TRL's vllm_importance_sampling_clip_max: one bound for both corrections of a run
        metadata={
            "help": "Truncation c of the aux term's importance weight ρ = min(π_θ(y|s) / π_old(y|s), c) on samples "
            "from an older policy (num_iterations > 1, or steps_per_generation > gradient_accumulation_steps), "
            "so that the replayed aux gradient estimates the on-policy one (docs/paper-map.md). On-policy, ρ = 1."
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
    # `gradient_checkpointing=True`, which made every AIRConfig print a FutureWarning; `_resolve_checkpointing` maps it
    # onto the field the installed transformers reads.
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

    invariance_offsets: dict[str, float | dict[Any, float]] | str | None = field(
        default_factory=dict,
        metadata={
            "help": "Calibrated Δ (NOT in the paper; docs/calibration.md): per-(domain, label) offsets b, so that "
            "Δ_s = r̄_acr(z) + b − r̄_s for open prompts. Keys 'domain/label' as calibration.check names them "
            "(e.g. {'safety/0': 1.25}); a nested {'safety': {'0': 1.25}}, a JSON string, or the path of a "
            "calibration.json (its measured offsets) also work. Rows (from the dataset's 'domain' and 'label' "
            "columns) without a matching key get b = 0. Empty (default): the paper's Δ."
        },
    )
    anchor_target: AnchorTarget = field(
        default="anchors",
        metadata={
            "help": "AIR's anchor level in Δ_s = r̄_acr(z) − r̄_s: 'anchors' (the paper: the mean reward of the "
            "meta-group's anchors in this batch) or 'constant' (NOT in the paper; docs/design.md §1.2: a fixed level "
            "per (domain, label) from `anchor_constant`, the reward of a correct anchor; the anchors stay in the "
            "batch for GRPO but Δ no longer reads them, which tests whether they carry information).",
            "choices": list(ANCHOR_TARGETS),
        },
    )
    anchor_constant: dict[str, float | dict[Any, float]] | str | None = field(
        default_factory=dict,
        metadata={
            "help": "The levels c of anchor_target='constant': per 'domain/label' (e.g. {'safety/0': 2.5, "
            "'safety/1': 2.5}), in the forms of invariance_offsets; the path of a calibration.json gives its "
            "measured correct-anchor rewards. Every open row's (domain, label) needs one. Empty with "
            "anchor_target='anchors'."
        },
    )
    reward_shift: float = field(
        default=0.0,
        metadata={
            "help": "Subtract this constant from every reward before the loss (NOT in the paper; docs/design.md "
            "§1.2). GRPO's advantages and Δ do not change (both are differences of rewards); only the invariance "
            "term's raw-reward weight r in Δ·r·log π does, whose expected gradient does not (E[∇log π] = 0): a check "
            "of how much results depend on that weight's variance. 0: the paper's term."
        },
    )
    anchor_monitor_batches: int = field(
        default=8,  # 4 false-alarmed on lab runs whose anchors stayed at 1.00 (docs/monitoring.md); 8 did not
        metadata={
            "help": "Generation batches averaged for the anchors' starting reward level (the first ones of the run) "
            "and for the current level compared to it (the latest ones); logged as air/anchor_start, "
            "air/anchor_level, air/anchor_drift."
        },
    )
    anchor_drop_margin: float | None = field(
        default=0.5,
        metadata={
            "help": "Warn (once per crossing) when the anchors' reward level falls more than this many reward units "
            "below its starting level: AIR keeps the anchors behind a stop-gradient, so they should not fall. "
            "null disables the check."
        },
    )
    stop_on_anchor_drop: bool = field(
        default=False,
        metadata={
            "help": "Also stop training (at the end of the optimiser step) when the anchors' reward falls by more "
            "than anchor_drop_margin. Off by default: the run only warns."
        },
    )

    def _resolve_checkpointing(self) -> None:
        """Write the requested checkpointing into the field this transformers' ``Trainer`` reads.

        transformers ≥ 5.20 reads ``activation_checkpointing`` (``gradient_checkpointing`` is its deprecated alias);
        5.0–5.19, which the vLLM builds TRL supports require, know only ``gradient_checkpointing``. Our own
        ``activation_checkpointing`` field exists on every version, so setting only it left checkpointing silently
        off on 5.0–5.19 (``tests/test_train_checkpointing.py`` checks the model on both kinds of version)."""
        requested = self.activation_checkpointing
        if requested is None:
            requested = True if self.gradient_checkpointing is None else self.gradient_checkpointing  # TRL's default
        if trainer_reads_activation_checkpointing():
            if self.gradient_checkpointing is None:  # else TrainingArguments maps the old name, with its warning
                self.activation_checkpointing = requested
        else:
            self.activation_checkpointing = self.gradient_checkpointing = requested  # the name this Trainer reads

    def _check_policy_masks(self) -> None:
        """Refuse TRL's token and sequence masks that act on the policy term only.

        ``top_entropy_quantile`` keeps the policy gradient on high-entropy tokens, ``off_policy_mask_threshold``
        drops negative-advantage sequences far from the sampler: the aux term has no counterpart of either (it
        is the gradient of ``Δ · E[r]``, on whole sequences, with no advantage sign), and applying them would make
        it a biased estimate of that gradient; ignoring them would train the aux term on samples TRL drops."""
        if self.invariance == "none":
            return
        if self.top_entropy_quantile < 1.0:
            raise ValueError(
                f"top_entropy_quantile={self.top_entropy_quantile} masks the policy term to high-entropy tokens, "
                f"which the invariance term (invariance={self.invariance!r}) cannot follow: it is a gradient of "
                "whole-sequence log-probabilities. Set top_entropy_quantile=1.0, or invariance=none"
            )
        if self.off_policy_mask_threshold is not None:
            raise ValueError(
                f"off_policy_mask_threshold={self.off_policy_mask_threshold} masks negative-advantage sequences of "
                f"the policy term only; the invariance term (invariance={self.invariance!r}) has no advantage sign "
                "to follow and corrects off-policy samples with importance weights instead (aux_is_cap). Unset "
                "off_policy_mask_threshold, or use invariance=none"
            )

    def _check_anchor_target(self) -> None:
        """``anchor_target`` and ``anchor_constant`` agree with each other and with ``invariance``."""
        if self.anchor_target not in ANCHOR_TARGETS:
            raise ValueError(f"AIRConfig.anchor_target must be one of {ANCHOR_TARGETS}, got {self.anchor_target!r}")
        self.anchor_constant = normalize_anchor_levels(self.anchor_constant)
        if self.anchor_target == "anchors":
            if self.anchor_constant:
                raise ValueError(
                    f"AIRConfig.anchor_constant={self.anchor_constant} is unused with anchor_target='anchors' (the "
                    "anchor level is measured from the batch): set anchor_target='constant' to use it, or drop it"
                )
            return
        if self.invariance != "air":
            raise ValueError(
                f"AIRConfig.anchor_target='constant' replaces AIR's anchor level r̄_acr, but invariance="
                f"{self.invariance!r} has none (V-REx's centre is the mean of every context): use invariance='air' "
                "or anchor_target='anchors'"
            )
        if not self.anchor_constant:
            raise ValueError(
                "AIRConfig.anchor_target='constant' needs anchor_constant: the reward of a correct anchor per "
                "'domain/label', from the calibration table (docs/calibration.md; `air-align calibrate` writes it as "
                "each verdict's anchor_reward), e.g. anchor_constant={'safety/0': 2.5, 'safety/1': 2.5} or the path "
                "of its calibration.json"
            )

    def _check_reward_shift(self) -> None:
        """``reward_shift`` is a finite number, and only where it changes something."""
        shift = self.reward_shift
        if isinstance(shift, bool) or not isinstance(shift, int | float) or not math.isfinite(shift):
            raise ValueError(f"AIRConfig.reward_shift must be a finite number (reward units), got {shift!r}")
        self.reward_shift = float(shift)
        if shift == 0:
            return
        if self.invariance == "none":
            raise ValueError(
                f"AIRConfig.reward_shift={shift} changes only the invariance term's raw-reward weight (GRPO's "
                "advantages do not depend on it); with invariance='none' it would do nothing: drop it"
            )
        if self.aux_baseline != "none":
            raise ValueError(
                f"AIRConfig.reward_shift={shift} would do nothing with aux_baseline={self.aux_baseline!r}: the "
                "baseline r − b already removes any constant from the weight; drop one of them"
            )

    def __post_init__(self):
        self._resolve_checkpointing()
        try:
            super().__post_init__()
        except ValueError as err:
            if "must be divisible by num_generations" not in str(err):
                raise
            raise ValueError(
                f"{err} A generation batch is per_device_train_batch_size × steps_per_generation (default: "
                f"gradient_accumulation_steps) × processes completions, K = num_generations = {self.num_generations} "
                "per prompt, and must hold whole meta-groups: set per_device_train_batch_size to a multiple of "
                "(prompts per meta-group) × K, e.g. 18 for `air-align data build`'s 6-prompt meta-groups with K = 3"
            ) from None
        self.invariance_offsets = normalize_offsets(self.invariance_offsets)
        if isinstance(self.anchor_monitor_batches, bool) or not isinstance(self.anchor_monitor_batches, int):
            raise ValueError(
                f"AIRConfig.anchor_monitor_batches must be an integer >= 1, got {self.anchor_monitor_batches!r}"
            )
        if self.anchor_monitor_batches < 1:
            raise ValueError(f"AIRConfig.anchor_monitor_batches must be >= 1, got {self.anchor_monitor_batches}")
        margin = self.anchor_drop_margin
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float)):
            raise ValueError(f"AIRConfig.anchor_drop_margin must be a number > 0 or null, got {margin!r}")
        if margin is not None and not (math.isfinite(margin) and margin > 0):
            raise ValueError(
                f"AIRConfig.anchor_drop_margin must be > 0 (reward units) or null to disable the check, got {margin}"
            )
        if self.stop_on_anchor_drop and margin is None:
            raise ValueError(
                "AIRConfig.stop_on_anchor_drop=True needs anchor_drop_margin (the fall, in reward units, that stops "
                "the run); it is null"
            )
        if self.invariance not in INVARIANCE_MODES:
            raise ValueError(f"AIRConfig.invariance must be one of {INVARIANCE_MODES}, got {self.invariance!r}")
        if self.aux_logprob_reduction not in LOGPROB_REDUCTIONS:
            raise ValueError(
                f"AIRConfig.aux_logprob_reduction must be one of {LOGPROB_REDUCTIONS}, "
                f"got {self.aux_logprob_reduction!r}"
            )
        if self.aux_baseline not in AUX_BASELINES:
            raise ValueError(f"AIRConfig.aux_baseline must be one of {AUX_BASELINES}, got {self.aux_baseline!r}")
        if isinstance(self.aux_is_cap, bool) or not isinstance(self.aux_is_cap, int | float):
            raise ValueError(f"AIRConfig.aux_is_cap must be a number > 0, got {self.aux_is_cap!r}")
        if not (math.isfinite(self.aux_is_cap) and self.aux_is_cap > 0):
            raise ValueError(
                f"AIRConfig.aux_is_cap must be a finite number > 0 (a truncation of importance ratios; 3.0 is the "
                f"default), got {self.aux_is_cap}"
            )
        self._check_policy_masks()
        self._check_anchor_target()
        self._check_reward_shift()
        if not math.isfinite(self.invariance_coef) or self.invariance_coef < 0:
            raise ValueError(
                f"AIRConfig.invariance_coef (λ) must be a finite number >= 0, got {self.invariance_coef}; e.g. "
                "invariance_coef=8e-4 (the paper's), or invariance=none for no invariance term"
            )
