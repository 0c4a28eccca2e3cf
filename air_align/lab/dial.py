"""The hack dial's analysis (lab v3 E2; rules pre-registered in docs/results/lab-v3/conditions.md).

A dial grid runs each generated world under several judge regimes (``presets.REGIMES``: ``cue1`` … ``cue6``,
``subtle``), pooled per kind into comparisons named ``gen-<kind>/<regime>``. Pure functions of the grid's run records
(``results.json``'s ``runs``):

- :func:`dial_points`: per comparison and world, plain GRPO's ID hack rate (where the dial put it) and a method's
  paired difference from GRPO (balanced and plain Acc_group), each world's warm starts and seeds averaged;
- :func:`tracking`: rule (b), does the gain track the hack rate: per world, the least-squares slope of the gain
  against GRPO's hack rate over the levels; a t-interval over the worlds' slopes; yes iff it lies above 0;
- :func:`beyond_unhacked`: rule (c), does the method exceed plain GRPO's *unhacked* level: the method at each level
  against GRPO at the base level (``cue1``), paired by warm start and seed, its interval over worlds; yes iff above 0.
"""

from __future__ import annotations

import statistics

from air_align.lab.analysis import estimate, nested_differences, top_level, world_key, world_mean_differences
from air_align.lab.intervals import chosen_interval, nested_intervals, t_interval

BASE_REGIME = "cue1"
"""The level at which plain GRPO is (nearly) never hacked: its result there is GRPO's unhacked level."""


def split_cell(cell: str) -> tuple[str, str]:
    """``"gen-safety/cue4"`` → ``("gen-safety", "cue4")``."""
    kind, regime = cell.rsplit("/", 1)
    return kind, regime


def dial_cells(runs: list[dict]) -> list[str]:
    """The comparisons of a grid that lie on the dial (``cue<c>`` or ``subtle`` regimes), sorted."""
    return sorted({r["cell"] for r in runs if split_cell(r["cell"])[1].startswith(("cue", "subtle"))})


def dial_points(runs: list[dict], method: str = "grpo+air", split: str = "test_ood") -> list[dict]:
    """One point per dial comparison and world: ``{"kind", "regime", "world", "grpo_hack_rate" (GRPO's ID hack rate),
    "balanced_acc_group", "acc_group"}`` (the method − GRPO differences on ``split``), means over the world's warm
    starts and seeds. Comparisons where the method or GRPO did not run are skipped."""
    points = []
    for cell in dial_cells(runs):
        kind, regime = split_cell(cell)
        mine = [r for r in runs if r["cell"] == cell]
        grpo, other = [r for r in mine if r["method"] == "grpo"], [r for r in mine if r["method"] == method]
        if not grpo or not other:
            continue
        diffs = {m: world_mean_differences(other, grpo, m, split) for m in ("balanced_acc_group", "acc_group")}
        for world in sorted(diffs["balanced_acc_group"]):
            hack = [r["metrics"]["test_id"]["hack_rate"] for r in grpo if world_key(r) == world]
            points.append(
                {
                    "kind": kind,
                    "regime": regime,
                    "world": world,
                    "grpo_hack_rate": statistics.fmean(hack),
                    **{m: d[world] for m, d in diffs.items()},
                }
            )
    return points


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of ``ys`` on ``xs``; None when the ``xs`` do not vary (fewer than two distinct values).

    >>> slope([0.0, 0.5, 1.0], [0.1, 0.2, 0.5])
    0.4
    """
    if len(set(xs)) < 2:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs), 12)


def tracking(points: list[dict], metric: str = "balanced_acc_group") -> dict:
    """Rule (b) per kind: ``{kind: {"slopes": {world: slope}, "mean", "ci", "verdict"}}``; ``verdict`` is ``yes``
    (the t-interval over the worlds' slopes lies above 0), ``no``, or ``undefined`` (fewer than two worlds with a
    slope: their GRPO hack rate did not vary over the levels)."""
    out = {}
    for kind in sorted({p["kind"] for p in points}):
        by_world: dict[str, list[dict]] = {}
        for p in points:
            if p["kind"] == kind:
                by_world.setdefault(p["world"], []).append(p)
        slopes = {w: slope([p["grpo_hack_rate"] for p in ps], [p[metric] for p in ps]) for w, ps in by_world.items()}
        defined = [s for s in slopes.values() if s is not None]
        ci = t_interval(defined)
        verdict = "undefined" if ci is None else "yes" if ci[0] > 0 else "no"
        out[kind] = {
            "slopes": slopes,
            "mean": statistics.fmean(defined) if defined else None,
            "ci": ci,
            "verdict": verdict,
        }
    return out


def beyond_unhacked(
    runs: list[dict],
    method: str = "grpo+air",
    split: str = "test_ood",
    base: str = BASE_REGIME,
    metric: str = "balanced_acc_group",
) -> dict:
    """Rule (c): ``{cell: {"diff", "ci", "interval", "n_units", "verdict"}}``, the method at each dial level minus
    plain GRPO at ``base`` in the same kind, paired by warm start and seed; the interval is the verdict's
    (``intervals.chosen_interval`` over ``analysis.top_level`` units); ``verdict`` ``yes`` iff it lies above 0."""
    out = {}
    for cell in dial_cells(runs):
        kind, _ = split_cell(cell)
        other = [r for r in runs if r["cell"] == cell and r["method"] == method]
        grpo = [r for r in runs if r["cell"] == f"{kind}/{base}" and r["method"] == "grpo"]
        if not other or not grpo:
            continue
        nested = nested_differences(other, grpo, metric, split, top_level(grpo))
        name = chosen_interval(len(nested))
        ci = nested_intervals(nested, n_boot=2000)[name]
        out[cell] = {
            "diff": estimate(nested),
            "ci": ci,
            "interval": name,
            "n_units": len(nested),
            "verdict": "undefined" if ci is None else "yes" if ci[0] > 0 else "no",
        }
    return out


DIAL_METHODS = ("grpo+air", "grpo+vrex")
"""The methods a dial grid sets against plain GRPO."""


def _pct(ci: list[float] | None) -> str:
    return "—" if ci is None else f"[{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"


def dial_tables(runs: list[dict]) -> tuple[str, dict]:
    """The dial's Markdown section (per method: the points pooled per level, rule (b) per kind, rule (c) per level)
    and its JSON (``{method: {"points", "tracking", "beyond_unhacked"}}``); empty when the grid has no dial."""
    from air_align.training.methods import method_label  # the method table (pure Python)

    found: dict = {}
    parts = []
    for method in DIAL_METHODS:
        points = dial_points(runs, method)
        if not points:
            continue
        track, beyond = tracking(points), beyond_unhacked(runs, method)
        found[method] = {"points": points, "tracking": track, "beyond_unhacked": beyond}
        lines = [
            "| comparison | GRPO ID hack rate | Δ balanced OOD Acc_group | Δ OOD Acc_group | "
            f"{method_label(method)} − GRPO at {BASE_REGIME} [95% CI] | exceeds GRPO's unhacked level |",
            "|---|---|---|---|---|---|",
        ]
        for cell in dial_cells(runs):
            kind, regime = split_cell(cell)
            mine = [p for p in points if (p["kind"], p["regime"]) == (kind, regime)]
            if not mine:
                continue
            b = beyond.get(cell, {"diff": float("nan"), "ci": None, "verdict": "—"})
            mean = {
                k: 100 * statistics.fmean(p[k] for p in mine)
                for k in ("grpo_hack_rate", "balanced_acc_group", "acc_group")
            }
            lines.append(
                f"| {cell} | {mean['grpo_hack_rate']:.1f} | {mean['balanced_acc_group']:+.1f} | "
                f"{mean['acc_group']:+.1f} | {100 * b['diff']:+.1f} {_pct(b['ci'])} | "
                f"{b['verdict']} |"
            )
        lines += [
            "",
            "| kind | slopes per world (points of Δ per unit of hack rate) | mean [95% CI over worlds] | "
            "gain tracks the hack rate |",
            "|---|---|---|---|",
        ]
        for kind, t in track.items():
            slopes = ", ".join("—" if s is None else f"{s:+.2f}" for s in t["slopes"].values())
            mean = "—" if t["mean"] is None else f"{t['mean']:+.2f}"
            ci = "—" if t["ci"] is None else f"[{t['ci'][0]:+.2f}, {t['ci'][1]:+.2f}]"
            lines.append(f"| {kind} | {slopes} | {mean} {ci} | {t['verdict']} |")
        parts += [f"### {method_label(method)} − GRPO along the dial", "\n".join(lines)]
    return "\n\n".join(parts), found


def plot_dial(found: dict, path) -> None:
    """Method − GRPO (balanced OOD Acc_group) against plain GRPO's ID hack rate, one point per world and level, a
    panel per kind and method."""
    from air_align.evaluation.plots import pyplot, save_figure
    from air_align.training.methods import method_label

    panels = [(m, k) for m, f in found.items() for k in sorted({p["kind"] for p in f["points"]})]
    if not panels:
        return
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.4), squeeze=False)
    for ax, (method, kind) in zip(axes[0], panels, strict=True):
        points = [p for p in found[method]["points"] if p["kind"] == kind]
        for regime in sorted({p["regime"] for p in points}):
            mine = [p for p in points if p["regime"] == regime]
            ax.scatter(
                [100 * p["grpo_hack_rate"] for p in mine],
                [100 * p["balanced_acc_group"] for p in mine],
                label=regime,
                s=18,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("plain GRPO's ID hack rate (%)", fontsize=8)
        ax.set_ylabel("Δ balanced OOD Acc_group (points)", fontsize=8)
        ax.set_title(f"{kind}: {method_label(method)} − GRPO", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
