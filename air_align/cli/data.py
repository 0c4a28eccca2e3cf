"""``air-align data build | validate | inspect``: argparse only here; the work is imported inside the handlers."""

from __future__ import annotations

import argparse
import sys

from air_align.cli.options import number, whole


def add_parser(subparsers) -> None:
    """Add the ``data`` subcommand and its ``build``, ``validate`` and ``inspect`` actions."""
    data = subparsers.add_parser("data", help="build, validate and inspect meta-group datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(handler=lambda args: (data.print_help(), 2)[1])

    b = sub.add_parser("build", help="render real intents into meta-groups with an ID/OOD split by family")
    b.add_argument("--domain", required=True, help="safety | morality | math (or any name with --intents)")
    b.add_argument("--out", required=True, help="output JSONL file (written atomically)")
    b.add_argument(
        "--n-intents",
        type=whole(1, "intents to render"),
        default=32,
        help="intents, i.e. meta-groups before the test split",
    )
    b.add_argument(
        "--anchors",
        type=whole(1, "a meta-group needs an anchor"),
        default=2,
        help="anchor prompts per meta-group (mc, tf, mc-2, ...)",
    )
    b.add_argument(
        "--opens", type=whole(1, "a meta-group needs an open variant"), default=4, help="open variants per meta-group"
    )
    b.add_argument("--ood-families", default="2", help="number of families held out (chosen by seed) or comma list")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--val-fraction", type=number(0, 1, high_open=True), default=0.125, help="share of intents for val")
    b.add_argument(
        "--test-fraction",
        type=number(0, 1, high_open=True),
        default=0.25,
        help="share of intents held out for test_id/test_ood",
    )
    b.add_argument("--benign-fraction", type=number(0, 1), default=0.25, help="safety: share of benign intents")
    b.add_argument(
        "--max-template-chars",
        type=whole(0, "0 keeps all"),
        default=2000,
        help="drop longer jailbreak templates (0: keep all)",
    )
    b.add_argument(
        "--template-source",
        choices=["pyrit", "builtin", "all", "none"],
        default=None,
        help="open contexts: default all (safety), builtin (morality, math)",
    )
    b.add_argument(
        "--templates", default=None, help="extra templates: JSONL/JSON/YAML list of {name, family, template}"
    )
    b.add_argument("--intents", default=None, help="your intents: csv/jsonl/json/parquet file or Hugging Face id")
    b.add_argument("--column-map", default=None, help="rename columns for --intents, e.g. goal=text,category=label")
    b.set_defaults(handler=_build)

    v = sub.add_parser("validate", help="check a meta-group file; print a summary; exit 1 on any problem")
    v.add_argument("file")
    v.add_argument("--allow-unequal", action="store_true", help="accept meta-groups of different sizes (eval only)")
    v.add_argument(
        "--max-prompt-chars",
        type=whole(1),
        default=None,
        help="longest prompt accepted, in characters (default 32000)",
    )
    v.set_defaults(handler=_validate)

    i = sub.add_parser("inspect", help="show one meta-group rendered, marked by role and family")
    i.add_argument("file")
    i.add_argument("--group", default=None, help="group_id to show (default: the --index-th group)")
    i.add_argument("--index", type=whole(0), default=0, help="which meta-group, in file order")
    i.add_argument("--split", default=None, help="only meta-groups of this split")
    i.add_argument(
        "--max-chars",
        type=whole(0, "0 shows all"),
        default=600,
        help="truncate each prompt to this many characters (0: all)",
    )
    i.set_defaults(handler=_inspect)


def _build(args: argparse.Namespace) -> int:
    from air_align.data.build import build_meta_groups
    from air_align.data.validate import check_rows, format_summary, summarize
    from air_align.files import refuse_overwriting_inputs, write_jsonl

    refuse_overwriting_inputs({"--intents": args.intents, "--templates": args.templates}, [args.out])
    intents = templates = None
    if args.intents:
        from air_align.data.external import load_intents, parse_column_map

        intents = load_intents(args.intents, parse_column_map(args.column_map))
    if args.templates:
        from air_align.data.sources import load_templates

        templates = load_templates(args.templates)
    rows = build_meta_groups(
        args.domain,
        n_intents=args.n_intents,
        anchors=args.anchors,
        opens=args.opens,
        ood_families=args.ood_families,
        seed=args.seed,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        benign_fraction=args.benign_fraction,
        max_template_chars=args.max_template_chars or None,
        template_source=args.template_source,
        intents=intents,
        extra_templates=templates,
        progress=sys.stderr.isatty(),
    )
    check_rows(rows, require_equal_group_size=True)
    write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} rows to {args.out}")
    print(format_summary(summarize(rows)))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from air_align.data.validate import MAX_PROMPT_CHARS, format_summary, summarize, validate_rows
    from air_align.files import read_jsonl

    # a missing file or one that is not JSONL is bad input (raises: `error: …`, exit 2); problems in its rows are
    # what the command reports (exit 1)
    rows, lines = read_jsonl(args.file, with_lines=True)
    print(format_summary(summarize(rows)))
    limit = MAX_PROMPT_CHARS if args.max_prompt_chars is None else args.max_prompt_chars
    problems = validate_rows(
        rows, require_equal_group_size=not args.allow_unequal, lines=lines, max_prompt_chars=limit
    )
    if problems:
        print(f"\n{len(problems)} problem(s) in {args.file}:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print(f"\n{args.file}: OK")
    return 0


def format_group(rows: list[dict], max_chars: int = 600) -> str:
    """One meta-group's rows as text: a header per row with role, family, context, split and answer, then the prompt.

    >>> print(format_group([{"id": "g/train/tf", "group_id": "g", "role": "anchor", "family": "anchor",
    ...     "context": "tf", "split": "train", "verifier": "true_false", "answer": "true", "label": 1,
    ...     "intent": "x", "prompt": [{"role": "user", "content": "True or false: x"}]}]))
    === meta-group g  split train  label 1  (1 anchor, 0 open)
    intent: x
    --- [ANCHOR] family=anchor  context=tf  verifier=true_false  answer=true  id=g/train/tf
    [user] True or false: x
    """
    first = rows[0]
    n_anchor = sum(r["role"] == "anchor" for r in rows)
    out = [
        f"=== meta-group {first['group_id']}  split {first['split']}  label {first.get('label')}  "
        f"({n_anchor} anchor, {len(rows) - n_anchor} open)",
        f"intent: {first.get('intent')}",
    ]
    for r in rows:
        out.append(
            f"--- [{r['role'].upper()}] family={r['family']}  context={r['context']}  verifier={r['verifier']}  "
            f"answer={r.get('answer')}  id={r['id']}"
        )
        for m in r["prompt"] if isinstance(r["prompt"], list) else [{"role": "user", "content": r["prompt"]}]:
            text = str(m["content"])
            if max_chars and len(text) > max_chars:
                text = text[:max_chars] + f" [... {len(text) - max_chars} more characters]"
            out.append(f"[{m['role']}] {text}")
    return "\n".join(out)


def _inspect(args: argparse.Namespace) -> int:
    from air_align.files import read_jsonl

    rows = read_jsonl(args.file)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if args.split is None or r.get("split") == args.split:
            groups.setdefault((r.get("group_id"), r.get("split")), []).append(r)
    keys = [k for k in groups if args.group is None or k[0] == args.group]
    if not keys:
        raise ValueError(
            f"no meta-group matches group={args.group!r} split={args.split!r} in {args.file}; "
            "list them with `air-align data validate FILE`"
        )
    if args.group is None:
        if not 0 <= args.index < len(keys):
            raise ValueError(f"--index {args.index} out of range; {args.file} has {len(keys)} meta-groups")
        keys = [keys[args.index]]
    for k in keys:
        print(format_group(groups[k], args.max_chars))
    return 0
