"""``run``: deduplicate embeddings or raw data into a results folder."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import SemDedupError
from ..run.progress import TqdmProgress
from .options import (
    _EMBED_OPTIONS,
    add_dedup_arguments,
    add_embed_arguments,
    add_reference_arguments,
    configs_from_args,
    embed_config_from_args,
    print_summary,
    progress_callback,
    reference_config_from_args,
)


def add_parser(sub: Any) -> None:
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
    add_reference_arguments(run)
    where = run.add_argument_group("where it runs")
    where.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where each unit of work runs: local = this process (default); ray = Ray tasks on a cluster (embedding "
        "on model actors), the driver holding only per-part summaries. Every option works on both, with the "
        "same results from the same embeddings",
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
        default=None,
        metavar="N",
        help="rows per part of the input, the unit of work of the per-part stages: an .npy matrix (default "
        "1,000,000), a table (default 100,000) or an image folder's files (default 20,000); shards are one part "
        "each. Changes where work is split, never the results",
    )
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    if args.input is not None and args.embeddings is not None:
        raise SemDedupError("pass either --input PATH or --embeddings X.npy|DIR, not both")
    if args.input is None and args.embeddings is None:
        raise SemDedupError(
            "run needs --input PATH (image folder or table) or --embeddings X.npy (an n × d array) or DIR (shards)"
        )
    if args.part_rows is not None and args.part_rows < 1:
        raise SemDedupError(f"--part-rows must be at least 1, got {args.part_rows}")
    executor = _executor(args)
    bar = TqdmProgress(disable=args.quiet)
    try:
        raw = args.input if args.input is not None else args.embeddings
        if args.input is not None or os.path.isdir(args.embeddings):
            results = _run_input(args, raw, executor, progress_callback(args, bar))
        else:
            results = _run_npy(args, executor, progress_callback(args, bar))
    finally:
        bar.close()
    print_summary(results)
    return 0


def _executor(args: argparse.Namespace) -> Any:
    if args.executor != "ray":
        if args.ray_address is not None:
            raise SemDedupError("--ray-address applies with --executor ray; add --executor ray or drop it")
        return "local"
    from ..run.executors import RayExecutor

    return RayExecutor(args.ray_address if args.ray_address is not None else os.environ.get("RAY_ADDRESS"))


def _run_npy(args: argparse.Namespace, executor: Any, progress: Any) -> Any:
    from ..results.io import load_embeddings, read_ids
    from ..run.pipeline import dedup

    given = [f"--{o.replace('_', '-')}" for o in _EMBED_OPTIONS if getattr(args, o) is not None]
    if given:
        raise SemDedupError(f"{', '.join(given)} only apply with --input (or an --embeddings folder); drop them")
    cluster, config = configs_from_args(args)
    reference = reference_config_from_args(args)
    ids = read_ids(args.ids, load_embeddings(args.embeddings).shape[0]) if args.ids is not None else None
    ref = ref_ids = None
    if reference is not None:
        if os.path.isdir(args.reference) or not args.reference.lower().endswith(".npy"):
            raise SemDedupError(
                f"--reference {args.reference!r} is not an .npy file, but this run starts from embeddings and has no "
                "encoder to embed raw data with: pass the held-out set's embeddings (.npy, same model), or run from "
                "raw data with --input"
            )
        ref = load_embeddings(args.reference)
        if args.reference_ids is not None:
            ref_ids = read_ids(args.reference_ids, ref.shape[0], what="reference ids")
    return dedup(
        args.embeddings,
        ids,
        cluster=cluster,
        config=config,
        out=args.out,
        progress=progress,
        reference=ref,
        reference_ids=ref_ids,
        reference_config=reference,
        executor=executor,
        part_rows=args.part_rows,
    )


def _run_input(args: argparse.Namespace, path: str, executor: Any, progress: Any) -> Any:
    from ..ingest.raw import run_input

    if args.ids is not None:
        raise SemDedupError("--ids applies to an --embeddings .npy file; with --input use --id-column NAME")
    cluster, config = configs_from_args(args)
    reference = reference_config_from_args(args)
    if args.reference_ids is not None and not str(args.reference).lower().endswith(".npy"):
        raise SemDedupError("--reference-ids applies to a reference .npy file; raw reference data has its own ids")
    return run_input(
        path,
        args.out,
        embed=embed_config_from_args(args),
        cluster=cluster,
        config=config,
        progress=progress,
        reference=args.reference,
        reference_ids=args.reference_ids,
        reference_config=reference,
        executor=executor,
        part_rows=args.part_rows,
    )
