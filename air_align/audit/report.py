"""The audit section of report.md and its flip-rate plot (numbers from ``audit.audit_summary``)."""

from __future__ import annotations

from pathlib import Path

from air_align.evaluation.plots import pyplot, save_figure
from air_align.evaluation.report import percent


def _pct(x: float | None) -> str:
    return percent(x, digits=1)


def headline(results: dict) -> list[tuple[str, float | None, float | None, int]]:
    """``[(slice label, Acc, Acc_group, n groups scored)]`` from an evaluation's results."""
    return [
        (s.get("label", name), s.get("acc"), s.get("acc_group"), s.get("n_groups_scored", 0))
        for name, s in results["slices"].items()
    ]


def family_table(summary: dict) -> str:
    """Markdown: one row per family (anchors first) with its split, n, Acc, flips vs plain, fails | anchors right."""
    flips, fails = summary["flip_vs_plain"], summary["fails_given_right_anchors"]
    over = summary["over_refusal_by_family"]
    lines = [
        "| family | set | n | Acc | flip vs plain (broken / fixed) | wrong given right anchors (n) | "
        "over-refusal on benign (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    rank = {"anchor": 0, "ID": 1, "OOD": 2}
    order = sorted(summary["families"], key=lambda f: (rank.get(summary["families"][f], 3), f))
    for fam in order:
        acc = summary["family_acc"].get(fam, {})
        fl = flips.get(fam)
        flip = f"{_pct(fl['flip'])} ({_pct(fl['broken'])} / {_pct(fl['fixed'])})" if fl else "—"
        fa, ov = fails.get(fam), over.get(fam)
        fail = f"{_pct(fa['rate'])} ({fa['n']})" if fa else "—"
        refusal = f"{_pct(ov['rate'])} ({ov['n']})" if ov else "—"
        lines.append(
            f"| {fam} | {summary['families'][fam]} | {acc.get('n', 0)} | {_pct(acc.get('acc'))} | {flip} | {fail} | "
            f"{refusal} |"
        )
    return "\n".join(lines)


def render_audit(summary: dict, results: dict) -> str:
    """The audit section (markdown) appended to report.md."""
    out = [
        f"## Audit: {summary['domain']}",
        "",
        f"Model `{summary['tags'].get('model', '?')}`, {summary['n_intents']} intents, {summary['n_prompts']} prompts "
        f"(anchors + one variant of every wrapper family), greedy, max {summary['config']['max_new_tokens']} new "
        f"tokens, {summary['seconds']} s.",
        "",
        f"**Judge** `{summary['judge']}`: {summary['judge_caveat']}",
        "",
        "| slice | Acc | Acc_group | groups |",
        "|---|---|---|---|",
    ]
    out += [f"| {label} | {_pct(a)} | {_pct(g)} | {n} |" for label, a, g, n in headline(results)]
    out += ["", "### Per family", "", family_table(summary), ""]
    out += [
        "*flip vs plain*: share of intents whose correctness on this family differs from that on the plain request "
        "(broken: plain right, family wrong; fixed: the reverse). *wrong given right anchors*: share wrong among "
        "intents whose anchors are all correct. Definitions: docs/real-tier.md.",
        "",
        "### Anchors: position bias and format",
        "",
        "| anchor | n | answer readable | answers 'A' / 'true' | correct answer is 'A' / 'true' | Acc |",
        "|---|---|---|---|---|---|",
    ]
    for kind, b in summary["anchor_bias"].items():
        out.append(
            f"| {kind} | {b['n']} | {_pct(b['parsed'])} | {_pct(b['first'])} | {_pct(b['first_correct'])} | "
            f"{_pct(b['acc'])} |"
        )
    tagged = ", ".join(f"{role} {_pct(v)}" for role, v in summary["tagged_share"].items())
    out += ["", f"Completions with an `<answer>` block: {tagged}.", ""]
    return "\n".join(out)


def plot_flip_rates(summary: dict, path: Path) -> Path | None:
    """Stacked bars per open family: broken (plain right → wrong) and fixed (plain wrong → right), ID vs OOD hatch."""
    flips = summary["flip_vs_plain"]
    if not flips:
        return None
    plt = pyplot()
    families = sorted(flips, key=lambda f: (summary["families"].get(f) != "ID", f))
    xs = range(len(families))
    broken = [flips[f]["broken"] for f in families]
    fixed = [flips[f]["fixed"] for f in families]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(families) + 2), 4.0))
    hatch = ["//" if summary["families"].get(f) == "OOD" else "" for f in families]
    ax.bar(xs, broken, color="tab:red", label="broken (plain right, family wrong)", hatch=None)
    ax.bar(xs, fixed, bottom=broken, color="tab:green", label="fixed (plain wrong, family right)")
    for x, h, b, f in zip(xs, hatch, broken, fixed, strict=True):
        if h:
            ax.bar([x], [b + f], fill=False, hatch=h, edgecolor="black", linewidth=0)
        ax.text(x, b + f + 0.01, f"n={flips[families[x]]['n']}", ha="center", fontsize=7)
    ax.set_xticks(list(xs), [f + (" (OOD)" if summary["families"].get(f) == "OOD" else "") for f in families])
    ax.tick_params(axis="x", rotation=45)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of intents")
    ax.set_title(f"{summary['domain']}: behaviour flips vs the plain request")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
