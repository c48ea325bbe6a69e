"""The SemDeDup run, one function per stage: normalise → k-means → assign → [probe] → score → [leakage] → write.

:func:`dedup` checks the input, then hands each stage to :meth:`_Run.stage`, which skips a stage that
a previous (interrupted) run finished, times it and records it in ``run.json``. Intermediate arrays
live in ``DIR/.work`` and are written atomically, so a run killed at any moment and started again with
the same arguments resumes where it stopped and ends with the same files. Scoring runs in shards of
whole clusters (a cluster is never split) through an executor (this process or Ray); each shard is
checkpointed as it arrives, and progress is counted there, where results arrive. ``run.json`` records
where each stage ran (``device``) and what ran it (``backend``: faiss-cpu, faiss-gpu, torch-cpu,
torch-cuda).

A run holds the folder's write lock (:meth:`ResultsFolder.lock`) from before it reads ``run.json`` to
its end, so a second writer fails at once; scratch files carry a hash of the parameters and input
that made them (:func:`work_key`) and are never reused by a run with other ones.

With ``probe = P > 0`` the ``probe`` stage finds each item's ``P`` nearest other clusters (``probes.npy``)
and the score stage compares each item with the earlier items, in one global keep order, of its own
and its probed clusters (:func:`~semdedup_core.kernels.probe.global_order`); ``probe = 0`` runs the
paper's rule through the very code it always did.

With a reference (held-out) set, the ``leakage`` stage finds each item's most similar reference item:
every reference item is filed under its nearest centroid and the ``probe`` next nearest ones, and each
shard of whole clusters is compared with the reference items filed under its clusters, in bounded
blocks (:func:`~semdedup_core.kernels.pairwise.match_in_clusters`), checkpointed shard by shard like the
score stage.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.clusters import ClusterIndex
from ..kernels.device import resolve_device
from ..kernels.kmeans import assign, fit_centroids, kmeans_backend, kmeans_device
from ..kernels.pairwise import match_in_clusters, score_clusters
from ..kernels.probe import global_order, nearest_centroids, probe_groups
from ..kernels.vectors import check_matrix, normalize_rows
from ..results import io
from ..results.folder import ResultsFolder
from ..results.items import MIRROR_KEY, mirror_record, write_items
from ..results.names import (
    CENTROIDS,
    DUP_ROW,
    EMBEDDINGS,
    FORMAT_VERSION,
    ITEMS,
    ITEMS_ARROW,
    PROBES,
    REFERENCE,
    REFERENCE_CARRIED,
    REFERENCE_EMBEDDINGS,
    RUN,
    WORK,
)
from .config import ClusterConfig, DedupConfig, ReferenceConfig, to_dict
from .executors import Executor, Task, get_executor

if TYPE_CHECKING:
    from ..results.results import Results

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as each stage advances. Raising from it stops the run
cleanly (what is finished stays finished, and a rerun resumes)."""

SHARD_ITEMS = 50_000  # clusters are grouped into shards of about this many items for checkpointing
ASSIGN_ROWS = 1 << 18  # rows per assignment task


def _noop(stage: str, done: int, total: int) -> None:
    pass


def engine_params(
    cluster: ClusterConfig, config: DedupConfig, reference: ReferenceConfig | None = None
) -> dict[str, Any]:
    """The parameters a results folder records and a resumed run must match. Device, block size and
    memory budget change speed only, so they are left out (and may differ on resume). The one way a
    device changes results is arithmetic precision (``precision="auto"``: float16 on CUDA, float32 on
    CPU); the precision a run's scoring started with is recorded in ``run.json`` and kept on resume,
    whatever device the resume runs on. ``reference``: the reference search's settings, for a run with
    a reference set (a run without one records none)."""
    params = {"cluster": to_dict(cluster), "dedup": to_dict(config)}
    for key in ("device", "block_size", "max_block_bytes"):
        params["dedup"].pop(key)
    params["cluster"].pop("device")
    if not config.probe:  # the paper's rule: recorded as it always was, so older folders resume
        params["dedup"].pop("probe")
    if reference is not None:
        params["reference"] = to_dict(reference)
    return params


def params_match(recorded: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    """Whether a results folder's recorded parameters are ``params``. A parameter added after the folder
    was written counts as its default there (the k-means ``backend``: ``auto``), so older folders resume."""
    if not isinstance(recorded, dict):
        return False
    cluster = recorded.get("cluster")
    if isinstance(cluster, dict) and "backend" not in cluster:
        recorded = {**recorded, "cluster": {**cluster, "backend": "auto"}}
    return recorded == params


def fingerprint(x: np.ndarray, ids: np.ndarray | None) -> str:
    """A cheap identity of the input: shape, dtype, 1,024 evenly spaced rows and all ids."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.shape}|{x.dtype}".encode())
    rows = np.unique(np.linspace(0, x.shape[0] - 1, num=min(1024, x.shape[0])).astype(np.int64))
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    if ids is not None:
        for i in ids:
            h.update(str(i).encode())
            h.update(b"\0")
    return h.hexdigest()


def work_key(params: dict[str, Any], fp: str, n: int, d: int) -> str:
    """A short hash of what scratch results depend on: the parameters, the input fingerprint and shape.
    Scratch files are named with it, so a file left by a run with other parameters is never read."""
    import json

    blob = json.dumps({"params": params, "input": fp, "shape": [n, d]}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def library_versions() -> dict[str, str]:
    import pandas
    import pyarrow
    import torch

    from .._version import __version__

    try:  # the torch k-means backend runs without faiss
        import faiss

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:
        faiss_version = "not installed"
    return {
        "semdedup": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss_version,
        "torch": torch.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def shard_bounds(offsets: np.ndarray, shard_items: int = SHARD_ITEMS) -> list[tuple[int, int]]:
    """Split clusters ``0..k-1`` into consecutive runs of about ``shard_items`` items (whole clusters)."""
    bounds, first = [], 0
    k = len(offsets) - 1
    for c in range(k):
        if offsets[c + 1] - offsets[first] >= shard_items or c == k - 1:
            bounds.append((first, c + 1))
            first = c + 1
    return bounds


def score_precision(config: DedupConfig, device: str) -> str:
    """The arithmetic ``config.precision`` means on ``device``: ``auto`` is float16 on CUDA, else float32."""
    if config.precision != "auto":
        return config.precision
    return "float16" if device == "cuda" else "float32"


class _Run:
    """Book-keeping of one results folder: parameters, stage completion, timings."""

    def __init__(self, out: Path, params: dict[str, Any], fp: str, n: int, d: int):
        self.out = out
        self.started = False  # run.json written (not before the input has been validated)
        self.work = out / WORK
        self.key = work_key(params, fp, n, d)
        folder = ResultsFolder(out)
        folder.check_writable()
        old = folder.read_run()
        if old is not None:
            counts = old.get("counts", {})
            old_shape = (counts.get("input_rows", counts.get("items")), counts.get("dim"))
            if old_shape != (n, d):
                raise SemDedupError(
                    f"results folder {str(out)!r} was made from {old_shape[0]} × {old_shape[1]} embeddings, "
                    f"these are {n} × {d} (dimension or count mismatch); choose another --out folder"
                )
            if not params_match(old.get("params"), params) or old.get("input_fingerprint") != fp:
                raise SemDedupError(
                    f"results folder {str(out)!r} holds a run with other parameters or input; "
                    "choose another --out folder (or delete that folder yourself)"
                )
            self.meta = old
            self.started = True
        else:  # nothing is written until the input has been validated (see dedup)
            self.meta = {
                "format_version": FORMAT_VERSION,
                "status": "running",
                "params": params,
                "input_fingerprint": fp,
                "counts": {"items": n, "dim": d, "input_rows": n},
                "stages": {},
                "device": {},
                "versions": library_versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    def done(self, stage: str) -> bool:
        return bool(self.meta["stages"].get(stage, {}).get("done"))

    def stage(self, name: str, compute: Callable[[], Any], load: Callable[[], Any] | None = None) -> Any:
        """Run stage ``name``: return ``load()`` when an earlier run finished it (and ``load`` can), else
        ``compute()`` timed and recorded. ``compute`` returns ``(value, info)``; ``info`` goes into
        ``run.json`` beside the stage's seconds. A stage stopped by an exception keeps its seconds."""
        if load is not None and self.done(name):
            try:
                return load()
            except FileNotFoundError:
                log.info("stage %s was recorded as done but its output is gone; running it again", name)
        t0 = time.perf_counter()
        try:
            value, info = compute()
        except BaseException:
            if self.started:
                self._add_seconds(name, time.perf_counter() - t0, done=False)
            raise
        self._add_seconds(name, time.perf_counter() - t0, done=True, **info)
        return value

    def _add_seconds(self, stage: str, seconds: float, done: bool, **info: Any) -> None:
        prev = self.meta["stages"].get(stage, {})
        self.meta["stages"][stage] = {
            **prev,
            **info,
            "done": done,
            "seconds": round(prev.get("seconds", 0.0) + seconds, 4),
        }
        self.save()

    def save(self) -> None:
        io.write_json(self.out / RUN, self.meta)
        self.started = True


@dataclass
class _Reference:
    """A checked reference set: unit embeddings, ids, carried columns (text, path) and a fingerprint."""

    emb: np.ndarray
    ids: np.ndarray
    columns: Any
    fingerprint: str

    @classmethod
    def check(cls, embeddings: Any, ids: Any, columns: Any, d: int) -> _Reference:
        """Validate and normalise a reference set before anything is written; raises :class:`SemDedupError`
        naming the problem (shape, dimension, NaN/inf or zero rows, ids)."""
        if isinstance(embeddings, (str, Path)):
            embeddings = io.load_embeddings(embeddings)
        check_matrix(embeddings, "reference embeddings")
        m, dr = embeddings.shape
        if dr != d:
            raise SemDedupError(
                f"reference embeddings have dimension {dr} but the run's embeddings have {d}; "
                "embed the reference set with the same model as the items"
            )
        ids = io.check_ids(ids if ids is not None else range(m), m, source="reference ids")
        if columns is not None:
            if len(columns) != m:
                raise SemDedupError(
                    f"reference columns have {len(columns)} rows but there are {m} reference items; give one row each"
                )
            columns = columns[[c for c in REFERENCE_CARRIED if c in columns.columns]].reset_index(drop=True)
        fp = fingerprint(embeddings, ids)
        emb = normalize_rows(np.array(embeddings, dtype=np.float32, copy=True), name="reference embeddings")
        return cls(emb, ids, columns, fp)


@dataclass
class _Job:
    """What the stages of one :func:`dedup` call share."""

    run: _Run
    embeddings: np.ndarray
    ids: np.ndarray | None
    columns: Any
    cluster: ClusterConfig
    config: DedupConfig
    executor: Executor
    progress: Progress
    reference: _Reference | None = None
    reference_config: ReferenceConfig | None = None

    @property
    def out(self) -> Path:
        return self.run.out

    @property
    def n(self) -> int:
        return self.embeddings.shape[0]


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
) -> Results:
    """Run SemDeDup on ``embeddings`` (``n × d``, any scale) and return the :class:`Results`.

    ``ids``: a sequence of ``n`` unique ids (default ``"0".."n-1"``). ``out``: the results folder
    (a new temporary folder when ``None``); running again on the same folder with the same arguments
    resumes. ``columns``: an optional DataFrame of ``n`` rows carried into ``items.parquet`` (paths,
    texts, captions). ``extra``: more facts recorded in ``run.json`` (for example the encoder used).
    ``executor``: where the assign and score steps run — ``"local"`` (default), ``"ray"``, or an
    :class:`~semdedup_core.run.executors.Executor`; results are the same either way.

    ``reference``: a held-out set (``m × d``, the same model) to look for leaks of, with its
    ``reference_ids`` (default ``"0".."m-1"``), ``reference_columns`` (a DataFrame; its ``text`` and
    ``path`` columns are kept) and ``reference_config`` (:class:`ReferenceConfig`: the probe count, or
    exact). ``items.parquet`` then gains ``ref_sim``/``ref_id``, and the folder ``reference.parquet`` and
    ``reference_embeddings.npy``.
    """
    from ..results.results import Results

    config = config or DedupConfig()
    if isinstance(embeddings, (str, Path)):
        embeddings = io.load_embeddings(embeddings)
    check_matrix(embeddings)
    n, d = embeddings.shape
    if cluster.n_clusters > n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {cluster.n_clusters}")
    ids = io.check_ids(ids, n) if ids is not None else None
    if columns is not None and len(columns) != n:
        raise SemDedupError(f"columns has {len(columns)} rows but there are {n} items; give one row per item")
    ref = None
    if reference is not None:
        ref = _Reference.check(reference, reference_ids, reference_columns, d)
        reference_config = reference_config or ReferenceConfig()
    elif reference_ids is not None or reference_columns is not None or reference_config is not None:
        raise SemDedupError(
            "reference_ids, reference_columns and reference_config need a reference set; pass reference"
        )
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="semdedup-")
        log.info("writing results to %s", out)
    with ResultsFolder(out).lock():  # one writer at a time, from reading run.json to the end
        resolve_device(config.device)
        resolve_device(cluster.device)
        fp = fingerprint(embeddings, ids) + ("" if ref is None else f"+reference:{ref.fingerprint}")
        run = _Run(Path(out), engine_params(cluster, config, reference_config if ref else None), fp, n, d)
        if run.complete:
            log.info("results folder %s is complete; nothing to do", out)
            return Results.load(out)
        job = _Job(
            run,
            embeddings,
            ids,
            columns,
            cluster,
            config,
            get_executor(executor),
            progress or _noop,
            ref,
            reference_config,
        )

        x = run.stage("normalize", lambda: _normalize(job), load=lambda: np.load(job.out / EMBEDDINGS))
        centroids = run.stage("kmeans", lambda: _kmeans(job, x), load=lambda: np.load(job.out / CENTROIDS))
        labels, dist = run.stage("assign", lambda: _assign(job, x, centroids), load=lambda: _load_assign(job))
        if config.probe:
            probes = run.stage(
                "probe", lambda: _probe(job, x, labels, centroids), load=lambda: np.load(job.out / PROBES)
            )
            scores = run.stage("score", lambda: _score_probed(job, x, labels, dist, probes))
        else:
            scores = run.stage("score", lambda: _score(job, x, labels, dist))  # finished shards are reused inside
        leaks = run.stage("leakage", lambda: _leakage(job, x, labels, centroids)) if ref is not None else None
        run.stage("write", lambda: _write(job, labels, dist, scores, extra, leaks))
        shutil.rmtree(run.work, ignore_errors=True)
        return Results.load(out)


# -- the stages: each returns (value, facts for run.json) ---------------------------------------------
def _normalize(job: _Job) -> tuple[np.ndarray, dict[str, Any]]:
    n = job.n
    job.progress("normalize", 0, n)
    x = normalize_rows(np.array(job.embeddings, dtype=np.float32, copy=True))  # bad rows raise before any write
    job.run.save()  # the folder's first write: the input is valid
    io.save_npy(job.out / EMBEDDINGS, x)
    job.progress("normalize", n, n)
    return x, {}


def kmeans_sample(n: int, cluster: ClusterConfig) -> np.ndarray | None:
    """The rows k-means is fitted on (sorted; a seeded sample of ``n_clusters × max_points_per_centroid``),
    or ``None`` when that is every row. The local and the sharded pipeline draw the same sample."""
    n_sample = min(n, cluster.n_clusters * cluster.max_points_per_centroid)
    if n_sample >= n:
        return None
    return np.sort(np.random.default_rng(cluster.seed).choice(n, n_sample, replace=False))


def fit_and_save_centroids(
    sample: np.ndarray, cluster: ClusterConfig, out: Path, progress: Progress
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit the centroids on ``sample`` (:func:`kmeans_sample`'s rows), write ``centroids.npy`` atomically
    and return them with the stage's facts for ``run.json``."""
    k, n_sample = cluster.n_clusters, len(sample)
    progress("kmeans", 0, 1)
    centroids = fit_centroids(
        sample,
        k,
        niter=cluster.niter,
        seed=cluster.seed,
        max_points_per_centroid=max(cluster.max_points_per_centroid, -(-n_sample // k)),
        device=cluster.device,
        backend=cluster.backend,
    )
    io.save_npy(out / CENTROIDS, centroids)
    progress("kmeans", 1, 1)
    return centroids, {
        "sample_size": int(n_sample),
        "device": kmeans_device(cluster.device, cluster.backend),
        "backend": kmeans_backend(cluster.device, cluster.backend),
    }


def _kmeans(job: _Job, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    pick = kmeans_sample(job.n, job.cluster)
    return fit_and_save_centroids(x if pick is None else x[pick], job.cluster, job.out, job.progress)


def _assign_path(job: _Job) -> Path:
    return job.run.work / f"assign-{job.run.key}.npz"


def _load_assign(job: _Job) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_assign_path(job)) as z:
        return z["labels"], z["dist"]


def _assign(job: _Job, x: np.ndarray, centroids: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    n, device, backend = job.n, job.cluster.device, job.cluster.backend
    job.progress("assign", 0, n)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    chunks = ((s, (x[s : s + ASSIGN_ROWS], centroids, device, backend)) for s in range(0, n, ASSIGN_ROWS))
    for s, (lab, dst) in job.executor.imap(assign, chunks):
        labels[s : s + len(lab)], dist[s : s + len(lab)] = lab, dst
        job.progress("assign", min(n, s + len(lab)), n)
    job.run.work.mkdir(parents=True, exist_ok=True)
    io.save_npz(_assign_path(job), labels=labels, dist=dist)
    return (labels, dist), {"device": kmeans_device(device, backend), "backend": kmeans_backend(device, backend)}


def _score(
    job: _Job, x: np.ndarray, labels: np.ndarray, dist: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    config, run = job.config, job.run
    k = job.cluster.n_clusters
    groups = ClusterIndex.build(labels, k)
    order, offsets = groups.order, groups.offsets
    shard_dir = run.work / "scores"
    device = resolve_device(config.device)
    precision = _stage_precision(job, "score", device)
    rank = np.empty(job.n, dtype=np.int64)
    max_sim = np.empty(job.n, dtype=np.float32)
    dup_idx = np.empty(job.n, dtype=np.int64)

    def merge(first: int, last: int, r: np.ndarray, ms: np.ndarray, dup_local: np.ndarray) -> None:
        members = order[int(offsets[first]) : int(offsets[last])]
        rank[members] = r
        max_sim[members] = ms
        dup_idx[members] = np.where(dup_local >= 0, members[np.maximum(dup_local, 0)], -1)

    options = _kernel_options(config, precision)

    def task(first: int, last: int) -> tuple[Any, ...]:
        lo, hi = int(offsets[first]), int(offsets[last])
        members = order[lo:hi]
        return (
            x[members],
            dist[members],
            offsets[first : last + 1] - lo,
            np.arange(first, last),
            config.keep,
            config.seed,
            options,
        )

    reused = _run_shards(
        job,
        "score",
        shard_dir,
        shard_bounds(offsets, SHARD_ITEMS),
        task,
        score_shard,
        merge,
        _SCORE_ARRAYS,
        key=f"{run.key}-{precision}",
    )
    info = {"resumed_clusters": int(reused), "precision": precision, "device": device, "backend": f"torch-{device}"}
    return (rank, max_sim, dup_idx), info


_SCORE_ARRAYS = ("rank", "max_sim", "dup_row")


def _kernel_options(config: DedupConfig, precision: str) -> dict[str, Any]:
    """The keyword options every pairwise task gets. ``device`` stays as configured: ``auto`` is resolved
    where the task runs (a Ray worker may have a GPU the driver lacks)."""
    return {
        "device": config.device,
        "precision": precision,
        "block_size": config.block_size,
        "max_block_bytes": config.max_block_bytes,
    }


def _stage_precision(job: _Job, stage: str, device: str) -> str:
    """The arithmetic a sharded stage uses: what its first attempt used (recorded in ``run.json`` and
    kept on resume, so no stage mixes shards of two precisions), else what the config means here."""
    run = job.run
    recorded = run.meta["stages"].get(stage, {}).get("precision")
    if recorded is not None:
        return recorded
    precision = score_precision(job.config, device)
    run.meta["stages"][stage] = {"done": False, "precision": precision}
    run.save()
    return precision


def _run_shards(
    job: _Job,
    stage: str,
    folder: Path,
    bounds: list[tuple[int, int]],
    task: Callable[[int, int], tuple[Any, ...]],
    fn: Callable[..., tuple[np.ndarray, ...]],
    merge: Callable[..., None],
    names: tuple[str, ...],
    *,
    key: str,
) -> int:
    """Run ``fn(*task(first, last))`` for each shard ``(first, last)`` of whole clusters through the
    executor, checkpoint each result in ``folder`` as it arrives (``names`` are its arrays) and hand it
    to ``merge(first, last, *arrays)``. Shards an interrupted run finished are loaded instead of
    computed; returns how many clusters were reused. ``key`` (the run's :func:`work_key` and the
    stage's precision) names the files, so shards of other parameters, input or precision are never read."""
    folder.mkdir(parents=True, exist_ok=True)

    def path(first: int, last: int) -> Path:
        return folder / f"shard-{first:07d}-{last:07d}-{key}.npz"

    total = bounds[-1][1] if bounds else 0
    reused = 0
    todo = []
    for first, last in bounds:  # finished shards of an interrupted run
        if path(first, last).exists():
            with np.load(path(first, last)) as z:
                merge(first, last, *(z[name] for name in names))
            reused += last - first
        else:
            todo.append((first, last))
    done = reused
    job.progress(stage, done, total)
    tasks: Iterator[Task] = (((first, last), task(first, last)) for first, last in todo)
    for (first, last), arrays in job.executor.imap(fn, tasks):
        io.save_npz(path(first, last), **dict(zip(names, arrays, strict=True)))
        merge(first, last, *arrays)
        done += last - first
        job.progress(stage, done, total)
    return reused


def score_shard(
    emb: np.ndarray,
    dist: np.ndarray,
    offsets: np.ndarray,
    cluster_ids: np.ndarray,
    keep: str,
    seed: int,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scoring task: :func:`~semdedup_core.kernels.pairwise.score_clusters` with keyword ``options``
    (a module-level function, so it pickles for Ray)."""
    return score_clusters(emb, dist, offsets, cluster_ids, keep, seed, **options)


def _probe(job: _Job, x: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Each item's own cluster and its ``probe`` nearest other clusters (``probes.npy``)."""
    n, device = job.n, job.cluster.device
    job.progress("probe", 0, n)
    probes = nearest_centroids(x, centroids, job.config.probe, own=labels, device=device)
    io.save_npy(job.out / PROBES, probes)
    job.progress("probe", n, n)
    return probes, {"device": kmeans_device(device), "probe": int(probes.shape[1] - 1)}


def _score_probed(
    job: _Job, x: np.ndarray, labels: np.ndarray, dist: np.ndarray, probes: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """The score with probing: each item against the items earlier in the global keep order that lie in
    its own or its probed clusters. Shards are whole clusters of queries (fewer items per shard the more
    clusters each probes, so a task's targets stay bounded); each task gets its queries and the members
    of every cluster they probe, and returns each query's best score and the global position of its
    partner."""
    config, n = job.config, job.n
    k = job.cluster.n_clusters
    pos = global_order(dist, config.keep, config.seed)  # each item's position in the global order
    by_pos = np.empty(n, dtype=np.int64)
    by_pos[pos] = np.arange(n)
    groups = ClusterIndex.build(labels, k, rank=pos)  # each cluster's members in global order
    order, offsets = groups.order, groups.offsets
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(offsets[:-1], groups.sizes)
    device = resolve_device(config.device)
    precision = _stage_precision(job, "score", device)
    max_sim = np.full(n, -1.0, dtype=np.float32)
    dup_idx = np.full(n, -1, dtype=np.int64)

    def merge(first: int, last: int, ms: np.ndarray, dup_pos: np.ndarray) -> None:
        members = order[int(offsets[first]) : int(offsets[last])]
        max_sim[members] = ms
        dup_idx[members] = np.where(dup_pos >= 0, by_pos[np.maximum(dup_pos, 0)], -1)

    options = _kernel_options(config, precision)

    def task(first: int, last: int) -> tuple[Any, ...]:
        members = order[int(offsets[first]) : int(offsets[last])]
        clusters, local = probe_groups(probes[members])
        parts = [groups.members(c) for c in clusters]
        targets = np.concatenate(parts)
        target_offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in parts], out=target_offsets[1:])
        return x[members], pos[members], local, x[targets], target_offsets, pos[targets], options

    sizes = groups.sizes
    comparisons = int(sizes[probes].sum())  # query × target pairs computed (about half are earlier)
    reused = _run_shards(
        job,
        "score",
        job.run.work / "scores-probed",
        shard_bounds(offsets, max(1, SHARD_ITEMS // probes.shape[1])),
        task,
        probe_shard,
        merge,
        ("max_sim", "dup_pos"),
        key=f"{job.run.key}-{precision}",
    )
    facts = {
        "resumed_clusters": int(reused),
        "precision": precision,
        "device": device,
        "backend": f"torch-{device}",
        "probe": int(probes.shape[1] - 1),
        "comparisons": comparisons,
        "paper_comparisons": int((sizes.astype(np.int64) ** 2).sum()),
    }
    return (rank, max_sim, dup_idx), facts


def probe_shard(
    queries: np.ndarray,
    query_pos: np.ndarray,
    probes: np.ndarray,
    targets: np.ndarray,
    offsets: np.ndarray,
    target_pos: np.ndarray,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """One probing score task: :func:`~semdedup_core.kernels.pairwise.match_in_clusters` of a shard's items
    against the earlier members of the clusters they probe; returns ``(max_sim, partner's global position)``."""
    sim, local = match_in_clusters(
        queries, probes, targets, offsets, target_key=target_pos, query_pos=query_pos, **options
    )
    return sim, np.where(local >= 0, target_pos[np.maximum(local, 0)], -1)


def _leakage(
    job: _Job, x: np.ndarray, labels: np.ndarray, centroids: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    """Each item's most similar reference item, comparing it with the reference items filed under its
    cluster: every reference item is filed under its nearest centroid and the ``probe`` next nearest
    ones (per-cluster multi-assignment; exact mode: one group of all reference items for every item)."""
    ref, rc, config = job.reference, job.reference_config, job.config
    assert ref is not None and rc is not None
    k, m = job.cluster.n_clusters, len(ref.ids)
    job.progress("leakage", 0, k)
    filing = nearest_centroids(ref.emb, centroids, 0 if rc.exact else rc.probe, device=job.cluster.device)
    _write_reference(job.out, ref, filing[:, 0])
    groups = ClusterIndex.build(labels, k)
    order, offsets = groups.order, groups.offsets
    if rc.exact:
        filed_rows, filed_offsets = np.arange(m, dtype=np.int64), None
        comparisons = job.n * m
    else:  # (reference row, cluster) pairs grouped by cluster, each group in reference order
        rows = np.repeat(np.arange(m, dtype=np.int64), filing.shape[1])
        clusters = filing.ravel().astype(np.int64)
        by_cluster = np.lexsort((rows, clusters))
        filed_rows = rows[by_cluster]
        filed_offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(clusters, minlength=k), out=filed_offsets[1:])
        comparisons = int((groups.sizes * np.diff(filed_offsets)).sum())
    device = resolve_device(config.device)
    precision = _stage_precision(job, "leakage", device)
    ref_sim = np.full(job.n, -1.0, dtype=np.float32)
    ref_row = np.full(job.n, -1, dtype=np.int64)

    def merge(first: int, last: int, sim: np.ndarray, row: np.ndarray) -> None:
        members = order[int(offsets[first]) : int(offsets[last])]
        ref_sim[members], ref_row[members] = sim, row

    options = _kernel_options(config, precision)

    def task(first: int, last: int) -> tuple[Any, ...]:
        members = order[int(offsets[first]) : int(offsets[last])]
        if filed_offsets is None:  # exact: every item against every reference item
            probes = np.zeros((len(members), 1), dtype=np.int64)
            return x[members], probes, ref.emb, np.array([0, m]), filed_rows, options
        lo, hi = int(filed_offsets[first]), int(filed_offsets[last])
        keys = filed_rows[lo:hi]
        probes = (labels[members] - first)[:, None]
        return x[members], probes, ref.emb[keys], filed_offsets[first : last + 1] - lo, keys, options

    reused = _run_shards(
        job,
        "leakage",
        job.run.work / "reference",
        shard_bounds(offsets, SHARD_ITEMS),
        task,
        leak_shard,
        merge,
        ("ref_sim", "ref_row"),
        key=f"{job.run.key}-{precision}",
    )
    facts = {
        "resumed_clusters": int(reused),
        "precision": precision,
        "device": device,
        "backend": f"torch-{device}",
        "probe": rc.probe,
        "exact": rc.exact,
        "comparisons": int(comparisons),
        "compared_share": round(comparisons / max(1, job.n * m), 6),
    }
    return (ref_sim, ref_row), facts


def leak_shard(
    queries: np.ndarray,
    probes: np.ndarray,
    targets: np.ndarray,
    offsets: np.ndarray,
    keys: np.ndarray,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """One leakage task: :func:`~semdedup_core.kernels.pairwise.match_in_clusters` of a shard's items
    against the reference items filed under its clusters; returns ``(ref_sim, reference row)``."""
    sim, local = match_in_clusters(queries, probes, targets, offsets, target_key=keys, **options)
    return sim, np.where(local >= 0, keys[np.maximum(local, 0)], -1)


def _write_reference(out: Path, ref: _Reference, nearest: np.ndarray) -> None:
    """``reference_embeddings.npy`` and ``reference.parquet`` (``id``, nearest ``cluster``, text/path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    io.save_npy(out / REFERENCE_EMBEDDINGS, ref.emb)
    table = pa.table({"id": pa.array(list(ref.ids), pa.string()), "cluster": pa.array(nearest.astype(np.int64))})
    if ref.columns is not None:
        extra = pa.Table.from_pandas(ref.columns, preserve_index=False)
        for name in extra.column_names:
            table = table.append_column(name, extra[name])
    with io.atomic_path(out / REFERENCE) as tmp:
        pq.write_table(table, tmp)


def _write(
    job: _Job,
    labels: np.ndarray,
    dist: np.ndarray,
    scores: tuple[np.ndarray, np.ndarray, np.ndarray],
    extra: dict[str, Any] | None,
    leaks: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[None, dict[str, Any]]:
    run = job.run
    job.progress("write", 0, 1)
    rank, max_sim, dup_idx = scores
    ref_cols = None
    if leaks is not None and job.reference is not None:
        ref_cols = (leaks[0], leaks[1], job.reference.ids)
        rc = job.reference_config
        run.meta["counts"]["reference_items"] = len(job.reference.ids)
        run.meta["reference"] = {
            "items": len(job.reference.ids),
            "probe": None if rc is None else rc.probe,
            "search": "exact: every item against every reference item"
            if rc is None or rc.exact
            else "each reference item filed under its nearest centroid and the probe next nearest; "
            "each item compared with the reference items filed under its own cluster",
        }
    run.meta.pop(MIRROR_KEY, None)  # run.json names the Arrow copy only once it matches the new parquet
    pair = _write_items(job.out, job.ids, labels, dist, rank, max_sim, dup_idx, job.columns, ref_cols)
    run.meta[MIRROR_KEY] = mirror_record(job.out, [pair])
    sizes = np.bincount(labels, minlength=job.cluster.n_clusters)
    run.meta["counts"].update(
        {
            "clusters": job.cluster.n_clusters,
            "empty_clusters": int((sizes == 0).sum()),
            "largest_cluster": int(sizes.max()),
            "median_cluster": float(np.median(sizes)),
        }
    )
    for key, value in (extra or {}).items():  # dicts (counts, stages) are merged, anything else replaced
        if isinstance(value, dict) and isinstance(run.meta.get(key), dict):
            run.meta[key].update(value)
        else:
            run.meta[key] = value
    run.meta["comparison"] = comparison_rule(job.config)
    stages = run.meta["stages"]
    run.meta["device"] = {
        name: stages[name]["device"] for name in ("kmeans", "assign", "probe", "score", "leakage") if name in stages
    }
    # what ran each stage: faiss-cpu / faiss-gpu / torch-cpu / torch-cuda (and the encoder's, for --input runs)
    run.meta["backend"] = {
        name: stages[name]["backend"]
        for name in ("embed", "kmeans", "assign", "score", "leakage")
        if "backend" in stages.get(name, {})
    }
    run.meta["executor"] = job.executor.name
    run.meta["status"] = "complete"
    job.progress("write", 1, 1)
    return None, {}


def comparison_rule(config: DedupConfig) -> dict[str, Any]:
    """What an item's ``max_sim``/``dup_of`` was computed against, as ``run.json`` records it."""
    if not config.probe:
        return {
            "probe": 0,
            "rule": "paper",
            "description": "each item against the earlier items of its own cluster, in its cluster's keep order "
            "(SemDeDup's rule)",
        }
    return {
        "probe": int(config.probe),
        "rule": "paper+probe",
        "description": f"each item against the earlier items, in one global keep order, of its own cluster and "
        f"of the {config.probe} clusters whose centroids are nearest to it (per-item probing)",
    }


def _write_items(out, ids, labels, dist, rank, max_sim, dup_idx, columns, ref_cols=None) -> dict[str, Any]:
    """``items.parquet`` (the engine's columns, ``dup_row``, the reference columns, the carried ones) and its
    Arrow copy ``items.arrow``; returns the pair's record for ``run.json``. ``ids`` may be an Arrow string
    array and ``columns`` an Arrow table (no conversion through Python objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(labels)
    if isinstance(ids, (pa.Array, pa.ChunkedArray)):  # already Arrow strings (a writer of many rows)
        id_arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    else:
        id_arr = pa.array(ids, pa.string()) if ids is not None else pc.cast(pa.array(np.arange(n)), pa.string())
    has_dup = dup_idx >= 0
    dup_arr = pc.take(id_arr, pa.array(np.where(has_dup, dup_idx, 0)))
    dup_arr = pc.if_else(pa.array(has_dup), dup_arr, pa.scalar(None, pa.string()))
    table = pa.table(
        {
            "id": id_arr,
            "cluster": pa.array(labels.astype(np.int64)),
            "dist_to_centroid": pa.array(dist.astype(np.float32)),
            "rank": pa.array(rank),
            "max_sim": pa.array(max_sim),
            "dup_of": dup_arr,
            DUP_ROW: pa.array(np.where(has_dup, dup_idx, -1).astype(np.int64)),
        }
    )
    if ref_cols is not None:  # ref_sim, ref_id right after the engine's columns
        ref_sim, ref_row, ref_ids = ref_cols
        has_ref = ref_row >= 0
        ref_arr = pc.take(pa.array(list(ref_ids), pa.string()), pa.array(np.where(has_ref, ref_row, 0)))
        table = table.append_column("ref_sim", pa.array(ref_sim.astype(np.float32)))
        table = table.append_column("ref_id", pc.if_else(pa.array(has_ref), ref_arr, pa.scalar(None, pa.string())))
    if columns is not None:
        extra = (
            columns
            if isinstance(columns, pa.Table)
            else pa.Table.from_pandas(columns.reset_index(drop=True), preserve_index=False)
        )
        for name in extra.column_names:
            if name in table.column_names:
                raise SemDedupError(f"column {name!r} is reserved by the results format; rename it")
            table = table.append_column(name, extra[name])
    return write_items(table, out / ITEMS, out / ITEMS_ARROW)
