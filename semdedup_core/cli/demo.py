"""``demo`` and ``encoders``: the offline demos, and the encoders ``--encoder`` accepts."""

from __future__ import annotations

import argparse
from typing import Any

from ..run.progress import TqdmProgress
from .options import print_summary, progress_callback


def add_parser(sub: Any) -> None:
    encoders = sub.add_parser(
        "encoders",
        help="list the encoders --encoder accepts",
        description="List the encoders that `run --input` can use.",
    )
    encoders.set_defaults(func=cmd_encoders)
    demo = sub.add_parser(
        "demo",
        help="build an offline demo dataset and deduplicate it",
        description="Build a demo dataset from data shipped in pip packages (text: the FreeBSD fortunes; "
        "images: scikit-image/scikit-learn photographs with derived near-duplicates) on first use, in the "
        "cache folder ($SEMDEDUP_CACHE, default ~/.cache/semdedup), and run the whole pipeline on it.",
    )
    demo.add_argument("kind", choices=("text", "images"), help="which demo")
    demo.add_argument("--out", metavar="DIR", help="results folder (default: CACHE/runs/demo-KIND)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--progress-file", metavar="FILE", help="also write progress as JSON to FILE (for the app)")
    demo.set_defaults(func=cmd_demo)


def cmd_encoders(args: argparse.Namespace) -> int:
    from ..ingest.encoders import DEFAULT_ENCODERS, list_encoders

    for info in list_encoders():
        print(f"{info.name:<22} {'/'.join(info.modalities):<11} {info.description}")
    print(f"defaults: images {DEFAULT_ENCODERS['image']}, text {DEFAULT_ENCODERS['text']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..ingest.demo import DEMO_EPS, run_demo

    bar = TqdmProgress(disable=args.quiet)
    try:
        results = run_demo(args.kind, args.out, progress=progress_callback(args, bar))
    finally:
        bar.close()
    print_summary(results)
    eps = DEMO_EPS[args.kind]
    n_rem = results.n_removed(eps)
    print(f"suggested eps for this demo: {eps} (removes {n_rem:,} of {results.n_items:,})")
    return 0
