"""The SemDeDup run: one pipeline of stages over parts of the input, whatever executes them.

    prepare → [ids] → normalize → kmeans → assign → [probe] → shuffle → score → [leakage] → write

Each stage is a set of units of work — per part of the input (:mod:`.sources`) or per bucket of whole
clusters — that read and write files (:mod:`.layout`); an executor (:mod:`.executors`) only decides where
a unit runs: in this process, or as Ray tasks. k-means is fitted once, on the driver, on the same seeded
sample of rows whatever the parts. A unit whose output exists is not run again, and ``run.json`` records
each finished stage (:class:`~.meta.RunRecord`), so a run killed at any moment resumes where it stopped and
ends with the same files as an uninterrupted one. Every choice the kernels make is decided on exact
cosines (:mod:`semdedup_core.kernels.pairwise`), so the results do not depend on the executor, on
``part_rows`` or on the device's arithmetic: ids, clusters, ranks and ``dup_of`` are identical and the
scores equal.

The driver holds per-part summaries and per-cluster counts, never all ids, paths or vectors.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.device import resolve_device
from ..kernels.kmeans import kmeans_backend, kmeans_device
from ..kernels.vectors import check_matrix
from ..results import io
from ..results.folder import ResultsFolder
from ..results.items import MIRROR_KEY, mirror_record
from ..results.names import CENTROIDS, ERRORS, WORK
from ..results.rows import NpyRows
from . import cluster as cl
from . import prepare as pr
from . import score as sc
from .config import ClusterConfig, DedupConfig, ReferenceConfig
from .executors import Executor, get_executor
from .layout import Layout
from .meta import Progress, RunRecord, array_fingerprint, comparison_rule, engine_params, no_progress
from .reference import Reference, file_reference, reference_facts
from .sources import Source, npy_source
from .write import write_part

if TYPE_CHECKING:
    from ..results.results import Results

log = logging.getLogger(__name__)

SHARD_ITEMS = 50_000
"""Items per bucket of whole clusters: the unit of work (and of checkpointing) of the score stages."""


@dataclass
class Job:
    """What the stages of one run share."""

    record: RunRecord
    source: Source
    layout: Layout
    cluster: ClusterConfig
    config: DedupConfig
    executor: Executor
    progress: Progress
    reference: Reference | None = None
    reference_config: ReferenceConfig | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)  # items left out before the engine (reference set)

    @property
    def out(self) -> Path:
        return self.record.out

    def units(self, stage: str, fn: Any, args: list[tuple[Any, tuple[Any, ...]]], total: int | None = None) -> list:
        """Run ``fn(*args)`` for each ``(key, args)`` through the executor, reporting ``stage`` progress by
        unit; returns the results in the order of ``args``."""
        got: dict[Any, Any] = {}
        self.progress(stage, 0, total or len(args))
        for i, (key, value) in enumerate(self.executor.imap(fn, iter(args)), 1):
            got[key] = value
            self.progress(stage, i, total or len(args))
        return [got[key] for key, _ in args]


def score_precision(config: DedupConfig, device: str) -> str:
    """The arithmetic ``config.precision`` means on ``device``: ``auto`` is float16 on CUDA, else float32."""
    if config.precision != "auto":
        return config.precision
    return "float16" if device == "cuda" else "float32"


def dedup(
    embeddings: np.ndarray | str | Path,
    ids: Any = None,
    *,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    out: str | Path | None = None,
    progress: Progress | None = None,
    columns: Any = None,
    extra: dict[str, Any] | None = None,
    executor: str | Executor | None = None,
    reference: np.ndarray | str | Path | None = None,
    reference_ids: Any = None,
    reference_columns: Any = None,
    reference_config: ReferenceConfig | None = None,
    part_rows: int | None = None,
) -> Results:
    """Run SemDeDup on ``embeddings`` (``n × d``, any scale: an array, or the path of an ``.npy`` file,
    which is memory-mapped and only read) and return the :class:`Results`.

    ``ids``: a sequence of ``n`` unique ids (default ``"0".."n-1"``). ``out``: the results folder (a new
    temporary folder when ``None``); running again on the same folder with the same arguments resumes.
    ``columns``: an optional DataFrame of ``n`` rows carried into ``items.parquet`` (paths, texts, captions).
    ``extra``: more facts recorded in ``run.json``. ``executor``: where each unit of work runs —
    ``"local"`` (default), ``"ray"``, or an :class:`~semdedup_core.run.executors.Executor`; ``part_rows``:
    rows per part of the input (default 1,000,000). The results are the same for every executor and every
    ``part_rows``.

    ``reference``: a held-out set (``m × d``, the same model) to look for leaks of, with its
    ``reference_ids`` (default ``"0".."m-1"``), ``reference_columns`` (a DataFrame; its ``text`` and
    ``path`` columns are kept) and ``reference_config`` (:class:`ReferenceConfig`: the probe count, or
    exact). ``items.parquet`` then gains ``ref_sim``/``ref_id``, and the folder ``reference.parquet`` and
    ``reference_embeddings.npy``.
    """
    config = config or DedupConfig()
    if isinstance(embeddings, NpyRows):  # another run's Results.embeddings: its file, read as a path is
        embeddings = embeddings.path
    path = Path(embeddings) if isinstance(embeddings, (str, Path)) else None
    x = io.load_embeddings(path) if path is not None else embeddings
    check_matrix(x)
    n, d = x.shape
    if cluster.n_clusters > n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {cluster.n_clusters}")
    ids = io.check_ids(ids, n) if ids is not None else None
    if columns is not None and len(columns) != n:
        raise SemDedupError(f"columns has {len(columns)} rows but there are {n} items; give one row per item")
    ref = _check_reference(reference, reference_ids, reference_columns, reference_config, d)
    reference_config = (reference_config or ReferenceConfig()) if ref is not None else None
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="semdedup-")
        log.info("writing results to %s", out)
    with ResultsFolder(out).lock():  # one writer at a time, from reading run.json to the end
        resolve_device(config.device)
        resolve_device(cluster.device)
        fp = array_fingerprint(x, ids) + ("" if ref is None else f"+reference:{ref.fingerprint}")
        record = RunRecord(Path(out), engine_params(cluster, config, reference_config), fp, n, d)
        if record.complete:
            log.info("results folder %s is complete; nothing to do", out)
            return _load(out)
        record.work.mkdir(parents=True, exist_ok=True)
        if path is None:  # an array in memory: written once into the scratch space, where every unit reads it
            path = record.work / "input.npy"
            if not path.is_file():
                io.save_npy(path, np.ascontiguousarray(x))
        source = npy_source(path, _meta_table(ids, columns), n, part_rows, record.work)
        job = Job(record, source, Layout(str(out), str(record.work), source.n_parts), cluster, config,
                  get_executor(executor), progress or no_progress, ref, reference_config)  # fmt: skip
        return run(job, extra)


def _check_reference(reference: Any, ids: Any, columns: Any, config: Any, d: int) -> Reference | None:
    if reference is not None:
        return Reference.check(reference, ids, columns, d)
    if ids is not None or columns is not None or config is not None:
        raise SemDedupError(
            "reference_ids, reference_columns and reference_config need a reference set; pass reference"
        )
    return None


def _meta_table(ids: Any, columns: Any) -> Any:
    """The ids and carried columns of an in-memory input as one Arrow table (``None``: default ids, none)."""
    import pyarrow as pa

    if ids is None and columns is None:
        return None
    n = len(ids) if ids is not None else len(columns)
    table = pa.table({"id": pa.array(list(ids) if ids is not None else np.arange(n).astype(str), pa.string())})
    if columns is not None:
        extra = columns if isinstance(columns, pa.Table) else io.frame_to_arrow(columns)
        for name in extra.column_names:
            table = table.append_column(name, extra[name])
    return table


def _load(out: str | Path) -> Results:
    from ..results.results import Results

    return Results.load(out)


def run(job: Job, extra: dict[str, Any] | None = None) -> Results:
    """Run (or resume) every stage of ``job`` and return the finished folder's :class:`Results`."""
    record = job.record
    repeated = record.stage(
        "prepare", lambda: _prepare(job), load=lambda: io.read_json(job.record.work / "repeated.json")
    )
    record.save()  # the folder's first write: the input is valid
    norms = record.stage("normalize", lambda: _normalize(job), load=lambda: _norms(job))
    sizes = np.array([s["rows"] for s in norms], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n, k = int(starts[-1]), job.cluster.n_clusters
    if n == 0:
        raise SemDedupError("nothing usable in the input: every item is an error (see errors.parquet)")
    if k > n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {k}")
    record.stage("kmeans", lambda: _kmeans(job, starts), load=lambda: np.load(job.out / CENTROIDS))
    counts = record.stage("assign", lambda: _assign(job), load=lambda: np.load(job.record.work / "counts.npy"))
    if job.config.probe:
        record.stage("probe", lambda: _probe(job), load=lambda: None)
    bounds = sc.bucket_bounds(counts, max(1, SHARD_ITEMS // (1 + job.config.probe)))
    record.stage("shuffle", lambda: _shuffle(job, starts, bounds), load=lambda: None)
    record.stage("score", lambda: _score(job, bounds, counts), load=lambda: None)
    if job.reference is not None:
        record.stage("leakage", lambda: _leakage(job, bounds, counts, n), load=lambda: None)
    record.stage("write", lambda: _write(job, sizes, counts, repeated, norms, extra))
    shutil.rmtree(job.out / WORK, ignore_errors=True)
    return _load(job.out)


# -- the stages: each returns (value, facts for run.json) ---------------------------------------------
def _prepare(job: Job) -> tuple[list, dict[str, Any]]:
    """Strict input: every row checked before anything is written. Raw parts: repeated ids found."""
    src, layout = job.source, job.layout
    if src.ids_unique:
        job.units("prepare", pr.validate_part, [(p, (src, p)) for p in range(src.n_parts)])
        repeated: list = []
    else:
        job.units("prepare", pr.prepare_part, [(p, (src, layout, p)) for p in range(src.n_parts)])
        found = job.units("ids", pr.check_id_bucket, [(b, (src, layout, b)) for b in range(pr.ID_BUCKETS)])
        repeated = [tuple(r) for rows in found for r in rows]
        pr.save_keep(src, layout, repeated)
    io.write_json(job.record.work / "repeated.json", [list(r) for r in repeated])
    return repeated, {"repeated_ids": len(repeated)}


def _normalize(job: Job) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    src, layout = job.source, job.layout
    norms = job.units("normalize", pr.normalise_part, [(p, (src, layout, p)) for p in range(src.n_parts)])
    return norms, {}


def _norms(job: Job) -> list[dict[str, Any]]:
    return [io.read_json(job.layout.part(p) / "norm.json") for p in range(job.source.n_parts)]


def _kmeans(job: Job, starts: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    n = int(starts[-1])
    pick = cl.kmeans_sample(n, job.cluster)
    pick = np.arange(n) if pick is None else pick
    owner = np.searchsorted(starts, pick, side="right") - 1
    parts = [int(p) for p in np.unique(owner)]
    got = job.units("sample", pr.read_rows, [(p, (job.layout, p, pick[owner == p] - starts[p])) for p in parts])
    return cl.fit_and_save_centroids(np.concatenate(got), job.cluster, job.out, job.progress)


def _assign(job: Job) -> tuple[np.ndarray, dict[str, Any]]:
    c, layout = job.cluster, job.layout
    tasks = [(p, (layout, p, c.device, c.backend, c.n_clusters)) for p in range(layout.n_parts)]
    counts = np.sum(job.units("assign", cl.assign_part, tasks), axis=0).astype(np.int64)
    io.save_npy(job.record.work / "counts.npy", counts)
    return counts, {"device": kmeans_device(c.device, c.backend), "backend": kmeans_backend(c.device, c.backend)}


def _probe(job: Job) -> tuple[None, dict[str, Any]]:
    layout, probe = job.layout, job.config.probe
    job.units("probe", cl.probe_part, [(p, (layout, p, probe, job.cluster.device)) for p in range(layout.n_parts)])
    return None, {"device": kmeans_device(job.cluster.device), "probe": int(min(probe, job.cluster.n_clusters - 1))}


def _shuffle(job: Job, starts: np.ndarray, bounds: list[tuple[int, int]]) -> tuple[None, dict[str, Any]]:
    c = job.config
    tasks = [
        (p, (job.source, job.layout, p, int(starts[p]), bounds, c.keep, c.seed, c.probe))
        for p in range(job.layout.n_parts)
    ]
    job.units("shuffle", sc.shuffle_part, tasks)
    return None, {"buckets": len(bounds)}


def _kernel_options(job: Job, stage: str) -> tuple[dict[str, Any], str, str]:
    """The keyword options every pairwise unit gets, the precision (kept on resume) and the device.
    ``device`` stays as configured: ``auto`` is resolved where the unit runs."""
    device = resolve_device(job.config.device)
    precision = job.record.stage_value(stage, "precision", lambda: score_precision(job.config, device))
    options = {
        "device": job.config.device,
        "precision": precision,
        "block_size": job.config.block_size,
        "max_block_bytes": job.config.max_block_bytes,
    }
    return options, precision, device


def _buckets(job: Job, stage: str, fn: Any, bounds: list, extra_args: tuple) -> int:
    """Run ``fn`` on every bucket not finished yet; returns how many clusters were finished before."""
    todo = [b for b in range(len(bounds)) if not job.layout.marker(stage, b).is_file()]
    reused = sum(bounds[b][1] - bounds[b][0] for b in range(len(bounds)) if b not in set(todo))
    k = job.cluster.n_clusters
    done = reused
    job.progress(stage, done, k)
    tasks = ((b, (job.layout, b, *bounds[b], *extra_args)) for b in todo)
    for _, clusters in job.executor.imap(fn, tasks):
        done += clusters
        job.progress(stage, done, k)
    return reused


def _score(job: Job, bounds: list, counts: np.ndarray) -> tuple[None, dict[str, Any]]:
    options, precision, device = _kernel_options(job, "score")
    reused = _buckets(job, "score", sc.score_bucket, bounds, (job.config.probe, options))
    facts: dict[str, Any] = {"resumed_clusters": int(reused), "precision": precision, "device": device}
    facts["backend"] = f"torch-{device}"
    if job.config.probe:
        facts.update(probe=int(min(job.config.probe, job.cluster.n_clusters - 1)), **_probe_comparisons(job, counts))
    return None, facts


def _probe_comparisons(job: Job, counts: np.ndarray) -> dict[str, int]:
    """Query × target pairs a probing run computes, and the paper's for comparison."""
    total = 0
    for p in range(job.layout.n_parts):
        total += int(counts[np.load(job.layout.probes(p), mmap_mode="r")].sum())
    return {"comparisons": total, "paper_comparisons": int((counts.astype(np.int64) ** 2).sum())}


def _leakage(job: Job, bounds: list, counts: np.ndarray, n: int) -> tuple[None, dict[str, Any]]:
    ref, rc = job.reference, job.reference_config
    assert ref is not None and rc is not None
    filed = file_reference(job.out, job.record.work, ref, rc, job.cluster.device)
    options, precision, device = _kernel_options(job, "leakage")
    reused = _buckets(job, "leakage", sc.leak_bucket, bounds, (rc.exact, options))
    m = len(ref.ids)
    comparisons = n * m if rc.exact else int((counts * np.diff(filed["offsets"])).sum())
    return None, {
        "resumed_clusters": int(reused),
        "precision": precision,
        "device": device,
        "backend": f"torch-{device}",
        "probe": rc.probe,
        "exact": rc.exact,
        "comparisons": int(comparisons),
        "compared_share": round(comparisons / max(1, n * m), 6),
    }


def _write(
    job: Job, sizes: np.ndarray, counts: np.ndarray, repeated: list, norms: list, extra: Any
) -> tuple[None, dict]:
    record, layout, src = job.record, job.layout, job.source
    record.meta.pop(MIRROR_KEY, None)  # run.json names the Arrow copy only once it matches the new parquet
    tasks = [(p, (src, layout, p, job.config.probe, job.reference is not None)) for p in range(layout.n_parts)]
    pairs = job.units("write", write_part, tasks)
    record.meta[MIRROR_KEY] = mirror_record(job.out, pairs)
    if src.kind == "parts":
        io.write_errors(job.out / ERRORS, pr.collect_errors(src, layout, repeated, norms) + job.errors)
    _record_counts(job, sizes, counts, norms)
    record.merge(extra)
    stages = record.meta["stages"]
    record.meta["comparison"] = comparison_rule(job.config)
    names = ("kmeans", "assign", "probe", "score", "leakage")
    record.meta["device"] = {s: stages[s]["device"] for s in names if "device" in stages.get(s, {})}
    record.meta["backend"] = {
        s: stages[s]["backend"]
        for s in ("embed", "kmeans", "assign", "score", "leakage")
        if "backend" in stages.get(s, {})
    }
    record.meta["executor"] = job.executor.name
    record.meta["status"] = "complete"
    return None, {}


def _record_counts(job: Job, sizes: np.ndarray, counts: np.ndarray, norms: list) -> None:
    meta, layout = job.record.meta, job.layout
    meta["counts"].update(
        {
            "items": int(sizes.sum()),
            "dim": int(norms[0]["dim"]),
            "clusters": job.cluster.n_clusters,
            "empty_clusters": int((counts == 0).sum()),
            "largest_cluster": int(counts.max()),
            "median_cluster": float(np.median(counts)),
            "parts": layout.n_parts,
        }
    )
    if job.source.kind == "parts":
        meta["counts"]["errors"] = int(pq_rows(job.out / ERRORS))
    if not layout.single:
        meta["embeddings"] = {
            "shards": [layout.embeddings_name(p) for p in range(layout.n_parts)],
            "rows": sizes.tolist(),
        }
        if job.config.probe:
            meta["probes"] = {
                "shards": [layout.probes(p).relative_to(job.out).as_posix() for p in range(layout.n_parts)]
            }
    if job.reference is not None and job.reference_config is not None:
        meta["counts"]["reference_items"] = len(job.reference.ids)
        meta["reference"] = reference_facts(job.reference, job.reference_config)


def pq_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows
