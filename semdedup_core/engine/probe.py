"""Looking beyond an item's own cluster: which clusters are compared, by nearest centroids.

SemDeDup compares an item only with the items of its own k-means cluster, so two near-copies on
opposite sides of a cluster boundary are never compared. The reference search (leakage) closes that
hole by *filing* each reference item under its nearest centroid and the ``P`` next nearest ones
(:func:`nearest_centroids`); every item of the run is then compared with the reference items filed
under its own cluster. ``bench/bench_leakage.py --strategies`` measured this per-cluster
multi-assignment against per-item probing (each item looks into its own ``P`` nearest clusters) and
per-cluster probing (:func:`neighbour_clusters`): filing reached 99 % recall of true leaks with the
fewest comparisons (table in the README).

Everything here is a pure function of arrays.
"""

from __future__ import annotations

import numpy as np

from .kmeans import kmeans_device

PROBE_CHUNK = 1 << 16  # rows per faiss search


def nearest_centroids(
    x: np.ndarray, centroids: np.ndarray, probe: int, own: np.ndarray | None = None, device: str = "auto"
) -> np.ndarray:
    """The clusters each unit row of ``x`` looks into: ``n × (1 + probe)`` int32, its own cluster first
    (``own``, or its nearest centroid when not given), then the ``probe`` next nearest centroids in order
    of cosine. ``probe`` is capped at ``k − 1``. Works in chunks, so ``x`` may be a memory map."""
    import faiss

    k = centroids.shape[0]
    probe = int(min(max(probe, 0), k - 1))
    n = x.shape[0]
    out = np.empty((n, probe + 1), dtype=np.int32)
    index: faiss.Index = faiss.IndexFlatIP(centroids.shape[1])
    if kmeans_device(device) == "cuda":
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    for s in range(0, n, PROBE_CHUNK):
        chunk = np.ascontiguousarray(x[s : s + PROBE_CHUNK], dtype=np.float32)
        _, top = index.search(chunk, probe + 1)
        if own is None:
            out[s : s + len(chunk)] = top
            continue
        mine = np.asarray(own[s : s + len(chunk)], dtype=np.int64)[:, None]
        both = np.concatenate([mine, top], axis=1)  # own first, then the search's order
        keep = np.ones(both.shape, dtype=bool)
        again = both[:, 1:] == mine
        keep[:, 1:][again] = False  # own cluster found again by the search: drop that copy
        keep[~again.any(axis=1), -1] = False  # not found (a tie decided the other way): drop the last
        out[s : s + len(chunk)] = both[keep].reshape(len(chunk), probe + 1)
    return out


def neighbour_clusters(centroids: np.ndarray, probe: int, device: str = "auto") -> np.ndarray:
    """Per-cluster probing (measured against per-item probing, not used by the engine): each cluster's
    ``probe`` nearest other centroids, ``k × (1 + probe)``, the cluster itself first."""
    k = centroids.shape[0]
    return nearest_centroids(centroids, centroids, probe, own=np.arange(k), device=device)
