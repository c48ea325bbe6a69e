"""Looking beyond an item's own cluster: which clusters are compared, and the one global keep order.

SemDeDup compares an item only with the items of its own k-means cluster, so two near-copies on
opposite sides of a cluster boundary are never compared. Two places close that hole with the same
tool, :func:`nearest_centroids`:

- the reference search (leakage) *files* each reference item under its nearest centroid and the ``P``
  next nearest ones; every item of the run is compared with the reference items filed under its own
  cluster. ``bench/bench_leakage.py --strategies`` measured this per-cluster multi-assignment against
  per-item probing and per-cluster probing: filing reached 99 % recall of true leaks with the fewest
  comparisons;
- the dedup score with ``probe = P > 0`` probes **per item**: an item's ``max_sim``/``dup_of`` is its
  highest cosine to any item earlier in the global keep order (:mod:`.order`) that lies in its own cluster or in one
  of the ``P`` clusters whose centroids are nearest to *it*. ``bench/bench_probe.py --strategies``
  measured per-item probing against per-cluster probing (the ``P`` clusters nearest its cluster's
  centroid, :func:`neighbour_clusters`): at equal cost per-item found 99.0–99.5 % of the pairs with
  cosine > 0.9 at ``P = 4`` where per-cluster found 92–94 % (tables in the README).

Everything here is a pure function of arrays.
"""

from __future__ import annotations

import numpy as np

from .kmeans import ASSIGN_TOLERANCE, kmeans_device

PROBE_CHUNK = 1 << 16  # rows per faiss search


PROBE_SPARE = 2
"""Candidates beyond the ``1 + probe`` nearest that the fast search nominates, so that the exact cosines
decide which centroids are nearest even where the search's ranking is off by its rounding."""


def nearest_centroids(
    x: np.ndarray, centroids: np.ndarray, probe: int, own: np.ndarray | None = None, device: str = "auto"
) -> np.ndarray:
    """The clusters each unit row of ``x`` looks into: ``n × (1 + probe)`` int32, its own cluster first
    (``own``, or its nearest centroid when not given), then the ``probe`` next nearest centroids in order
    of their exact cosine (ties to the lower centroid), so the result does not depend on how the rows were
    chunked. ``probe`` is capped at ``k − 1``. Works in chunks, so ``x`` may be a memory map."""
    import faiss

    k = centroids.shape[0]
    probe = int(min(max(probe, 0), k - 1))
    top = min(k, probe + 1 + PROBE_SPARE)
    n = x.shape[0]
    out = np.empty((n, probe + 1), dtype=np.int32)
    c32 = np.ascontiguousarray(centroids, dtype=np.float32)
    index: faiss.Index = faiss.IndexFlatIP(centroids.shape[1])
    if kmeans_device(device) == "cuda":
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(c32)
    for s in range(0, n, PROBE_CHUNK):
        chunk = np.ascontiguousarray(x[s : s + PROBE_CHUNK], dtype=np.float32)
        m = len(chunk)
        fast, cand = index.search(chunk, top)
        ranked = rank_nominees(chunk, c32, fast, cand, probe + 1)
        if own is None:
            out[s : s + m] = ranked[:, : probe + 1]
            continue
        mine = np.asarray(own[s : s + m], dtype=np.int64)[:, None]
        others = np.where(ranked == mine, np.iinfo(np.int64).max, ranked)  # own cluster found again: set aside
        others = np.take_along_axis(others, np.argsort(others == np.iinfo(np.int64).max, axis=1, kind="stable"), 1)
        out[s : s + m] = np.concatenate([mine, others[:, :probe]], axis=1)
    return out


def rank_nominees(x: np.ndarray, centroids: np.ndarray, fast: np.ndarray, cand: np.ndarray, keep: int) -> np.ndarray:
    """The nominated centroids ``cand`` (rows × t, best first by the ``fast`` similarities) of each row of
    ``x``, ranked by exact cosine, ties to the lower centroid. Where the last nominee lies within the
    search's error of the ``keep``-th, centroids beyond the nominees may belong in the first ``keep``:
    those rows rank every centroid (and keep the first t)."""
    from .pairwise import pair_dots

    m, t = cand.shape
    k = len(centroids)
    exact = pair_dots(x, np.repeat(np.arange(m), t), centroids, cand.ravel()).reshape(m, t)
    ranked = np.take_along_axis(cand, np.lexsort((cand, -exact), axis=1), axis=1)
    if t < k:
        wide = np.flatnonzero(fast[:, -1] >= fast[:, keep - 1] - ASSIGN_TOLERANCE["float32"])  # the same search
        if len(wide):
            every = pair_dots(x, np.repeat(wide, k), centroids, np.tile(np.arange(k), len(wide))).reshape(-1, k)
            ranked[wide] = np.lexsort((np.broadcast_to(np.arange(k), every.shape), -every), axis=1)[:, :t]
    return ranked


def neighbour_clusters(centroids: np.ndarray, probe: int, device: str = "auto") -> np.ndarray:
    """Per-cluster probing (measured against per-item probing, not used by the engine): each cluster's
    ``probe`` nearest other centroids, ``k × (1 + probe)``, the cluster itself first."""
    k = centroids.shape[0]
    return nearest_centroids(centroids, centroids, probe, own=np.arange(k), device=device)


def probe_groups(probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct clusters named in ``probes`` (sorted) and ``probes`` renumbered into them
    (``local[i, j]`` indexes the returned clusters; -1 stays -1)."""
    flat = probes.ravel()
    valid = flat >= 0
    clusters, inverse = np.unique(flat[valid], return_inverse=True)
    local = np.full(flat.shape, -1, dtype=np.int64)
    local[valid] = inverse
    return clusters.astype(np.int64), local.reshape(probes.shape)
