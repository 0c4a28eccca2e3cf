"""The methods compared, in one table: what each sets on ``AIRConfig`` and how tables name it.

Used by ``air-align train`` (``method=grpo+air``), the lab (``air-align reproduce``) and the real tier
(``air-align study``). A method sets only the regulariser and the importance-sampling level (and, for our own
variant, the auxiliary term's baseline); every other setting is shared by every method of a comparison
(docs/design.md §5.1: "every method shares every hyperparameter except the regulariser"). GSPO is TRL's
``importance_sampling_level="sequence"``; TRL recommends ``loss_type="grpo"`` with it, which the lab sets for every
method alike, so the loss type is the caller's, not the method's.

Pure Python (no TRL): the CLI modules can read the table without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """One row of the comparison."""

    label: str
    """How tables and plots name it."""
    invariance: str
    """``AIRConfig.invariance``: ``none`` (plain GRPO / GSPO), ``vrex`` or ``air``."""
    importance_sampling_level: str = "token"
    """``token`` (GRPO's ratio) or ``sequence`` (GSPO's)."""
    aux_baseline: str = "none"
    """``AIRConfig.aux_baseline``: ``none`` (the paper) or ``leave_one_out`` (our variant)."""
    paper: bool = True
    """One of the paper's Table 1 rows."""
    calibrated_delta: bool = False
    """Needs ``AIRConfig.invariance_offsets`` (calibrated Δ, docs/calibration.md; not the paper): the caller measures
    them with the calibration check and passes them."""
    anchor_target: str = "anchors"
    """``AIRConfig.anchor_target``: ``anchors`` (the paper's measured r̄_acr) or ``constant`` (not the paper: the
    caller passes ``anchor_constant``, the correct anchor's reward from the calibration table)."""
    reward_shift: float = 0.0
    """``AIRConfig.reward_shift``: subtracted from every reward before the loss (not the paper; 0: the paper's)."""

    def settings(self) -> dict:
        """The ``AIRConfig`` fields this method sets."""
        return {
            "invariance": self.invariance,
            "importance_sampling_level": self.importance_sampling_level,
            "aux_baseline": self.aux_baseline,
            "anchor_target": self.anchor_target,
            "reward_shift": self.reward_shift,
        }


CORRECT_ANCHOR_REWARD = 2.5
"""The reward of a correct anchor in the lab's worlds and at the paper's scales (task +1.25, format +1.25;
docs/design.md §2): the shift of ``grpo+air-shift``, which makes a correct completion's raw aux weight 0."""


METHODS: dict[str, Method] = {
    "grpo": Method("GRPO", "none"),
    "grpo+vrex": Method("GRPO + V-REx", "vrex"),
    "grpo+air": Method("GRPO + AIR", "air"),
    "gspo+air": Method("GSPO + AIR", "air", importance_sampling_level="sequence"),
    # not in the paper: a leave-one-out baseline in AIR's aux term (AIRConfig.aux_baseline, docs/results-history.md)
    "grpo+air-loo": Method("GRPO + AIR (LOO baseline)", "air", aux_baseline="leave_one_out", paper=False),
    # not in the paper: AIR with calibrated Δ = r̄_acr + b − r̄_s, b measured by `air-align calibrate`
    "grpo+air-cal": Method("GRPO + AIR (calibrated Δ)", "air", paper=False, calibrated_delta=True),
    # not in the paper: AIR whose anchor level is the correct anchor's reward (a constant from the calibration table),
    # anchors still trained by GRPO: do the anchors carry information beyond a reward target? (docs/design.md §1.2)
    "grpo+air-const": Method("GRPO + AIR (constant anchor level)", "air", paper=False, anchor_target="constant"),
    # not in the paper: AIR on rewards shifted by −2.5; advantages and Δ unchanged, the aux weight r is not
    "grpo+air-shift": Method("GRPO + AIR (rewards − 2.5)", "air", paper=False, reward_shift=CORRECT_ANCHOR_REWARD),
}
PAPER_METHODS = tuple(name for name, m in METHODS.items() if m.paper)
"""The paper's four rows."""
ALIASES = {"air": "grpo+air", "vrex": "grpo+vrex"}
"""Names the real tier used before the table was shared (``scripts/gpu_study.sh --methods grpo,air,vrex``)."""


def method_name(name: str) -> str:
    """The table's name for ``name`` (an alias is accepted), or a ValueError listing the methods.

    >>> method_name("air"), method_name("gspo+air")
    ('grpo+air', 'gspo+air')
    """
    canonical = ALIASES.get(name, name)
    if canonical not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return canonical


def method_label(name: str) -> str:
    """The display label of a method, or ``name`` itself for a row that is not a method ("warm start", "base").

    >>> method_label("grpo+vrex"), method_label("warm start")
    ('GRPO + V-REx', 'warm start')
    """
    return METHODS[name].label if name in METHODS else name
