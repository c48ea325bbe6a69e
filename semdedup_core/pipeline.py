"""The SemDeDup run: normalise → k-means → assign → score each cluster → write the results folder.

Each stage records its completion in ``run.json``; intermediate arrays live in ``DIR/.work`` and are
written atomically, so a run killed at any moment and started again with the same arguments resumes
where it stopped and ends with the same files. The per-cluster work is done by :func:`score_clusters`,
a pure function of arrays, in shards of whole clusters (a cluster is never split).
"""

from __future__ import annotations

import hashlib
import logging
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import io
from .config import ClusterConfig, DedupConfig, to_dict
from .device import resolve_device
from .errors import SemDedupError
from .executors import Executor, LocalExecutor, Task, get_executor
from .kmeans import assign, fit_centroids
from .pairwise import order_cluster, scores_in_cluster
from .vectors import check_matrix, normalize_rows

if TYPE_CHECKING:
    from .results import Results

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as each stage advances. Raising from it stops the run
cleanly (what is finished stays finished, and a rerun resumes)."""

FORMAT_VERSION = 1
SHARD_ITEMS = 50_000  # clusters are grouped into shards of about this many items for checkpointing
ASSIGN_ROWS = 1 << 18  # rows per assignment task


def _noop(stage: str, done: int, total: int) -> None:
    pass


def engine_params(cluster: ClusterConfig, config: DedupConfig) -> dict[str, Any]:
    """The parameters a results folder records and a resumed run must match. Device, block size and
    memory budget change speed, never results, so they are left out (and may differ on resume)."""
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

    from . import __version__

    return {
        "semdedup": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", "unknown"),
        "torch": torch.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def cluster_members(labels: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """``(order, offsets)``: item indices grouped by cluster (input order inside each cluster), and
    ``offsets[c]:offsets[c+1]`` the slice of ``order`` that belongs to cluster ``c``."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels, minlength=n_clusters)
    offsets = np.zeros(n_clusters + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return order, offsets


def shard_bounds(offsets: np.ndarray, shard_items: int = SHARD_ITEMS) -> list[tuple[int, int]]:
    """Split clusters ``0..k-1`` into consecutive runs of about ``shard_items`` items (whole clusters)."""
    bounds, first = [], 0
    k = len(offsets) - 1
    for c in range(k):
        if offsets[c + 1] - offsets[first] >= shard_items or c == k - 1:
            bounds.append((first, c + 1))
            first = c + 1
    return bounds


def score_clusters(
    emb: np.ndarray,
    dist: np.ndarray,
    offsets: np.ndarray,
    cluster_ids: np.ndarray,
    config: DedupConfig,
    device: str = "auto",
    on_cluster: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order and score a run of whole clusters. A pure function of arrays (runs on any worker).

    ``emb``/``dist`` hold the clusters' rows back to back, cluster ``j`` at ``offsets[j]:offsets[j+1]``.
    Returns, per row, ``rank`` (position in its cluster's keep order), ``max_sim`` and ``dup_row``
    (the row, in ``emb``'s numbering, of the earlier item it is most similar to; -1 for rank 0).
    """
    device = resolve_device(device)
    n = emb.shape[0]
    rank = np.empty(n, dtype=np.int64)
    max_sim = np.empty(n, dtype=np.float32)
    dup_row = np.empty(n, dtype=np.int64)
    precision = config.precision
    if precision == "auto":
        precision = "float16" if device == "cuda" else "float32"
    for j, cluster in enumerate(cluster_ids):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        if hi == lo:
            continue
        perm = order_cluster(dist[lo:hi], config.keep, config.seed, int(cluster))
        ms, am = scores_in_cluster(
            emb[lo:hi][perm], config.block_size, device, dtype=precision, max_block_bytes=config.max_block_bytes
        )
        rows = lo + perm
        rank[rows] = np.arange(hi - lo)
        max_sim[rows] = ms
        dup_row[rows] = np.where(am >= 0, lo + perm[np.maximum(am, 0)], -1)
        if on_cluster is not None:
            on_cluster(int(cluster))
    return rank, max_sim, dup_row


class _Run:
    """Book-keeping of one results folder: parameters, stage completion, timings."""

    def __init__(self, out: Path, params: dict[str, Any], fp: str, n: int, d: int):
        self.out = out
        self.work = out / io.WORK
        path = out / io.RUN
        if path.exists():
            try:
                old = io.read_json(path)
            except ValueError:
                raise SemDedupError(
                    f"results folder {str(out)!r} has an unreadable run.json; choose another --out folder"
                ) from None
            old_shape = (old.get("counts", {}).get("items"), old.get("counts", {}).get("dim"))
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
            self.resumed = True
        else:
            # the scratch folder and errors.parquet may already be there when run_input embedded first
            if out.exists() and any(p.name not in (io.WORK, "errors.parquet") for p in out.iterdir()):
                raise SemDedupError(
                    f"output folder {str(out)!r} exists and is not a semdedup results folder; choose an empty or new folder"
                )
            self.meta = {
                "format_version": FORMAT_VERSION,
                "status": "running",
                "params": params,
                "input_fingerprint": fp,
                "counts": {"items": n, "dim": d},
                "stages": {},
                "versions": library_versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            self.resumed = False  # nothing is written until the input has been validated (see dedup)

    def done(self, stage: str) -> bool:
        return bool(self.meta["stages"].get(stage, {}).get("done"))

    def finish(self, stage: str, seconds: float, **info: Any) -> None:
        prev = self.meta["stages"].get(stage, {})
        entry = {"done": True, "seconds": round(prev.get("seconds", 0.0) + seconds, 4), **info}
        self.meta["stages"][stage] = entry
        self.save()

    def add_seconds(self, stage: str, seconds: float) -> None:
        entry = self.meta["stages"].setdefault(stage, {"done": False})
        entry["seconds"] = round(entry.get("seconds", 0.0) + seconds, 4)
        self.save()

    def save(self) -> None:
        io.write_json(self.out / io.RUN, self.meta)


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
    :class:`~semdedup_core.executors.Executor`; results are the same either way.
    """
    from .results import Results

    config = config or DedupConfig()
    progress = progress or _noop
    if isinstance(embeddings, (str, Path)):
        embeddings = io.load_embeddings(embeddings)
    check_matrix(embeddings)
    n, d = embeddings.shape
    if cluster.n_clusters > n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {cluster.n_clusters}")
    ids = io.check_ids(ids, n) if ids is not None else None
    if columns is not None and len(columns) != n:
        raise SemDedupError(f"columns has {len(columns)} rows but there are {n} items; give one row per item")
    device = resolve_device(config.device)
    resolve_device(cluster.device)
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="semdedup-")
        log.info("writing results to %s", out)
    out = Path(out)
    params = engine_params(cluster, config)
    run = _Run(out, params, fingerprint(embeddings, ids), n, d)
    ex = get_executor(executor)
    if run.done("write"):
        log.info("results folder %s is complete; nothing to do", out)
        return Results.load(out)

    # 1. unit vectors, in input order
    emb_path = out / io.EMBEDDINGS
    if run.done("normalize") and emb_path.exists():
        x = np.load(emb_path)
    else:
        t0 = time.perf_counter()
        progress("normalize", 0, n)
        x = normalize_rows(np.array(embeddings, dtype=np.float32, copy=True))  # bad rows raise before any write
        run.save()
        io.save_npy(emb_path, x)
        progress("normalize", n, n)
        run.finish("normalize", time.perf_counter() - t0)

    # 2. spherical k-means on a seeded sample
    cent_path = out / io.CENTROIDS
    k = cluster.n_clusters
    if run.done("kmeans") and cent_path.exists():
        centroids = np.load(cent_path)
    else:
        t0 = time.perf_counter()
        progress("kmeans", 0, 1)
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
        del sample
        io.save_npy(cent_path, centroids)
        progress("kmeans", 1, 1)
        run.finish("kmeans", time.perf_counter() - t0, sample_size=int(n_sample))

    # 3. every item to its nearest centroid
    run.work.mkdir(parents=True, exist_ok=True)
    assign_path = run.work / "assign.npz"
    if run.done("assign") and assign_path.exists():
        with np.load(assign_path) as z:
            labels, dist = z["labels"], z["dist"]
    else:
        t0 = time.perf_counter()
        progress("assign", 0, n)
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float32)
        chunks = ((s, (x[s : s + ASSIGN_ROWS], centroids, cluster.device)) for s in range(0, n, ASSIGN_ROWS))
        for s, (lab, dst) in ex.imap(assign, chunks):
            labels[s : s + len(lab)], dist[s : s + len(lab)] = lab, dst
            progress("assign", min(n, s + len(lab)), n)
        io.save_npz(assign_path, labels=labels, dist=dist)
        progress("assign", n, n)
        run.finish("assign", time.perf_counter() - t0)

    # 4. order and score each cluster, shard by shard
    order, offsets = cluster_members(labels, k)
    sizes = np.diff(offsets)
    shard_dir = run.work / "scores"
    shard_dir.mkdir(exist_ok=True)
    rank = np.empty(n, dtype=np.int64)
    max_sim = np.empty(n, dtype=np.float32)
    dup_idx = np.empty(n, dtype=np.int64)
    bounds = shard_bounds(offsets, SHARD_ITEMS)
    done_clusters = 0
    reused = 0
    progress("score", 0, k)

    def shard_path(first: int, last: int) -> Path:
        return shard_dir / f"shard-{first:07d}-{last:07d}.npz"

    def tick(_cluster: int) -> None:  # per-cluster progress, when scoring runs in this process
        nonlocal done_clusters
        done_clusters += 1
        progress("score", done_clusters, k)

    local = isinstance(ex, LocalExecutor)

    def tasks() -> Iterator[Task]:
        for first, last in bounds:
            if not shard_path(first, last).exists():
                lo, hi = int(offsets[first]), int(offsets[last])
                members = order[lo:hi]
                args = (
                    x[members],
                    dist[members],
                    offsets[first : last + 1] - lo,
                    np.arange(first, last),
                    config,
                    config.device,
                    tick if local else None,
                )
                yield (first, last), args

    def merge(first: int, last: int, r: np.ndarray, ms: np.ndarray, dup_local: np.ndarray) -> None:
        members = order[int(offsets[first]) : int(offsets[last])]
        rank[members] = r
        max_sim[members] = ms
        dup_idx[members] = np.where(dup_local >= 0, members[np.maximum(dup_local, 0)], -1)

    for first, last in bounds:  # finished shards of an interrupted run
        if shard_path(first, last).exists():
            with np.load(shard_path(first, last)) as z:
                merge(first, last, z["rank"], z["max_sim"], z["dup_row"])
            reused += last - first
            done_clusters += last - first
    progress("score", done_clusters, k)
    t0 = time.perf_counter()
    for (first, last), (r, ms, dup_local) in ex.imap(score_clusters, tasks()):
        io.save_npz(shard_path(first, last), rank=r, max_sim=ms, dup_row=dup_local)
        merge(first, last, r, ms, dup_local)
        if local:  # tick() counted the non-empty clusters as they finished
            done_clusters += int((sizes[first:last] == 0).sum())
        else:
            done_clusters += last - first
        progress("score", done_clusters, k)
        run.add_seconds("score", time.perf_counter() - t0)
        t0 = time.perf_counter()
    run.finish("score", 0.0, resumed_clusters=int(reused))

    # 5. the results folder
    t0 = time.perf_counter()
    progress("write", 0, 1)
    _write_items(out, ids, labels, dist, rank, max_sim, dup_idx, columns)
    run.meta["counts"].update(
        {
            "items": n,
            "dim": d,
            "clusters": k,
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
    run.meta["device"] = {"score": device, "kmeans": resolve_device(cluster.device)}
    run.meta["executor"] = ex.name
    run.meta["status"] = "complete"
    run.finish("write", time.perf_counter() - t0)
    shutil.rmtree(run.work, ignore_errors=True)
    progress("write", 1, 1)
    return Results.load(out)


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
    with io.atomic_path(out / io.ITEMS) as tmp:
        pq.write_table(table, tmp)
