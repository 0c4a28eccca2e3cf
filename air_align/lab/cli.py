"""``air-align reproduce`` and ``air-align demo``: the lab grid (argparse only; heavy imports inside handlers)."""

from __future__ import annotations

PRESET_NAMES = ("smoke", "demo", "quick", "full", "baseline")


def add_parser(subparsers) -> None:
    rep = subparsers.add_parser(
        "reproduce",
        help="the paper's comparison in the lab: GRPO, GRPO+V-REx, GRPO+AIR, GSPO+AIR per domain, seeds, ID/OOD",
        description="Per domain, GRPO / GRPO+V-REx / GRPO+AIR / GSPO+AIR from one SFT warm start with identical "
        "hyperparameters except the regulariser; λ swept on ID validation data; oracle Acc / Acc_group on held-out "
        "intents under ID and OOD families; plus the stress test. Writes DIR/results.json, DIR/table.md and a plot.",
    )
    rep.add_argument("--preset", choices=PRESET_NAMES, default="quick", help="budget (default: quick)")
    rep.add_argument("--out", required=True, help="output directory")
    rep.add_argument("--domains", default=None, help="comma-separated subset of safety,morality,math")
    rep.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the preset)")
    rep.add_argument("--max-steps", type=int, default=None, help="optimiser steps per run (overrides the preset)")
    rep.add_argument("--world-seed", type=int, default=0, help="seed of the synthetic world (split, option orders)")
    rep.set_defaults(handler=_handle_reproduce)

    demo = subparsers.add_parser(
        "demo", help="one-domain (safety) quick lab run: GRPO vs V-REx vs AIR, with the table at the end"
    )
    demo.add_argument("--out", default="air-align-demo", help="output directory (default: ./air-align-demo)")
    demo.set_defaults(handler=_handle_demo)


def _preset(args):
    import dataclasses

    from air_align.lab.reproduce import PRESETS
    from air_align.lab.world import DOMAINS

    preset = PRESETS[args.preset]
    changes = {}
    if args.domains:
        domains = tuple(d.strip() for d in args.domains.split(",") if d.strip())
        unknown = [d for d in domains if d not in DOMAINS]
        if unknown:
            raise SystemExit(f"--domains: unknown {unknown}; choose from {', '.join(DOMAINS)}")
        changes["domains"] = domains
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit("--seeds must be at least 1")
        changes["seeds"] = tuple(range(args.seeds))
    if args.max_steps is not None:
        changes["max_steps"] = changes["sweep_steps"] = args.max_steps
    return dataclasses.replace(preset, **changes)


def _handle_reproduce(args) -> int:
    from pathlib import Path

    from air_align.lab.reproduce import reproduce

    results = reproduce(_preset(args), args.out, world_seed=args.world_seed)
    print(results["table"])
    print(f"\nresults: {Path(args.out) / 'results.json'} ({results['seconds']:.0f} s)")
    return 0


def _handle_demo(args) -> int:
    from pathlib import Path

    from air_align.lab.reproduce import PRESETS, reproduce

    print("air-align demo: the lab's safety world, GRPO vs GRPO+V-REx vs GRPO+AIR (oracle-judged)")
    results = reproduce(PRESETS["demo"], args.out)
    print(results["table"])
    print(f"\nreport: {Path(args.out) / 'table.md'}  results: {Path(args.out) / 'results.json'}")
    print(
        "one seed, 40 steps, λ fixed (not swept): a look at the pipeline, not a result. The measured comparison "
        "(5 seeds, λ swept on validation data) is `air-align reproduce --preset full`; see docs/results.md."
    )
    return 0
