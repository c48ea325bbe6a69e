"""The kept part of a run's own input, written in its own format: ``semdedup apply``.

One writer per input reader (:data:`WRITERS`, keyed by the reader's name in
:data:`semdedup_core.ingest.inputs.READERS`): each finds the ids of its input's units (rows, samples,
files) exactly as the reader does, and writes the kept ones. :func:`apply_run` joins them to a results
folder: the run's input as ``run.json`` records it, its fingerprint checked against the input now, the
items kept at ε under a rule (and, with ``drop_leaked``, not leaked), then the writer — streaming,
resumable and atomic (see :mod:`.common`). The user's input is only ever read.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from ..inputs import source_fingerprint
from . import folder, hf, shards, table, webdataset
from .common import Job, Progress, Task, check_out, finished_before, mask_digest, match_units
from .folder import MODES

__all__ = [
    "MODES",
    "WRITERS",
    "ApplySummary",
    "Writer",
    "apply_command",
    "apply_run",
    "run_source",
    "suggested_out",
    "writer_for",
]

DEFAULT_SHARD_SIZE = 10_000


@dataclass(frozen=True)
class Writer:
    """How the kept part of one kind of input is written: ``unit_ids(source)`` (the id of each unit of the
    input, as its reader finds it; ``None`` for a unit the reader leaves out), ``write(task)``, what
    ``OUT`` is (``file`` or ``folder``; ``--mode list`` makes an image folder's a file) and which apply
    options it takes."""

    kind: str
    description: str
    output: str
    unit_ids: Callable[[dict[str, Any]], Any]
    write: Callable[[Task], None]
    options: tuple[str, ...] = ()

    def output_of(self, options: dict[str, Any]) -> str:
        return "file" if options.get("mode") == "list" else self.output


WRITERS: dict[str, Writer] = {
    w.kind: w
    for w in (
        Writer(
            "webdataset",
            "new .tar shards of --shard-size kept samples, every member byte-identical, and removed.txt",
            "folder",
            webdataset.unit_ids,
            webdataset.write,
            ("shard_size",),
        ),
        Writer(
            "hf",
            "a save_to_disk folder of the kept rows (datasets.load_from_disk opens it)",
            "folder",
            hf.unit_ids,
            hf.write,
        ),
        Writer(
            "shards",
            "the kept rows of each embedding shard and of its metadata",
            "folder",
            shards.unit_ids,
            shards.write,
        ),
        Writer(
            "folder",
            "the kept images at their relative paths: hard links, copies (--mode) or their list",
            "folder",
            folder.unit_ids,
            folder.write,
            ("mode",),
        ),
        Writer(
            "table", "the kept rows, unchanged, in a file of the input's format", "file", table.unit_ids, table.write
        ),
    )
}
"""The apply writers, one per input reader (:data:`~semdedup_core.ingest.inputs.READERS`)."""

_ALIASES = {"wds": "webdataset", "files": "folder", "emb": "shards"}  # the sharded executor's part kinds
_OPTION_FLAGS = {"mode": "--mode", "shard_size": "--shard-size"}


@dataclass(frozen=True)
class ApplySummary:
    """What an apply wrote: the input's ``kind``, ``out``, the input's units, the run's items found in it,
    how many were ``kept`` and ``removed`` (the rule's removals, plus the leaked items with
    ``drop_leaked``: ``leaked_dropped`` of them removed for that alone), the units that are no items of
    the run (``not_in_run``: listed in ``errors.parquet``), the pieces an earlier, killed apply had
    finished (``resumed``) and the seconds taken."""

    kind: str
    out: Path
    units: int
    items: int
    kept: int
    removed: int
    leaked_dropped: int
    not_in_run: int
    resumed: int
    seconds: float


def writer_for(kind: str) -> Writer:
    kind = _ALIASES.get(kind, kind)
    if kind not in WRITERS:
        raise SemDedupError(f"apply has no writer for input kind {kind!r}; kinds: {', '.join(WRITERS)}")
    return WRITERS[kind]


def run_source(run: dict[str, Any]) -> dict[str, Any]:
    """The run's input as ``run.json`` records it (``input``), with its kind as the readers name it and its
    column options; refuses a run that has no raw input (an ``.npy`` matrix, an in-memory ``dedup``)."""
    source = run.get("input") if isinstance(run.get("input"), dict) else None
    if source is None or source.get("kind") in (None, "npy"):
        raise SemDedupError(
            "this run has no raw input to apply to (it deduplicated an embedding matrix); write the kept ids "
            "with `semdedup export DIR --eps E --which kept` and filter your data with them"
        )
    source = {**source, "kind": _ALIASES.get(source["kind"], source["kind"])}
    identity = (run.get("embed") or {}).get("identity") or {}
    identity = identity.get("embed", identity)  # the sharded executor nests the embedding options
    for option in ("text_column", "image_column", "id_column"):
        source.setdefault(option, identity.get(option))
    return source


def _check_options(writer: Writer, options: dict[str, Any]) -> None:
    for name, value in options.items():
        if value is not None and name not in writer.options:
            takes = {"mode": "image folders", "shard_size": "webdataset shards"}[name]
            raise SemDedupError(
                f"{_OPTION_FLAGS[name]} applies to {takes}, but this run's input is {writer.kind}; drop it"
            )
    if options.get("mode") is not None and options["mode"] not in MODES:
        raise SemDedupError(f"--mode must be one of {', '.join(MODES)}, got {options['mode']!r}")
    if options.get("shard_size") is not None and int(options["shard_size"]) < 1:
        raise SemDedupError(f"--shard-size must be at least 1 sample, got {options['shard_size']}")


def _check_fingerprint(source: dict[str, Any]) -> str:
    recorded = source.get("fingerprint")
    where = source.get("path") or (source.get("shards") or ["?"])[0]
    if not recorded:
        raise SemDedupError(
            "run.json records no input fingerprint (the run predates apply), so apply cannot tell whether "
            f"{str(where)!r} changed since; rerun on it into a new --out folder, then apply that run"
        )
    try:
        now = source_fingerprint(source)
    except SemDedupError:
        now = None
    if now != recorded:
        raise SemDedupError(
            f"the run's input {str(where)!r} has changed since the run (its files, sizes or times differ); "
            "rerun on it into a new --out folder, then apply that run"
        )
    return recorded


def _kept_units(results: Any, ids: Any, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per input unit: whether it is an item of the run (``found``) and whether it is kept; refuses an input
    that does not hold every item of the run exactly once."""
    import pyarrow as pa

    results.check_strings()  # unique ids: each unit finds at most one item
    units = ids if isinstance(ids, pa.Array) else pa.array(list(ids), type=pa.string())
    rows = match_units(units, results._arrow().column("id"))
    found = rows >= 0
    n_found = int(found.sum())
    if n_found != results.n_items:
        raise SemDedupError(
            f"the input holds {n_found:,} units with the ids of the run's {results.n_items:,} items as apply reads "
            "it now; it was changed or is read differently: rerun on it into a new --out folder, then apply"
        )
    keep = np.zeros(len(rows), dtype=bool)
    keep[found] = ~removed[rows[found]]
    return found, keep


def apply_run(
    results: Any,
    eps: float,
    out: str | Path,
    *,
    rule: str = "paper",
    labels: Any = None,
    drop_leaked: bool = False,
    mode: str | None = None,
    shard_size: int | None = None,
    progress: Progress | None = None,
) -> ApplySummary:
    """Write the part of ``results``' own input kept at ``eps`` under ``rule`` (``labels``: the verdicts
    the ``audited`` rule takes) — without the leaked items too with ``drop_leaked`` — into ``out``, in the
    input's format (see :data:`WRITERS`). ``mode`` (image folders: ``link``, ``copy`` or ``list``) and
    ``shard_size`` (webdataset: samples per output shard) apply to one kind each. Rerunning the same
    call after a kill resumes; ``out`` appears only when complete and is never overwritten."""
    t0 = time.perf_counter()
    source = run_source(results.run)
    writer = writer_for(source["kind"])
    options = {"mode": mode, "shard_size": shard_size}
    _check_options(writer, options)
    options = {"mode": mode or ("link" if "mode" in writer.options else None)}
    options["shard_size"] = shard_size or (DEFAULT_SHARD_SIZE if "shard_size" in writer.options else None)
    out = Path(out).expanduser()
    where = (
        writer.output_of(options),
        Path(source["path"]).suffix if writer.kind == "table" else None,
        [Path(source["path"])] if writer.kind in ("folder", "hf", "shards") else [],
    )
    if not (out.exists() or out.is_symlink()):  # refuse before reading anything (an existing OUT: below)
        check_out(out, *where)
    fingerprint = _check_fingerprint(source)
    removed = np.asarray(results.removed_mask(eps, rule, labels), dtype=bool)
    by_rule = int(removed.sum())
    if drop_leaked:
        if not results.has_reference:
            raise SemDedupError("--drop-leaked needs a run with a held-out set (run --reference); drop it")
        removed = removed | results.leaked_mask(eps)
    ids = writer.unit_ids(source)
    found, keep = _kept_units(results, ids, removed)
    identity = {
        "results": str(Path(results.path).resolve()),
        "created": results.run.get("created"),
        "kind": writer.kind,
        "fingerprint": fingerprint,
        "keep": mask_digest(keep),
        "options": options,
    }
    summary = dict(kind=writer.kind, out=out, units=len(ids), items=results.n_items, kept=int(keep.sum()))
    summary.update(removed=int(removed.sum()), leaked_dropped=int(removed.sum()) - by_rule)
    summary.update(not_in_run=len(ids) - int(found.sum()))
    if finished_before(out, identity):
        return ApplySummary(**summary, resumed=-1, seconds=time.perf_counter() - t0)
    check_out(out, *where)
    with Job(out, identity) as job:
        resumed = job.resumed()
        task = Task(source, keep, found, ids, job.target, options, job, progress or (lambda s, d, t: None))
        writer.write(task)
        job.finish()
    return ApplySummary(**summary, resumed=resumed, seconds=time.perf_counter() - t0)


def suggested_out(source: dict[str, Any], eps: float) -> Path:
    """A new path beside the run's input for its kept part at ``eps``: ``data-kept-eps0.0500.jsonl`` beside
    ``data.jsonl``, ``photos-kept-eps0.0500`` beside ``photos/``, ``shards-kept-eps0.0500`` beside a folder
    of shards."""
    if source.get("kind") == "webdataset":
        base = Path(webdataset.shard_paths(source)[0]).parent
        return base.parent / f"{base.name}-kept-eps{eps:.4f}"
    path = Path(source["path"])
    suffix = path.suffix if source.get("kind") == "table" else ""
    return path.parent / f"{path.stem if suffix else path.name}-kept-eps{eps:.4f}{suffix}"


def apply_command(
    results_dir: str | Path,
    eps: float,
    out: str | Path,
    *,
    rule: str = "paper",
    labels: str | Path | None = None,
    drop_leaked: bool = False,
    mode: str | None = None,
) -> str:
    """The ``semdedup apply`` command line that writes the same as :func:`apply_run` with these arguments
    (``labels``: a verdict store other than the folder's own, for the audited rule)."""
    words = ["semdedup", "apply", str(results_dir), "--eps", f"{eps:.4f}"]
    words += ["--rule", rule] if rule != "paper" else []
    words += ["--labels", str(labels)] if labels is not None and rule == "audited" else []
    words += ["--drop-leaked"] if drop_leaked else []
    words += ["--mode", mode] if mode else []
    return shlex.join([*words, "--out", str(out)])
