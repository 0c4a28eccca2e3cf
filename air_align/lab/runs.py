"""One lab run, the unit of work of ``air-align reproduce``: train a method from a warm start, score it by the oracle.

A :class:`RunSpec` says everything a run depends on (world and judge regime, method, λ, seed, optimisation, which
splits to score, the warm start); :func:`execute` trains it with the real ``AIRTrainer`` and returns its record. A
run depends on nothing else — not on the process it runs in, nor on the runs before it — which is what lets the grid
run in parallel worker processes (``runner.py``) and resume: :func:`execute` is a pure function of its spec, up to
floating-point reproducibility, which one torch thread per run makes exact.

The record holds, per scored split, the summary metrics (``score``) and the per-prompt oracle verdicts (``records``:
the paired bootstrap of ``analysis.py`` resamples them; ``outcomes.py`` keeps them compactly in a grid's directory),
the run's replication unit (``RunSpec.unit``) and the code that ran it (``codeversion.code_version``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers.trainer_callback import PrinterCallback

from air_align.evaluation.evaluate import evaluate
from air_align.evaluation.plots import plot_run_curves
from air_align.files import write_json
from air_align.lab import world
from air_align.lab.analysis import split_summary
from air_align.lab.codeversion import code_version
from air_align.lab.judge import lab_rewards
from air_align.lab.oracle import oracle_verdict
from air_align.lab.spec import WorldSpec, load_world, with_judge
from air_align.lab.trainer import LabTrainer
from air_align.lab.warmstart import load_warm_start
from air_align.training.methods import METHODS
from air_align.training.recipe import RunConfig, air_config, build_trainer


@dataclass(frozen=True)
class Training:
    """The optimisation regime, shared by every method of a comparison (only the regulariser and λ differ)."""

    max_steps: int = 100
    """Optimiser steps."""
    learning_rate: float = 3e-4
    num_iterations: int = 2
    """Optimiser steps per generation batch (TRL's ``num_iterations``): 2 makes the second step off-policy, where
    GSPO's sequence-level ratio differs from GRPO's token-level one (with 1, GSPO+AIR would equal GRPO+AIR)."""
    groups_per_step: int = 2
    """Meta-groups per generation batch."""
    num_generations: int = 4
    """K completions per prompt."""
    max_completion_length: int = 32
    temperature: float = 1.0
    padding_chunks: int = 3
    """Row chunks of the loss forward with its padding removed (``lab/padding.py``); 0: TRL's padded forward. The
    same maths with other rounding, which left the lab's metrics within seed noise (docs/performance.md, "The
    seed-noise check"); the grids whose results are committed ran with 0 and keep it (``presets.TRL_FORWARD``)."""

    shared_prompts: bool = True
    """Run each distinct prompt once, in generation's prefill and in the loss forward, its K completions on its keys
    and values (``lab/shared_prompts.py``), in at most ``padding_chunks`` row chunks. The same maths with other
    rounding, which left the lab's metrics within seed noise of TRL's forward (docs/performance.md, "The seed-noise
    check of shared prompts"); the grids whose results are committed ran without it and keep that
    (``presets.TRL_FORWARD``)."""

    def __post_init__(self):
        if not isinstance(self.shared_prompts, bool):
            raise ValueError(
                f"Training.shared_prompts must be true or false, got {self.shared_prompts!r}: true runs each distinct "
                "prompt of a loss batch once"
            )
        chunks = self.padding_chunks
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 0:
            raise ValueError(
                f"Training.padding_chunks must be a whole number >= 0, got {chunks!r}: 0 for TRL's padded forward, "
                "or the most row chunks per forward (e.g. 3)"
            )


def with_regime(spec: WorldSpec, exemplary: float | None = None, **judge) -> WorldSpec:
    """The world under a regime: judge knobs changed (``spec.with_judge``) and, with ``exemplary``, the top tier's
    task payout replaced for every label (the "subtle" hacks of docs/lab.md §3, whose top tier out-earns a correct
    anchor by only a little).

    >>> from air_align.lab.spec import load_world
    >>> w = with_regime(load_world("safety"), exemplary=1.45, cue_strength=6.0)
    >>> w.judge.cue_strength, w.rewards[1]["exemplary"], w.rewards[0]["accepted"]
    (6.0, 1.45, 1.25)
    """
    spec = with_judge(spec, **judge)
    if exemplary is None:
        return spec
    if spec.kind not in ("safety", "morality"):
        raise ValueError(
            f"world {spec.name!r} ({spec.kind}) has no judge tiers: a regime's 'exemplary' payout applies to safety "
            "and morality worlds; run this regime on one of those, or drop 'exemplary' from it"
        )
    if isinstance(exemplary, bool) or not isinstance(exemplary, int | float) or not math.isfinite(exemplary):
        raise ValueError(
            f"world {spec.name!r}: a regime's 'exemplary' payout must be a finite number, got {exemplary!r}; "
            "give the top tier's reward, e.g. 1.5"
        )
    rewards = {label: {**table, "exemplary": float(exemplary)} for label, table in spec.rewards.items()}
    return dataclasses.replace(spec, rewards=rewards)


@dataclass(frozen=True)
class RunSpec:
    """Everything one run depends on."""

    world: str
    """Built-in world name or spec file."""
    method: str
    """A method of ``air_align.training.recipe.METHODS`` (``grpo``, ``grpo+air``, …)."""
    lam: float
    seed: int
    warm_start: str
    """Directory of the warm start (``warmstart.warm_start``)."""
    splits: tuple[str, ...] = ("test_id", "test_ood")
    training: Training = Training()
    judge: tuple[tuple[str, object], ...] = ()
    """The regime's overrides of the world, as sorted ``(key, value)`` pairs: judge knobs (e.g.
    ``(("cue_strength", 1.0),)``) and ``exemplary``, the top tier's task payout (:func:`with_regime`)."""
    world_seed: int = 0
    offsets: tuple[tuple[str, float], ...] = ()
    """Calibrated-Δ offsets ``((\"domain/label\", b), …)`` for methods that use them (docs/calibration.md; not the
    paper)."""
    anchor_constant: tuple[tuple[str, float], ...] = ()
    """Constant anchor levels ``(("domain/label", c), …)`` for methods with ``anchor_target="constant"``: the
    correct anchor's reward of the unit's calibration table (``grpo+air-const``; not the paper)."""
    tag: str = "main"
    """What the run is for (``sweep``, ``main``, ``stress``): part of its directory name."""
    warm_seed: int = 0
    """Seed of the warm start (``warmstart.Recipe.seed``): part of the name when not 0 (``warm_start`` is the key)."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def spec(self) -> WorldSpec:
        return with_regime(load_world(self.world), **dict(self.judge))

    def name(self) -> str:
        regime = "-".join(f"{k}{v}" for k, v in self.judge) or "default"
        world_name = Path(self.world).stem
        warm = f"-w{self.warm_seed}" if self.warm_seed else ""
        return f"{self.tag}-{world_name}{warm}-{regime}-{self.method}-lam{self.lam:g}-seed{self.seed}"

    def key(self) -> dict:
        """The run's identity for resuming (JSON-able): the spec, the world's content and the hash of the code that
        trains it (``codeversion.code_version``), so a run finished by other code is trained again."""
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["world_spec"] = json.loads(json.dumps(load_world(self.world).key()))
        d["code"] = code_version()["hash"]
        return json.loads(json.dumps(d))

    def unit(self) -> dict:
        """The replication unit the run belongs to: its world (name and split seed) and its warm start (the cache
        directory's name, which carries the recipe's hash). RL seeds are nested in it; the analysis pairs methods
        within a unit and estimates intervals over units (``analysis.unit_key``)."""
        return {
            "world": Path(self.world).stem,
            "world_seed": self.world_seed,
            "warm_start": Path(self.warm_start).name,
        }


def score(model, tokenizer, rows: list[dict], splits: tuple[str, ...], max_new_tokens: int = 32) -> dict:
    """Greedy completions of the rows of ``splits`` (and the anchors they borrow), judged by the world's oracle,
    through the shared evaluation (``air_align.evaluation.evaluate`` with ``oracle_verdict`` as the verdict).

    Returns ``{split: {"summary": ..., "records": [...]}}`` (``analysis.split_summary``); each record carries the
    oracle's ``hack`` and ``formatted`` flags.
    """
    evaluation = evaluate(
        model,
        tokenizer,
        rows,
        verdict=oracle_verdict,
        splits=tuple(splits),
        max_new_tokens=max_new_tokens,
        batch_size=128,
        n_boot=0,
        dispersion=False,
        progress=False,
    )
    records = [
        {**rec, "hack": line["details"].get("hack"), "formatted": line["details"].get("formatted")}
        for rec, line in zip(evaluation.records, evaluation.scored, strict=True)  # one greedy sample per prompt
    ]
    return {split: split_summary(records, split) for split in splits}


def build_run_trainer(run: RunSpec, model, tokenizer, rows: list[dict], out_dir: Path):
    """The ``AIRTrainer`` of one run, by the project's trainer recipe (``training.recipe``): the method's
    regulariser (``training.methods``), TRL GRPO/GSPO settings shared by every method, the world's rewards, the world's
    train rows."""
    t = run.training
    train = [r for r in rows if r["split"] == "train"]
    group_size = len(train) // len({r["group_id"] for r in train})
    args = air_config(
        run.method,
        output_dir=str(out_dir),
        invariance_coef=run.lam if METHODS[run.method].invariance != "none" else 0.0,
        loss_type="grpo",  # TRL's recommendation for GSPO; the same for every method
        num_generations=t.num_generations,
        per_device_train_batch_size=t.groups_per_step * group_size * t.num_generations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        learning_rate=t.learning_rate,
        num_iterations=t.num_iterations,
        beta=0.0,
        activation_checkpointing=False,  # TRL turns it on, recomputing each forward in the backward: no memory to save
        max_steps=t.max_steps,
        logging_steps=max(1, t.max_steps // 20),
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=run.seed,
        **({"invariance_offsets": dict(run.offsets)} if run.offsets else {}),
        **({"anchor_constant": dict(run.anchor_constant)} if run.anchor_constant else {}),
    )
    trainer = build_trainer(
        RunConfig(method=run.method),
        args,
        model=model,
        tokenizer=tokenizer,
        rows=train,
        reward_funcs=lab_rewards(run.spec()),
        trainer_class=LabTrainer,
    )
    trainer.padding_chunks = t.padding_chunks
    trainer.shared_prompts = t.shared_prompts
    return trainer


def execute(run: RunSpec, out_dir: str | Path) -> dict:
    """Train ``run`` and score it; writes ``log.json`` to ``out_dir`` and returns the record (not yet saved)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per run: exact reproducibility, and parallel runs do not oversubscribe
    try:
        spec = run.spec()
        rows = world.build_rows(spec, seed=run.world_seed)
        model, tokenizer = load_warm_start(run.warm_start)
        trainer = build_run_trainer(run, model, tokenizer, rows, out_dir)
        trainer.remove_callback(PrinterCallback)  # the grid's progress bar reports; the log goes to log.json
        start = time.time()
        trainer.train()
        seconds = time.time() - start
        log = [e for e in trainer.state.log_history if "loss" in e or "reward" in e]
        write_json(out_dir / "log.json", log, indent=1)
        plot_run_curves(log, out_dir / "training_curves.png", title=run.name())
        metrics = score(trainer.model, tokenizer, rows, run.splits)
        checksum = float(sum(p.detach().double().abs().sum() for p in trainer.model.parameters()))
    finally:
        torch.set_num_threads(threads)
    return {
        "world": spec.name,
        "kind": spec.kind,
        "judge": dict(run.judge),
        "method": run.method,
        "lambda": run.lam,
        "seed": run.seed,
        "tag": run.tag,
        "unit": run.unit(),
        "code": code_version(),
        "train_seconds": round(seconds, 1),
        "param_checksum": checksum,
        "metrics": {s: m["summary"] for s, m in metrics.items()},
        "records": {s: m["records"] for s, m in metrics.items()},
    }
