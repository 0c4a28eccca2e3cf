"""``air-align reproduce``, ``air-align demo`` and ``air-align lab world``: the lab grid and its worlds (argparse
only; heavy imports inside handlers).

``--threads`` sets the torch threads of the main process (warm-start training and scoring there); every run of the
grid trains in a worker process with one thread (``runner.py``)."""

from __future__ import annotations

from air_align.cli.options import number
from air_align.threads import add_threads_argument, set_threads

PRESET_NAMES = (
    "smoke",
    "demo",
    "regimes",
    "quick",
    "full",
    "control",
    "units-smoke",
    "replicate",
    "v3-e1",
    "v3-e2",
    "v3-e3",
    "v3-e4",
    "v3-e3-wide",
    "v3-main",
)
FORWARD_NAMES = ("preset", "fast", "trl")
"""``presets.FORWARDS``, kept here so that ``--help`` imports no torch (a test checks that they agree)."""


def add_parser(subparsers) -> None:
    rep = subparsers.add_parser(
        "reproduce",
        help="the paper's comparison in the lab: GRPO, GRPO+V-REx, GRPO+AIR, GSPO+AIR (+ LOO) per world and regime",
        description="Per world and judge regime, every method from one SFT warm start with identical hyperparameters "
        "except the regulariser; λ swept on ID validation data; oracle Acc / Acc_group (per label and balanced) on "
        "held-out intents under ID and OOD families; paired bootstrap CIs of AIR − GRPO. Runs go to worker processes "
        "and a rerun into the same DIR resumes. Writes DIR/results.json, DIR/table.md and plots.",
    )
    rep.add_argument("--preset", choices=PRESET_NAMES, default="quick", help="budget (default: quick)")
    rep.add_argument("--out", required=True, help="output directory (rerun into it to resume)")
    rep.add_argument(
        "--world",
        action="append",
        metavar="NAME_OR_FILE",
        help="run the preset's regimes on this world instead of the preset's worlds (a world spec YAML file, or a "
        "built-in name); repeat for several (docs/lab.md, 'Worlds as data')",
    )
    rep.add_argument("--seeds", type=int, default=None, help="number of seeds (overrides the preset)")
    rep.add_argument(
        "--warm-seeds",
        type=int,
        default=None,
        metavar="N",
        help="warm starts per world: seeds 0..N-1 (overrides the preset)",
    )
    rep.add_argument("--max-steps", type=int, default=None, help="optimiser steps per run (overrides the preset)")
    rep.add_argument(
        "--forward",
        choices=FORWARD_NAMES,
        default="preset",
        help="the log-prob forwards and generation: 'fast' runs each prompt once and drops most padding (the lab's "
        "default: about twice as fast, within seed noise of TRL's), 'trl' runs TRL's own (what the presets with "
        "committed results use, so that a rerun rebuilds their tables); default: the preset's (docs/performance.md)",
    )
    rep.add_argument("--workers", type=int, default=None, help="worker processes, one torch thread each")
    rep.add_argument("--world-seed", type=int, default=0, help="seed of the world's split and option orders")
    rep.add_argument(
        "--width",
        type=int,
        default=None,
        metavar="N",
        help="hidden size of the warm start and so of the policy (default: the preset's, 96; a multiple "
        "of its 4 heads)",
    )
    add_threads_argument(rep)
    rep.set_defaults(handler=_handle_reproduce)

    demo = subparsers.add_parser(
        "demo", help="a quick look at the lab (safety, hack regime): GRPO vs GRPO+V-REx vs GRPO+AIR, one seed"
    )
    demo.add_argument("--out", default="air-align-demo", help="output directory (default: ./air-align-demo)")
    demo.add_argument("--workers", type=int, default=None, help="worker processes, one torch thread each")
    add_threads_argument(demo)
    demo.set_defaults(handler=_handle_demo)

    lab = subparsers.add_parser(
        "lab", help="lab tools: generate a world, rebuild a grid's tables, check its intervals' coverage"
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="COMMAND")
    lab.set_defaults(handler=lambda args: _lab_usage(lab))
    analyse = lab_sub.add_parser(
        "analyse",
        help="rebuild a grid's table.md and intervals from its results.json and outcomes.json.gz",
        description="Recompute every run's metrics from the grid's per-prompt outcomes (checked against "
        "results.json), then the summary, the paired AIR − GRPO intervals and the verdicts per unit and overall; "
        "writes results.json, table.md and the plots (docs/lab.md §6).",
    )
    analyse.add_argument("dir", metavar="DIR", help="a grid's directory (the --out of `air-align reproduce`)")
    analyse.add_argument("--out", default=None, help="write there instead of into DIR")
    analyse.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 unless DIR/table.md rebuilds exactly"
    )
    analyse.set_defaults(handler=_handle_analyse)
    coverage = lab_sub.add_parser(
        "coverage",
        help="how often each candidate 95%% interval of AIR − GRPO contains 0 under null comparisons",
        description="Simulated null comparisons (a hierarchical model with zero effect: units, seeds, meta-groups) "
        "and null comparisons from a committed grid's GRPO runs; prints the coverage of the two-level bootstrap, "
        "the seed-level t, the unit-level t and the hierarchical bootstrap (docs/results.md §6).",
    )
    coverage.add_argument("--sims", type=int, default=1000, help="null comparisons per scenario (default: 1000)")
    coverage.add_argument("--seed", type=int, default=0, help="seed of the simulation (default: 0)")
    coverage.add_argument(
        "--grid", default=None, help="a grid's results.json (or .json.gz) for the null from its GRPO runs"
    )
    coverage.add_argument("--json", default=None, metavar="FILE", help="also write the figures to FILE")
    coverage.set_defaults(handler=_handle_coverage)
    world = lab_sub.add_parser(
        "world",
        help="write a generated world spec (safety, morality or math) reproducible from its seed",
        description="Draw a lab world from the generator's distribution (docs/lab.md, 'Generated worlds'): "
        "vocabulary from the word bank, phrasings, wrapper families with their strengths and ID/OOD assignment, "
        "susceptibilities, judge noise. The same kind and seed write the same bytes; run it with "
        "`air-align reproduce --world FILE`.",
    )
    world.add_argument("--kind", required=True, choices=("safety", "morality", "math"), help="the world's kind")
    world.add_argument("--seed", required=True, type=int, help="generator seed (a whole number >= 0)")
    world.add_argument(
        "--shared-cue",
        action="store_true",
        help="every family of a sway direction that sways carries one cue phrase of that direction, ID "
        "and OOD alike (the world without the flag is its control)",
    )
    world.add_argument(
        "--anchor-accuracy",
        type=number(0.5, 1, high_open=True),
        default=None,
        metavar="LOW",
        help="the warm start's anchors are right on a share of draws that depends on the intent's "
        "feature word, spread evenly from LOW (in [0.5, 1), whole percent) to 1",
    )
    world.add_argument("--out", required=True, metavar="FILE", help="the YAML file to write")
    world.add_argument("--overwrite", action="store_true", help="replace FILE if it exists with other content")
    world.set_defaults(handler=_handle_world)


def _preset(args):
    import dataclasses

    from air_align.lab.presets import PRESETS, Cell, regimes_for, with_forward
    from air_align.lab.spec import load_world

    preset = PRESETS[args.preset]
    changes: dict = {}
    if args.world:
        cells = []
        for name in args.world:
            spec = load_world(name)  # validated here: a bad file stops before any training
            cells += [Cell(name, regime) for regime in regimes_for(preset, spec.kind)]
        changes["cells"] = tuple(cells)
        changes["generated"] = ()
    if args.seeds is not None:
        if args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds}: use at least 1 seed")
        changes["seeds"] = tuple(range(args.seeds))
    if args.warm_seeds is not None:
        if args.warm_seeds < 1:
            raise ValueError(f"--warm-seeds {args.warm_seeds}: use at least 1 warm start")
        changes["warm_seeds"] = tuple(range(args.warm_seeds))
    training = with_forward(preset.training, getattr(args, "forward", "preset"))
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise ValueError(f"--max-steps {args.max_steps}: use at least 1 optimiser step")
        training = dataclasses.replace(training, max_steps=args.max_steps)
        changes["sweep_steps"] = args.max_steps
    if training != preset.training:
        changes["training"] = training
    width = getattr(args, "width", None)  # (a caller's namespace may predate the option)
    if width is not None:
        heads = preset.warm.get("num_heads", 4)
        if width < heads or width % heads:
            raise ValueError(f"--width {width}: use a multiple of the model's {heads} attention heads (e.g. 384)")
        changes["warm"] = {**preset.warm, "hidden_size": width}
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: use at least 1 worker process")
        changes["workers"] = args.workers
    return dataclasses.replace(preset, **changes)


def _handle_reproduce(args) -> int:
    from pathlib import Path

    from air_align.lab.reproduce import reproduce

    preset = _preset(args)  # a bad world file, preset or count stops here, before anything trains
    set_threads(args.threads)
    results = reproduce(preset, args.out, world_seed=args.world_seed)
    print(results["table"])
    print(f"\nresults: {Path(args.out) / 'results.json'} ({results['seconds']:.0f} s)")
    return 0


def _handle_demo(args) -> int:
    import dataclasses
    from pathlib import Path

    from air_align.lab.presets import PRESETS
    from air_align.lab.reproduce import reproduce

    preset = PRESETS["demo"]
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers {args.workers}: use at least 1 worker process")
        preset = dataclasses.replace(preset, workers=args.workers)
    set_threads(args.threads)
    print(
        "air-align demo: the lab's safety world under the hack regime, GRPO vs GRPO+V-REx vs GRPO+AIR (oracle-judged)"
    )
    results = reproduce(preset, args.out)
    print(results["table"])
    print(f"\nreport: {Path(args.out) / 'table.md'}  results: {Path(args.out) / 'results.json'}")
    print(
        "one seed, λ fixed (not swept): a look at the pipeline, not a result. The measured comparison (5 seeds, λ "
        "swept on validation data, paired CIs) is `air-align reproduce --preset full`; see docs/results.md."
    )
    return 0


def _handle_analyse(args) -> int:
    import sys
    from pathlib import Path

    from air_align.lab.analyse import RESULTS_NAMES, analyse, check

    if args.check:
        diff = check(args.dir)
        if diff:
            print(f"{args.dir}/table.md does not rebuild exactly:", *diff[:20], sep="\n", file=sys.stderr)
            return 1
        print(f"{args.dir}/table.md rebuilds exactly from its results and outcomes")
        return 0
    if args.out is not None and Path(args.out).resolve() != Path(args.dir).resolve():
        # another folder: as for reproduce --out, only a new, empty or lab folder (its results.json is replaced)
        from air_align.files import refuse_overwriting_inputs
        from air_align.lab.reproduce import LAB_OUTPUTS, claim_lab_folder

        inputs = [("DIR", Path(args.dir) / name) for name in (*RESULTS_NAMES, "outcomes.json.gz")]
        refuse_overwriting_inputs(inputs, [Path(args.out) / name for name in LAB_OUTPUTS])
        claim_lab_folder(Path(args.out))
    results = analyse(args.dir, args.out)
    print(results["table"])
    return 0


def _handle_coverage(args) -> int:
    from air_align.files import write_json
    from air_align.lab.coverage import coverage_report, render

    if args.sims < 10:
        raise ValueError(f"--sims {args.sims}: use at least 10 null comparisons per scenario")
    report = coverage_report(sims=args.sims, seed=args.seed, grid=args.grid)
    print(render(report))
    if args.json:
        write_json(args.json, report)
    return 0


def _lab_usage(parser) -> int:
    """``air-align lab`` without a subcommand: its own help, exit 2 (as the bare ``air-align``)."""
    parser.print_help()
    return 2


def _handle_world(args) -> int:
    from pathlib import Path

    from air_align.lab.generate import world_yaml, write_world
    from air_align.lab.spec import load_world

    out = Path(args.out)
    options = {"shared_cue": args.shared_cue, "anchor_accuracy": args.anchor_accuracy}
    text = world_yaml(args.kind, args.seed, **options)  # a bad seed or option stops here, before anything is written
    if out.is_dir():
        raise ValueError(f"--out {out}: is a directory; give a file name, e.g. {out / f'{args.kind}.yaml'}")
    if out.exists() and not args.overwrite and out.read_text(encoding="utf-8", errors="replace") != text:
        raise ValueError(
            f"--out {out}: exists with other content; pass --overwrite to replace it, or choose another file"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    write_world(args.kind, args.seed, out, **options)
    spec = load_world(out)
    n_id = sum(not f.ood for f in spec.families)
    print(
        f"wrote {out}: world {spec.name} ({spec.kind}; {n_id} ID + {len(spec.families) - n_id} OOD families, "
        f"spec key {spec.key()})"
    )
    print(f"run it: air-align reproduce --preset quick --world {out} --out runs/{spec.name}")
    return 0
