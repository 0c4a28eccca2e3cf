"""``air-align reproduce``: the paper's comparison in the lab, with the real trainer, in parallel, resumably.

docs/design.md §5; docs/lab.md §5; the conditions of the committed results are in docs/results.md. A grid is a set of
*cells* — a world (``worlds/*.yaml`` or a spec file) under a judge *regime* (``REGIMES``) — and, per cell, every
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
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from air_align.files import refuse_overwriting_inputs, write_json
from air_align.lab import world
from air_align.lab.calibration import world_calibration
from air_align.lab.generate import world_name, world_options, write_world
from air_align.lab.report import write_outputs
from air_align.lab.runner import run_all
from air_align.lab.runs import RunSpec, Training, score, with_regime
from air_align.lab.spec import load_world
from air_align.lab.warmstart import Recipe, load_warm_start, measure_context_dependence, warm_starts
from air_align.training.config import offset_key
from air_align.training.methods import METHODS, PAPER_METHODS
from air_align.version import __version__

CUE_LEVELS = (1.0, 2.0, 3.0, 4.0, 6.0)
"""The hack dial (docs/results/lab-v3/conditions.md, E2): judge cue strengths from "rarely fooled" to "always
fooled". The hack passes the judge with probability Φ((c − 3)/σ) and reaches its top tier with about its square:
at noise σ = 1, 2 %, 16 %, 50 %, 84 %, 99.9 % (top tier 0.05 %, 2.5 %, 25 %, 71 %, 99.7 %)."""
SUBTLE_EXEMPLARY = 1.5
"""The "subtle" regime's top-tier task payout: with the format reward a hack that the judge always passes earns
2.75 against a correct anchor's 2.5, and a judge of noise 0.75–1.5 leaves it 0.18–0.25 above (the measured gap is
the calibration table's hack Δ)."""
REGIMES: dict[str, dict] = {
    "main": {"cue_strength": 1.0},
    "hack": {"cue_strength": 4.0},
    "stress": {"stress": True},
    **{f"cue{c:g}": {"cue_strength": c} for c in CUE_LEVELS},
    "subtle": {"cue_strength": 6.0, "exemplary": SUBTLE_EXEMPLARY},
}
"""Judge regimes (overrides of the world, ``runs.with_regime``). ``main``: the paper's main regime, a noisy judge that
its surface cue rarely fools; ``hack``: the cue fools it most of the time, so plain GRPO learns the hack; ``stress``:
the paper's "extremely hacked" open reward. Calibrated on plain GRPO before any AIR run (docs/results.md).
``cue1`` … ``cue6``: the hack dial (``CUE_LEVELS``; ``cue1`` and ``cue4`` are ``main`` and ``hack`` under other
names); ``subtle``: an always-fooled judge whose top tier pays only a little above a correct answer."""


@dataclass(frozen=True)
class Cell:
    """One world under one judge regime, from one warm start (a replication unit); ``methods`` None means the
    preset's methods."""

    world: str
    regime: str
    methods: tuple[str, ...] | None = None
    lambda_from: str | None = None
    """Take λ from another cell (its ``name``) instead of sweeping (the stress test uses the hack regime's λ)."""
    warm_seed: int = 0
    """The warm start's seed (``warmstart.Recipe.seed``)."""
    pool: str | None = None
    """The comparison the unit's runs are pooled into (None: ``world/regime``; generated worlds: ``gen-<kind>/
    <regime>``): the analysis pairs AIR and GRPO by unit and seed within it and takes intervals over its units."""

    @property
    def name(self) -> str:
        """The unit's name: ``world/regime``, with ``@w<seed>`` after the world for a warm start other than seed 0
        (so the grids of one warm start keep their names)."""
        return unit_name(f"{Path(self.world).stem}/{self.regime}", self.warm_seed)

    @property
    def group(self) -> str:
        """The comparison the unit belongs to (``pool``), the ``cell`` of its runs' records."""
        return self.pool or f"{Path(self.world).stem}/{self.regime}"

    def judge(self) -> tuple[tuple[str, object], ...]:
        return tuple(sorted(REGIMES[self.regime].items()))


@dataclass(frozen=True)
class Preset:
    """One grid. Every method of a cell shares every setting except the regulariser (and λ)."""

    name: str
    cells: tuple[Cell, ...]
    methods: tuple[str, ...] = (*PAPER_METHODS, "grpo+air-loo")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    training: Training = Training()
    lambdas: tuple[float, ...] = (0.03, 0.1, 0.3, 1.0)
    """λ grid of the sweep (one value: fixed, no sweep)."""
    sweep_seeds: tuple[int, ...] = (100, 101)
    """Seeds of the sweep runs: apart from the comparison's seeds, so that choosing λ reuses no run of the table."""
    sweep_steps: int | None = None
    """Steps of a sweep run (None: ``training.max_steps``)."""
    workers: int = 2
    """Worker processes (one torch thread each)."""
    warm: dict = field(default_factory=dict)
    """Warm-start ``Recipe`` overrides (e.g. fewer epochs for the smoke test)."""
    regimes: tuple[str, ...] = ("main", "hack")
    """The regimes ``--world FILE`` runs a world under (maths-kind worlds: ``main`` only, having no judge)."""
    grpo_only: bool = False
    """Plain GRPO only, whatever the cells name: the regime calibration, which must not train (or show) any
    regularised run before the comparison's conditions are committed (docs/results.md §3)."""
    generated: tuple[tuple, ...] = ()
    """Generated worlds ``(kind, generator seed)`` or ``(kind, generator seed, tag)`` (``generate.py``; the tag names
    the generator's options, ``generate.world_options``: ``cue``, ``acc60``, ``cue-acc60``), run beside ``cells``
    under the regimes of their kind (``regimes_for``); their specs are written to ``DIR/worlds/<world name>.yaml``.
    A tag's worlds are pooled apart from the plain ones (``gen-<kind>-<tag>/<regime>``)."""
    warm_seeds: tuple[int, ...] = (0,)
    """Warm-start seeds: every cell runs from a warm start of each (``units``)."""
    swept: tuple[str, ...] = ("grpo+air",)
    """The methods whose λ is swept, each on its own (``sweep_key``); a regularised method not listed takes
    GRPO+AIR's λ."""
    tuning: tuple[tuple, ...] = ()
    """Generated worlds ``(kind, generator seed[, tag])`` that only choose λ: at warm-start seed 0, under
    ``tune_regime`` (or each regime of their kind), they run the sweep and no table; every generated unit of their
    kind (and regime) takes their λ instead of sweeping its own. Their seeds must not be among ``generated``."""
    tune_regime: str | None = None
    """The one regime the tuning worlds sweep under, its λ used under every regime (None: each regime its own)."""

    def methods_of(self, cell: Cell) -> tuple[str, ...]:
        """The methods a cell runs (a λ-tuning cell: none)."""
        methods = self.methods if cell.methods is None else cell.methods
        return ("grpo",) if self.grpo_only and methods else methods


def unit_name(cell_name: str, warm_seed: int) -> str:
    """``world/regime`` → ``world@w<seed>/regime`` (unchanged for warm-start seed 0).

    >>> unit_name("gen-safety-3/hack", 1), unit_name("safety/main", 0)
    ('gen-safety-3@w1/hack', 'safety/main')
    """
    world_part, regime = cell_name.rsplit("/", 1)
    return f"{world_part}@w{warm_seed}/{regime}" if warm_seed else cell_name


def units(preset: Preset, out: str | Path) -> tuple[Cell, ...]:
    """The replication units of ``preset``: (its cells + its generated worlds under their kind's regimes) × its
    warm-start seeds, in that order. Writes the generated worlds' specs to ``out/worlds/`` (the same bytes on every
    call, so a resumed grid finds the same runs)."""
    if "seed" in preset.warm:
        raise ValueError(f"preset {preset.name!r}: give warm-start seeds as warm_seeds, not warm['seed']")
    if not preset.warm_seeds or len(set(preset.warm_seeds)) != len(preset.warm_seeds):
        raise ValueError(f"preset {preset.name!r}: warm_seeds {preset.warm_seeds} must be distinct, at least one")
    if preset.tune_regime is not None and preset.tune_regime not in preset.regimes:
        raise ValueError(
            f"preset {preset.name!r}: tune_regime {preset.tune_regime!r} is not one of its regimes {preset.regimes}"
        )
    clash = sorted(set(preset.tuning) & set(preset.generated))
    if clash:
        raise ValueError(f"preset {preset.name!r}: tuning worlds {clash} are also compared; tune λ on other seeds")
    cells = list(preset.cells)
    tuned: dict[tuple[str, str], str] = {}  # (kind, regime) -> the tuning unit whose λ it takes
    tuning = []
    for entry in preset.tuning:
        kind, path, _ = _generated_world(entry, out)
        regimes = regimes_for(preset, kind)
        for regime in regimes if preset.tune_regime is None or kind == "math" else (preset.tune_regime,):
            cell = Cell(str(path), regime, methods=(), pool=f"tune-{kind}/{regime}")
            tuning.append(cell)
            for target in regimes if preset.tune_regime is not None else (regime,):
                if (kind, target) in tuned:
                    raise ValueError(f"preset {preset.name!r}: two tuning worlds of kind {kind!r}; give one")
                tuned[(kind, target)] = cell.name
    for entry in preset.generated:
        kind, path, pool = _generated_world(entry, out)
        cells += [
            Cell(str(path), regime, pool=f"{pool}/{regime}", lambda_from=tuned.get((kind, regime)))
            for regime in regimes_for(preset, kind)
        ]
    tuning_names = {c.name for c in tuning}
    return tuple(tuning) + tuple(
        dataclasses.replace(
            c,
            warm_seed=w,
            lambda_from=c.lambda_from
            and (c.lambda_from if c.lambda_from in tuning_names else unit_name(c.lambda_from, w)),
        )
        for c in cells
        for w in preset.warm_seeds
    )


def _generated_world(entry: tuple, out: str | Path) -> tuple[str, Path, str]:
    """``(kind, path, pool)`` of a preset's generated world ``(kind, seed[, tag])``, its spec written under
    ``out/worlds/``; the pool is ``gen-<kind>`` (``gen-<kind>-<tag>`` with a tag, so that worlds with an option and
    their controls are compared apart)."""
    kind, seed, tag = (*entry, "")[:3]
    options = world_options(tag)
    path = write_world(kind, seed, Path(out) / "worlds" / f"{world_name(kind, seed, **options)}.yaml", **options)
    return kind, path, f"gen-{kind}-{tag}" if tag else f"gen-{kind}"


def sweep_key(unit: str, method: str) -> str:
    """Where a unit's sweep of ``method`` and its chosen λ are filed in ``results.json``: the unit's name for GRPO+AIR
    (as every grid before per-method sweeps), ``unit|method`` for another swept method.

    >>> sweep_key("gen-safety-100/cue4", "grpo+air"), sweep_key("gen-safety-100/cue4", "grpo+vrex")
    ('gen-safety-100/cue4', 'gen-safety-100/cue4|grpo+vrex')
    """
    return unit if method == "grpo+air" else f"{unit}|{method}"


def regimes_for(preset: Preset, kind: str) -> tuple[str, ...]:
    """The regimes a world of ``kind`` runs under in ``preset`` (maths has no judge: its open variants are verified
    exactly, so a judge regime changes nothing)."""
    return ("main",) if kind == "math" else preset.regimes


FULL_METHODS = (*PAPER_METHODS, "grpo+air-loo")
GRID_CELLS = (
    Cell("safety", "main"),
    Cell("safety", "hack"),
    Cell("morality", "main"),
    Cell("morality", "hack"),
    Cell("math", "main"),  # joined once its warm start's anchors worked (docs/results.md §4b)
    Cell("safety-miscalibrated", "hack", methods=(*FULL_METHODS, "grpo+air-cal")),
)
STRESS = Cell("safety", "stress", methods=("grpo", "grpo+air"), lambda_from="safety/hack")

PRESETS: dict[str, Preset] = {
    # the test's: two 2-step runs from a short warm start
    "smoke": Preset(
        "smoke",
        cells=(Cell("safety", "hack", methods=("grpo", "grpo+air")),),
        seeds=(0,),
        training=Training(max_steps=2),
        lambdas=(0.1,),
        workers=1,
        warm={"epochs": 8, "open_per_intent": 3},
    ),
    # `make demo`: one world, one seed, λ fixed: a look at the pipeline, not a result
    "demo": Preset(
        "demo",
        cells=(Cell("safety", "hack", methods=("grpo", "grpo+vrex", "grpo+air")),),
        seeds=(0,),
        training=Training(max_steps=60),
        lambdas=(0.1,),
    ),
    # the regime calibration on plain GRPO, committed before any AIR run of the grid (docs/results.md)
    "regimes": Preset("regimes", cells=GRID_CELLS, methods=("grpo",), seeds=(0, 1, 2), lambdas=(0.0,), grpo_only=True),
    # sized for ≤ 10 min: the safety world, both regimes, two seeds, λ fixed
    "quick": Preset("quick", cells=(Cell("safety", "main"), Cell("safety", "hack")), seeds=(0, 1), lambdas=(0.1,)),
    # the pre-registered comparison (docs/results.md)
    "full": Preset("full", cells=(*GRID_CELLS, STRESS)),
    # not pre-registered, run after the full grid (docs/results.md §5): the control's AIR, paper form and calibrated
    # Δ, at the λ the calibrated world's sweep chose (0.1), since the control's own sweep chose a λ (0.03) at which
    # AIR does not block the hack in the calibrated world either
    "control": Preset(
        "control",
        cells=(Cell("safety-miscalibrated", "hack", methods=("grpo", "grpo+air", "grpo+air-cal")),),
        lambdas=(0.1,),
    ),
    # the replication units' test: one generated world × 2 warm starts × 1 seed, 2-step runs from short warm starts
    "units-smoke": Preset(
        "units-smoke",
        cells=(),
        generated=(("safety", 0),),
        warm_seeds=(0, 1),
        regimes=("hack",),
        methods=("grpo", "grpo+air"),
        seeds=(0,),
        training=Training(max_steps=2),
        lambdas=(0.1,),
        workers=1,
        warm={"epochs": 2, "open_per_intent": 2},
    ),
    # replication units (docs/lab.md, "Generated worlds"): 4 generated worlds of each kind × 2 warm starts × 3 RL
    # seeds, GRPO against GRPO+AIR at λ 0.1; not yet run
    "replicate": Preset(
        "replicate",
        cells=(),
        generated=tuple((k, s) for k in ("safety", "morality", "math") for s in range(4)),
        warm_seeds=(0, 1),
        methods=("grpo", "grpo+air"),
        seeds=(0, 1, 2),
        lambdas=(0.1,),
    ),
    # lab v3 (docs/results/lab-v3/conditions.md), generated worlds 0-3 of each kind × warm starts 0, 1 × RL seed 0;
    # λ swept on a tuning world (generator seed 100) of each kind, never on a compared one.
    # E1: do the anchors carry information? AIR against AIR with a constant anchor level and AIR on shifted rewards
    "v3-e1": Preset(
        "v3-e1",
        cells=(),
        generated=tuple((k, s) for k in ("safety", "morality", "math") for s in range(4)),
        warm_seeds=(0, 1),
        regimes=("main", "hack"),
        seeds=(0,),
        methods=("grpo", "grpo+air", "grpo+air-const", "grpo+air-shift"),
        tuning=(("safety", 100), ("morality", 100), ("math", 100)),
    ),
    # E2: the hack dial: five cue strengths and the subtle hack; V-REx's λ swept on its own; one λ per kind and
    # method, swept at cue strength 4 (the v2 hack regime)
    "v3-e2": Preset(
        "v3-e2",
        cells=(),
        generated=tuple((k, s) for k in ("safety", "morality") for s in range(4)),
        warm_seeds=(0, 1),
        regimes=(*(f"cue{c:g}" for c in CUE_LEVELS), "subtle"),
        seeds=(0,),
        methods=("grpo", "grpo+vrex", "grpo+air"),
        swept=("grpo+air", "grpo+vrex"),
        tuning=(("safety", 100), ("morality", 100)),
        tune_regime="cue4",
    ),
    # E3: generated safety and morality worlds 0-3 with a shared cue (docs/lab.md §7, "Shared cues") and their
    # controls (the same seeds without) × 2 warm starts × GRPO, GRPO+AIR under `main`; λ swept on tuning world 100
    # with the cue. `v3-e3-wide`: the same at hidden size 384 (about 4× wider), its own warm starts
    "v3-e3": Preset(
        "v3-e3",
        cells=(),
        generated=tuple(w for k in ("safety", "morality") for s in range(4) for w in ((k, s), (k, s, "cue"))),
        warm_seeds=(0, 1),
        regimes=("main",),
        seeds=(0,),
        methods=("grpo", "grpo+air"),
        tuning=(("safety", 100, "cue"), ("morality", 100, "cue")),
    ),
    # E4: generated safety and morality worlds 0-3 whose warm starts' anchors are right on 60-100 % of the draws by
    # feature word (docs/lab.md §7, "Unsaturated anchors") × 2 warm starts × GRPO, GRPO+AIR, GRPO+AIR with a constant
    # anchor level under `main`; λ swept on tuning world 100 of each kind with the same option. 40 SFT epochs: at
    # 20 the warm start answered every word's anchors alike (the accuracies' mean), at 40 it tracks them
    "v3-e4": Preset(
        "v3-e4",
        cells=(),
        generated=tuple((k, s, "acc60") for k in ("safety", "morality") for s in range(4)),
        warm_seeds=(0, 1),
        regimes=("main",),
        seeds=(0,),
        methods=("grpo", "grpo+air", "grpo+air-const"),
        tuning=tuple((k, 100, "acc60") for k in ("safety", "morality")),
        warm={"epochs": 40},
    ),
}
PRESETS["v3-e3-wide"] = dataclasses.replace(PRESETS["v3-e3"], name="v3-e3-wide", warm={"hidden_size": 384})
# the main regime replicated, alone: exactly E1's `main` cells (GRPO and GRPO+AIR rows, same units, λ and training)
PRESETS["v3-main"] = dataclasses.replace(
    PRESETS["v3-e1"], name="v3-main", regimes=("main",), methods=("grpo", "grpo+air")
)


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
