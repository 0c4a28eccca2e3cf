"""The lab's grids: judge regimes, cells, presets and the replication units a preset expands to.

A grid (``Preset``) is a set of *cells* — a world (``worlds/*.yaml``, a spec file or a generated world) under a judge
*regime* (``REGIMES``) — run from one or more warm starts (``warm_seeds``), every method of a cell with the same
hyperparameters except the regulariser and λ. ``units`` expands a preset to its replication units (docs/lab.md,
"Generated worlds"); ``PRESETS`` are the named grids of ``air-align reproduce --preset`` (docs/lab.md §5; the
conditions of the committed results are in docs/results.md). ``reproduce.py`` runs them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from air_align.lab.generate import world_name, world_options, write_world
from air_align.lab.runs import Training
from air_align.training.methods import PAPER_METHODS

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


TRL_FORWARD = Training(padding_chunks=0, shared_prompts=False)
"""The training of every grid whose results are committed (docs/results.md): TRL's padded loss forward and its
generation, the lab's only ones when they ran, so that a rerun reproduces their tables. The other presets take
``Training``'s default (docs/performance.md, "The seed-noise check")."""
FORWARDS = ("preset", "fast", "trl")
"""What ``reproduce --forward`` accepts (``with_forward``)."""


def with_forward(training: Training, forward: str) -> Training:
    """``training`` with the log-prob forwards and generation that ``forward`` names: ``"preset"`` leaves it as it
    is, ``"fast"`` takes ``Training``'s defaults (each prompt once, most padding dropped; within seed noise of TRL's:
    docs/performance.md), ``"trl"`` TRL's own (``TRL_FORWARD``). Nothing else changes.

    >>> fast = with_forward(TRL_FORWARD, "fast")
    >>> fast == Training(), with_forward(fast, "trl") == TRL_FORWARD, with_forward(fast, "preset") is fast
    (True, True, True)
    """
    if forward not in FORWARDS:
        raise ValueError(f"forward {forward!r}: use one of {', '.join(FORWARDS)}")
    if forward == "preset":
        return training
    model = Training() if forward == "fast" else TRL_FORWARD
    return dataclasses.replace(training, padding_chunks=model.padding_chunks, shared_prompts=model.shared_prompts)


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
    "regimes": Preset(
        "regimes",
        cells=GRID_CELLS,
        methods=("grpo",),
        seeds=(0, 1, 2),
        lambdas=(0.0,),
        grpo_only=True,
        training=TRL_FORWARD,
    ),
    # sized for ≤ 10 min: the safety world, both regimes, two seeds, λ fixed
    "quick": Preset("quick", cells=(Cell("safety", "main"), Cell("safety", "hack")), seeds=(0, 1), lambdas=(0.1,)),
    # the pre-registered comparison (docs/results.md)
    "full": Preset("full", cells=(*GRID_CELLS, STRESS), training=TRL_FORWARD),
    # not pre-registered, run after the full grid (docs/results.md §5): the control's AIR, paper form and calibrated
    # Δ, at the λ the calibrated world's sweep chose (0.1), since the control's own sweep chose a λ (0.03) at which
    # AIR does not block the hack in the calibrated world either
    "control": Preset(
        "control",
        cells=(Cell("safety-miscalibrated", "hack", methods=("grpo", "grpo+air", "grpo+air-cal")),),
        lambdas=(0.1,),
        training=TRL_FORWARD,
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
        training=TRL_FORWARD,
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
        training=TRL_FORWARD,
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
        training=TRL_FORWARD,
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
        training=TRL_FORWARD,
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
