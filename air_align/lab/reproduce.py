"""``air-align reproduce``: the paper's comparison in the lab, with the real trainer, in parallel, resumably.

docs/design.md §5; docs/lab.md §5; the conditions of the committed results are in docs/results.md. A grid
(``presets.Preset``) is a set of *cells* — a world under a judge regime (``presets.REGIMES``) — and, per cell, every
method from the same warm start with identical hyperparameters except the regulariser (GSPO is TRL's
``importance_sampling_level="sequence"``):

1. warm starts (one per world's SFT content; cached) and their oracle metrics;
2. λ per cell by a sweep of GRPO+AIR on **ID validation** intents (``choose_lambda``: mean balanced Acc_group, then
   mean balanced Acc, then the smaller λ); every regularised method of the cell uses that λ;
3. every method × seed, scored by the world's oracle (greedy) on held-out test intents under ID families
   (``test_id``) and held-out OOD families (``test_ood``);
4. the analysis (``analysis.py``): means over seeds, per label and balanced; paired bootstrap CIs of each AIR variant
   minus GRPO; the pre-registered "AIR helps" verdicts.

Runs go to worker processes (``runner.py``; ``workers``), each finished run is saved under ``DIR/runs/<run>/`` and a
rerun into the same ``DIR`` resumes. Outputs in ``--out DIR``: ``results.json``, ``outcomes.json.gz`` (every run's
per-prompt outcomes), ``table.md``, ``lambda_sweep.png``, ``ood_acc_group.png``. ``DIR`` must be new, empty or a lab
folder: the first run writes a marker, ``DIR/.air_align_lab.json``, and a non-empty folder without one is refused
(:func:`claim_lab_folder`), so that the grid never replaces a ``results.json`` or ``table.md`` it did not write.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

from tqdm.auto import tqdm

from air_align.files import refuse_overwriting_inputs, write_json
from air_align.lab import world
from air_align.lab.calibration import world_calibration
from air_align.lab.presets import Cell, Preset, sweep_key, units
from air_align.lab.report import write_outputs
from air_align.lab.runner import run_all
from air_align.lab.runs import RunSpec, score, with_regime
from air_align.lab.spec import load_world
from air_align.lab.warmstart import Recipe, load_warm_start, measure_context_dependence, warm_starts
from air_align.training.config import offset_key
from air_align.training.methods import METHODS
from air_align.version import __version__

LAB_MARKER = ".air_align_lab.json"
LAB_OUTPUTS = (
    "results.json",
    "results.json.gz",
    "outcomes.json.gz",
    "table.md",
    "lambda_sweep.png",
    "ood_acc_group.png",
    "hack_dial.png",
    "runs",
)
"""What ``reproduce`` (``report.write_outputs``, ``runner.run_all``) and ``lab analyse --out`` write in a folder."""


def claim_lab_folder(out: Path) -> None:
    """Make ``out`` a lab folder (its marker written), or refuse it: a non-empty folder that holds no marker, and
    no saved run of a lab grid (``runs/*/result.json``, from before the marker existed), is someone else's.

    Raises:
        ValueError: naming the folder, what is in it, and the choices.
    """
    marker = out / LAB_MARKER
    if marker.is_file():
        return
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (new or empty, or a lab folder to resume)")
    if entries and not _saved_runs(out):
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise ValueError(
            f"--out {out} is not empty and is not a lab folder (no {LAB_MARKER}): {shown}. reproduce writes "
            f"{', '.join(LAB_OUTPUTS)} there, replacing files of those names: give a new or empty folder (a rerun "
            "into a lab folder resumes it)"
        )
    write_json(marker, {"tool": "air-align", "version": __version__, "kind": "lab grid", "written": list(LAB_OUTPUTS)})


def _saved_runs(out: Path) -> bool:
    """Whether ``out/runs`` holds a run a lab grid saved (``runner.py``: ``{"key": …, "record": …}``)."""
    for path in sorted((out / "runs").glob("*/result.json"))[:1]:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(saved, dict) and {"key", "record"} <= set(saved)
    return False


TIE_DIGITS = 9
"""Digits to which ``choose_lambda`` rounds the mean scores before comparing them."""


def choose_lambda(sweep_runs: list[dict]) -> float:
    """The λ with the best mean validation balanced Acc_group, then mean balanced Acc, then the smaller λ.

    >>> runs = [{"lambda": lam, "metrics": {"val": {"balanced_acc_group": g, "balanced_acc": a}}}
    ...         for lam, g, a in [(0.1, 0.5, 0.6), (0.1, 0.0, 0.6), (1.0, 0.25, 0.7), (1.0, 0.25, 0.7)]]
    >>> choose_lambda(runs)
    1.0
    """
    by_lambda: dict[float, list[tuple[float, float]]] = {}
    for r in sweep_runs:
        val = r["metrics"]["val"]
        by_lambda.setdefault(r["lambda"], []).append((val["balanced_acc_group"], val["balanced_acc"]))
    if not by_lambda:
        raise ValueError("choose_lambda got no sweep runs")
    # means of shares of counts: equal means must tie exactly, so round away the float noise of their order of
    # summation ((2/3 + 7/8) / 2 and (23/24 + 7/12) / 2 are both 37/48 but differ in the last bit)
    score = {
        lam: (
            round(statistics.fmean(g for g, _ in v), TIE_DIGITS),
            round(statistics.fmean(a for _, a in v), TIE_DIGITS),
            -lam,
        )
        for lam, v in by_lambda.items()
    }
    return max(score, key=score.get)


def reproduce(
    preset: Preset, out: str | Path, world_seed: int = 0, progress: bool = True, warm_root: str | Path | None = None
) -> dict:
    """Run the whole grid of ``preset``; write ``results.json``, ``table.md`` and the plots to ``out``.

    Worker processes are started with ``spawn``: a script that calls this needs the ``if __name__ == "__main__":``
    guard (the ``air-align`` command has it).
    """
    out = Path(out)
    spec_files = [("--world", c.world) for c in preset.cells if Path(c.world).suffix in (".yaml", ".yml", ".json")]
    refuse_overwriting_inputs(spec_files, [out / name for name in LAB_OUTPUTS])
    claim_lab_folder(out)
    start = time.time()
    cells = units(preset, out)
    recipes = {
        warm_name(c): Recipe(world=c.world, world_seed=world_seed, seed=c.warm_seed, **preset.warm) for c in cells
    }
    warm = warm_starts(recipes, root=warm_root, workers=preset.workers, progress=progress)
    results: dict = {
        "preset": _jsonable(preset, cells),
        "units": [c.name for c in cells],
        "world_seed": world_seed,
        "worlds": {},
        "calibration": {},
        "sweep": {},
        "lambda": {},
        "runs": [],
        "resumed_runs": 0,
    }
    for name, recipe in recipes.items():
        results["worlds"][name] = {
            "spec": load_world(recipe.world).key(),
            "warm_seed": recipe.seed,
            "warm_start": str(warm[name]),
            "metrics": warm_start_metrics(warm[name], recipe.world, world_seed),
        }

    for cell in cells:  # the reward's calibration under the cell's regime (the table of docs/lab.md)
        table = world_calibration(with_regime(load_world(cell.world), **dict(cell.judge())), world_seed=world_seed)
        results["calibration"][cell.name] = table
    offsets = {
        name: tuple(sorted((f"{d}/{lab}", b) for d, by in t["offsets"].items() for lab, b in by.items()))
        for name, t in results["calibration"].items()
    }
    levels = {name: anchor_levels(t) for name, t in results["calibration"].items()}

    def spec(cell: Cell, method: str, lam: float, seed: int, tag: str, splits, steps=None) -> RunSpec:
        return run_spec(
            preset,
            cell,
            method,
            lam,
            seed,
            tag,
            splits,
            warm,
            world_seed,
            offsets[cell.name],
            steps,
            levels[cell.name],
        )

    sweeps = {
        sweep_key(c.name, method): [
            spec(c, method, lam, s, "sweep", ("val",), preset.sweep_steps)
            for lam in preset.lambdas
            for s in preset.sweep_seeds
        ]
        for c in cells
        if c.lambda_from is None and len(preset.lambdas) > 1 and not preset.grpo_only
        for method in preset.swept
    }
    n_main = sum(len(preset.methods_of(c)) * len(preset.seeds) for c in cells)
    bar = tqdm(total=sum(map(len, sweeps.values())) + n_main, desc="reproduce", disable=not progress)

    def done(run: RunSpec, record: dict, resumed: bool) -> None:
        results["resumed_runs"] += resumed
        bar.set_postfix_str(f"{run.extra['unit']} {run.method} λ={run.lam:g} seed={run.seed}")
        bar.update(1)

    flat = [r for runs in sweeps.values() for r in runs]
    swept = run_all(flat, out, preset.workers, on_done=done)
    sweep_full = [{**record, "cell": run.extra["unit"]} for run, record in zip(flat, swept, strict=True)]
    for record in sweep_full:
        results["sweep"].setdefault(sweep_key(record["cell"], record["method"]), []).append(_slim(record))
    results["lambda"] = chosen_lambdas(preset, cells, results["sweep"])
    mains = main_runs(preset, cells, results["lambda"], warm, world_seed, offsets, levels)
    full = [
        {**record, "cell": run.extra["cell"], "warm_seed": run.warm_seed}
        for run, record in zip(mains, run_all(mains, out, preset.workers, on_done=done), strict=True)
    ]
    results["runs"] = [_slim(r) for r in full]
    bar.close()
    results["seconds"] = round(time.time() - start, 1)
    return write_outputs(results, out, full, sweep_full)


def chosen_lambdas(preset: Preset, cells: tuple[Cell, ...], sweep: dict[str, list[dict]]) -> dict[str, float]:
    """λ by ``sweep_key``: each sweep's choice (``choose_lambda``); a unit that takes its λ from another
    (``lambda_from``: the stress test, a tuning world's units) gets that unit's, method by method; a unit without
    either, the preset's first λ; and a comparison (``Cell.group``) whose units all share GRPO+AIR's λ, that one."""
    lambdas = {key: choose_lambda(runs) for key, runs in sweep.items()}
    for cell in cells:
        if cell.lambda_from is None and cell.name not in lambdas:
            lambdas[cell.name] = preset.lambdas[0]
    for cell in cells:
        if cell.lambda_from is not None:
            for method in dict.fromkeys(("grpo+air", *preset.swept)):
                source = sweep_key(cell.lambda_from, method)
                if source in lambdas:
                    lambdas[sweep_key(cell.name, method)] = lambdas[source]
    for group in dict.fromkeys(c.group for c in cells):  # a comparison's λ, where all its units share one
        chosen = {lambdas.get(c.name) for c in cells if c.group == group} - {None}
        if len(chosen) == 1:
            lambdas.setdefault(group, chosen.pop())
    return lambdas


def warm_name(cell: Cell) -> str:
    """The name of a unit's warm start: its world, with ``@w<seed>`` for a seed other than 0."""
    return f"{cell.world}@w{cell.warm_seed}" if cell.warm_seed else cell.world


def anchor_levels(table: dict) -> tuple[tuple[str, float], ...]:
    """The correct anchor's reward per ``"domain/label"`` of a calibration table (its verdicts' ``anchor_reward``):
    the constant anchor levels of ``grpo+air-const``.

    >>> anchor_levels({"verdicts": [{"domain": "safety", "label": 1, "anchor_reward": 2.5},
    ...                             {"domain": "math", "label": None, "anchor_reward": 2.25}]})
    (('math/none', 2.25), ('safety/1', 2.5))
    """
    return tuple(
        sorted(
            (offset_key(v["domain"], v["label"]), v["anchor_reward"])
            for v in table["verdicts"]
            if v["anchor_reward"] is not None
        )
    )


def run_spec(
    preset: Preset,
    cell: Cell,
    method: str,
    lam: float,
    seed: int,
    tag: str,
    splits,
    warm: dict,
    world_seed: int,
    offsets: tuple = (),
    steps: int | None = None,
    levels: tuple = (),
) -> RunSpec:
    """One run of a unit: ``warm`` maps ``warm_name`` to warm-start directories, ``offsets`` are the unit's
    calibrated-Δ offsets and ``levels`` its correct anchors' rewards (each used by the methods that need it)."""
    training = preset.training if steps is None else dataclasses.replace(preset.training, max_steps=steps)
    constant = METHODS[method].anchor_target == "constant"
    if constant and not levels:
        raise ValueError(
            f"unit {cell.name}: method {method!r} needs the correct anchors' rewards (its calibration "
            "table's anchor_reward); none were measured"
        )
    return RunSpec(
        world=cell.world,
        method=method,
        lam=lam,
        seed=seed,
        warm_start=str(warm[warm_name(cell)]),
        splits=tuple(splits),
        training=training,
        judge=cell.judge(),
        world_seed=world_seed,
        offsets=offsets if METHODS[method].calibrated_delta else (),
        tag=tag,
        warm_seed=cell.warm_seed,
        anchor_constant=levels if constant else (),
        extra={"cell": cell.group, "unit": cell.name},
    )


def method_lambda(lambdas: dict, unit: str, method: str) -> float:
    """A main run's λ: 0 without a regulariser; the method's own sweep's where it had one; else GRPO+AIR's."""
    if METHODS[method].invariance == "none":
        return 0.0
    return lambdas.get(sweep_key(unit, method), lambdas[unit])


def main_runs(
    preset: Preset,
    cells: tuple[Cell, ...],
    lambdas: dict,
    warm: dict,
    world_seed: int = 0,
    offsets: dict | None = None,
    levels: dict | None = None,
) -> list[RunSpec]:
    """The table's runs: units × their methods × the preset's RL seeds, at each unit's λ (``lambdas`` by
    ``sweep_key``; :func:`method_lambda`)."""
    return [
        run_spec(
            preset,
            c,
            m,
            method_lambda(lambdas, c.name, m),
            s,
            "main",
            ("test_id", "test_ood"),
            warm,
            world_seed,
            (offsets or {}).get(c.name, ()),
            levels=(levels or {}).get(c.name, ()),
        )
        for c in cells
        for m in preset.methods_of(c)
        for s in preset.seeds
    ]


def warm_start_metrics(path: str | Path, world_name: str, world_seed: int = 0) -> dict:
    """Oracle metrics of a warm start on a world's val and test splits (``runs.score``) and its measured context
    dependence on the test rows."""
    model, tokenizer = load_warm_start(path)
    rows = world.build_rows(world_name, seed=world_seed)
    scored = score(model, tokenizer, rows, ("val", "test_id", "test_ood"))
    test = [r for r in rows if r["split"].startswith("test")]
    return {
        "metrics": {s: v["summary"] for s, v in scored.items()},
        "dependence": measure_context_dependence(model, tokenizer, test),
    }


def _slim(record: dict) -> dict:
    """A run's record without its per-prompt verdicts (they stay in its own result.json and, compactly, in the grid's
    ``outcomes.json.gz``, from which ``air-align lab analyse`` recomputes every table and interval)."""
    return {k: v for k, v in record.items() if k != "records"}


def _jsonable(preset: Preset, cells: tuple[Cell, ...] | None = None) -> dict:
    """The preset as JSON, its ``cells`` being the units the grid ran (``units``; default: the preset's cells), each
    with its warm-start seed and the comparison it is pooled into (``group``)."""
    d = dataclasses.asdict(preset)
    d["cells"] = [
        {
            "world": c.world,
            "regime": c.regime,
            "judge": dict(c.judge()),
            "methods": c.methods,
            "lambda_from": c.lambda_from,
            "warm_seed": c.warm_seed,
            "group": c.group,
        }
        for c in (preset.cells if cells is None else cells)
    ]
    return d
