"""``compare``: what two runs over the same items remove."""

from __future__ import annotations

import argparse
from typing import Any

from .options import add_rule_argument


def add_parser(sub: Any) -> None:
    comp = sub.add_parser(
        "compare",
        help="compare what two runs over the same items remove (both, A only, B only, Jaccard)",
        description="Compare two runs over the same items (another encoder, k, keep policy or seed): the items "
        "removed by both, by A only and by B only, their agreement (Jaccard), the eps at which B removes as "
        "many items as A, why a run keeps what the other removes, and the clusters where they disagree most. "
        "The ids of the two runs must be the same set.",
    )
    comp.add_argument("dir_a", metavar="DIR_A", help="results folder of run A")
    comp.add_argument("dir_b", metavar="DIR_B", help="results folder of run B, over the same ids")
    comp.add_argument("--eps", type=float, required=True, help="eps of run A (and of B without --eps-b)")
    comp.add_argument("--eps-b", type=float, metavar="E2", help="eps of run B (default: --eps)")
    add_rule_argument(comp, "paper", "kept-only")
    comp.add_argument("--top", type=int, default=10, metavar="N", help="clusters listed per run (default 10)")
    comp.add_argument(
        "--json",
        action="store_true",
        help="print the comparison as JSON (keys both, only_a, only_b, neither, jaccard, a, b, eps_b_matching, "
        "clusters_a, clusters_b, ...)",
    )
    comp.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from ..explore.compare import REASON_LABELS, compare
    from ..results.results import Results

    a, b = Results.load(args.dir_a, strings=True), Results.load(args.dir_b, strings=True)
    cmp = compare(a, b, args.eps, args.eps_b, rule=args.rule)
    summary = cmp.summary(clusters=args.top)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for side in ("a", "b"):
        r = summary[side]
        print(
            f"{side.upper()}: {r['path']} — {r['items']:,} items, k {r['clusters']:,}, keep {r['keep']}, "
            f"encoder {r['encoder']}; eps {r['eps']:.6g} removes {r['removed']:,} ({r['removed'] / r['items']:.1%})"
        )
    print(f"rule: {cmp.rule}")
    width = len(f"{cmp.n_items:,}")
    for label, n in (("both", cmp.both), ("A only", cmp.only_a), ("B only", cmp.only_b), ("neither", cmp.neither)):
        print(f"removed by {label + ':':<9}{n:>{width},}")
    print(f"agreement (Jaccard): {cmp.jaccard:.3f}")
    if cmp.eps_b_matching is not None:
        print(
            f"B removes as many as A ({summary['a']['removed']:,}) at eps {cmp.eps_b_matching:.6g} "
            f"(removes {summary['removed_b_at_matching']:,})"
        )
    for side, other in (("a", "B"), ("b", "A")):
        reasons = summary[f"reasons_only_{side}"]
        if sum(reasons.values()):
            parts = ", ".join(f"{n:,} {REASON_LABELS[k]}" for k, n in reasons.items() if n)
            print(f"why {other} keeps what only {side.upper()} removes: {parts}")
    for side in ("a", "b"):
        rows = [c for c in summary[f"clusters_{side}"] if c["disagree"]]
        if not rows:
            continue
        print(f"clusters of {side.upper()} with most disagreement:")
        print(f"  {'cluster':>7} {'items':>7} {'removed A':>9} {'removed B':>9} {'A only':>7} {'B only':>7}")
        for c in rows:
            print(
                f"  {c['cluster']:>7} {c['size']:>7,} {c['removed_a']:>9,} {c['removed_b']:>9,} "
                f"{c['only_a']:>7,} {c['only_b']:>7,}"
            )
    return 0
