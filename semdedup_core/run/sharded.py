"""SemDeDup over shards, for a cluster: every stage is a set of per-shard tasks that read and write files,
and the driver holds only per-shard summaries (counts, a few paths), never all ids or vectors.

Input: *parts* in ``DIR/.work/parts/NNNNN/`` — each ``meta.parquet`` (``id`` and carried columns, one
row per candidate item, in input order), ``emb.npy`` (raw float32 vectors, rows aligned with the meta),
``errors.parquet`` (items already left out) and a ``done.json`` marker. :mod:`semdedup_core.ingest.sharded`
writes them from raw data on Ray Data actors; :func:`split_npy` from an ``.npy`` matrix.

Stages (each task's outputs are written atomically and skipped on a rerun, so a killed driver or worker
resumes at the shard level):

1. ``prepare`` per part: validate and L2-normalise; NaN/inf/zero rows become error rows; ids hashed
   into buckets for the duplicate-id check.
2. ``ids`` per hash bucket: a repeated id is an error row for every occurrence after the first.
3. ``sample``: the same seeded global sample as the local pipeline (rows numbered across parts in
   order), read by the parts that hold the rows; k-means is fitted once, on the driver.
4. ``assign`` per part: nearest centroid of every row; the driver sums the per-cluster counts.
5. ``shuffle`` per part: rows sent to *buckets* of whole clusters (about ``SHARD_ITEMS`` items each).
6. ``score`` per bucket: each cluster ordered and scored exactly as :func:`~.pipeline.dedup` does; the
   results are sent back to the parts they came from.
7. ``write`` per part: ``items.parquet/part-NNNNN.parquet`` (its Arrow copy ``items.arrow/part-NNNNN.arrow``)
   and ``embeddings/part-NNNNN.npy``.

The results equal a local :func:`~.pipeline.dedup` over the same items in the same order (same ids,
clusters and ranks; scores equal on the same device and precision).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.clusters import ClusterIndex
from ..kernels.device import resolve_device
from ..kernels.kmeans import assign, kmeans_backend, kmeans_device
from ..kernels.pairwise import score_clusters
from ..results import io
from ..results.folder import ResultsFolder
from ..results.items import MIRROR_KEY, mirror_record, pair_record, write_items
from ..results.names import CENTROIDS, DUP_ROW, EMBEDDINGS_DIR, ERRORS, ITEMS, ITEMS_ARROW, WORK
from .config import ClusterConfig, DedupConfig
from .executors import Executor, get_executor
from .pipeline import (
    SHARD_ITEMS,
    _Run,
    engine_params,
    fit_and_save_centroids,
    kmeans_sample,
    score_precision,
    shard_bounds,
)

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
ID_BUCKETS = 16
PARTS = "parts"


def _noop(stage: str, done: int, total: int) -> None:
    pass


def part_dir(work: Path, p: int) -> Path:
    return work / PARTS / f"{p:05d}"


def part_done(work: Path, p: int) -> bool:
    return (part_dir(work, p) / "done.json").is_file()


def write_part(work: Path, p: int, meta: Any, emb: np.ndarray, errors: list[dict[str, Any]], source: str) -> dict:
    """Write one input part (``meta`` a DataFrame with ``id`` first; ``emb`` rows aligned with it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = part_dir(work, p)
    d.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(d / "meta.parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(meta.reset_index(drop=True), preserve_index=False), tmp)
    io.save_npy(d / "emb.npy", np.ascontiguousarray(emb, dtype=np.float32))
    _write_errors(d / "errors.parquet", errors)
    summary = {"part": p, "rows": int(len(meta)), "dim": int(emb.shape[1]) if emb.ndim == 2 else 0, "source": source}
    io.write_json(d / "done.json", summary)
    return summary


def _write_errors(path: Path, errors: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def text(v: Any) -> str | None:
        return None if v is None or (isinstance(v, float) and v != v) else str(v)

    table = pa.table({k: pa.array([text(e.get(k)) for e in errors], pa.string()) for k in ("id", "path", "reason")})
    with io.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def split_npy(path: str, ids_path: str | None, work: Path, rows_per_part: int, executor: Executor) -> list[dict]:
    """Parts of an ``.npy`` matrix (memory-mapped by each task: the file must be where the workers see it)."""
    x = io.load_embeddings(path)
    n = x.shape[0]
    if ids_path is not None:
        io.read_ids(ids_path, n)  # validated once, here: count and uniqueness
    bounds = [(s, min(n, s + rows_per_part)) for s in range(0, n, rows_per_part)]
    todo = [((p, a, b)) for p, (a, b) in enumerate(bounds) if not part_done(work, p)]
    tasks = (((p,), (str(path), ids_path, n, a, b, str(work), p)) for p, a, b in todo)
    for _ in executor.imap(_npy_part, tasks):
        pass
    return [io.read_json(part_dir(work, p) / "done.json") for p in range(len(bounds))]


def _npy_part(path: str, ids_path: str | None, n: int, a: int, b: int, work: str, p: int) -> dict:
    import pandas as pd

    x = np.load(path, mmap_mode="r")
    if ids_path is not None:
        ids = io.read_ids(ids_path, n)[a:b]
    else:
        ids = np.arange(a, b).astype(str)
    return write_part(Path(work), p, pd.DataFrame({"id": ids}), np.asarray(x[a:b], dtype=np.float32), [], path)


# -- the stages' tasks (module-level: they pickle for Ray) ----------------------------------------------
def _id_hash(ids: Any) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(i).encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for i in ids
        ],
        dtype=np.uint64,
    )


def _prepare(work: str, p: int, strict: bool) -> dict:
    """Validate and normalise part ``p``: ``unit.npy`` (good rows), ``rows.npy`` (their row numbers in
    the part), id hashes by bucket. ``strict`` (an ``.npy`` input): a bad row is an error of the run."""
    import pandas as pd

    d = part_dir(Path(work), p)
    out = d / "prepared.json"
    if out.is_file():
        return io.read_json(out)
    meta = pd.read_parquet(d / "meta.parquet", columns=["id"])
    emb = np.load(d / "emb.npy", mmap_mode="r")
    errors = pd.read_parquet(d / "errors.parquet")
    failed = set(errors["id"].dropna())
    x = np.asarray(emb, dtype=np.float32)
    ok = np.isfinite(x).all(axis=1) & (np.abs(x) > 0).any(axis=1) if len(x) else np.zeros(0, bool)
    if strict and not ok.all():
        bad = np.flatnonzero(~ok)[:5]
        raise SemDedupError(
            f"embeddings rows {', '.join(str(int(r)) for r in bad)} of part {p} contain NaN, inf or all zeros; "
            "fix or drop those items before deduplicating"
        )
    new_errors = [
        {"id": str(meta["id"].iat[r]), "path": None, "reason": "embedding is NaN, infinite or all zero"}
        for r in np.flatnonzero(~ok)
        if str(meta["id"].iat[r]) not in failed
    ]
    ok &= ~meta["id"].isin(failed).to_numpy()
    rows = np.flatnonzero(ok)
    unit = x[rows]
    if len(unit):
        unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    io.save_npy(d / "unit.npy", unit.astype(np.float32))
    io.save_npy(d / "rows.npy", rows.astype(np.int64))
    h = _id_hash(meta["id"].to_numpy()[rows])
    buckets = (h % np.uint64(ID_BUCKETS)).astype(np.int64)
    io.save_npz(d / "idhash.npz", hash=h, bucket=buckets)
    if new_errors:
        _write_errors(d / "errors.parquet", errors.to_dict("records") + new_errors)
    summary = {"part": p, "good": int(len(rows)), "dim": int(x.shape[1]) if x.ndim == 2 else 0}
    io.write_json(out, summary)
    return summary


def _check_ids(work: str, bucket: int, n_parts: int) -> list[tuple[int, int, str, str]]:
    """Repeated ids among the rows hashed to ``bucket``: ``(part, row-in-good-rows, id, first part)`` for
    every occurrence after the first (in input order)."""
    import pandas as pd

    hs, where = [], []
    for p in range(n_parts):
        with np.load(part_dir(Path(work), p) / "idhash.npz") as z:
            sel = np.flatnonzero(z["bucket"] == bucket)
            hs.append(z["hash"][sel])
            where.append(np.stack([np.full(len(sel), p), sel], axis=1))
    if not hs:
        return []
    h = np.concatenate(hs)
    w = np.concatenate(where)
    order = np.lexsort((w[:, 1], w[:, 0], h))  # by hash, then input order
    h, w = h[order], w[order]
    same = np.flatnonzero(h[1:] == h[:-1]) + 1
    if not len(same):
        return []
    ids_of: dict[int, np.ndarray] = {}

    def id_at(p: int, j: int) -> str:
        if p not in ids_of:
            d = part_dir(Path(work), p)
            meta = pd.read_parquet(d / "meta.parquet", columns=["id"])
            ids_of[p] = meta["id"].to_numpy()[np.load(d / "rows.npy")]
        return str(ids_of[p][j])

    out = []
    seen: dict[str, int] = {}
    for i in sorted(set(same) | {s - 1 for s in same}):
        p, j = int(w[i, 0]), int(w[i, 1])
        item = id_at(p, j)
        if item in seen:
            out.append((p, j, item, seen[item]))
        else:
            seen[item] = p
    return out


def _read_rows(work: str, p: int, rows: np.ndarray) -> np.ndarray:
    unit = np.load(part_dir(Path(work), p) / "unit.npy", mmap_mode="r")
    keep = np.load(part_dir(Path(work), p) / "keep.npy")
    return np.asarray(unit[keep[rows]], dtype=np.float32)


def _assign(work: str, p: int, centroids_path: str, device: str, k: int, backend: str = "auto") -> np.ndarray:
    d = part_dir(Path(work), p)
    out = d / "assign.npz"
    if not out.is_file():
        unit = np.load(d / "unit.npy", mmap_mode="r")
        keep = np.load(d / "keep.npy")
        labels, dist = assign(np.asarray(unit[keep]), np.load(centroids_path), device, backend)
        io.save_npz(out, labels=labels, dist=dist)
    with np.load(out) as z:
        return np.bincount(z["labels"], minlength=k)


def _shuffle(work: str, p: int, first_row: int, bounds: list[tuple[int, int]]) -> int:
    """Send part ``p``'s rows to the buckets of whole clusters ``bounds``."""
    import pandas as pd

    d = part_dir(Path(work), p)
    marker = d / "shuffled.json"
    if marker.is_file():
        return 0
    unit = np.load(d / "unit.npy", mmap_mode="r")
    keep = np.load(d / "keep.npy")
    rows = np.load(d / "rows.npy")[keep]
    ids = pd.read_parquet(d / "meta.parquet", columns=["id"])["id"].to_numpy()[rows]
    with np.load(d / "assign.npz") as z:
        labels, dist = z["labels"], z["dist"]
    firsts = np.array([a for a, _ in bounds])
    which = np.searchsorted(firsts, labels, side="right") - 1
    for b in np.unique(which):
        sel = np.flatnonzero(which == b)
        dest = Path(work) / "shuffle" / f"{int(b):05d}" / f"{p:05d}.npz"
        dest.parent.mkdir(parents=True, exist_ok=True)
        io.save_npz(
            dest,
            gidx=first_row + sel.astype(np.int64),
            part=np.full(len(sel), p, dtype=np.int64),
            local=sel.astype(np.int64),
            label=labels[sel],
            dist=dist[sel],
            emb=np.asarray(unit[keep[sel]], dtype=np.float32),
            ids=np.asarray(ids[sel], dtype=str),
        )
    io.write_json(marker, {"part": p})
    return len(rows)


def _score(work: str, b: int, first: int, last: int, keep: str, seed: int, options: dict[str, Any]) -> int:
    """Score bucket ``b`` (clusters ``first..last-1``) and send each row's result back to its part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = Path(work) / "scored" / f"bucket-{b:05d}.json"
    if marker.is_file():
        return 0
    files = sorted((Path(work) / "shuffle" / f"{b:05d}").glob("*.npz"))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("gidx", "part", "local", "label", "dist", "emb", "ids")}
    for f in files:
        with np.load(f) as z:
            for k in cols:
                cols[k].append(z[k])
    if files:
        a = {k: np.concatenate(v) for k, v in cols.items()}
        order = np.lexsort((a["gidx"], a["label"]))  # by cluster, input order inside: as the local pipeline
        a = {k: v[order] for k, v in a.items()}
        groups = ClusterIndex.build(a["label"] - first, last - first)
        rank, max_sim, dup_local = score_clusters(
            a["emb"], a["dist"], groups.offsets, np.arange(first, last), keep, seed, **options
        )
        has = dup_local >= 0
        dup_ids = np.where(has, a["ids"][np.maximum(dup_local, 0)], "")
        dup_rows = np.where(has, a["gidx"][np.maximum(dup_local, 0)], -1)  # rows in the input order of all parts
        for p in np.unique(a["part"]):
            sel = np.flatnonzero(a["part"] == p)
            dest = Path(work) / "scored" / f"{int(p):05d}" / f"{b:05d}.parquet"
            dest.parent.mkdir(parents=True, exist_ok=True)
            table = pa.table(
                {
                    "local": a["local"][sel],
                    "rank": rank[sel],
                    "max_sim": max_sim[sel],
                    "dup_of": pa.array(np.where(has[sel], dup_ids[sel], None).tolist(), pa.string()),
                    DUP_ROW: dup_rows[sel].astype(np.int64),
                }
            )
            with io.atomic_path(dest) as tmp:
                pq.write_table(table, tmp)
    marker.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(marker, {"bucket": b, "files": len(files)})
    return len(files)


def _item_files(out: str | Path, p: int) -> tuple[Path, Path]:
    """Part ``p``'s ``items.parquet/part-p.parquet`` and its Arrow copy ``items.arrow/part-p.arrow``."""
    return Path(out) / ITEMS / f"part-{p:05d}.parquet", Path(out) / ITEMS_ARROW / f"part-{p:05d}.arrow"


def _write(work: str, out: str, p: int) -> int:
    """``items.parquet/part-p.parquet`` (with its Arrow copy) and ``embeddings/part-p.npy`` from part ``p``'s
    results."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = part_dir(Path(work), p)
    dest, arrow_dest = _item_files(out, p)
    emb_dest = Path(out) / EMBEDDINGS_DIR / f"part-{p:05d}.npy"
    if dest.is_file() and arrow_dest.is_file() and emb_dest.is_file():
        return 0
    keep = np.load(d / "keep.npy")
    rows = np.load(d / "rows.npy")[keep]
    meta = pd.read_parquet(d / "meta.parquet").iloc[rows].reset_index(drop=True)
    with np.load(d / "assign.npz") as z:
        labels, dist = z["labels"], z["dist"]
    n = len(rows)
    rank = np.full(n, -1, dtype=np.int64)
    max_sim = np.full(n, -1.0, dtype=np.float32)
    dup_of = np.full(n, None, dtype=object)
    dup_row = np.full(n, -1, dtype=np.int64)
    for f in sorted((Path(work) / "scored" / f"{p:05d}").glob("*.parquet")):
        t = pq.read_table(f).to_pandas()
        loc = t["local"].to_numpy()
        rank[loc], max_sim[loc] = t["rank"].to_numpy(), t["max_sim"].to_numpy()
        dup_of[loc] = t["dup_of"].to_numpy(dtype=object)
        dup_row[loc] = t[DUP_ROW].to_numpy()
    if n and (rank < 0).any():
        raise SemDedupError(f"part {p} has rows that no scoring task returned; rerun the same command to resume")
    table = pa.table(
        {
            "id": pa.array(meta["id"].astype(str).tolist(), pa.string()),
            "cluster": pa.array(labels.astype(np.int64)),
            "dist_to_centroid": pa.array(dist.astype(np.float32)),
            "rank": pa.array(rank),
            "max_sim": pa.array(max_sim),
            "dup_of": pa.array([None if v is None or v != v else str(v) for v in dup_of], pa.string()),
            DUP_ROW: pa.array(dup_row),
        }
    )
    extra = pa.Table.from_pandas(meta.drop(columns=["id"]), preserve_index=False)
    for name in extra.column_names:
        table = table.append_column(name, extra[name])
    write_items(table, dest, arrow_dest)
    unit = np.load(d / "unit.npy", mmap_mode="r")
    io.save_npy(emb_dest, np.asarray(unit[keep], dtype=np.float32))
    return n


# -- the driver -------------------------------------------------------------------------------------
def dedup_parts(out: str | Path, n_parts: int, **kwargs: Any) -> Any:
    """Run SemDeDup over the ``n_parts`` parts already written in ``out/.work/parts`` (see
    :func:`_dedup_parts` for the options), holding the folder's write lock."""
    with ResultsFolder(out).lock():
        return _dedup_parts(out, n_parts, **kwargs)


def _dedup_parts(
    out: str | Path,
    n_parts: int,
    *,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    executor: str | Executor | None = None,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
    strict: bool = False,
    fingerprint: str,
) -> Any:
    """Run SemDeDup over the ``n_parts`` parts already written in ``out/.work/parts`` (see the module
    docstring). ``strict``: bad vectors fail the run (``.npy`` input) instead of becoming error rows.
    ``fingerprint`` identifies the input (a rerun over other input is refused)."""
    from ..results.results import Results

    config = config or DedupConfig()
    progress = progress or _noop
    out = Path(out)
    work = out / WORK
    ex = get_executor(executor)
    resolve_device(config.device)
    summaries = [io.read_json(part_dir(work, p) / "done.json") for p in range(n_parts)]
    dims = {s["dim"] for s in summaries if s["rows"]}
    if len(dims) > 1:
        raise SemDedupError(f"the parts hold vectors of different sizes {sorted(dims)}; use one encoder for all shards")
    d = dims.pop() if dims else 0
    n_rows = sum(s["rows"] for s in summaries)
    params = {**engine_params(cluster, config), "layout": "parts"}
    run = _Run(out, params, fingerprint, n_rows, d)
    if run.complete:
        return Results.load(out)
    run.save()
    w = str(work)

    def prepare() -> tuple[list[dict], dict]:
        todo = ((p, (w, p, strict)) for p in range(n_parts))
        done = {}
        for i, (p, s) in enumerate(ex.imap(_prepare, todo), 1):
            done[p] = s
            progress("prepare", i, n_parts)
        return [done[p] for p in range(n_parts)], {}

    prepared = run.stage(
        "prepare", prepare, load=lambda: [io.read_json(part_dir(work, p) / "prepared.json") for p in range(n_parts)]
    )

    def check_ids() -> tuple[dict, dict]:
        repeated = []
        for _, found in ex.imap(_check_ids, ((b, (w, b, n_parts)) for b in range(ID_BUCKETS))):
            repeated.extend(found)
        drops: dict[int, list[int]] = {}
        for p, j, _item, _first in repeated:
            drops.setdefault(p, []).append(j)
        for p in range(n_parts):
            good = prepared[p]["good"]
            keep = np.ones(good, dtype=bool)
            keep[drops.get(p, [])] = False
            io.save_npy(part_dir(work, p) / "keep.npy", np.flatnonzero(keep).astype(np.int64))
        found = {"repeated": [(int(p), int(j), str(item), int(first)) for p, j, item, first in repeated]}
        io.write_json(work / "repeated.json", found)
        return found, {"repeated_ids": len(repeated)}

    dup_ids = run.stage("ids", check_ids, load=lambda: io.read_json(work / "repeated.json"))
    sizes = np.array([len(np.load(part_dir(work, p) / "keep.npy")) for p in range(n_parts)], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n = int(starts[-1])
    k = cluster.n_clusters
    if n == 0:
        raise SemDedupError("nothing usable in the input: every item is an error (see errors.parquet)")
    if k > n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {k}")

    def kmeans() -> tuple[np.ndarray, dict]:
        pick = kmeans_sample(n, cluster)
        pick = np.arange(n) if pick is None else pick
        owner = np.searchsorted(starts, pick, side="right") - 1
        tasks = ((int(p), (w, int(p), pick[owner == p] - starts[p])) for p in np.unique(owner))
        got = dict(ex.imap(_read_rows, tasks))
        sample = np.concatenate([got[int(p)] for p in np.unique(owner)])
        return fit_and_save_centroids(sample, cluster, out, progress)

    run.stage("kmeans", kmeans, load=lambda: np.load(out / CENTROIDS))

    def assign_all() -> tuple[np.ndarray, dict]:
        counts = np.zeros(k, dtype=np.int64)
        tasks = ((p, (w, p, str(out / CENTROIDS), cluster.device, k, cluster.backend)) for p in range(n_parts))
        for i, (_, c) in enumerate(ex.imap(_assign, tasks), 1):
            counts += c
            progress("assign", i, n_parts)
        io.save_npy(work / "counts.npy", counts)
        return counts, {
            "device": kmeans_device(cluster.device, cluster.backend),
            "backend": kmeans_backend(cluster.device, cluster.backend),
        }

    counts = run.stage("assign", assign_all, load=lambda: np.load(work / "counts.npy"))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    bounds = shard_bounds(offsets, SHARD_ITEMS)

    def shuffle() -> tuple[None, dict]:
        tasks = ((p, (w, p, int(starts[p]), bounds)) for p in range(n_parts))
        for i, _ in enumerate(ex.imap(_shuffle, tasks), 1):
            progress("shuffle", i, n_parts)
        return None, {"buckets": len(bounds)}

    run.stage("shuffle", shuffle, load=lambda: None)
    device = resolve_device(config.device)
    recorded = run.meta["stages"].get("score", {}).get("precision")
    precision = recorded or score_precision(config, device)
    if recorded is None:
        run.meta["stages"]["score"] = {"done": False, "precision": precision}
        run.save()
    options = {
        "device": config.device,
        "precision": precision,
        "block_size": config.block_size,
        "max_block_bytes": config.max_block_bytes,
    }

    def score() -> tuple[None, dict]:
        done = sum((work / "scored" / f"bucket-{b:05d}.json").is_file() for b in range(len(bounds)))
        tasks = (
            (b, (w, b, first, last, config.keep, config.seed, options))
            for b, (first, last) in enumerate(bounds)
            if not (work / "scored" / f"bucket-{b:05d}.json").is_file()
        )
        progress("score", done, len(bounds))
        for _ in ex.imap(_score, tasks):
            done += 1
            progress("score", done, len(bounds))
        return None, {"precision": precision, "device": device, "backend": f"torch-{device}"}

    run.stage("score", score, load=lambda: None)

    def write() -> tuple[None, dict]:
        (out / ITEMS).mkdir(parents=True, exist_ok=True)
        (out / ITEMS_ARROW).mkdir(parents=True, exist_ok=True)
        (out / EMBEDDINGS_DIR).mkdir(parents=True, exist_ok=True)
        run.meta.pop(MIRROR_KEY, None)
        for i, _ in enumerate(ex.imap(_write, ((p, (w, str(out), p)) for p in range(n_parts))), 1):
            progress("write", i, n_parts)
        run.meta[MIRROR_KEY] = mirror_record(
            out, [pair_record(*_item_files(out, p), int(sizes[p])) for p in range(n_parts)]
        )
        _collect_errors(out, n_parts, dup_ids["repeated"])
        run.meta["counts"].update(
            {
                "items": n,
                "dim": d,
                "clusters": k,
                "empty_clusters": int((counts == 0).sum()),
                "largest_cluster": int(counts.max()),
                "median_cluster": float(np.median(counts)),
                "errors": int(_count_errors(out)),
                "parts": n_parts,
            }
        )
        run.meta["embeddings"] = {
            "shards": [f"{EMBEDDINGS_DIR}/part-{p:05d}.npy" for p in range(n_parts)],
            "rows": [int(s) for s in sizes],
        }
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(run.meta.get(key), dict):
                run.meta[key].update(value)
            else:
                run.meta[key] = value
        stages = run.meta["stages"]
        run.meta["device"] = {s: stages[s]["device"] for s in ("kmeans", "assign", "score") if s in stages}
        run.meta["backend"] = {
            s: stages[s]["backend"] for s in ("embed", "kmeans", "assign", "score") if "backend" in stages.get(s, {})
        }
        run.meta["executor"] = ex.name
        run.meta["status"] = "complete"
        return None, {}

    t0 = time.perf_counter()
    run.stage("write", write)
    log.info("wrote %s in %.1f s", out, time.perf_counter() - t0)
    shutil.rmtree(work, ignore_errors=True)
    return Results.load(out)


def _collect_errors(out: Path, n_parts: int, repeated: list) -> None:
    import pandas as pd

    frames = [pd.read_parquet(part_dir(out / WORK, p) / "errors.parquet") for p in range(n_parts)]
    rows = [
        {"id": item, "path": None, "reason": f"duplicate id (in part {p}; first in part {first})"}
        for p, _, item, first in repeated
    ]
    errors = pd.concat([*frames, pd.DataFrame(rows, columns=["id", "path", "reason"])], ignore_index=True)
    _write_errors(out / ERRORS, errors.to_dict("records"))


def _count_errors(out: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(out / ERRORS).metadata.num_rows
