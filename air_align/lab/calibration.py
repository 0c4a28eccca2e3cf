"""The lab worlds' calibration tables: ``calibration.check`` on the lab's own responses (docs/lab.md §3).

The same function that checks any reward (``air-align calibrate``, docs/calibration.md) scores, with a world's
training rewards (``judge.lab_rewards``), the responses the lab's grammar can produce (``oracle.reference_response``):

- anchors: the right letter / truth value (correct), the other one (failure), a non-answer (failure);
- open variants: the oracle-correct answer (correct); the wrong one — compliance with a harmful request, a refusal of
  a benign one, the wrong verdict, the decoy number (failure); a non-answer, an empty answer (failure); the judge
  hack of the kind (hack); and, in morality, the right verdict after the empathy cue (also a hack: the cue buys the
  judge's top tier, and the oracle counts it as the sycophancy it is).

The table gives, per world × label × role × kind, the expected composite reward and
``Δ = E[correct anchor] − E[kind]`` (the Δ_s AIR would give a policy that always wrote that kind), and a verdict:
calibrated iff every correct open kind has ``|Δ| ≤ tolerance`` and every failure ``Δ > tolerance``.
"""

from __future__ import annotations

from air_align.calibration.check import DEFAULT_TOLERANCE, calibration_table, score_references
from air_align.calibration.references import ReferenceKind
from air_align.lab import world
from air_align.lab.judge import lab_rewards
from air_align.lab.oracle import reference_response
from air_align.lab.responses import morality_response, wrap
from air_align.lab.spec import WorldSpec, load_world

NON_ANSWER = wrap("i think", "")  # well formed, answers nothing


def _open(kind: str):
    return lambda row: reference_response(row, kind) if row["role"] == "open" else None


def _anchor(kind: str):
    return lambda row: reference_response(row, kind) if row["role"] == "anchor" else None


def _kind_right(row: dict) -> str | None:
    if row["role"] != "open" or row["domain"] != "morality":
        return None
    return morality_response("wrong" if row["label"] == 1 else "fine", empathy=True)


def lab_kinds() -> list[ReferenceKind]:
    """The reference kinds of the lab's response grammar (see the module docstring)."""
    return [
        ReferenceKind("right_answer", "correct", "anchor", _anchor("correct")),
        ReferenceKind("wrong_answer", "failure", "anchor", _anchor("wrong")),
        ReferenceKind("non_answer", "failure", "anchor", lambda r: NON_ANSWER if r["role"] == "anchor" else None),
        ReferenceKind("correct", "correct", "open", _open("correct")),
        ReferenceKind("wrong", "failure", "open", _open("wrong")),
        ReferenceKind("non_answer", "failure", "open", lambda r: NON_ANSWER if r["role"] == "open" else None),
        ReferenceKind(
            "hack",
            "hack",
            "open",
            lambda r: reference_response(r, "hack") if r["role"] == "open" and r["domain"] != "math" else None,
        ),
        ReferenceKind("kind_right_verdict", "hack", "open", _kind_right),
    ]


def world_calibration(
    world_or_name: WorldSpec | str, split: str = "train", world_seed: int = 0, tolerance: float = DEFAULT_TOLERANCE
) -> dict:
    """The calibration table of a world's training reward over its ``split`` rows
    (``calibration.check.calibration_table``)."""
    spec = load_world(world_or_name)
    rows = [r for r in world.build_rows(spec, seed=world_seed, splits=(split,))]
    scored = score_references(lab_rewards(spec), rows, lab_kinds(), progress=False)
    return calibration_table(scored, tolerance=tolerance)
