"""The SemDeDup run, one function per stage: normalise → k-means → assign → score → write.

:func:`dedup` checks the input, then hands each stage to :meth:`_Run.stage`, which skips a stage that
a previous (interrupted) run finished, times it and records it in ``run.json``. Intermediate arrays
live in ``DIR/.work`` and are written atomically, so a run killed at any moment and started again with
the same arguments resumes where it stopped and ends with the same files. Scoring runs in shards of
whole clusters (a cluster is never split) through an executor (this process or Ray); each shard is
checkpointed as it arrives, and progress is counted there, where results arrive.
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
from . import io
from .clusters import ClusterIndex
from .config import ClusterConfig, DedupConfig, to_dict
from .device import resolve_device
from .executors import Executor, Task, get_executor
from .kmeans import assign, fit_centroids, kmeans_device
from .pairwise import score_clusters
from .schema import CENTROIDS, EMBEDDINGS, FORMAT_VERSION, ITEMS, RUN, WORK, ResultsFolder
from .vectors import check_matrix, normalize_rows

if TYPE_CHECKING:
    from .results import Results

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as each stage advances. Raising from it stops the run
cleanly (what is finished stays finished, and a rerun resumes)."""

SHARD_ITEMS = 50_000  # clusters are grouped into shards of about this many items for checkpointing
ASSIGN_ROWS = 1 << 18  # rows per assignment task


def _noop(stage: str, done: int, total: int) -> None:
    pass


def engine_params(cluster: ClusterConfig, config: DedupConfig) -> dict[str, Any]:
    """The parameters a results folder records and a resumed run must match. Device, block size and
    memory budget change speed only, so they are left out (and may differ on resume). The one way a
    device changes results is arithmetic precision (``precision="auto"``: float16 on CUDA, float32 on
    CPU); the precision a run's scoring started with is recorded in ``run.json`` and kept on resume,
    whatever device the resume runs on."""
    params = {"cluster": to_dict(cluster), "dedup": to_dict(config)}
    for key in ("device", "block_size", "max_block_bytes"):
        params["dedup"].pop(key)
    params["cluster"].pop("device")
    return params


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


def library_versions() -> dict[str, str]:
    import faiss
    import pandas
    import pyarrow
    import torch

    from .._version import __version__

    return {
        "semdedup": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", "unknown"),
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
            if old.get("params") != params or old.get("input_fingerprint") != fp:
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
) -> Results:
    """Run SemDeDup on ``embeddings`` (``n × d``, any scale) and return the :class:`Results`.

    ``ids``: a sequence of ``n`` unique ids (default ``"0".."n-1"``). ``out``: the results folder
    (a new temporary folder when ``None``); running again on the same folder with the same arguments
    resumes. ``columns``: an optional DataFrame of ``n`` rows carried into ``items.parquet`` (paths,
    texts, captions). ``extra``: more facts recorded in ``run.json`` (for example the encoder used).
    ``executor``: where the assign and score steps run — ``"local"`` (default), ``"ray"``, or an
    :class:`~semdedup_core.engine.executors.Executor`; results are the same either way.
    """
    from .results import Results

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
    resolve_device(config.device)
    resolve_device(cluster.device)
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="semdedup-")
        log.info("writing results to %s", out)
    run = _Run(Path(out), engine_params(cluster, config), fingerprint(embeddings, ids), n, d)
    if run.complete:
        log.info("results folder %s is complete; nothing to do", out)
        return Results.load(out)
    job = _Job(run, embeddings, ids, columns, cluster, config, get_executor(executor), progress or _noop)

    x = run.stage("normalize", lambda: _normalize(job), load=lambda: np.load(job.out / EMBEDDINGS))
    centroids = run.stage("kmeans", lambda: _kmeans(job, x), load=lambda: np.load(job.out / CENTROIDS))
    labels, dist = run.stage("assign", lambda: _assign(job, x, centroids), load=lambda: _load_assign(job))
    scores = run.stage("score", lambda: _score(job, x, labels, dist))  # finished shards are reused inside
    run.stage("write", lambda: _write(job, labels, dist, scores, extra))
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


def _kmeans(job: _Job, x: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    cluster, n = job.cluster, job.n
    k = cluster.n_clusters
    job.progress("kmeans", 0, 1)
    n_sample = min(n, k * cluster.max_points_per_centroid)
    if n_sample < n:
        pick = np.sort(np.random.default_rng(cluster.seed).choice(n, n_sample, replace=False))
        sample = x[pick]
    else:
        sample = x
    centroids = fit_centroids(
        sample,
        k,
        niter=cluster.niter,
        seed=cluster.seed,
        max_points_per_centroid=max(cluster.max_points_per_centroid, -(-n_sample // k)),
        device=cluster.device,
    )
    io.save_npy(job.out / CENTROIDS, centroids)
    job.progress("kmeans", 1, 1)
    return centroids, {"sample_size": int(n_sample), "device": kmeans_device(cluster.device)}


def _assign_path(job: _Job) -> Path:
    return job.run.work / "assign.npz"


def _load_assign(job: _Job) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_assign_path(job)) as z:
        return z["labels"], z["dist"]


def _assign(job: _Job, x: np.ndarray, centroids: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
    n, device = job.n, job.cluster.device
    job.progress("assign", 0, n)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    chunks = ((s, (x[s : s + ASSIGN_ROWS], centroids, device)) for s in range(0, n, ASSIGN_ROWS))
    for s, (lab, dst) in job.executor.imap(assign, chunks):
        labels[s : s + len(lab)], dist[s : s + len(lab)] = lab, dst
        job.progress("assign", min(n, s + len(lab)), n)
    job.run.work.mkdir(parents=True, exist_ok=True)
    io.save_npz(_assign_path(job), labels=labels, dist=dist)
    return (labels, dist), {"device": kmeans_device(device)}


def _score(
    job: _Job, x: np.ndarray, labels: np.ndarray, dist: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    config, run = job.config, job.run
    k = job.cluster.n_clusters
    groups = ClusterIndex.build(labels, k)
    order, offsets = groups.order, groups.offsets
    shard_dir = run.work / "scores"
    shard_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    # the precision the first scoring attempt used is kept on resume: shards are never mixed
    recorded = run.meta["stages"].get("score", {}).get("precision")
    precision = recorded or score_precision(config, device)
    if recorded is None:
        run.meta["stages"]["score"] = {"done": False, "precision": precision}
        run.save()
    rank = np.empty(job.n, dtype=np.int64)
    max_sim = np.empty(job.n, dtype=np.float32)
    dup_idx = np.empty(job.n, dtype=np.int64)

    def shard_path(first: int, last: int) -> Path:
        return shard_dir / f"shard-{first:07d}-{last:07d}.npz"

    def merge(first: int, last: int, r: np.ndarray, ms: np.ndarray, dup_local: np.ndarray) -> None:
        members = order[int(offsets[first]) : int(offsets[last])]
        rank[members] = r
        max_sim[members] = ms
        dup_idx[members] = np.where(dup_local >= 0, members[np.maximum(dup_local, 0)], -1)

    bounds = shard_bounds(offsets, SHARD_ITEMS)
    reused = 0
    todo = []
    for first, last in bounds:  # finished shards of an interrupted run
        if shard_path(first, last).exists():
            with np.load(shard_path(first, last)) as z:
                merge(first, last, z["rank"], z["max_sim"], z["dup_row"])
            reused += last - first
        else:
            todo.append((first, last))
    done_clusters = reused
    job.progress("score", done_clusters, k)
    options = {  # "auto" is resolved where the task runs (a Ray worker may have a GPU the driver lacks)
        "device": config.device,
        "precision": precision,
        "block_size": config.block_size,
        "max_block_bytes": config.max_block_bytes,
    }

    def tasks() -> Iterator[Task]:
        for first, last in todo:
            lo, hi = int(offsets[first]), int(offsets[last])
            members = order[lo:hi]
            yield (
                (first, last),
                (
                    x[members],
                    dist[members],
                    offsets[first : last + 1] - lo,
                    np.arange(first, last),
                    config.keep,
                    config.seed,
                    options,
                ),
            )

    for (first, last), (r, ms, dup_local) in job.executor.imap(score_shard, tasks()):
        io.save_npz(shard_path(first, last), rank=r, max_sim=ms, dup_row=dup_local)
        merge(first, last, r, ms, dup_local)
        done_clusters += last - first
        job.progress("score", done_clusters, k)
    return (rank, max_sim, dup_idx), {"resumed_clusters": int(reused), "precision": precision, "device": device}


def score_shard(
    emb: np.ndarray,
    dist: np.ndarray,
    offsets: np.ndarray,
    cluster_ids: np.ndarray,
    keep: str,
    seed: int,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scoring task: :func:`~semdedup_core.engine.pairwise.score_clusters` with keyword ``options``
    (a module-level function, so it pickles for Ray)."""
    return score_clusters(emb, dist, offsets, cluster_ids, keep, seed, **options)


def _write(
    job: _Job,
    labels: np.ndarray,
    dist: np.ndarray,
    scores: tuple[np.ndarray, np.ndarray, np.ndarray],
    extra: dict[str, Any] | None,
) -> tuple[None, dict[str, Any]]:
    run = job.run
    job.progress("write", 0, 1)
    rank, max_sim, dup_idx = scores
    _write_items(job.out, job.ids, labels, dist, rank, max_sim, dup_idx, job.columns)
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
    stages = run.meta["stages"]
    run.meta["device"] = {name: stages[name]["device"] for name in ("kmeans", "assign", "score") if name in stages}
    run.meta["executor"] = job.executor.name
    run.meta["status"] = "complete"
    job.progress("write", 1, 1)
    return None, {}


def _write_items(out, ids, labels, dist, rank, max_sim, dup_idx, columns) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    n = len(labels)
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
        }
    )
    if columns is not None:
        extra = pa.Table.from_pandas(columns.reset_index(drop=True), preserve_index=False)
        for name in extra.column_names:
            if name in table.column_names:
                raise SemDedupError(f"column {name!r} is reserved by the results format; rename it")
            table = table.append_column(name, extra[name])
    with io.atomic_path(out / ITEMS) as tmp:
        pq.write_table(table, tmp)
