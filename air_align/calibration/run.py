"""``air-align calibrate``: is a training reward AIR-ready? (docs/design.md §3; docs/calibration.md).

Builds the reward exactly as ``air-align train`` does (``recipe.resolve_rewards``: ``composite`` with a rule, an
in-process model or a server judge through ``reward_config``; ``toy``; any ``module:function``; a comma-separated
list, combined with the trainer's ``reward_weights``), reads and validates a meta-group file, scores reference
responses with it (``calibration.check.score_references``: the canonical set of ``calibration.references``, or the
user's JSONL) and writes the calibration table (``calibration.report.write_calibration``: JSON, Markdown,
one plot) plus every scored response. The terminal gets the verdict and the offsets b in the form a train config
takes (``invariance_offsets``, the calibrated Δ of docs/calibration.md).

The composite's default judge (``judge: {model: policy}``) is a frozen copy of the policy, as in training: the
policy named by ``--model`` (or the train config's ``model``) is loaded only when some row needs that judge.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from air_align.calibration.check import DEFAULT_TOLERANCE, calibration_table, score_references
from air_align.calibration.references import anchor_kinds, default_kinds, load_reference_file
from air_align.calibration.report import write_calibration
from air_align.configs import Problems, check_fields, hints
from air_align.data.validate import check_rows
from air_align.files import read_jsonl, write_jsonl
from air_align.rewards.composite import RewardConfig
from air_align.safe_yaml import load_yaml, read_yaml
from air_align.training.reward_spec import check_reward_spec, resolve_rewards
from air_align.training.toy import toy_meta_groups

# the keys of a train config (``air-align train --config``) that say which reward, data and policy a run uses
CONFIG_KEYS = ("model", "model_dtype", "dataset", "dataset_split", "reward", "reward_config", "reward_weights")


def read_mapping(value: str, what: str) -> dict:
    """A YAML/JSON mapping from a file path or inline text (``'{safety_reward: keyword, judge: {model: none}}'``).

    >>> read_mapping('{judge: {model: none}}', "--reward-config")
    {'judge': {'model': 'none'}}
    """
    path = Path(value).expanduser()
    hint = "give a mapping of key: value"
    if path.is_file():
        loaded, where = read_yaml(path, hint=hint), str(path)
    elif value.strip().startswith("{"):
        where = f"{what} (inline)"
        loaded = load_yaml(value, where, hint=hint)
    else:
        raise ValueError(
            f"{what} {value!r}: no such file, and not an inline mapping; give a YAML/JSON file or e.g. "
            "'{safety_reward: keyword, judge: {model: none}}'"
        )
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{where}: expected a mapping of key: value, got {type(loaded).__name__}")
    return loaded


@dataclass
class _RewardWeights:
    reward_weights: list[float] | None = None
    """TRL's ``GRPOConfig.reward_weights`` (one weight per reward function), typed here without importing TRL."""


def train_config_settings(path: str) -> dict:
    """The reward, data and policy keys (:data:`CONFIG_KEYS`) of a train config, typed and checked by the one config
    validator as ``air-align train`` checks them (``air_align.configs``); its other keys are the trainer's, not read
    here. A bad value raises a ``ConfigError`` naming the key and the file."""
    from air_align.training.recipe import RunConfig

    values = read_mapping(path, "--config")
    fields = {f.name: f for cls in (RunConfig, _RewardWeights) for f in dataclasses.fields(cls)}
    fields = {k: f for k, f in fields.items() if k in CONFIG_KEYS}
    types = {**hints(RunConfig), **hints(_RewardWeights)}
    picked = {k: values[k] for k in CONFIG_KEYS if values.get(k) is not None}
    problems = Problems()
    settings = check_fields(fields, types, picked, "", problems, origin=lambda key: path)
    problems.raise_if_any(f"--config {path}: invalid train config")
    return settings or {}


# --- data ------------------------------------------------------------------------------------------------------------


def group_stratum(rows: list[dict]) -> tuple:
    """A meta-group's (domain, label): what its verdict is reported under."""
    first = rows[0]
    return (str(first.get("domain")), "none" if first.get("label") is None else str(first.get("label")))


def select_groups(rows: list[dict], limit: int) -> list[dict]:
    """The rows of ``limit`` meta-groups (``group_id`` × ``split``), taken in file order round-robin over their
    (domain, label), so that a small sample still holds every label (judges are slow; ``--limit-groups``).

    >>> rows = [{"group_id": g, "split": "train", "domain": "safety", "label": lab}
    ...         for g, lab in (("a", 1), ("b", 1), ("c", 1), ("d", 0))]
    >>> [r["group_id"] for r in select_groups(rows, 2)]
    ['a', 'd']
    """
    if limit < 1:
        raise ValueError(f"--limit-groups must be at least 1, got {limit}")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["group_id"], row.get("split"))].append(row)
    strata: dict[tuple, list[tuple]] = defaultdict(list)
    for key, members in groups.items():
        strata[group_stratum(members)].append(key)
    chosen: set[tuple] = set()
    queues = [list(keys) for keys in strata.values()]
    while len(chosen) < min(limit, len(groups)):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.add(queue.pop(0))
    return [r for r in rows if (r["group_id"], r.get("split")) in chosen]


def load_calibration_rows(data: str, split: str | None, limit_groups: int | None = None) -> list[dict]:
    """Meta-group rows of ``data`` (a JSONL file, or ``toy``), validated (``data/validate.py``; problems name the
    file's lines), restricted to ``split`` (None: every row) and to ``limit_groups`` meta-groups."""
    if data == "toy":
        rows = toy_meta_groups(num_groups=16, opens_per_group=2)
    else:
        rows, lines = read_jsonl(data, with_lines=True)
        try:
            check_rows(rows, lines=lines)
        except ValueError as err:
            raise ValueError(f"{data}: {err}\n(check the file with `air-align data validate {data}`)") from None
    if split is not None:
        splits = sorted({str(r.get("split")) for r in rows})
        rows = [r for r in rows if r.get("split") == split]
        if not rows:
            raise ValueError(f"{data}: no rows with split {split!r} (the file has {splits}); pass --split NAME or all")
    if limit_groups is not None:
        rows = select_groups(rows, limit_groups)
    return rows


# --- rewards ---------------------------------------------------------------------------------------------------------


def reward_names(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(",") if s.strip()]


def needs_policy(spec: str, reward_config: dict | None, rows: list[dict]) -> bool:
    """Whether the composite's frozen-policy judge (``judge.model: policy``) will be asked: some open row is judged
    by a model (a morality row, or a safety row with ``safety_reward: judge``)."""
    if "composite" not in reward_names(spec):
        return False
    config = RewardConfig.from_dict(reward_config)
    if config.judge.base_url or config.judge.model != "policy":
        return False
    return any(
        r.get("verifier") == "judge"
        and (r.get("domain") == "morality" or (r.get("domain") == "safety" and config.safety_reward == "judge"))
        for r in rows
    )


def build_rewards(spec: str, reward_config: dict | None, rows: list[dict], model: str | None, model_dtype: str):
    """``(reward functions, what was loaded)``: ``resolve_rewards`` with the policy loaded only when its frozen copy
    will judge (:func:`needs_policy`)."""
    check_reward_spec(spec)  # unknown names and `module:function` rewards that break the contract, before any model
    if "composite" in reward_names(spec):
        RewardConfig.from_dict(reward_config)  # a typo in the config fails before any model loads
    policy, loaded = None, None
    if needs_policy(spec, reward_config, rows):
        if not model:
            raise ValueError(
                "the composite reward's default judge is a frozen copy of the policy (judge: {model: policy}) and "
                "these rows need it: pass --model (e.g. smollm2-135m, the policy you will train), or set the judge "
                "in --reward-config (judge: {model: NAME} or judge: {base_url: URL}, or safety_reward: keyword)"
            )
        from air_align.models import load_model, torch_dtype

        policy, loaded = load_model(model, dtype=torch_dtype(model_dtype)), model
    return resolve_rewards(spec, policy=policy, reward_config=reward_config), loaded


def quiet_judges(reward_funcs: list) -> None:
    """Turn off the progress bars of the in-process judges behind the rewards (a composite's ``judge``)."""
    for func in reward_funcs:
        judge = getattr(func, "judge", None)
        if judge is not None and hasattr(judge, "progress"):
            judge.progress = False


# --- the run ---------------------------------------------------------------------------------------------------------


def reference_kinds(responses: str | None) -> tuple[list, str]:
    """``(kinds, description)``: the canonical set, or a user's file plus the canonical anchor kinds when the file
    gives no anchor responses (every Δ is measured from a correct anchor)."""
    if responses is None:
        return default_kinds(), "canonical (air_align.calibration.references)"
    kinds = load_reference_file(responses)
    if any(k.role == "anchor" for k in kinds):
        return kinds, str(responses)
    return anchor_kinds() + kinds, f"{responses} + the rows' own anchor answers"


def calibrate(
    rows: list[dict],
    reward_funcs: list,
    out_dir: str | Path,
    kinds: list,
    weights: list[float] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    run: dict | None = None,
    progress: bool = True,
) -> tuple[dict, dict[str, Path]]:
    """Score the reference responses, build the table, write ``calibration.{json,md,png}`` and ``scored.jsonl`` in
    ``out_dir``; returns ``(table, paths)``. ``run`` (what was checked, how) is stored in the JSON as ``run``."""
    start = time.perf_counter()
    scored = score_references(reward_funcs, rows, kinds, weights=weights, progress=progress)
    table = calibration_table(scored, tolerance=tolerance)
    table["with_offsets"] = offsets_check(calibration_table(scored, tolerance=tolerance, offsets=table["offsets"]))
    table["run"] = {
        **(run or {}),
        "rows": len(rows),
        "meta_groups": len({(r["group_id"], r.get("split")) for r in rows}),
        "responses": len(scored),
        "scoring_seconds": round(time.perf_counter() - start, 2),
    }
    paths = write_calibration(table, out_dir)
    paths["scored"] = write_jsonl(Path(out_dir) / "scored.jsonl", scored)
    return table, paths


def offsets_check(shifted: dict) -> dict:
    """What the measured offsets would fix: the verdicts of the table recomputed with them (calibrated Δ).

    An offset moves every open kind of a label by the same b: it zeroes the correct kinds' mean gap, but cannot
    separate a failure that earns what the correct behaviour earns, nor zero two correct kinds that differ."""
    return {
        "calibrated": shifted["calibrated"],
        "verdicts": [
            {
                "domain": v["domain"],
                "label": v["label"],
                "status": v["status"],
                "violations": [{k: x[k] for k in ("kind", "role", "class", "delta")} for x in v["violations"]],
            }
            for v in shifted["verdicts"]
        ],
    }


# --- what the terminal shows -----------------------------------------------------------------------------------------


def flat_offsets(table: dict) -> dict[str, float]:
    """The measured offsets as ``{"domain/label": b}`` (AIRConfig ``invariance_offsets``' keys), rounded to 1e-4.

    >>> flat_offsets({"offsets": {"safety": {"0": 1.25000001, "1": 0.0}}})
    {'safety/0': 1.25, 'safety/1': 0.0}
    """
    return {f"{d}/{lab}": round(b, 4) + 0.0 for d, labels in table["offsets"].items() for lab, b in labels.items()}


def offsets_line(table: dict) -> str:
    """``invariance_offsets: {"safety/0": 1.25, …}``: a line to paste into a train config (YAML)."""
    return f"invariance_offsets: {json.dumps(flat_offsets(table))}"


def calibrate_reward(
    *,
    data: str | None,
    reward: str | None,
    reward_config: str | None,
    config: str | None,
    model: str | None,
    split: str | None,
    limit_groups: int | None,
    responses: str | None,
    tolerance: float,
    out: str,
    progress: bool = True,
    say=lambda line: None,
) -> tuple[dict, dict]:
    """``air-align calibrate --data …``: the reward built as a train config would build it, scored on reference
    responses over the rows; returns the table and the paths written. Explicit arguments win over ``config``'s
    keys (:data:`CONFIG_KEYS`); ``say`` receives the two lines describing what is scored."""
    import torch

    from air_align.models import torch_dtype

    start = time.perf_counter()
    settings = train_config_settings(config) if config else {}
    model_dtype = str(settings.get("model_dtype", "float32"))
    torch_dtype(model_dtype)  # a bad dtype in the config fails before the data and the rewards load
    spec = reward or settings.get("reward") or "composite"
    mapping = read_mapping(reward_config, "--reward-config") if reward_config else None
    mapping = mapping if mapping is not None else settings.get("reward_config")
    data = data or settings.get("dataset")
    if not data:
        raise ValueError("no data: pass --data FILE (a meta-group JSONL file, `air-align data build`)")
    split = split or settings.get("dataset_split") or "train"
    rows = load_calibration_rows(data, None if split == "all" else split, limit_groups)
    kinds, described = reference_kinds(responses)
    model = model or settings.get("model")
    funcs, loaded = build_rewards(spec, mapping, rows, model, model_dtype)
    if not progress:
        quiet_judges(funcs)
    weights = settings.get("reward_weights")
    run = {
        "reward": spec,
        "reward_config": mapping,
        "reward_weights": weights,
        "judge_policy": loaded,
        "data": str(data),
        "split": split,
        "limit_groups": limit_groups,
        "responses": described,
        "threads": torch.get_num_threads(),
        "setup_seconds": round(time.perf_counter() - start, 2),  # config, data, model and judge loading
    }
    groups = len({(r["group_id"], r.get("split")) for r in rows})
    say(f"reward {spec!r}" + (f" with {mapping}" if mapping else "") + (f", judge: frozen {loaded}" if loaded else ""))
    say(f"data {data} (split {split}): {groups} meta-groups, {len(rows)} rows; reference responses: {described}")
    return calibrate(rows, funcs, out, kinds, weights=weights, tolerance=tolerance, run=run, progress=progress)
