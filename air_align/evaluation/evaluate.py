"""Evaluate a model on meta-group rows: generate, score, summarise, and write results, completions, report, plots.

``evaluate(model, tokenizer, rows, verdict=...)`` is the library entry point; it returns an :class:`Evaluation`
(the results, one record per prompt, one scored line per completion). The lab calls it with its oracle verdict and
an in-memory model, the audit with the evaluation judge, ``air-align eval`` wraps it. With ``out_dir`` it also writes
(docs/evaluation.md): ``results.json``, ``records.jsonl``, ``completions.jsonl`` (every scored completion),
``report.md``, ``per_family.png``, ``anchor_vs_open.png`` and, when a trainer log is found, ``training_curves.png``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from air_align.data.schema import SPLITS
from air_align.evaluation.dispersion import check_layer, group_dispersion, prompt_representations
from air_align.evaluation.generate import generate_completions
from air_align.evaluation.metrics import majority, slice_records, summarize
from air_align.evaluation.plots import plot_anchor_vs_open, plot_per_family, plot_training_curves
from air_align.evaluation.report import render_report
from air_align.evaluation.scoring import Verdict, eval_verdict
from air_align.files import write_json, write_jsonl, write_text

RESULTS_VERSION = 1


def select_rows(rows: list[dict], splits: list[str], limit_groups: int | None = None) -> list[dict]:
    """Rows of ``splits`` plus the anchors of their groups from any other split; optionally the first N groups."""
    groups = list(dict.fromkeys(r["group_id"] for r in rows if r["split"] in splits))
    if limit_groups is not None:
        groups = groups[:limit_groups]
    keep = set(groups)
    return [r for r in rows if r["group_id"] in keep and (r["split"] in splits or r["role"] == "anchor")]


COMPLETION_FIELDS = ("id", "group_id", "role", "family", "domain", "split")


def generated_lines(rows: list[dict], completions: list[list[str]]) -> list[dict]:
    """One line per completion, before any verdict: what ``completions.jsonl`` holds between generation and scoring
    (the scored lines add ``correct``, ``score`` and ``details``)."""
    return [
        {
            **{k: row.get(k) for k in COMPLETION_FIELDS},
            "sample": k,
            "prompt": row["prompt"],
            "answer": row.get("answer"),
            "label": row.get("label"),
            "completion": completion,
        }
        for row, samples in zip(rows, completions, strict=True)
        for k, completion in enumerate(samples)
    ]


def score_rows(rows: list[dict], completions: list[list[str]], verdict: Verdict) -> tuple[list[dict], list[dict]]:
    """``(records, scored)``: one metric record per prompt (majority over samples) and one scored line a sample."""
    flat_rows = [row for row, samples in zip(rows, completions, strict=True) for _ in samples]
    flat = [c for samples in completions for c in samples]
    verdicts = verdict(flat_rows, flat)
    if len(verdicts) != len(flat):
        raise ValueError(f"the verdict function returned {len(verdicts)} results for {len(flat)} completions")
    records, pos = [], 0
    for row, samples in zip(rows, completions, strict=True):
        mine = verdicts[pos : pos + len(samples)]
        pos += len(samples)
        refused = [v.get("details", {}).get("refused") for v in mine]
        records.append(
            {
                **{k: row.get(k) for k in ("id", "group_id", "role", "family", "context", "domain", "split", "label")},
                "correct": majority([v["correct"] for v in mine]),
                "refused": None if any(r is None for r in refused) else majority(refused),
                "n_samples": len(samples),
            }
        )
    scored = [
        {**line, "correct": v["correct"], "score": v.get("score"), "details": v.get("details", {})}
        for line, v in zip(generated_lines(rows, completions), verdicts, strict=True)
    ]
    return records, scored


@dataclass
class Evaluation:
    """What ``evaluate`` measured."""

    results: dict
    """The summary (results.json; schema in docs/evaluation.md)."""
    records: list[dict]
    """One metric record per prompt (records.jsonl): the metrics recompute from these."""
    scored: list[dict]
    """One line per completion with its verdict (completions.jsonl)."""


def evaluate(
    model,
    tokenizer,
    rows: list[dict],
    *,
    verdict: Verdict | None = None,
    splits: tuple[str, ...] = ("test_id", "test_ood"),
    max_new_tokens: int = 256,
    batch_size: int = 8,
    num_samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    n_boot: int = 1000,
    dispersion: bool = True,
    dispersion_layer: int = -1,
    out_dir: str | Path | None = None,
    train_dir: str | Path | None = None,
    tags: dict | None = None,
    progress: bool = True,
    completions_path: str | Path | None = None,
) -> Evaluation:
    """Generate, score and summarise; write every output to ``out_dir`` when given.

    ``verdict`` defaults to rule verifiers + the ``oracle-label`` keyword heuristic. ``tags`` (``method``, ``model``,
    ``judge``, ...) are recorded in results.json; ``method`` names the row in the paper-style table.

    The generations are saved as soon as they exist, before any judge or the dispersion runs, so that a failure there
    loses none: to ``completions_path`` (default ``out_dir/completions.jsonl``; :func:`generated_lines`), replaced by
    the scored lines once the verdicts are in, before the dispersion pass.
    """
    splits = tuple(splits)
    selected = select_rows(rows, list(splits))
    if not selected:
        present = sorted({str(r.get("split")) for r in rows})
        raise ValueError(f"no rows in splits {list(splits)} (the data has splits {present}); fix --splits")
    if dispersion:
        check_layer(model, dispersion_layer)  # before generation: a bad layer would fail only after it
    start = time.time()
    completions = generate_completions(
        model,
        tokenizer,
        [r["prompt"] for r in selected],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        num_samples=num_samples,
        temperature=temperature,
        seed=seed,
        progress=progress,
    )
    if completions_path is None and out_dir is not None:
        completions_path = Path(out_dir) / "completions.jsonl"
    if completions_path is not None:
        write_jsonl(completions_path, generated_lines(selected, completions))
    records, scored = score_rows(selected, completions, verdict or eval_verdict("oracle-label"))
    if completions_path is not None:  # the verdicts too, before the dispersion pass
        write_jsonl(completions_path, scored)
    results = {
        "version": RESULTS_VERSION,
        **(tags or {}),
        "method": (tags or {}).get("method", "unknown"),
        "config": {
            "splits": list(splits),
            "max_new_tokens": max_new_tokens,
            "num_samples": num_samples,
            "temperature": temperature,
            "seed": seed,
            "n_boot": n_boot,
            "prompt_rule": "majority of samples (ties wrong)" if num_samples > 1 else "single greedy/sampled answer",
        },
        "n_prompts": len(selected),
        "n_completions": len(scored),
        "slices": summarize(records, list(splits), n_boot=n_boot, seed=seed),
        "generation_seconds": round(time.time() - start, 2),
    }
    if dispersion:
        results["dispersion"] = _dispersion(model, tokenizer, selected, splits, dispersion_layer, batch_size, progress)
    evaluation = Evaluation(results, records, scored)
    if out_dir is not None:
        write_outputs(evaluation, out_dir, train_dir=train_dir)
    return evaluation


def _dispersion(model, tokenizer, rows, splits, layer, batch_size, progress) -> dict:
    reps = prompt_representations(
        model, tokenizer, [r["prompt"] for r in rows], layer=layer, batch_size=batch_size, progress=progress
    )
    index = {r["id"]: i for i, r in enumerate(rows)}
    out = {"layer": layer, "pooling": "mean over prompt tokens", "distance": "euclidean to group centroid"}
    for split in splits:
        sliced = slice_records(rows, split)
        try:
            res = group_dispersion(reps[[index[r["id"]] for r in sliced]], [r["group_id"] for r in sliced])
        except ValueError as err:  # e.g. only singleton groups in this slice
            out[split] = {"mean": None, "reason": str(err)}
            continue
        out[split] = {k: v for k, v in res.items() if k != "per_group"}
    return out


def write_outputs(
    evaluation: Evaluation, out_dir: str | Path, train_dir=None, report_appendix: str = ""
) -> dict[str, Path]:
    """Write results.json, records.jsonl, completions.jsonl, the plots and report.md (``report_appendix``, markdown,
    at its end); returns the paths written."""
    results = evaluation.results
    out = Path(out_dir)
    paths = {
        "completions": write_jsonl(out / "completions.jsonl", evaluation.scored),
        "records": write_jsonl(out / "records.jsonl", evaluation.records),
        "per_family": plot_per_family(results, out / "per_family.png"),
        "anchor_vs_open": plot_anchor_vs_open(
            evaluation.records, results["config"]["splits"], out / "anchor_vs_open.png"
        ),
    }
    curves = plot_training_curves([d for d in (train_dir, out) if d is not None], out / "training_curves.png")
    if curves is not None:
        paths["training_curves"] = curves
    results["files"] = {k: p.name for k, p in paths.items()}
    paths["results"] = write_json(out / "results.json", results)
    report = render_report(results) + (f"\n\n{report_appendix}" if report_appendix else "")
    paths["report"] = write_text(out / "report.md", report)
    return paths


def check_splits(splits: tuple[str, ...], rows: list[dict], data: str) -> None:
    """Raise unless every split of ``--splits`` has rows in ``data`` (the message lists the splits it has).

    >>> check_splits(("test_id", "x"), [{"split": "test_id"}, {"split": "train"}], "d.jsonl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: --splits test_id,x: d.jsonl has no rows in split 'x'; its splits are train, test_id (e.g. --splits ...
    """
    present = sorted({str(r.get("split")) for r in rows}, key=lambda s: (SPLITS.index(s) if s in SPLITS else 99, s))
    missing = [s for s in splits if s not in present]
    if not splits or missing:
        tests = [s for s in present if s.startswith("test")] or present
        raise ValueError(
            f"--splits {','.join(splits)}: {data} has no rows in split {', '.join(map(repr, missing)) or '(none)'}; "
            f"its splits are {', '.join(present)} (e.g. --splits {','.join(tests)})"
        )


def default_train_dir(model: str) -> str | None:
    """Where ``eval`` looks for the training log of ``model``: the run folder of ``air-align train`` for its
    ``final/`` model (``log.jsonl`` sits beside ``final/``), else the model's own folder, else none (a hub id)."""
    path = Path(model)
    if not path.is_dir():
        return None
    return str(path.parent) if path.name == "final" else str(path)
