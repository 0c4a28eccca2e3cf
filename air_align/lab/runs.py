"""One lab run, the unit of work of ``air-align reproduce``: train a method from a warm start, score it by the oracle.

A :class:`RunSpec` says everything a run depends on (world and judge regime, method, λ, seed, optimisation, which
splits to score, the warm start); :func:`execute` trains it with the real ``AIRTrainer`` and returns its record. A
run depends on nothing else — not on the process it runs in, nor on the runs before it — which is what lets the grid
run in parallel worker processes (``runner.py``) and resume: :func:`execute` is a pure function of its spec, up to
floating-point reproducibility, which one torch thread per run makes exact.

The record holds, per scored split, the summary metrics (``score``) and the per-prompt oracle verdicts (``records``:
the paired bootstrap of ``analysis.py`` resamples them), and the training log.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from air_align.lab import world
from air_align.lab.spec import WorldSpec, load_world, with_judge


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
    """Judge overrides of the regime, as sorted ``(key, value)`` pairs (e.g. ``(("cue_strength", 1.0),)``)."""
    world_seed: int = 0
    offsets: tuple[tuple[str, float], ...] = ()
    """Calibrated-Δ offsets ``((\"domain/label\", b), …)`` for methods that use them (issue 15; not the paper)."""
    tag: str = "main"
    """What the run is for (``sweep``, ``main``, ``stress``): part of its directory name."""
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def spec(self) -> WorldSpec:
        return with_judge(load_world(self.world), **dict(self.judge))

    def name(self) -> str:
        regime = "-".join(f"{k}{v}" for k, v in self.judge) or "default"
        world_name = Path(self.world).stem
        return f"{self.tag}-{world_name}-{regime}-{self.method}-lam{self.lam:g}-seed{self.seed}"

    def key(self) -> dict:
        """The run's identity for resuming (JSON-able)."""
        d = dataclasses.asdict(self)
        d.pop("extra")
        d["world_spec"] = json.loads(json.dumps(load_world(self.world).key()))
        return json.loads(json.dumps(d))


def oracle_records(rows: list[dict], completions: list[str]) -> list[dict]:
    """Per-prompt verdict records (``evaluation.metrics`` fields) plus the lab's ``hack`` and ``formatted`` flags."""
    from air_align.lab.oracle import oracle_verdict

    out = []
    for row, completion, verdict in zip(rows, completions, oracle_verdict(rows, completions), strict=True):
        rec = {k: row[k] for k in ("id", "group_id", "role", "family", "domain", "split", "label")}
        rec.update(correct=verdict["correct"], hack=verdict["details"]["hack"],
                   formatted=verdict["details"]["formatted"])  # fmt: skip
        out.append(rec)
    return out


def score(model, tokenizer, rows: list[dict], splits: tuple[str, ...], max_new_tokens: int = 32) -> dict:
    """Greedy completions of the rows of ``splits`` (and the anchors they borrow), oracle-judged.

    Returns ``{split: {"summary": ..., "records": [...]}}`` with ``summary`` from ``analysis.split_summary``.
    """
    from air_align.lab.analysis import split_summary
    from air_align.lab.warmstart import generate_greedy

    chosen = [r for r in rows if r["split"] in splits]
    records = oracle_records(chosen, generate_greedy(model, tokenizer, chosen, max_new_tokens=max_new_tokens))
    return {split: split_summary(records, split) for split in splits}


def build_trainer(run: RunSpec, model, tokenizer, rows: list[dict], out_dir: Path):
    """The ``AIRTrainer`` of one run (TRL GRPO/GSPO + the method's regulariser) on the world's train rows."""
    import torch
    from datasets import Dataset

    from air_align.lab.judge import lab_rewards
    from air_align.training.config import AIRConfig
    from air_align.training.trainer import AIRTrainer

    from air_align.lab.reproduce import METHODS, AUX_BASELINE

    t = run.training
    invariance, level = METHODS[run.method]
    train = [{k: v for k, v in r.items() if k != "meta"} for r in rows if r["split"] == "train"]
    group_size = len(train) // len({r["group_id"] for r in train})
    args = AIRConfig(
        output_dir=str(out_dir),
        invariance=invariance,
        invariance_coef=run.lam if invariance != "none" else 0.0,
        aux_baseline=AUX_BASELINE.get(run.method, "none"),
        importance_sampling_level=level,
        loss_type="grpo",  # TRL's recommendation for GSPO; the same for every method
        num_generations=t.num_generations,
        per_device_train_batch_size=t.groups_per_step * group_size * t.num_generations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        learning_rate=t.learning_rate,
        num_iterations=t.num_iterations,
        beta=0.0,
        max_steps=t.max_steps,
        logging_steps=max(1, t.max_steps // 20),
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=run.seed,
    )
    torch.manual_seed(run.seed)
    return AIRTrainer(
        model=model,
        reward_funcs=lab_rewards(run.spec()),
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
    )


def execute(run: RunSpec, out_dir: str | Path) -> dict:
    """Train ``run`` and score it; writes ``log.json`` to ``out_dir`` and returns the record (not yet saved)."""
    import torch
    from transformers.trainer_callback import PrinterCallback

    from air_align.lab.warmstart import load_warm_start

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread per run: exact reproducibility, and parallel runs do not oversubscribe
    try:
        spec = run.spec()
        rows = world.build_rows(spec, seed=run.world_seed)
        model, tokenizer = load_warm_start(run.warm_start)
        trainer = build_trainer(run, model, tokenizer, rows, out_dir)
        trainer.remove_callback(PrinterCallback)  # the grid's progress bar reports; the log goes to log.json
        start = time.time()
        trainer.train()
        seconds = time.time() - start
        log = [e for e in trainer.state.log_history if "loss" in e or "reward" in e]
        (out_dir / "log.json").write_text(json.dumps(log, indent=1))
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
        "train_seconds": round(seconds, 1),
        "param_checksum": checksum,
        "metrics": {s: m["summary"] for s, m in metrics.items()},
        "records": {s: m["records"] for s, m in metrics.items()},
    }
