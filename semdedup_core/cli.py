"""The command line: parse, build the configs, call one core function, print a summary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .engine.config import DEVICES, KEEP_POLICIES, ClusterConfig, DedupConfig
from .engine.progress import Fanout, JsonFileProgress, TqdmProgress
from .errors import SemDedupError

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
    if counts.get("errors"):
        print(f"errors: {counts['errors']:,} items left out (see errors.parquet)", file=out)
    if counts.get("skipped"):
        print(f"skipped: {counts['skipped']:,} files not named like images", file=out)
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


def embed_config_from_args(args: argparse.Namespace) -> Any:
    from .ingest.embed import EmbedConfig

    return EmbedConfig(
        encoder=args.encoder,
        pretrained=args.pretrained,
        text_column=args.text_column,
        image_column=args.image_column,
        id_column=args.id_column,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
    )


_EMBED_OPTIONS = ("encoder", "pretrained", "text_column", "image_column", "id_column")


def cmd_run(args: argparse.Namespace) -> int:
    from .engine.pipeline import dedup

    if args.input is not None and args.embeddings is not None:
        raise SemDedupError("pass either --input PATH or --embeddings X.npy|DIR, not both")
    embeddings_dir = args.embeddings is not None and os.path.isdir(args.embeddings)
    if args.input is None and args.embeddings is None:
        raise SemDedupError(
            "run needs --input PATH (image folder or table) or --embeddings X.npy (an n × d array) or DIR (shards)"
        )
    if args.executor == "ray":
        return _run_sharded(args, embeddings_dir)
    if args.ray_address is not None:
        raise SemDedupError("--ray-address applies with --executor ray; add --executor ray or drop it")
    if args.input is not None or embeddings_dir:
        return _run_input(args, args.input if args.input is not None else args.embeddings)
    given = [f"--{o.replace('_', '-')}" for o in _EMBED_OPTIONS if getattr(args, o) is not None]
    if given:
        raise SemDedupError(f"{', '.join(given)} only apply with --input (or an --embeddings folder); drop them")
    cluster, config = configs_from_args(args)
    ids = None
    if args.ids is not None:
        from .engine.io import load_embeddings, read_ids

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


def _run_sharded(args: argparse.Namespace, embeddings_dir: bool) -> int:
    from .engine.executors import RayExecutor
    from .ingest.sharded import run_sharded

    if args.part_rows < 1:
        raise SemDedupError(f"--part-rows must be at least 1, got {args.part_rows}")
    cluster, config = configs_from_args(args)
    raw = args.input is not None or embeddings_dir
    if not raw:
        given = [f"--{o.replace('_', '-')}" for o in _EMBED_OPTIONS if getattr(args, o) is not None]
        if given:
            raise SemDedupError(f"{', '.join(given)} only apply with --input (or an --embeddings folder); drop them")
    elif args.ids is not None:
        raise SemDedupError("--ids applies to an --embeddings .npy file; with --input use --id-column NAME")
    executor = RayExecutor(args.ray_address)
    bar = TqdmProgress(disable=args.quiet)
    try:
        results = run_sharded(
            (args.input if args.input is not None else args.embeddings) if raw else None,
            args.out,
            embeddings=None if raw else args.embeddings,
            ids=args.ids,
            embed=embed_config_from_args(args),
            cluster=cluster,
            config=config,
            executor=executor,
            progress=progress_callback(args, bar),
            part_rows=args.part_rows,
        )
    finally:
        bar.close()
    print_summary(results)
    return 0


def _run_input(args: argparse.Namespace, path: str) -> int:
    from .ingest.embed import run_input

    if args.ids is not None:
        raise SemDedupError("--ids applies to an --embeddings .npy file; with --input use --id-column NAME")
    cluster, config = configs_from_args(args)
    embed = embed_config_from_args(args)
    bar = TqdmProgress(disable=args.quiet)
    try:
        results = run_input(
            path, args.out, embed=embed, cluster=cluster, config=config, progress=progress_callback(args, bar)
        )
    finally:
        bar.close()
    print_summary(results)
    return 0


def cmd_encoders(args: argparse.Namespace) -> int:
    from .ingest.encoders import DEFAULT_ENCODERS, list_encoders

    for info in list_encoders():
        print(f"{info.name:<22} {'/'.join(info.modalities):<11} {info.description}")
    print(f"defaults: images {DEFAULT_ENCODERS['image']}, text {DEFAULT_ENCODERS['text']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .ingest.demo import DEMO_EPS, run_demo

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


def cmd_export(args: argparse.Namespace) -> int:
    from .engine.results import Results
    from .explore.export import write_export

    results = Results.load(args.results)
    eps = args.eps if args.eps is not None else results.eps_for_kept_fraction(args.keep_fraction)
    path = write_export(results, eps, args.which, args.format, args.column, args.rule)
    n_removed = int(results.removed_mask(eps, args.rule).sum())
    n = n_removed if args.which == "removed" else results.n_items - n_removed
    print(f"{args.which}: {n:,} of {results.n_items:,} items at eps {eps:.6g} (rule {args.rule}) -> {path}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "encoders": cmd_encoders,
    "demo": cmd_demo,
    "export": cmd_export,
}


def add_embed_arguments(p: argparse.ArgumentParser) -> None:
    """Options for starting from raw data (``run --input``)."""
    g = p.add_argument_group("embedding (with --input)")
    g.add_argument(
        "--encoder",
        metavar="NAME",
        help="efficientnet_lite0 (default for images), minilm (default for text), open_clip:ARCH, or "
        "st:MODEL_OR_FOLDER; list them with `python -m semdedup_core encoders`",
    )
    g.add_argument(
        "--pretrained",
        metavar="TAG_OR_FILE",
        help="for open_clip:ARCH: an open_clip pretrained tag already in the local cache, or a local checkpoint file",
    )
    g.add_argument("--text-column", metavar="NAME", help="table column holding the texts to embed")
    g.add_argument(
        "--image-column",
        metavar="NAME",
        help="table column holding image paths, relative to the table's folder (with --text-column too, "
        "the images are embedded and the texts carried)",
    )
    g.add_argument("--id-column", metavar="NAME", help="table column holding unique ids (default: row numbers)")
    g.add_argument("--batch-size", type=int, default=64, metavar="N", help="items per forward pass (default 64)")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="image-decoding worker processes (default: one per 4 cores on CPU, up to 8 with CUDA; 0 = in the main process)",
    )


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
        help="deduplicate embeddings or raw data and write a results folder",
        description="Deduplicate an n × d embedding matrix, embedding shards, an image folder or a table of "
        "texts/image paths, and write a results folder. Items that cannot be used are listed in errors.parquet.",
    )
    src = run.add_argument_group("input (one of)")
    src.add_argument(
        "--input",
        metavar="PATH",
        help="a folder of images (searched recursively: jpg jpeg png webp bmp gif tiff), a table "
        "(.parquet/.csv/.jsonl) with --text-column and/or --image-column, webdataset .tar shards (a folder, "
        "one shard, or a brace pattern such as 'shards/{00000..00099}.tar'; the sample key is the id), a "
        "Hugging Face dataset folder written by save_to_disk (with --text-column or --image-column), or an "
        "embeddings folder",
    )
    src.add_argument(
        "--embeddings",
        metavar="X.npy|DIR",
        help="n × d float32/float16 .npy file (need not be normalised), or a folder of img2dataset/"
        "clip-retrieval shards (img_emb/img_emb_N.npy or text_emb/text_emb_N.npy + metadata/metadata_N.parquet)",
    )
    src.add_argument(
        "--ids",
        metavar="IDS",
        help="text file with one id per line, or parquet with an `id` column, in the order of X (default: 0..n-1)",
    )
    add_embed_arguments(run)
    add_dedup_arguments(run)
    where = run.add_argument_group("where it runs")
    where.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: every stage as per-shard tasks on a Ray cluster (embedding on "
        "Ray Data model actors), the driver holding only per-shard summaries; results are the same",
    )
    where.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray cluster to join (auto, ray://host:10001, host:6379; default: RAY_ADDRESS, else a local "
        "one). Workers must see --input and --out at the same paths (a shared or mounted filesystem)",
    )
    where.add_argument(
        "--part-rows",
        type=int,
        default=1_000_000,
        metavar="N",
        help="with --executor ray and one --embeddings .npy: rows per part (default 1,000,000)",
    )

    sub.add_parser(
        "encoders",
        help="list the encoders --encoder accepts",
        description="List the encoders that `run --input` can use.",
    )

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
    export = sub.add_parser(
        "export",
        help="write the kept or removed items at one eps (ids, paths, scores) into DIR/exports/",
        description="Write the kept or removed items of a results folder at one eps as CSV, Parquet or TXT "
        "into DIR/exports/ (written atomically). Exports are lists: nothing is ever deleted.",
    )
    export.add_argument("results", metavar="DIR", help="a finished results folder")
    at = export.add_mutually_exclusive_group(required=True)
    at.add_argument("--eps", type=float, help="remove items whose score (max_sim) > 1 - eps")
    at.add_argument(
        "--keep-fraction",
        type=float,
        metavar="F",
        help="use the largest eps that keeps at least this fraction of the items under the paper's rule (0..1)",
    )
    export.add_argument("--which", choices=("removed", "kept"), default="removed", help="default removed")
    export.add_argument("--format", choices=("csv", "parquet", "txt"), default="csv", help="default csv")
    export.add_argument("--column", default="id", help="the column a txt export lists, e.g. path (default id)")
    export.add_argument(
        "--rule",
        choices=("paper", "kept-only"),
        default="paper",
        help="paper: SemDeDup's rule (chains included); kept-only: remove only items similar "
        "to an earlier kept item (default paper)",
    )
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
