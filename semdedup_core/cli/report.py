"""``report``: one self-contained HTML file of a run at one eps."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_eps_arguments, add_force_argument, eps_from_args


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report",
        help="write a one-file HTML report of a run at one eps (for people who do not run the explorer)",
        description="Write one self-contained HTML file (no scripts, nothing fetched: images embedded as "
        "thumbnails, the chart as inline SVG) with the dataset size, the share removed at eps, the kept-vs-eps "
        "curve, example and borderline pairs, the biggest groups of duplicates and the run's parameters. "
        "The same folder and eps give the same file.",
    )
    report.add_argument("results", metavar="DIR", help="a finished results folder")
    add_eps_arguments(report)
    report.add_argument(
        "--out",
        required=True,
        metavar="REPORT.html",
        help="the HTML file to write (atomically; an existing file is replaced only when it is a report this "
        "command wrote)",
    )
    report.add_argument("--examples", type=int, default=6, metavar="N", help="example pairs shown (default 6)")
    report.add_argument(
        "--borderline", type=int, default=6, metavar="N", help="pairs closest to the threshold shown (default 6)"
    )
    report.add_argument(
        "--groups", type=int, default=4, metavar="N", help="largest groups of duplicates shown (default 4)"
    )
    report.add_argument(
        "--labels",
        metavar="STORE",
        help="verdict store for the audited precision shown when reviewers judged the run's review sample "
        "(default: DIR/labels.parquet)",
    )
    add_force_argument(report)
    report.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from ..audit.precision import summary_at
    from ..explore.report import write_report
    from ..results.outputs import check_out
    from ..results.results import Results

    out = check_out(args.out, force=args.force, own=_not_a_report)
    results = Results.load(args.results, strings=True)
    eps = eps_from_args(args, results)
    audit = summary_at(results, eps, args.labels)  # the audited precision, when reviewers judged a sample
    path = write_report(
        results, eps, out, examples=args.examples, borderline=args.borderline, groups=args.groups, audit=audit
    )
    n_rem = int(results.n_removed(eps))
    print(
        f"report: {path} ({path.stat().st_size / 1024:,.0f} KB): {results.n_items:,} items, "
        f"{n_rem:,} removed ({n_rem / results.n_items:.1%}) at eps {eps:.6g}"
    )
    return 0


def _not_a_report(path: Any) -> str | None:
    """Why the existing file ``path`` is not a report this command wrote (its generator mark)."""
    from ..explore.report import GENERATOR
    from ..media import safe

    try:
        with safe.open_regular(path) as f:
            head = f.read(4096)
    except (OSError, ValueError):
        head = b""
    return None if GENERATOR.encode() in head else "it is not a report this command wrote"
