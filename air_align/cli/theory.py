"""``air-align theory``: a researcher's first proof that the implementation matches the paper.

Runs the exact checks of :mod:`air_align.theory` (float64, tabular softmax policy) and prints them as a table.
Exits 1 if any check fails.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

IDENTITY_TOL = 1e-12


@dataclass
class Check:
    name: str
    measured: str
    requirement: str
    passed: bool


def run_checks(seeds: tuple[int, ...] = (0, 1, 2)) -> list[Check]:
    from air_align import theory

    checks = []
    for mode, label, eq in (("air", "AIR", "−½∇Ω_AIR"), ("vrex", "V-REx", "−½∇Σ(R_c−R̄)²")):
        errs = [theory.identity_error(theory.random_problem(seed=s), mode) for s in seeds]
        checks.append(
            Check(
                f"{label} identity: ∇E[J_aux] = {eq}",
                f"max rel. err {max(errs):.2e}",
                f"≤ {IDENTITY_TOL:.0e} ({len(seeds)} seeds)",
                max(errs) <= IDENTITY_TOL,
            )
        )
    g_air = max(theory.anchor_own_gradient(theory.random_problem(seed=s), "air") for s in seeds)
    g_vrex = min(theory.anchor_own_gradient(theory.random_problem(seed=s), "vrex") for s in seeds)
    checks.append(Check("AIR stop-gradient: ∂Ω_AIR/∂θ_anchor", f"max |grad| {g_air:.1e}", "= 0 exactly", g_air == 0.0))
    checks.append(Check("V-REx touches anchors: ∂Ω_VREx/∂θ_anchor", f"min max|grad| {g_vrex:.3f}", "> 0", g_vrex > 0))

    sweep = theory.downgrade_sweep()
    checks.append(
        Check(
            "A.3 V-REx step on Ω raises R_a (R_o > R_a)",
            f"raised in {sweep['vrex_raised_share']:.0%} of 100",
            "100%",
            sweep["vrex_raised_share"] == 1.0,
        )
    )
    checks.append(
        Check(
            "A.3 AIR step on Ω leaves R_a unchanged",
            f"max |ΔR_a| {sweep['air_max_abs_change']:.1e}",
            "= 0 exactly",
            sweep["air_max_abs_change"] == 0.0,
        )
    )
    base = theory.downgrade_step(0.0)
    thr = base.threshold
    for factor in (0.5, 2.0, 10.0):
        res = theory.downgrade_step(factor * thr)
        vrex_up, air_up = res.vrex_anchor_risk_change > 0, res.air_anchor_risk_change > 0
        expect_vrex_up = factor > 1.0
        checks.append(
            Check(
                f"A.3 L=R_a+R_o+λΩ, λ={factor}·λ* (λ*=1/(R_o−R_a)={thr:.3f})",
                f"ΔR_a V-REx {res.vrex_anchor_risk_change:+.2e}, AIR {res.air_anchor_risk_change:+.2e}",
                f"V-REx {'raises' if expect_vrex_up else 'lowers'} R_a, AIR lowers",
                vrex_up == expect_vrex_up and not air_up,
            )
        )
    errs = theory.monte_carlo_errors()
    decreasing = all(b < a for (_, a), (_, b) in zip(errs, errs[1:]))
    checks.append(
        Check(
            "Monte-Carlo: sampled aux_loss gradient → exact (AIR)",
            ", ".join(f"K={k}: {e:.3f}" for k, e in errs),
            "decreasing, last < 0.05",
            decreasing and errs[-1][1] < 0.05,
        )
    )
    return checks


def format_table(checks: list[Check]) -> str:
    rows = [("check", "measured", "requirement", "result")]
    rows += [(c.name, c.measured, c.requirement, "PASS" if c.passed else "FAIL") for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _handle(args: argparse.Namespace) -> int:
    checks = run_checks()
    print("AIR / V-REx theory checks (float64, tabular softmax policy; see docs/paper-map.md)\n")
    print(format_table(checks))
    failed = [c for c in checks if not c.passed]
    print(f"\n{len(checks) - len(failed)} / {len(checks)} checks passed")
    return 1 if failed else 0


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("theory", help="check that the maths matches the paper (gradient identities, A.3)")
    p.set_defaults(handler=_handle)
