"""``air-align reproduce``: the paper's comparison, run in the lab with the real trainer (DESIGN.md §5).

Per domain, from one warm start (``warmstart.py``): GRPO, GRPO+V-REx, GRPO+AIR and GSPO+AIR with identical
hyperparameters except the regulariser (GSPO is TRL's ``importance_sampling_level="sequence"``); λ chosen per domain
and per regularised method by a small sweep over orders of magnitude, scored on **ID validation** intents only
(seed 0); then every method on several seeds, evaluated by the world's **oracle** (greedy decoding) on held-out test
intents under ID families (``test_id``) and held-out OOD families (``test_ood``): Acc and Acc_group
(``air_align.evaluation.metrics``). The stress test (safety): the open side rewarded by the "extremely hacked"
reward (a refusal cue alone earns the top tier), GRPO vs GRPO+AIR, oracle-judged.

Every finished run is saved to ``DIR/runs/<run>/result.json`` (atomic write) with the setup it was made with;
running ``reproduce`` again into the same ``DIR`` skips the runs already finished with the same setup, so an
interrupted ``full`` grid resumes where it stopped.

Outputs in ``--out DIR``: ``results.json`` (every run, the sweep, the summary), ``table.md`` (the paper-style table,
mean ± std over seeds, next to the warm start), ``ood_acc_group.png`` and ``lambda_sweep.png`` (the λ plot).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.trainer_callback import PrinterCallback

from air_align.evaluation.evaluate import evaluate
from air_align.evaluation.plots import pyplot, save_figure
from air_align.files import write_json, write_text
from air_align.lab import world
from air_align.lab.judge import lab_rewards
from air_align.lab.oracle import oracle_verdict
from air_align.lab.warmstart import Recipe, load_warm_start, measure_context_dependence, warm_start
from air_align.training.methods import METHODS, PAPER_METHODS, method_label
from air_align.training.recipe import RunConfig, air_config, build_trainer


@dataclass(frozen=True)
class Preset:
    """One reproduce budget. Every method shares every field except the regulariser (and λ)."""

    name: str
    domains: tuple[str, ...] = world.DOMAINS
    methods: tuple[str, ...] = PAPER_METHODS
    seeds: tuple[int, ...] = (0, 1, 2)
    max_steps: int = 40
    """Optimiser steps per run."""
    sweep_steps: int = 40
    """Steps per λ-sweep run (scored on val)."""
    lambdas: tuple[float, ...] = (0.005, 0.05, 0.5)
    """λ grid, orders of magnitude apart (DESIGN.md §5: the right λ depends on the aux term's normalisation)."""
    groups_per_step: int = 2
    """Meta-groups per generation batch (each 2 anchors + 6 ID open variants)."""
    num_generations: int = 4
    """K completions per prompt."""
    learning_rate: float = 1e-3
    num_iterations: int = 1
    """Optimiser steps on each generation batch (TRL's ``num_iterations``, GRPO's μ). With 1 every importance ratio
    is 1 and GSPO's sequence-level surrogate has exactly GRPO's gradient; with 2 the second pass is off-policy, so
    GRPO+AIR and GSPO+AIR can differ. ``max_steps`` counts optimiser steps, so 2 halves the generations."""
    sweep_seeds: tuple[int, ...] = (0,)
    """Seeds of every λ-sweep run; λ is chosen on the mean over them."""
    max_completion_length: int = 32
    """The longest grammatical response (the safety hack) is 24 tokens plus the end-of-turn token."""
    temperature: float = 1.0
    stress: bool = True
    """Run the stress test (safety, GRPO vs GRPO+AIR)."""
    shared_lambda: bool = False
    """Sweep λ on GRPO+AIR only and use it for every regularised method of the domain (one λ per domain, as the
    paper's λ plot); False sweeps each regularised method on its own."""
    warm_epochs: int | None = None
    """SFT epochs of the warm start (None: the ``Recipe`` default; the smoke preset uses fewer to stay fast)."""


PRESETS: dict[str, Preset] = {
    "smoke": Preset("smoke", domains=("safety",), methods=("grpo", "grpo+air"), seeds=(0,), max_steps=2,
                    sweep_steps=2, lambdas=(0.5,), groups_per_step=1, stress=False, warm_epochs=10),
    # one domain, one seed, λ fixed at 0.05 (not swept; 0.5 collapsed the policy in a probe): a look, not a result
    "demo": Preset("demo", domains=("safety",), methods=("grpo", "grpo+vrex", "grpo+air"), seeds=(0,), max_steps=40,
                   lambdas=(0.05,), stress=False),
    # sized for ≤ 15 min on 2 cores: one λ per domain (swept on GRPO+AIR, one seed), 20 steps a run
    "quick": Preset("quick", max_steps=20, sweep_steps=20, shared_lambda=True, num_iterations=2),
    # sized for ≤ 2 h on 2 cores: 5 seeds, 100 steps a run, one λ per domain from a 5-point sweep on 2 seeds
    "full": Preset("full", seeds=(0, 1, 2, 3, 4), max_steps=100, sweep_steps=60, sweep_seeds=(0, 1),
                   lambdas=(0.003, 0.01, 0.03, 0.1, 0.3), shared_lambda=True, num_iterations=2),
    # not the paper: GRPO+AIR with a leave-one-out baseline in the aux term, on full's conditions (safety and
    # morality; maths anchors are near chance), its own λ sweep; compare with full's rows (docs/results.md)
    "baseline": Preset("baseline", domains=("safety", "morality"), methods=("grpo+air-loo",), seeds=(0, 1, 2, 3, 4),
                       max_steps=100, sweep_steps=60, sweep_seeds=(0, 1), lambdas=(0.003, 0.01, 0.03, 0.1, 0.3),
                       num_iterations=2),
}  # fmt: skip


def score(model, tokenizer, rows: list[dict], splits: tuple[str, ...], max_new_tokens: int = 32) -> dict:
    """Oracle Acc / Acc_group (and anchor / open Acc) per split, greedy decoding, through the shared evaluation
    (``air_align.evaluation.evaluate`` with the lab oracle as the verdict)."""
    evaluation = evaluate(
        model, tokenizer, rows, verdict=oracle_verdict, splits=splits, max_new_tokens=max_new_tokens, batch_size=128,
        n_boot=0, dispersion=False, progress=False,
    )  # fmt: skip
    out = {}
    for split, summary in evaluation.results["slices"].items():
        roles = summary["by_role"]
        out[split] = {
            "acc": summary["acc"],
            "acc_group": summary["acc_group"],
            "anchor_acc": roles.get("anchor", {}).get("acc"),
            "open_acc": roles.get("open", {}).get("acc"),
            "n_prompts": summary["n_prompts"],
        }
    return out


def train_one(warm_path: Path, rows: list[dict], method: str, lam: float, seed: int, preset: Preset, out_dir: Path,
              stress: bool = False):  # fmt: skip
    """Train one run with the project's trainer recipe (``build_trainer``); returns ``(model, tokenizer, seconds)``."""
    model, tokenizer = load_warm_start(warm_path)
    train = [r for r in rows if r["split"] == "train"]
    group_size = len(train) // len({r["group_id"] for r in train})
    args = air_config(
        method,
        output_dir=str(out_dir),
        invariance_coef=lam if METHODS[method].invariance != "none" else 0.0,
        loss_type="grpo",  # TRL's recommendation for GSPO; the same for every method
        num_generations=preset.num_generations,
        per_device_train_batch_size=preset.groups_per_step * group_size * preset.num_generations,
        max_completion_length=preset.max_completion_length,
        temperature=preset.temperature,
        learning_rate=preset.learning_rate,
        num_iterations=preset.num_iterations,
        beta=0.0,
        max_steps=preset.max_steps,
        logging_steps=max(1, preset.max_steps // 10),
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
    run = RunConfig(method=method)
    trainer = build_trainer(
        run, args, model=model, tokenizer=tokenizer, rows=train, reward_funcs=lab_rewards(stress=stress)
    )
    trainer.remove_callback(PrinterCallback)  # the reproduce progress bar reports; each run's logs go to log.json
    start = time.time()
    trainer.train()
    log = [e for e in trainer.state.log_history if "loss" in e or "reward" in e]
    write_json(out_dir / "log.json", log, indent=1)
    return trainer.model, tokenizer, time.time() - start


def stress_methods(preset: Preset) -> tuple[str, ...]:
    """The stress test's methods: GRPO (when the preset has it) and the preset's AIR methods (the paper: GRPO vs
    GRPO+AIR).

    >>> stress_methods(PRESETS["full"]), stress_methods(PRESETS["baseline"])
    (('grpo', 'grpo+air'), ('grpo+air-loo',))
    """
    air = tuple(m for m in preset.methods if m.startswith("grpo+air"))
    return (("grpo",) if "grpo" in preset.methods else ()) + air


def choose_lambda(sweep_runs: list[dict]) -> float:
    """The λ with the best mean validation Acc_group, ties broken by mean validation Acc (then the smaller λ).

    >>> runs = [{"lambda": lam, "metrics": {"val": {"acc_group": g, "acc": a}}}
    ...         for lam, g, a in [(0.1, 0.5, 0.6), (0.1, 0.0, 0.6), (1.0, 0.25, 0.7), (1.0, 0.25, 0.7)]]
    >>> choose_lambda(runs)
    1.0
    """
    by_lambda: dict[float, list[tuple[float, float]]] = {}
    for r in sweep_runs:
        val = r["metrics"]["val"]
        by_lambda.setdefault(r["lambda"], []).append((val["acc_group"], val["acc"]))
    if not by_lambda:
        raise ValueError("choose_lambda got no sweep runs")
    score = {lam: (statistics.fmean(g for g, _ in v), statistics.fmean(a for _, a in v), -lam)
             for lam, v in by_lambda.items()}  # fmt: skip
    return max(score, key=score.get)


def _mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}  # fmt: skip


def summarise(runs: list[dict]) -> dict:
    """``{domain: {method: {split: {metric: {mean, std, n}}}}}`` over seeds."""
    out: dict = {}
    for run in runs:
        for split, metrics in run["metrics"].items():
            for name, value in metrics.items():
                if name == "n_prompts" or value is None:
                    continue
                cell = out.setdefault(run["domain"], {}).setdefault(run["method"], {}).setdefault(split, {})
                cell.setdefault(name, []).append(value)
    return {d: {m: {s: {k: _mean_std(v) for k, v in c.items()} for s, c in ms.items()} for m, ms in dm.items()}
            for d, dm in out.items()}  # fmt: skip


def paper_table(summary: dict, domains: tuple[str, ...], methods: tuple[str, ...]) -> str:
    """The paper's Table 1 layout: rows ID/OOD × method, columns domain Acc / Acc_group, mean ± std (%)."""

    def cell(domain, method, split):
        c = summary.get(domain, {}).get(method, {}).get(split)
        if not c:
            return "—"
        a, g = c["acc"], c["acc_group"]
        return f"{100 * a['mean']:.1f} ± {100 * a['std']:.1f} / {100 * g['mean']:.1f} ± {100 * g['std']:.1f}"

    head = "| Setting | Method | " + " | ".join(f"{d} Acc / Acc_group (%)" for d in domains) + " |"
    lines = [head, "|" + "---|" * (2 + len(domains))]
    for split, label in (("test_id", "ID"), ("test_ood", "OOD")):
        for method in ("warm start", *methods):
            cells = " | ".join(cell(d, method, split) for d in domains)
            lines.append(f"| {label} | {method_label(method)} | {cells} |")
    return "\n".join(lines)


def _load_finished(path: Path, key: dict) -> dict | None:
    """The record of a finished run at ``path`` if it was made with the same ``key`` (preset, warm start, world),
    else None: ``reproduce`` into an existing ``--out`` resumes an interrupted grid instead of retraining it."""
    if not path.exists():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # a torn write from a crash: retrain
    return saved["record"] if saved.get("key") == json.loads(json.dumps(key)) else None


def _plot(summary: dict, domains, methods, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.2), squeeze=False)
    names = ("warm start", *methods)
    for ax, domain in zip(axes[0], domains, strict=True):
        means = [
            summary.get(domain, {}).get(m, {}).get("test_ood", {}).get("acc_group", {}).get("mean", 0) for m in names
        ]
        stds = [
            summary.get(domain, {}).get(m, {}).get("test_ood", {}).get("acc_group", {}).get("std", 0) for m in names
        ]
        ax.bar(range(len(names)), means, yerr=stds, capsize=3)
        ax.set_xticks(range(len(names)), [method_label(m) for m in names], rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{domain}: OOD Acc_group")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_sweep(sweep: dict, chosen: dict, path: Path) -> None:
    """The λ plot (the paper's λ figure, on ID validation data): mean val Acc and Acc_group over the sweep seeds
    against λ (log scale), one panel per domain, the chosen λ marked."""
    plt = pyplot()

    domains = [d for d in sweep if sweep[d]]
    if not domains:
        return
    fig, axes = plt.subplots(1, len(domains), figsize=(4 * len(domains), 3.2), squeeze=False)
    for ax, domain in zip(axes[0], domains, strict=True):
        for method, runs in sweep[domain].items():
            lams = sorted({r["lambda"] for r in runs})
            for metric, style in (("acc", "-o"), ("acc_group", "--s")):
                means = [statistics.fmean(r["metrics"]["val"][metric] for r in runs if r["lambda"] == lam)
                         for lam in lams]  # fmt: skip
                ax.plot(lams, means, style, label=f"{method_label(method)} {metric}")
            ax.axvline(chosen.get(domain, {}).get(method, float("nan")), color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("λ")
        ax.set_title(f"{domain}: λ sweep (val)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def reproduce(
    preset: Preset, out: str | Path, world_seed: int = 0, progress: bool = True, warm_root: str | Path | None = None
) -> dict:
    """Run the whole grid of ``preset``; write ``results.json``, ``table.md`` and the plot to ``out``.

    ``warm_root``: where warm starts are cached (default ``cache_dir()/lab``).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    regularised = [m for m in preset.methods if METHODS[m].invariance != "none"]
    swept = ["grpo+air"] if preset.shared_lambda and "grpo+air" in regularised else regularised
    n_sweep = len(swept) * len(preset.lambdas) * len(preset.sweep_seeds) if len(preset.lambdas) > 1 else 0
    n_runs = len(preset.domains) * (n_sweep + len(preset.methods) * len(preset.seeds))
    n_runs += len(stress_methods(preset)) * len(preset.seeds) if preset.stress and "safety" in preset.domains else 0
    bar = tqdm(total=n_runs, desc="reproduce", disable=not progress)
    results: dict = {"preset": dataclasses.asdict(preset), "world_seed": world_seed, "warm_start": {}, "sweep": {},
                     "lambda": {}, "runs": [], "stress": [], "resumed_runs": 0}  # fmt: skip

    def run(domain, rows, warm, method, lam, seed, splits, tag, stress=False, steps=None):
        bar.set_postfix_str(f"{domain} {method} λ={lam:g} seed={seed} {tag}")
        run_dir = out / "runs" / f"{tag}-{domain}-{method}-lam{lam:g}-seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        budget = dataclasses.replace(preset, max_steps=steps or preset.max_steps)
        key = {"preset": dataclasses.asdict(budget), "warm_start": str(warm), "world_seed": world_seed,
               "stress": stress, "splits": list(splits)}  # fmt: skip
        done = _load_finished(run_dir / "result.json", key)  # resume: a finished run of the same setup is kept
        results["resumed_runs"] += done is not None
        if done is None:
            model, tok, secs = train_one(warm, rows, method, lam, seed, budget, run_dir, stress=stress)
            done = {"domain": domain, "method": method, "lambda": lam, "seed": seed, "train_seconds": round(secs, 1),
                    "metrics": score(model, tok, rows, splits)}  # fmt: skip
            write_json(run_dir / "result.json", {"key": key, "record": done})
        bar.update(1)
        return done

    for domain in preset.domains:
        rows = world.build_rows(domain, seed=world_seed)
        recipe = Recipe(domain=domain, world_seed=world_seed)
        if preset.warm_epochs is not None:
            recipe = dataclasses.replace(recipe, epochs=preset.warm_epochs)
        warm = warm_start(recipe, root=warm_root, progress=progress)
        model, tok = load_warm_start(warm)
        test_rows = [r for r in rows if r["split"].startswith("test")]
        results["warm_start"][domain] = {
            "path": str(warm),
            "metrics": score(model, tok, rows, ("val", "test_id", "test_ood")),
            "dependence": measure_context_dependence(model, tok, test_rows),
        }
        del model
        sweep = results["sweep"].setdefault(domain, {})
        chosen = results["lambda"].setdefault(domain, {})
        for method in swept:  # λ on ID validation data only
            if len(preset.lambdas) == 1:  # nothing to choose
                chosen[method] = preset.lambdas[0]
                continue
            for lam in preset.lambdas:
                for seed in preset.sweep_seeds:
                    r = run(domain, rows, warm, method, lam, seed, ("val",), "sweep", steps=preset.sweep_steps)
                    sweep.setdefault(method, []).append(r)
            chosen[method] = choose_lambda(sweep[method])
        for method in regularised:  # shared_lambda: the swept method's λ
            chosen.setdefault(method, chosen[swept[0]])
        for method in preset.methods:
            lam = chosen.get(method, 0.0)
            for seed in preset.seeds:
                torch.manual_seed(seed)
                results["runs"].append(run(domain, rows, warm, method, lam, seed, ("test_id", "test_ood"), "main"))
        write_json(out / "results.json", results)
    if preset.stress and "safety" in preset.domains:
        rows = world.build_rows("safety", seed=world_seed)
        warm = Path(results["warm_start"]["safety"]["path"])
        for method in stress_methods(preset):
            lam = results["lambda"]["safety"].get(method, 0.0)
            for seed in preset.seeds:
                r = run("safety", rows, warm, method, lam, seed, ("test_id", "test_ood"), "stress", stress=True)
                results["stress"].append(r)
    bar.close()
    summary = summarise(results["runs"])
    for domain, ws in results["warm_start"].items():
        warm_run = {"domain": domain, "method": "warm start", "metrics": ws["metrics"]}
        summary.setdefault(domain, {})["warm start"] = summarise([warm_run])[domain]["warm start"]
    results["summary"] = summary
    results["stress_summary"] = summarise([{**r, "domain": "safety-stress"} for r in results["stress"]])
    results["seconds"] = round(time.time() - start, 1)
    table = paper_table(summary, preset.domains, preset.methods)
    if results["stress"]:
        stress_table = paper_table(results["stress_summary"], ("safety-stress",), stress_methods(preset))
        table += (
            "\n\nStress test (safety, open side rewarded for a refusal cue alone; oracle-judged):\n\n" + stress_table
        )
    results["table"] = table
    write_json(out / "results.json", results)
    write_text(out / "table.md", table + "\n")
    _plot(summary, preset.domains, preset.methods, out / "ood_acc_group.png")
    plot_sweep(results["sweep"], results["lambda"], out / "lambda_sweep.png")
    return results
