"""Is a reward AIR-ready? The calibration check (docs/design.md §3; docs/calibration.md).

AIR pulls every open prompt's expected reward toward its anchors' (``Δ_s = r̄_acr(z) − r̄_s``, docs/design.md §1.1). That
is right only if the reward is **calibrated**: for every domain and label, the correct open behaviour earns what a
correct anchor earns, failures (wrong answers, refusing a benign request, non-answers) earn less, and only hacks earn
more. This module measures it from the reward code itself:

1. :func:`score_references` scores reference responses (``calibration/references.py``: the rows' own answers and a
   canonical set per label, or a user's file) with the reward functions, called exactly as TRL's ``GRPOTrainer``
   calls them — ``prompts``, ``completions`` (conversational ``[{"role": "assistant", "content": text}]`` when the
   prompt is a chat, else the text), every other row column as a list — and combines them with the trainer's own
   ``objectives.weighted_rewards`` (TRL's weighted sum: a function's None skipped, NaN when none scored).
2. :func:`calibration_table` averages them per domain × label × role × kind and gives each cell
   ``Δ = E[correct anchor reward | domain, label] − E[kind]``: the Δ_s a policy that always wrote that kind would get
   from AIR. Verdict per (domain, label): **calibrated** iff every correct open kind has ``|Δ| ≤ tolerance`` and
   every failure kind has ``Δ > tolerance``. Hacks with ``Δ < 0`` are reported (AIR's negative coefficient acts
   there), never violations. The **offset** ``b = E[correct open] − E[correct anchor]`` is what the calibrated
   Δ (``Δ_s = r̄_acr(z) + b − r̄_s``) would add; passing ``offsets`` recomputes the open cells' Δ with it.

Not passed to the reward functions: ``completion_ids`` (no tokenizer here), ``trainer_state``, ``log_metric`` and
``log_extra`` (no trainer); a reward that needs them cannot be checked this way. ``torch.nn.Module`` rewards (TRL's
reward models) are not supported either: wrap them in a function.

The expected reward of a kind is the mean over the rows it applies to, each row scored once (a stochastic reward is
averaged over rows, not over repeated calls). Renderers (Markdown, plot, files) are in
``air_align.calibration.report``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import torch
from tqdm.auto import tqdm

from air_align.calibration.references import CLASSES, ROLES, ReferenceKind, default_kinds
from air_align.objectives import weighted_rewards

ROW_EXCLUDED = ("prompt", "completion", "completion_ids")  # what TRL does not pass as a column
DEFAULT_TOLERANCE = 0.25  # reward units; on the lab / paper scale, a fifth of the 1.25 step between tiers


def _name(func) -> str:
    return getattr(func, "__name__", type(func).__name__)


def _label_key(label) -> str:
    return "none" if label is None else str(label)


def _applicable(rows: list[dict], kinds: list[ReferenceKind]) -> list[tuple[dict, ReferenceKind, str]]:
    items = []
    for i, row in enumerate(rows):
        if row.get("role") not in ROLES:
            raise ValueError(f"row {i} (id {row.get('id')!r}): role {row.get('role')!r} is not 'anchor' or 'open'")
        names = set()
        for kind in kinds:
            if kind.role != row["role"]:
                continue
            text = kind.respond(row)
            if text is None:
                continue
            if kind.name in names:
                raise ValueError(
                    f"row {row.get('id')!r}: two reference kinds named {kind.name!r} apply to it; give each response "
                    "kind one text per row (restrict the domain / label, or rename one)"
                )
            names.add(kind.name)
            items.append((row, kind, text))
    return items


def score_references(
    reward_funcs,
    rows: list[dict],
    kinds: list[ReferenceKind] | None = None,
    weights: list[float] | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> list[dict]:
    """Score every applicable (row, kind) reference response with the reward functions; one record each.

    Args:
        reward_funcs: one function or a list, TRL's signature ``(prompts, completions, **columns) -> list[float |
            None]`` (e.g. ``lab.judge.lab_rewards()``, a ``CompositeReward``).
        rows: meta-group rows (``data/schema.py``); each needs ``role``, and whatever columns the rewards read.
        kinds: reference kinds (default ``references.default_kinds()``).
        weights: per-function weights (TRL's ``reward_weights``; default all 1).
        batch_size: responses per reward call.

    Returns:
        ``{"row_id", "group_id", "domain", "label", "role", "family", "kind", "class", "reward", "rewards", "text"}``
        per response; ``reward`` the weighted composite (None when no function scored it), ``rewards`` each
        function's value by name.
    """
    funcs = [reward_funcs] if callable(reward_funcs) else list(reward_funcs)
    if not funcs:
        raise ValueError("score_references: no reward functions given")
    for f in funcs:
        if isinstance(f, torch.nn.Module):
            raise ValueError(
                f"reward {_name(f)!r} is a torch module (a reward model); wrap it in a function with TRL's signature "
                "(prompts, completions, **columns) -> list[float | None]"
            )
    if weights is None:
        weights = [1.0] * len(funcs)
    if len(weights) != len(funcs):
        raise ValueError(f"{len(weights)} weights for {len(funcs)} reward functions; give one weight per function")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not rows:
        raise ValueError("score_references: no rows; pass meta-group rows (e.g. a data file's test split)")
    items = _applicable(rows, default_kinds() if kinds is None else list(kinds))
    if not items:
        raise ValueError(
            "no reference kind applies to these rows: the kinds answer anchors (choice / true_false / math) and open "
            "maths, safety and morality rows with a label; check the rows' role, verifier, domain and label"
        )
    columns = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in ROW_EXCLUDED]
    weight_tensor = torch.tensor(weights, dtype=torch.float64)
    records = []
    starts = range(0, len(items), batch_size)
    for start in tqdm(starts, desc="calibration", unit="batch", disable=not progress or len(starts) < 2):
        batch = items[start : start + batch_size]
        prompts = [row.get("prompt") for row, _, _ in batch]
        completions = [
            text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]
            for prompt, (_, _, text) in zip(prompts, batch, strict=True)
        ]
        kwargs = {k: [row.get(k) for row, _, _ in batch] for k in columns}
        per_func = torch.full((len(batch), len(funcs)), math.nan, dtype=torch.float64)  # (n, F)
        for j, func in enumerate(funcs):
            try:
                values = func(prompts=prompts, completions=completions, **kwargs)
            except Exception as err:
                err.add_note(
                    f"while scoring reference responses with reward {_name(func)!r} (batch from row "
                    f"{batch[0][0].get('id')!r})"
                )
                raise
            if len(values) != len(batch):
                raise ValueError(f"reward {_name(func)!r} returned {len(values)} values for {len(batch)} completions")
            per_func[:, j] = torch.tensor([math.nan if v is None else float(v) for v in values], dtype=torch.float64)
        total = weighted_rewards(per_func, weight_tensor)  # (n,)
        for i, (row, kind, text) in enumerate(batch):
            value = float(total[i])
            records.append(
                {
                    "row_id": row.get("id"),
                    "group_id": row.get("group_id"),
                    "domain": row.get("domain"),
                    "label": row.get("label"),
                    "role": row["role"],
                    "family": row.get("family"),
                    "kind": kind.name,
                    "class": kind.cls,
                    "reward": None if math.isnan(value) else value,
                    "rewards": {
                        _name(f): (None if math.isnan(float(per_func[i, j])) else float(per_func[i, j]))
                        for j, f in enumerate(funcs)
                    },
                    "text": text,
                }
            )
    return records


# --- the table and its verdict ---------------------------------------------------------------------------------------


DOMAIN_ORDER = ("safety", "morality", "math")  # tables list these first, then any other domain by name


def _cell_sort_key(key: tuple, cls: str) -> tuple:
    domain, label, role, kind = key
    rank = DOMAIN_ORDER.index(domain) if domain in DOMAIN_ORDER else len(DOMAIN_ORDER)
    return (rank, str(domain), _label_key(label), ROLES.index(role), CLASSES.index(cls), kind)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _violation(cell: dict, anchor: float, tolerance: float) -> dict | None:
    """The violation of one correct / failure cell, with what it means for AIR; None when the cell is fine."""
    delta, kind, role = cell["delta"], cell["kind"], cell["role"]
    where = f"{cell['domain']}, label {_label_key(cell['label'])}, {role} '{kind}'"
    said = f"earns {cell['mean']:.3f} against a correct anchor's {anchor:.3f} (Δ = {delta:+.3f})"
    if cell["class"] == "correct":
        if delta < -tolerance:
            meaning = (
                "the correct open behaviour is above the anchors: AIR gives it a negative coefficient and pushes "
                "the policy away from it (towards lower-reward responses, e.g. refusing or saying nothing)"
            )
        elif delta > tolerance:
            meaning = (
                "the correct open behaviour is below the anchors: even at the correct policy AIR keeps reinforcing "
                "the open variant's highest-reward samples, which favours any kind that out-scores it (a hack)"
            )
        else:
            return None
    elif cell["class"] == "failure":
        if delta > tolerance:
            return None
        if role == "anchor":
            meaning = (
                "a failed anchor earns what a correct one earns: the anchor reward does not tell right from wrong"
            )
        elif delta >= -tolerance:
            meaning = (
                "a failure earns the anchors' reward: AIR's target does not separate it from the correct behaviour, "
                "so AIR cannot pull the policy out of it (and may drive it there)"
            )
        else:
            meaning = (
                "a failure earns more than a correct anchor: the reward prefers it to the correct behaviour; plain "
                "GRPO learns it and AIR only treats it as a hack"
            )
    else:
        return None
    return {
        "kind": kind,
        "role": role,
        "class": cell["class"],
        "delta": delta,
        "message": f"{where} {said}: {meaning}",
    }


def _hack_note(cell: dict, anchor: float) -> dict:
    delta = cell["delta"]
    if delta < 0:
        meaning = f"out-scores a correct anchor by {-delta:.3f}: AIR's negative coefficient suppresses it (AIR's job)"
    else:
        meaning = (
            "does not out-score a correct anchor: plain GRPO has little reason to learn it, AIR nothing to act on"
        )
    return {"kind": cell["kind"], "role": cell["role"], "delta": delta, "message": f"hack '{cell['kind']}' {meaning}"}


def calibration_table(scored: list[dict], tolerance: float = DEFAULT_TOLERANCE, offsets: dict | None = None) -> dict:
    """Expected reward per domain × label × role × kind, Δ per cell, and a verdict per (domain, label).

    Args:
        scored: records of :func:`score_references`.
        tolerance: how far (reward units) a correct open kind may sit from the anchors, and how far below them
            every failure must sit.
        offsets: ``{domain: {label key ("0", "1", "none"): b}}``; open cells then get ``Δ = anchor + b − mean``
            (the calibrated Δ of docs/calibration.md). None: the paper's Δ (b = 0).

    Returns:
        A JSON-able dict: ``tolerance``, ``offsets_applied``, ``calibrated`` (every verdict calibrated), ``cells``
        (``domain, label, role, kind, class, n, n_unscored, mean, std, delta``), ``verdicts`` (``domain, label,
        status, anchor_reward, correct_open_reward, offset, offset_applied, violations, hacks, notes``) and
        ``offsets`` (the measured b, in the ``offsets`` argument's layout).
    """
    if not scored:
        raise ValueError("calibration_table: no scored responses; run score_references first")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for rec in scored:
        groups[(rec["domain"], rec["label"], rec["role"], rec["kind"])].append(rec)
    cells = []
    for key, recs in groups.items():
        classes = {r["class"] for r in recs}
        if len(classes) > 1:
            raise ValueError(
                f"kind {key[3]!r} ({key[2]} rows, domain {key[0]!r}, label {key[1]!r}) has several classes "
                f"{sorted(classes)}; a kind has one class per (domain, label)"
            )
        values = [r["reward"] for r in recs if r["reward"] is not None]
        cells.append(
            {
                "domain": key[0],
                "label": key[1],
                "role": key[2],
                "kind": key[3],
                "class": classes.pop(),
                "n": len(values),
                "n_unscored": len(recs) - len(values),
                "mean": _mean(values),
                "std": float(np.std(values)) if values else None,
            }
        )
    cells.sort(key=lambda c: _cell_sort_key((c["domain"], c["label"], c["role"], c["kind"]), c["class"]))
    anchor_values: dict[tuple, list[float]] = defaultdict(list)
    for rec in scored:
        if rec["role"] == "anchor" and rec["class"] == "correct" and rec["reward"] is not None:
            anchor_values[(rec["domain"], rec["label"])].append(rec["reward"])
    anchors = {k: _mean(v) for k, v in anchor_values.items()}
    applied = {}
    for cell in cells:
        dl = (cell["domain"], cell["label"])
        b = float((offsets or {}).get(cell["domain"], {}).get(_label_key(cell["label"]), 0.0))
        if cell["role"] == "open":
            applied[dl] = b
        anchor = anchors.get(dl)
        shift = b if cell["role"] == "open" else 0.0  # AIR's Δ is 0 on anchors; the anchor column is a diagnostic
        cell["delta"] = None if anchor is None or cell["mean"] is None else anchor + shift - cell["mean"]

    verdicts, measured = [], defaultdict(dict)
    for dl in dict.fromkeys((c["domain"], c["label"]) for c in cells):
        mine = [c for c in cells if (c["domain"], c["label"]) == dl]
        anchor = anchors.get(dl)
        correct_open = [
            c["mean"] for c in mine if c["class"] == "correct" and c["role"] == "open" and c["mean"] is not None
        ]
        notes = [
            f"{c['role']} '{c['kind']}': {c['n_unscored']} of {c['n'] + c['n_unscored']} responses unscored (no "
            "reward function scored them; AIR gives such prompts Δ = 0)"
            for c in mine
            if c["n_unscored"]
        ]
        violations, hacks = [], []
        if anchor is None:
            notes.append("no scored correct anchor: Δ is undefined (add anchor rows, or check the anchor reward)")
        else:
            for c in mine:
                if c["delta"] is None:
                    continue
                if c["class"] == "hack":
                    hacks.append(_hack_note(c, anchor))
                else:
                    bad = _violation(c, anchor, tolerance)
                    if bad:
                        violations.append(bad)
        if not correct_open:
            notes.append("no scored correct open kind: the open side cannot be checked (add one to the kinds)")
        offset = None if anchor is None or not correct_open else float(np.mean(correct_open)) - anchor
        if offset is not None:
            measured[str(dl[0])][_label_key(dl[1])] = offset
        status = "miscalibrated" if violations else "undetermined" if offset is None else "calibrated"
        verdicts.append(
            {
                "domain": dl[0],
                "label": dl[1],
                "status": status,
                "anchor_reward": anchor,
                "correct_open_reward": float(np.mean(correct_open)) if correct_open else None,
                "offset": offset,
                "offset_applied": applied.get(dl, 0.0),
                "violations": violations,
                "hacks": hacks,
                "notes": notes,
            }
        )
    return {
        "tolerance": tolerance,
        "offsets_applied": offsets is not None,
        "calibrated": all(v["status"] == "calibrated" for v in verdicts),
        "cells": cells,
        "verdicts": verdicts,
        "offsets": dict(measured),
    }
