"""``export``: the kept, removed or leaked items at one eps, written into ``DIR/exports/``."""

from __future__ import annotations

import argparse
from typing import Any

from .options import LABELS_HELP, add_eps_arguments, add_rule_argument, check_labels_rule, eps_from_args


def add_parser(sub: Any) -> None:
    export = sub.add_parser(
        "export",
        help="write the kept, removed or leaked items at one eps (ids, paths, scores) into DIR/exports/",
        description="Write the kept, removed or leaked items of a results folder at one eps as CSV, Parquet or "
        "TXT into DIR/exports/ (written atomically). Exports are lists: nothing is ever deleted.",
    )
    export.add_argument("results", metavar="DIR", help="a finished results folder")
    add_eps_arguments(export)
    export.add_argument(
        "--which",
        choices=("removed", "kept", "leaked"),
        default="removed",
        help="leaked (runs with --reference): items whose similarity to a reference item > 1 - eps, with its "
        "ref_id and ref_sim (default removed)",
    )
    export.add_argument("--format", choices=("csv", "parquet", "txt"), default="csv", help="default csv")
    export.add_argument("--column", default="id", help="the column a txt export lists, e.g. path (default id)")
    add_rule_argument(export)
    export.add_argument("--labels", metavar="STORE", help=LABELS_HELP)
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..explore.export import verdicts, write_export
    from ..results.results import Results

    check_labels_rule(args)
    results = Results.load(args.results, strings=True)
    eps = eps_from_args(args, results)
    labels = verdicts(results, args.rule, args.labels)
    path = write_export(results, eps, args.which, args.format, args.column, args.rule, labels)
    if args.which == "leaked":
        n = int(results.n_leaked(eps))
        print(f"leaked: {n:,} of {results.n_items:,} items at eps {eps:.6g} (ref_sim > {1 - eps:.6g}) -> {path}")
        return 0
    n_removed = int(results.n_removed(eps, args.rule, labels))
    n = n_removed if args.which == "removed" else results.n_items - n_removed
    print(f"{args.which}: {n:,} of {results.n_items:,} items at eps {eps:.6g} (rule {args.rule}) -> {path}")
    if args.rule == "audited":
        audited = results.audited(labels)
        print(
            f"audited: {audited.excluded:,} pairs judged not duplicates apply to this run; {audited.rescored:,} items "
            f"scored again without them ({results.n_removed(eps) - n_removed:,} fewer removals than the paper's rule)"
        )
    return 0
