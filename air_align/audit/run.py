"""``air-align audit``: a model's context invariance *before* any training, on real meta-groups (docs/design.md §4-5).

On the rows of ``air_align.audit.rows`` (every intent's anchors and one open variant of every wrapper family,
ID and OOD alike), the audit generates greedily, scores anchors by rule and open variants by the evaluation judge
(``evaluate``), and adds what an audit asks beyond Acc / Acc_group: per-family flip rates against the plain request,
failures given right anchors, over-refusal per family, and the anchors' position bias (definitions in
``audit.metrics``; the report section and plot in ``audit.report``). Anchors are generated once.
"""

from __future__ import annotations

import time
from pathlib import Path

from air_align.audit import metrics as M
from air_align.audit.report import plot_flip_rates, render_audit
from air_align.evaluation.evaluate import evaluate, write_outputs
from air_align.evaluation.scoring import eval_verdict
from air_align.files import write_json

# Known weaknesses of each evaluation judge, printed in every report (notes/offline-data.md, docs/evaluation.md).
JUDGE_CAVEATS = {
    "oracle-label": "keyword heuristic against the intent's oracle label: refusal = a phrase such as \"I'm sorry\" "
    'or "I cannot" anywhere in the answer (misfires on "I\'m sorry for the confusion, but …" followed by '
    "compliance, and misses refusals worded otherwise); morality = the first wrong / not-wrong / yes / no phrase. "
    "Not an oracle: read the completions before trusting a number.",
    "none": "open variants are not scored: only anchors (and maths, by rule) count.",
    "model": "a YES/NO log-odds judge built on a language model; a frozen small model (SmolLM2-135M) is a weak judge "
    "with its own position and yes-bias.",
}
MATH_NOTE = "maths open variants are scored by math_verify against the reference answer: no judge is involved."


def judge_caveat(judge: str, domain: str) -> str:
    """The report's sentence on the judge's weaknesses."""
    if domain == "math":
        return MATH_NOTE
    return JUDGE_CAVEATS.get(judge.split(":")[0], "a user-supplied judge: its accuracy is unknown.")


def audit_summary(rows: list[dict], records: list[dict], scored: list[dict]) -> dict:
    """The audit-specific numbers (see ``audit.metrics``) from the rows and the evaluation's records/completions."""
    split_of = {}
    for r in rows:
        split_of.setdefault(r["family"], "anchor" if r["role"] == "anchor" else r["split"])
    return {
        "families": {f: {"test_id": "ID", "test_ood": "OOD"}.get(s, s) for f, s in sorted(split_of.items())},
        "flip_vs_plain": M.flip_rates(records),
        "fails_given_right_anchors": M.fails_given_right_anchors(records),
        "over_refusal_by_family": M.over_refusal_by_family(records),
        "anchor_bias": M.anchor_bias(scored, {r["id"]: r["context"] for r in rows}),
        "tagged_share": M.tagged_share(scored),
        "family_acc": _family_acc(records),
    }


def _family_acc(records: list[dict]) -> dict[str, dict]:
    counts: dict[str, list[int]] = {}
    for r in records:
        if r["correct"] is not None:
            c = counts.setdefault(r["family"], [0, 0])
            c[0] += int(r["correct"])
            c[1] += 1
    return {f: {"acc": k / n, "n": n} for f, (k, n) in sorted(counts.items())}


def run_audit(
    model,
    tokenizer,
    rows: list[dict],
    out_dir: str | Path,
    *,
    judge: str = "oracle-label",
    max_new_tokens: int = 96,
    batch_size: int = 24,
    seed: int = 0,
    n_boot: int = 1000,
    tags: dict | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate ``rows`` with ``air_align.evaluation.evaluate`` and add the audit section.

    Writes, in ``out_dir``: the evaluation's results.json / records.jsonl / completions.jsonl / report.md / plots,
    plus ``audit.json``, ``flip_rates.png`` and an audit section at the end of report.md. Returns
    ``{"results": ..., "audit": ...}``.
    """
    out = Path(out_dir)
    domain = rows[0]["domain"]
    tags = {"method": "audit", "judge": judge, **(tags or {})}
    start = time.time()
    evaluation = evaluate(
        model,
        tokenizer,
        rows,
        verdict=eval_verdict(judge),
        splits=("test_id", "test_ood"),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        n_boot=n_boot,
        dispersion=False,
        tags=tags,
        progress=progress,
        completions_path=out / "completions.jsonl",  # the generations, saved before the judge runs
    )
    summary = audit_summary(rows, evaluation.records, evaluation.scored)
    summary.update(
        domain=domain,
        judge=judge,
        judge_caveat=judge_caveat(judge, domain),
        n_intents=len({r["group_id"] for r in rows}),
        n_prompts=len(rows),
        seconds=round(time.time() - start, 1),
        config={"max_new_tokens": max_new_tokens, "batch_size": batch_size, "seed": seed},
        tags=tags,
    )
    write_outputs(evaluation, out, report_appendix=render_audit(summary, evaluation.results))
    write_json(out / "audit.json", summary)
    plot_flip_rates(summary, out / "flip_rates.png")
    return {"results": evaluation.results, "audit": summary}
