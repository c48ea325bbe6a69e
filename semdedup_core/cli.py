"""The command line: parse, build the configs, call one core function, print a summary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .config import DEVICES, KEEP_POLICIES, ClusterConfig, DedupConfig
from .errors import SemDedupError
from .progress import Fanout, JsonFileProgress, TqdmProgress

SUMMARY_EPS = (0.01, 0.05, 0.1, 0.2)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_dedup_arguments(p: argparse.ArgumentParser) -> None:
    """The clustering and scoring options shared by every command that runs a dedup."""
    g = p.add_argument_group("clustering and scoring")
    g.add_argument("--out", required=True, help="results folder (created; rerunning the same command resumes)")
    g.add_argument("--clusters", type=int, required=True, metavar="K", help="number of k-means clusters")
    g.add_argument("--seed", type=int, default=0, help="seed for the k-means sample and `random` keep (default 0)")
    g.add_argument(
        "--keep",
        choices=KEEP_POLICIES,
        default="hard",
        help="which item of a duplicate group is kept: hard = farthest from the centroid (paper), "
        "easy = nearest, random = seeded shuffle (default hard)",
    )
    g.add_argument("--niter", type=int, default=20, help="k-means iterations (default 20)")
    g.add_argument(
        "--sample-per-centroid",
        type=int,
        default=256,
        metavar="N",
        help="k-means trains on at most K*N sampled items (default 256)",
    )
    g.add_argument("--device", choices=DEVICES, default="auto", help="auto uses CUDA when present (default auto)")
    g.add_argument(
        "--block-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="rows per pairwise block; changes memory, never results (default: fit 256 MiB)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--progress-file", metavar="FILE", help="also write progress as JSON to FILE (for the app)")


def progress_callback(args: argparse.Namespace, bar: TqdmProgress) -> Fanout:
    return Fanout(bar, JsonFileProgress(args.progress_file) if args.progress_file else None)


def configs_from_args(args: argparse.Namespace) -> tuple[ClusterConfig, DedupConfig]:
    cluster = ClusterConfig(
        n_clusters=args.clusters,
        niter=args.niter,
        seed=args.seed,
        max_points_per_centroid=args.sample_per_centroid,
        device=args.device,
    )
    config = DedupConfig(keep=args.keep, seed=args.seed, device=args.device, block_size=args.block_size)
    return cluster, config


def print_summary(results: Any, out: Any = None) -> None:
    """A few lines a person reads after a run: sizes, removed at a few ε, seconds per stage."""
    out = out or sys.stdout
    run = results.run
    counts = run.get("counts", {})
    print(f"results: {results.path}", file=out)
    print(
        f"items: {results.n_items:,}   clusters: {results.n_clusters:,}   "
        f"largest cluster: {counts.get('largest_cluster', 0):,}",
        file=out,
    )
    for key in ("errors", "skipped"):
        if counts.get(key):
            print(f"{key}: {counts[key]:,} (see errors.parquet)", file=out)
    for eps in SUMMARY_EPS:
        n_rem = results.n_removed(eps)
        print(
            f"eps {eps:<5} (similarity > {1 - eps:.2f}): removes {n_rem:,} ({n_rem / results.n_items:.1%}), "
            f"keeps {results.n_items - n_rem:,}",
            file=out,
        )
    stages = run.get("stages", {})
    timing = ", ".join(f"{k} {v.get('seconds', 0):.1f}s" for k, v in stages.items())
    print(f"seconds: {timing}", file=out)


def cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import dedup

    if args.embeddings is None:
        raise SemDedupError("run needs --embeddings X.npy (an n × d array)")
    cluster, config = configs_from_args(args)
    ids = None
    if args.ids is not None:
        from .io import load_embeddings, read_ids

        ids = read_ids(args.ids, load_embeddings(args.embeddings).shape[0])
    bar = TqdmProgress(disable=args.quiet)
    try:
        results = dedup(
            args.embeddings, ids, cluster=cluster, config=config, out=args.out, progress=progress_callback(args, bar)
        )
    finally:
        bar.close()
    print_summary(results)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"run": cmd_run}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m semdedup_core",
        description="Find semantic duplicates with SemDeDup: embed, cluster with spherical k-means, and score "
        "every item against the earlier items of its cluster. At eps an item is removed iff its score "
        "(max_sim) > 1 - eps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="deduplicate embeddings and write a results folder",
        description="Deduplicate an n × d embedding matrix and write a results folder.",
    )
    src = run.add_argument_group("input")
    src.add_argument("--embeddings", metavar="X.npy", help="n × d float32/float16 .npy file (need not be normalised)")
    src.add_argument(
        "--ids",
        metavar="IDS",
        help="text file with one id per line, or parquet with an `id` column, in the order of X (default: 0..n-1)",
    )
    add_dedup_arguments(run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SemDedupError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
