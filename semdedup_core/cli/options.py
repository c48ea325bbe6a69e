"""Options and helpers shared by the commands: one argument group per concern, the configs built from them,
the progress bars and the summary printed after a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from ..errors import SemDedupError
from ..results.rules import REMOVAL_RULES, RULES
from ..run.config import DEFAULT_REFERENCE_PROBE, DEVICES, KEEP_POLICIES, ClusterConfig, DedupConfig, ReferenceConfig
from ..run.progress import Fanout, JsonFileProgress, TqdmProgress

SUMMARY_EPS = (0.01, 0.05, 0.1, 0.2)


class _Parser(argparse.ArgumentParser):
    passthrough: Callable[[list[str]], tuple[list[str], list[str]]] | None = None
    """A command's splitter of the options it hands on to another program (``app``: Streamlit's
    ``--section.option``): they are taken out before parsing and kept in ``args.passthrough``."""

    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        if self.passthrough is None:
            return super().parse_known_args(args, namespace)
        own, handed = self.passthrough(list(sys.argv[1:] if args is None else args))
        namespace, extra = super().parse_known_args(own, namespace)
        namespace.passthrough = handed
        return namespace, extra


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
    check_progress_file(args)
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
    from ..ingest.embed import EmbedConfig

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


def eps_from_args(args: argparse.Namespace, results: Any) -> float:
    """The threshold :func:`add_eps_arguments` asked for: ``--eps``, or the one ``--keep-fraction`` keeps."""
    return args.eps if args.eps is not None else results.eps_for_kept_fraction(args.keep_fraction)


def check_labels_rule(args: argparse.Namespace) -> None:
    """``--labels`` names the verdicts of the audited rule: refused with any other ``--rule``."""
    if args.labels is not None and args.rule != "audited":
        raise SemDedupError("--labels applies to --rule audited; add --rule audited or drop --labels")


def add_force_argument(p: argparse.ArgumentParser, what: str = "--out") -> None:
    """``--force``: the way past :func:`semdedup_core.results.outputs.check_out`'s refusals."""
    p.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} even when it exists and is not this command's own earlier output, or is a results "
        "folder's own file (refused without --force)",
    )


def check_progress_file(args: argparse.Namespace) -> None:
    """Refuse a ``--progress-file`` that is a results folder's own file (``DIR/run.json``…) or not a file."""
    from ..results.outputs import check_out

    if getattr(args, "progress_file", None):
        check_out(args.progress_file, own=_not_progress, option="--progress-file", forceable=False)


def _not_progress(path: Any) -> str | None:
    from ..media import safe

    try:
        record = safe.read_json(path, max_bytes=safe.SMALL_BYTES)
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and set(record) <= {"stage", "done", "total", "time"}:
        return None
    return "it is not a progress file this command wrote"


LABELS_HELP = (
    "the verdict store (default DIR/labels.parquet); a store elsewhere can be shared by runs over the same ids"
)


def add_rule_argument(p: argparse.ArgumentParser, *rules: str) -> None:
    """``--rule``, its choices and help from the rules table (``rules``: a subset; default every removal rule)."""
    names = rules or REMOVAL_RULES
    p.add_argument(
        "--rule",
        choices=names,
        default="paper",
        help="; ".join(f"{n}: {RULES[n].words}" for n in names) + " (default paper)",
    )
