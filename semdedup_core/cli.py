"""The command line: parse, build the configs, call one core function, print a summary."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np

from .engine.config import DEFAULT_REFERENCE_PROBE, DEVICES, KEEP_POLICIES, ClusterConfig, DedupConfig, ReferenceConfig
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
        "--probe",
        type=int,
        default=0,
        metavar="P",
        help="also compare each item with the earlier items (in one global keep order) of the P clusters whose "
        "centroids are nearest to it, finding near-copies split across cluster boundaries at about 1+P times "
        "the pairwise cost; 0 = the paper's rule, within clusters only (default 0)",
    )
    g.add_argument(
        "--block-size",
        type=int,
        default=None,
        metavar="ROWS",
        help="rows per pairwise block; changes memory, never results (default: fit 256 MiB)",
    )
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--progress-file", metavar="FILE", help="also write progress as JSON to FILE (for the app)")


def add_reference_arguments(p: argparse.ArgumentParser) -> None:
    """A held-out (reference) set to look for leaks of."""
    g = p.add_argument_group("leakage: a held-out reference set")
    g.add_argument(
        "--reference",
        metavar="HELD_OUT",
        help="find each item's most similar item in this held-out set (ref_sim, ref_id in items.parquet): with "
        "--embeddings, an .npy of its embeddings from the same model; with --input, raw data of the same kind "
        "(folder or table, read with the same column options), embedded with the same encoder",
    )
    g.add_argument(
        "--reference-ids",
        metavar="IDS",
        help="ids of the reference .npy rows: one per line, or parquet with an `id` column (default: 0..m-1)",
    )
    g.add_argument(
        "--reference-probe",
        type=int,
        default=None,
        metavar="P",
        help="file each reference item under its nearest centroid and the P next nearest; every item is "
        "compared with the reference items filed under its cluster (default "
        f"{DEFAULT_REFERENCE_PROBE}: found >= 99%% of true leaks in our measurements; more is slower and finds more)",
    )
    g.add_argument(
        "--exact-reference",
        action="store_true",
        help="compare every item with every reference item (exact, n × m comparisons: for small sets)",
    )


def reference_config_from_args(args: argparse.Namespace) -> ReferenceConfig | None:
    """The reference search the arguments ask for (``None`` without ``--reference``)."""
    if args.reference is None:
        named = (("--reference-ids", args.reference_ids), ("--reference-probe", args.reference_probe))
        given = [option for option, value in named if value is not None]
        if args.exact_reference:
            given.append("--exact-reference")
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise SemDedupError(f"{', '.join(given)} {verb} --reference HELD_OUT (the held-out set to compare with)")
        return None
    if args.exact_reference and args.reference_probe is not None:
        raise SemDedupError("pass either --reference-probe P or --exact-reference, not both")
    if args.exact_reference:
        return ReferenceConfig(probe=None)
    return ReferenceConfig() if args.reference_probe is None else ReferenceConfig(probe=args.reference_probe)


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
    config = DedupConfig(
        keep=args.keep, seed=args.seed, device=args.device, block_size=args.block_size, probe=args.probe
    )
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
    if results.probe:
        print(
            f"compared: {run.get('comparison', {}).get('description', '')} "
            f"({run['stages']['score'].get('comparisons', 0):,} similarities)",
            file=out,
        )
    for eps in SUMMARY_EPS:
        n_rem = results.n_removed(eps)
        print(
            f"eps {eps:<5} (similarity > {1 - eps:.2f}): removes {n_rem:,} ({n_rem / results.n_items:.1%}), "
            f"keeps {results.n_items - n_rem:,}"
            + (f", {_across(results, eps):,} across clusters" if results.probe else ""),
            file=out,
        )
    if results.has_reference:
        leaks = ", ".join(f"eps {eps}: {results.n_leaked(eps):,}" for eps in SUMMARY_EPS)
        print(
            f"leaked (similarity to one of {counts.get('reference_items', 0):,} reference items > 1 - eps): {leaks}",
            file=out,
        )
    stages = run.get("stages", {})
    timing = ", ".join(f"{k} {v.get('seconds', 0):.1f}s" for k, v in stages.items())
    print(f"seconds: {timing}", file=out)


def _across(results: Any, eps: float) -> int:
    return int((results.removed_mask(eps) & results.cross_cluster).sum())


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
        if args.reference is not None or args.probe:
            raise SemDedupError(
                "--reference and --probe run with --executor local for now (the sharded pipeline scores whole "
                "clusters per task); drop them or --executor ray"
            )
        return _run_sharded(args, embeddings_dir)
    if args.ray_address is not None:
        raise SemDedupError("--ray-address applies with --executor ray; add --executor ray or drop it")
    if args.input is not None or embeddings_dir:
        return _run_input(args, args.input if args.input is not None else args.embeddings)
    given = [f"--{o.replace('_', '-')}" for o in _EMBED_OPTIONS if getattr(args, o) is not None]
    if given:
        raise SemDedupError(f"{', '.join(given)} only apply with --input (or an --embeddings folder); drop them")
    cluster, config = configs_from_args(args)
    reference = reference_config_from_args(args)
    from .engine.io import load_embeddings, read_ids

    ids = None
    if args.ids is not None:
        ids = read_ids(args.ids, load_embeddings(args.embeddings).shape[0])
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
    bar = TqdmProgress(disable=args.quiet)
    try:
        results = dedup(
            args.embeddings,
            ids,
            cluster=cluster,
            config=config,
            out=args.out,
            progress=progress_callback(args, bar),
            reference=ref,
            reference_ids=ref_ids,
            reference_config=reference,
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
    reference = reference_config_from_args(args)
    ref_ids = None
    if args.reference_ids is not None:
        from .engine.io import load_embeddings, read_ids

        if not args.reference.lower().endswith(".npy"):
            raise SemDedupError("--reference-ids applies to a reference .npy file; raw reference data has its own ids")
        ref_ids = read_ids(args.reference_ids, load_embeddings(args.reference).shape[0], what="reference ids")
    bar = TqdmProgress(disable=args.quiet)
    try:
        results = run_input(
            path,
            args.out,
            embed=embed,
            cluster=cluster,
            config=config,
            progress=progress_callback(args, bar),
            reference=args.reference,
            reference_ids=ref_ids,
            reference_config=reference,
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

    if args.labels is not None and args.rule != "audited":
        raise SemDedupError("--labels applies to --rule audited; add --rule audited or drop --labels")
    results = Results.load(args.results, strings=True)
    eps = args.eps if args.eps is not None else results.eps_for_kept_fraction(args.keep_fraction)
    path = write_export(results, eps, args.which, args.format, args.column, args.rule, args.labels)
    if args.which == "leaked":
        n = int(results.n_leaked(eps))
        print(f"leaked: {n:,} of {results.n_items:,} items at eps {eps:.6g} (ref_sim > {1 - eps:.6g}) -> {path}")
        return 0
    n_removed = int(results.n_removed(eps, args.rule, args.labels))
    n = n_removed if args.which == "removed" else results.n_items - n_removed
    print(f"{args.which}: {n:,} of {results.n_items:,} items at eps {eps:.6g} (rule {args.rule}) -> {path}")
    if args.rule == "audited":
        audited = results.audited(args.labels)
        print(
            f"audited: {audited.excluded:,} pairs judged not duplicates apply to this run; {audited.rescored:,} items "
            f"scored again without them ({results.n_removed(eps) - n_removed:,} fewer removals than the paper's rule)"
        )
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    return AUDIT_COMMANDS[args.audit_command](args)


def cmd_audit_sample(args: argparse.Namespace) -> int:
    from .audit import draw_sample, load_design, queue_frame, save_design
    from .engine import io
    from .engine.results import Results

    results = Results.load(args.results, strings=True)
    store = results.label_store(args.labels)
    resolved = store.resolved()
    design = draw_sample(results, args.n, args.eps_max, args.seed, args.bands)
    try:
        old = load_design(results)
    except SemDedupError:  # a damaged sample, or one drawn from an earlier run into this folder: replaced
        old = None
    queue = queue_frame(results, design, resolved)
    with io.atomic_path(args.out) as tmp:
        queue.to_csv(tmp, index=False)
    save_design(design, results.path)
    if old is not None and (old.seed, old.eps_max, old.bands) == (design.seed, design.eps_max, design.bands):
        nested = "it contains the earlier sample" if design.n >= old.n else "the earlier, larger sample contains it"
        print(f"replaced the earlier sample of {old.n:,} with this one ({nested})")
    elif old is not None:
        print(f"replaced the earlier sample ({old.describe()})")
    judged = design.n - len(queue)
    print(f"sample: {design.describe()}")
    print(f"already judged in {store.path}: {judged:,}; to judge: {len(queue):,} pairs -> {args.out}")
    print(
        "fill in the verdict column (duplicate | not_duplicate | unsure) and run "
        f"`python -m semdedup_core audit import {args.results} {args.out}`"
    )
    return 0


def cmd_audit_import(args: argparse.Namespace) -> int:
    from .audit import import_labels
    from .engine.results import Results

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


def cmd_audit_report(args: argparse.Namespace) -> int:
    import json

    from .audit import report
    from .engine.results import Results

    results = Results.load(args.results, strings=True)
    rep = report(results, args.labels, args.eps, args.target)
    if args.json:
        print(json.dumps(rep.to_json(), indent=2))
        return 0
    s = rep.sample
    print(
        f"sample: {s['n']:,} of the {s['population']:,} pairs removed at eps {rep.eps_max:g}; judged {s['judged']:,} "
        f"({s['duplicates']:,} duplicate, {s['not_duplicates']:,} not), {s['unsure']:,} unsure, {s['to_judge']:,} to judge"
    )
    if s["outside_sample"]:
        print(f"{s['outside_sample']:,} judged pairs outside the sample are not used by the estimate")
    print(
        f"{'eps':>7} {'removed':>10} {'labelled':>8} {'unsure':>6} {'precision':>9}  {'95% interval':<15} "
        f"{'true dups kept (of eps-max removals)':>36}"
    )
    for r in rep.rows.itertuples():
        prec = "-" if np.isnan(r.precision) else f"{r.precision:.3f}"
        ci = "-" if np.isnan(r.precision) else f"{r.ci_low:.3f}-{r.ci_high:.3f}"
        kept = (
            "-"
            if np.isnan(r.kept_duplicates)
            else f"{r.kept_duplicates:,.0f} ({r.kept_duplicates_low:,.0f}-{r.kept_duplicates_high:,.0f})"
        )
        print(f"{r.eps:>7.4g} {r.removed:>10,} {r.labelled:>8,} {r.unsure:>6,} {prec:>9}  {ci:<15} {kept:>36}")
    print(rep.message())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .audit.precision import summary_at
    from .engine.results import Results
    from .explore.report import write_report

    results = Results.load(args.results, strings=True)
    eps = args.eps if args.eps is not None else results.eps_for_kept_fraction(args.keep_fraction)
    audit = summary_at(results, eps, args.labels)  # the audited precision, when reviewers judged a sample
    path = write_report(
        results, eps, args.out, examples=args.examples, borderline=args.borderline, groups=args.groups, audit=audit
    )
    n_rem = int(results.n_removed(eps))
    print(
        f"report: {path} ({path.stat().st_size / 1024:,.0f} KB): {results.n_items:,} items, "
        f"{n_rem:,} removed ({n_rem / results.n_items:.1%}) at eps {eps:.6g}"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import json

    from .engine.results import Results
    from .explore.compare import REASON_LABELS, compare

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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "encoders": cmd_encoders,
    "demo": cmd_demo,
    "export": cmd_export,
    "report": cmd_report,
    "compare": cmd_compare,
    "audit": cmd_audit,
}
AUDIT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "sample": cmd_audit_sample,
    "import": cmd_audit_import,
    "report": cmd_audit_report,
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


def add_eps_arguments(p: argparse.ArgumentParser) -> None:
    """``--eps E`` or ``--keep-fraction F`` (one of them): the threshold a command works at."""
    at = p.add_mutually_exclusive_group(required=True)
    at.add_argument("--eps", type=float, help="remove items whose score (max_sim) > 1 - eps")
    at.add_argument(
        "--keep-fraction",
        type=float,
        metavar="F",
        help="use the largest eps that keeps at least this fraction of the items under the paper's rule (0..1)",
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
    add_reference_arguments(run)
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
    export.add_argument(
        "--rule",
        choices=("paper", "kept-only", "audited"),
        default="paper",
        help="paper: SemDeDup's rule (chains included); kept-only: remove only items similar "
        "to an earlier kept item; audited: the paper's rule with pairs judged not duplicates taken out "
        "(dup_of names the partner that justifies each removal) (default paper)",
    )
    export.add_argument("--labels", metavar="STORE", help=LABELS_HELP)
    add_audit_parser(sub)

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
    report.add_argument("--out", required=True, metavar="REPORT.html", help="the HTML file to write (atomically)")
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
    comp.add_argument(
        "--rule",
        choices=("paper", "kept-only"),
        default="paper",
        help="the removal rule of both runs (default paper)",
    )
    comp.add_argument("--top", type=int, default=10, metavar="N", help="clusters listed per run (default 10)")
    comp.add_argument(
        "--json",
        action="store_true",
        help="print the comparison as JSON (keys both, only_a, only_b, neither, jaccard, a, b, eps_b_matching, "
        "clusters_a, clusters_b, ...)",
    )
    return parser


LABELS_HELP = (
    "the verdict store (default DIR/labels.parquet); a store elsewhere can be shared by runs over the same ids"
)


def add_audit_parser(sub: Any) -> None:
    from .audit.precision import DEFAULT_TARGET
    from .audit.sample import DEFAULT_BANDS, DEFAULT_EPS_MAX

    audit = sub.add_parser(
        "audit",
        help="judge a sample of removed pairs and measure precision per eps, with an interval",
        description="The audit loop: draw a seeded sample of the pairs removed up to --eps-max (stratified by "
        "similarity band), judge them (a CSV here, or the app's Review page), and get the precision of what "
        "each eps removes with a 95% interval and the largest eps that meets a target precision.",
    )
    steps = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    sample = steps.add_parser(
        "sample",
        help="draw the review sample and write the pairs still to judge as a CSV",
        description="Draw a seeded review sample of N pairs (item, dup_of) from the items removed at --eps-max, "
        "stratified by similarity band, record its design in DIR/audit/sample.parquet, and write the pairs not "
        "judged yet (in a seeded random order) to QUEUE.csv: id, dup_of, max_sim, text/path columns where the "
        "run has them, and an empty verdict column to fill in. The same command gives the same sample; a "
        "larger N contains the smaller sample.",
    )
    sample.add_argument("results", metavar="DIR", help="a finished results folder")
    sample.add_argument("--n", type=int, required=True, metavar="N", help="sample size (e.g. 400)")
    sample.add_argument(
        "--out", required=True, metavar="QUEUE.csv", help="the CSV of pairs to judge (written atomically)"
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
    rep = steps.add_parser(
        "report",
        help="precision per eps with a 95%% interval, and the recommended eps",
        description="Estimate, from the judged pairs of the review sample, the precision of what each eps "
        "removes (share of removed items that are true duplicates) with a 95% interval (Clopper-Pearson on the "
        "effective sample size), the true duplicates each eps keeps, and the recommended eps: the largest one "
        "whose lower bound meets --target.",
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
        default=DEFAULT_TARGET,
        metavar="P",
        help=f"the precision the recommended eps must reach with 95%% confidence (default {DEFAULT_TARGET})",
    )
    rep.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


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
    except OSError as exc:  # a disk that is full or a folder that may not be written: the user's to fix
        where = f" ({exc.filename!s})" if exc.filename else ""
        print(f"{parser.prog}: error: {exc.strerror or exc}{where}; check the paths and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
