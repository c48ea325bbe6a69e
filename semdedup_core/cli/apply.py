"""``apply``: the kept part of a run's own input, written in its own format (a deduplicated dataset)."""

from __future__ import annotations

import argparse
from typing import Any

from .options import LABELS_HELP, add_eps_arguments, add_rule_argument, check_labels_rule, eps_from_args


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "apply",
        help="write the kept part of the run's input in its own format (the deduplicated dataset)",
        description="Write the items of the run's own input kept at eps, in the input's format: a table's kept "
        "rows unchanged (.jsonl/.csv/.parquet: OUT is a file of the same format), webdataset shards holding the "
        "kept samples with every member byte-identical (plus removed.txt), a Hugging Face save_to_disk folder, "
        "an image folder's kept files at their relative paths, or the kept rows of embedding shards with their "
        "metadata. Input rows that are no items of the run (errors.parquet) are left out too. Streams, writes "
        "into a scratch folder beside OUT and renames it into place at the end: a killed apply rerun with the "
        "same arguments resumes. Refused: an OUT that exists, a run on an .npy matrix (use export), an input "
        "that changed since the run.",
    )
    p.add_argument("results", metavar="DIR", help="a finished results folder of a run on raw data (--input)")
    add_eps_arguments(p)
    add_rule_argument(p)
    p.add_argument("--labels", metavar="STORE", help=LABELS_HELP + " (with --rule audited)")
    p.add_argument(
        "--drop-leaked",
        action="store_true",
        help="also leave out the items leaked at eps (runs with --reference: ref_sim > 1 - eps)",
    )
    p.add_argument("--out", required=True, help="the file (tables, --mode list) or folder to write; must not exist")
    p.add_argument(
        "--mode",
        choices=("link", "copy", "list"),
        help="image folders: hard links (default; no extra space, the files are the input's own), copies, or a "
        "list of the kept relative paths (OUT is then a text file)",
    )
    p.add_argument("--shard-size", type=int, metavar="N", help="webdataset: samples per output shard (default 10000)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_apply)


def cmd_apply(args: argparse.Namespace) -> int:
    from ..explore.export import verdicts
    from ..ingest.apply import apply_run
    from ..results.results import Results
    from ..run.progress import TqdmProgress

    check_labels_rule(args)
    results = Results.load(args.results, strings=True)
    eps = eps_from_args(args, results)
    bar = TqdmProgress(disable=args.quiet)
    try:
        s = apply_run(
            results,
            eps,
            args.out,
            rule=args.rule,
            labels=verdicts(results, args.rule, args.labels),
            drop_leaked=args.drop_leaked,
            mode=args.mode,
            shard_size=args.shard_size,
            progress=bar,
        )
    finally:
        bar.close()
    leaked = f" ({s.leaked_dropped:,} of them leaked only)" if args.drop_leaked else ""
    print(
        f"kept {s.kept:,} of the run's {s.items:,} items at eps {eps:.6g} (rule {args.rule}); removed "
        f"{s.removed:,}{leaked}; {s.not_in_run:,} input {_units(s.kind)} not in the run (errors.parquet) left out"
    )
    again = " (finished before)" if s.resumed < 0 else (f", resumed after {s.resumed} pieces" if s.resumed else "")
    print(f"{s.kind} -> {s.out} in {s.seconds:.1f}s{again}")
    return 0


def _units(kind: str) -> str:
    return {"webdataset": "samples", "folder": "files"}.get(kind, "rows")
