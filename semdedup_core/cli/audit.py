"""``audit sample|import|report``: the review sample, verdicts from a file, precision per eps."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import SemDedupError
from .options import LABELS_HELP, _Parser, add_force_argument


def add_parser(sub: Any) -> None:
    audit = sub.add_parser(
        "audit",
        help="judge a sample of removed pairs and measure precision per eps, with an interval",
        description="The audit loop: draw a seeded sample of the pairs removed up to --eps-max (stratified by "
        "similarity band), judge them (a CSV here, or the app's Review page), and get the precision of what "
        "each eps removes with a 95% interval and the recommended eps: the largest one that reaches a target "
        "precision with 95% confidence, every smaller eps tested included.",
    )
    audit.set_defaults(func=cmd_audit)
    steps = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    _add_sample(steps)
    imp = steps.add_parser(
        "import",
        help="check a file of verdicts and add them to the labels store",
        description="Add the verdicts in LABELS.csv (columns id, dup_of, verdict = duplicate | not_duplicate | "
        "unsure; optional reviewer) to the labels store. Rows with an empty verdict are skipped. A file with an "
        "unknown verdict, a pair that is not an (item, dup_of) pair of this run, missing columns or rows that "
        "disagree on a pair is refused, naming the row, and nothing is stored.",
    )
    imp.add_argument("results", metavar="DIR", help="a finished results folder")
    imp.add_argument("labels_file", metavar="LABELS.csv", help="the verdicts (CSV or Parquet)")
    imp.add_argument("--labels", metavar="STORE", help=LABELS_HELP)
    imp.add_argument(
        "--reviewer",
        metavar="NAME",
        help="who judged (default: the file's reviewer column where it has one, else your login name)",
    )
    _add_report(steps)


def _add_sample(steps: Any) -> None:
    from ..audit.design import DEFAULT_BANDS, DEFAULT_BUDGET, DEFAULT_DOUBLE, DEFAULT_EPS_MAX, DEFAULT_TARGET

    sample = steps.add_parser(
        "sample",
        help="draw the review sample (or a sequential sample's next batch) and write the pairs to judge as a CSV",
        description="Draw a seeded review sample of N pairs (item, dup_of) from the items removed at --eps-max, "
        "stratified by similarity band, record its design in DIR/audit/sample.parquet, and write the pairs not "
        "judged yet (in a seeded random order) to QUEUE.csv: id, dup_of, max_sim, text/path columns where the "
        "run has them, and an empty verdict column to fill in. The same command gives the same sample; a "
        "larger N contains the smaller sample. With --sequential, N is a first draw and the sample grows by "
        "batches (--next) sent where they decide the recommended eps, until `audit report` says enough.",
    )
    sample.add_argument("results", metavar="DIR", help="a finished results folder")
    sample.add_argument(
        "--n", type=int, metavar="N", help="sample size (e.g. 400), or a sequential sample's first draw (e.g. 20)"
    )
    sample.add_argument(
        "--out",
        required=True,
        metavar="QUEUE.csv",
        help="the CSV of pairs to judge (written atomically; an existing file is replaced only when it is an "
        "earlier queue with no verdict filled in)",
    )
    sample.add_argument(
        "--eps-max",
        type=float,
        default=DEFAULT_EPS_MAX,
        metavar="E",
        help=f"the largest eps you consider: the sample covers every eps up to it (default {DEFAULT_EPS_MAX})",
    )
    sample.add_argument("--seed", type=int, default=0, metavar="S", help="sample seed (default 0)")
    sample.add_argument(
        "--bands", type=int, default=DEFAULT_BANDS, metavar="B", help=f"similarity bands (default {DEFAULT_BANDS})"
    )
    sample.add_argument("--labels", metavar="STORE", help=LABELS_HELP + "; its judged pairs are not asked again")
    add_force_argument(sample)
    sample.add_argument(
        "--double",
        type=float,
        default=DEFAULT_DOUBLE,
        metavar="SHARE",
        help=f"share of the pairs a second reviewer judges too, for their agreement (default {DEFAULT_DOUBLE})",
    )
    sample.add_argument(
        "--sequential",
        action="store_true",
        help="grow the sample batch by batch, each sent where it decides the recommended eps, and stop when "
        "`audit report` says enough (fewer verdicts for the same guarantee)",
    )
    sample.add_argument(
        "--budget",
        type=int,
        default=DEFAULT_BUDGET,
        metavar="M",
        help=f"the most pairs a sequential sample grows to (default {DEFAULT_BUDGET})",
    )
    sample.add_argument(
        "--target",
        type=float,
        default=DEFAULT_TARGET,
        metavar="P",
        help=f"the precision a sequential sample decides on (default {DEFAULT_TARGET})",
    )
    sample.add_argument(
        "--next",
        action="store_true",
        help="add the next batch to the recorded sequential sample (once its pairs are judged and the "
        "decision is not settled) instead of drawing a sample",
    )
    sample.add_argument(
        "--reviewer",
        metavar="NAME",
        help="write the pairs NAME is to judge: those nobody judged and the pairs judged twice that another "
        "reviewer judged (default: those nobody judged)",
    )


def _add_report(steps: Any) -> None:
    rep = steps.add_parser(
        "report",
        help="precision per eps with a 95%% interval, and the recommended eps",
        description="Estimate, from the judged pairs of the review sample, the precision of what each eps "
        "removes (share of removed items that are true duplicates) with a 95% interval (Clopper-Pearson on the "
        "effective sample size), the range it would span were the unsure, skipped and disputed pairs all "
        "duplicates or none, the true duplicates each eps keeps, the recommended eps (tested from small eps "
        "up, stopping at the first that fails: with 95% confidence every tested eps up to it reaches "
        "--target), whether enough pairs are judged, and the reviewers' agreement (Cohen's kappa).",
    )
    rep.add_argument("results", metavar="DIR", help="a finished results folder with a review sample")
    rep.add_argument("--labels", metavar="STORE", help=LABELS_HELP)
    rep.add_argument(
        "--eps",
        type=float,
        nargs="+",
        action="extend",
        metavar="E",
        help="the eps values to report, each at most the sample's eps-max (default: a grid up to it)",
    )
    rep.add_argument(
        "--target",
        type=float,
        default=None,
        metavar="P",
        help="the precision the recommended eps must reach with 95%% confidence (default: the sample's, 0.95)",
    )
    rep.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    rep.add_argument(
        "--disagreements",
        metavar="OUT.csv",
        help="also write the pairs whose reviewers disagree without a majority, to settle: a further verdict "
        "(`audit import`) decides them",
    )


def cmd_audit(args: argparse.Namespace) -> int:
    return AUDIT_COMMANDS[args.audit_command](args)


def _write_queue(results: Any, design: Any, store: Any, reviewer: str | None, out: str) -> int:
    from ..audit import queue_frame, reviewer_todo
    from ..audit.labels import resolve
    from ..results import io
    from ..results.text import csv_bytes

    rows = store.read()
    todo = reviewer_todo(design, rows, reviewer)
    queue = queue_frame(results, design, resolve(rows), todo)
    with io.atomic_path(out) as tmp:
        tmp.write_bytes(csv_bytes(queue))  # a cell such as =HYPERLINK(...) is text to a spreadsheet
    return len(queue)


def cmd_audit_sample(args: argparse.Namespace) -> int:
    from ..audit import Plan, draw_sample, load_design, next_batch, save_design
    from ..audit.labels import LabelStore
    from ..results.outputs import check_out
    from ..results.results import Results

    results = Results.load(args.results, strings=True)
    store = LabelStore.for_results(results.path, args.labels)
    out = check_out(args.out, force=args.force, own=lambda path: _not_a_queue(path, store))
    if args.next:
        design, what = next_batch(results, store)
        print(what)
    else:
        if args.n is None:
            raise SemDedupError("audit sample needs --n N (the sample size, e.g. 400), or --next to grow a sample")
        plan = Plan(args.sequential, args.target, args.budget if args.sequential else 0, args.double)
        design = draw_sample(results, args.n, args.eps_max, args.seed, args.bands, plan)
        try:
            old = load_design(results)
        except SemDedupError:  # a damaged sample, or one drawn from an earlier run into this folder: replaced
            old = None
        save_design(design, results.path)
        if old is not None and (old.seed, old.eps_max, old.bands) == (design.seed, design.eps_max, design.bands):
            nested = "it contains the earlier sample" if design.n >= old.n else "the earlier, larger sample contains it"
            print(f"replaced the earlier sample of {old.n:,} with this one ({nested})")
        elif old is not None:
            print(f"replaced the earlier sample ({old.describe()})")
    n_queue = _write_queue(results, design, store, args.reviewer, out)
    print(f"sample: {design.describe()}")
    print(f"already judged in {store.path}: {design.n - n_queue:,}; to judge: {n_queue:,} pairs -> {args.out}")
    print(
        "fill in the verdict column (duplicate | not_duplicate | unsure) and run "
        f"`python -m semdedup_core audit import {args.results} {args.out}`"
    )
    return 0


def _not_a_queue(path: Any, store: Any) -> str | None:
    """Why the existing file ``path`` is not a queue this command wrote whose verdicts, if any were filled
    in, are all in ``store`` already (the usual round: fill in, import, draw the next batch)."""
    import pandas as pd

    from ..audit.labels import sorted_pairs
    from ..media import safe
    from ..results.text import restore_formulas

    try:
        with safe.open_regular(path, max_bytes=safe.TABLE_BYTES) as f:
            frame = pd.read_csv(f, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except Exception:  # not text, not CSV, too large
        return "it is not a review queue (not a CSV file this command wrote)"
    if not {"id", "dup_of", "verdict"} <= set(frame.columns):
        return "it is not a review queue (it lacks the id, dup_of and verdict columns)"
    filled = restore_formulas(frame[frame["verdict"].str.strip() != ""])
    if len(filled):
        stored = store.resolved()
        known = set(zip(stored["id_a"], stored["id_b"], strict=True))
        new = sum(pair not in known for pair in zip(*sorted_pairs(filled["id"], filled["dup_of"]), strict=True))
        if new:
            return (
                f"it holds {len(filled):,} filled-in verdict{'s' if len(filled) > 1 else ''}, {new:,} of them not in "
                "the store yet (store them first with `audit import`)"
            )
    return None


def cmd_audit_import(args: argparse.Namespace) -> int:
    from ..audit import import_labels
    from ..results.results import Results

    results = Results.load(args.results, strings=True)
    summary = import_labels(results, args.labels_file, args.labels, args.reviewer)
    print(
        f"imported {summary['imported']:,} verdicts ({summary['duplicate']:,} duplicate, "
        f"{summary['not_duplicate']:,} not_duplicate, {summary['unsure']:,} unsure) by "
        f"{', '.join(summary['reviewers']) or '-'} into {summary['store']}"
    )
    if summary["replaced"]:
        print(f"{summary['replaced']:,} of them replaced an earlier verdict of the same reviewer on the same pair")
    if summary["skipped"]:
        rows = (
            "1 row without a verdict was"
            if summary["skipped"] == 1
            else f"{summary['skipped']:,} rows without a verdict were"
        )
        print(f"{rows} skipped (not judged yet)")
    return 0


def _write_disputes(results: Any, labels: Any, out: str) -> int:
    from ..audit import disputes, load_design
    from ..audit.labels import LabelStore
    from ..results import io

    frame = disputes(LabelStore.for_results(results.path, labels).read())
    design = load_design(results)
    if design is not None and len(frame):  # each pair as (item, dup_of) where the sample has it
        units = design.units.set_index(["id_a", "id_b"])
        keys = list(zip(frame["id_a"], frame["id_b"], strict=True))
        known = [k in units.index for k in keys]
        frame["id"] = [units.loc[k, "id"] if ok else k[0] for k, ok in zip(keys, known, strict=True)]
        frame["dup_of"] = [units.loc[k, "dup_of"] if ok else k[1] for k, ok in zip(keys, known, strict=True)]
    else:
        frame["id"], frame["dup_of"] = frame["id_a"], frame["id_b"]
    frame = frame[["id", "dup_of", "reviewers", "verdicts"]].assign(verdict="")
    with io.atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return len(frame)


def _print_report(rep: Any) -> None:
    s = rep.sample
    print(
        f"sample: {s['n']:,} of the {s['population']:,} pairs removed at eps {rep.eps_max:g} ({rep.plan['kind']}); "
        f"judged {s['judged']:,} ({s['duplicates']:,} duplicate, {s['not_duplicates']:,} not), {s['unsure']:,} unsure, "
        f"{s['to_judge']:,} to judge"
    )
    if s["outside_sample"]:
        print(f"{s['outside_sample']:,} judged pairs outside the sample are not used by the estimate")
    if s["skipped"] or s["disputed"]:
        print(f"{s['skipped']:,} skipped and {s['disputed']:,} disputed pairs enter the sensitivity range")
    print(
        f"{'eps':>7} {'removed':>10} {'labelled':>8} {'unsure':>6} {'precision':>9}  {'95% interval':<15} "
        f"{'if all/none dup':<15} {'holds':>5} {'true dups kept (of eps-max removals)':>36}"
    )
    for r in rep.rows.itertuples():
        prec = "-" if np.isnan(r.precision) else f"{r.precision:.3f}"
        ci = "-" if np.isnan(r.precision) else f"{r.ci_low:.3f}-{r.ci_high:.3f}"
        sens = "-" if np.isnan(r.precision) else f"{r.sensitivity_low:.3f}-{r.sensitivity_high:.3f}"
        kept = (
            "-"
            if np.isnan(r.kept_duplicates)
            else f"{r.kept_duplicates:,.0f} ({r.kept_duplicates_low:,.0f}-{r.kept_duplicates_high:,.0f})"
        )
        holds = "yes" if r.holds else ("" if r.tested else "-")
        print(
            f"{r.eps:>7.4g} {r.removed:>10,} {r.labelled:>8,} {r.unsure:>6,} {prec:>9}  {ci:<15} {sens:<15} "
            f"{holds:>5} {kept:>36}"
        )
    print(rep.message())
    if rep.stop:
        print(rep.stop)
    for a in rep.agreement:
        kappa = "-" if a["kappa"] != a["kappa"] else f"{a['kappa']:.2f}"
        print(
            f"agreement {a['reviewer_a']} / {a['reviewer_b']}: {a['pairs']:,} pairs in common, "
            f"{a['agreement']:.0%} the same verdict, Cohen's kappa {kappa}"
        )


def cmd_audit_report(args: argparse.Namespace) -> int:
    import json

    from ..audit import report
    from ..results.results import Results

    results = Results.load(args.results, strings=True)
    rep = report(results, args.labels, args.eps, args.target)
    if args.disagreements:
        n = _write_disputes(results, args.labels, args.disagreements)
        if not args.json:
            print(f"{n:,} disagreements to settle -> {args.disagreements}")
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
        return 0
    _print_report(rep)
    return 0


AUDIT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sample": cmd_audit_sample,
    "import": cmd_audit_import,
    "report": cmd_audit_report,
}
