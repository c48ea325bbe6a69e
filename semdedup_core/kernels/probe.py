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
  highest cosine to any item earlier in the :func:`global_order` that lies in its own cluster or in one
  of the ``P`` clusters whose centroids are nearest to *it*. ``bench/bench_probe.py --strategies``
  measured per-item probing against per-cluster probing (the ``P`` clusters nearest its cluster's
  centroid, :func:`neighbour_clusters`): at equal cost per-item found 99.0–99.5 % of the pairs with
  cosine > 0.9 at ``P = 4`` where per-cluster found 92–94 % (tables in the README).

Everything here is a pure function of arrays.
"""

from __future__ import annotations

import numpy as np

from ..errors import SemDedupError
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


def global_order(dist_to_centroid: np.ndarray, keep: str, seed: int = 0) -> np.ndarray:
    """Each item's position in the one global keep order (int64, a permutation of ``0..n-1``).

    The order ranks items the way their policy ranks them inside a cluster: ``hard``: farthest from its
    own centroid first; ``easy``: nearest first; ``random``: a seeded random key per item. Ties are broken
    by input order. Restricted to one cluster it is that cluster's keep order (for ``hard`` and ``easy``
    exactly the order the paper's rule uses), so probing only ever adds comparisons to the paper's.
    """
    d = np.asarray(dist_to_centroid, dtype=np.float32)
    n = len(d)
    rows = np.arange(n)
    if keep == "hard":
        order = np.lexsort((rows, -d))
    elif keep == "easy":
        order = np.lexsort((rows, d))
    elif keep == "random":
        order = np.random.default_rng([seed, 0x9E3779B9]).permutation(n)
    else:
        raise SemDedupError(f"keep must be one of hard, easy, random, got {keep!r}")
    pos = np.empty(n, dtype=np.int64)
    pos[order] = rows
    return pos


def probe_groups(probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct clusters named in ``probes`` (sorted) and ``probes`` renumbered into them
    (``local[i, j]`` indexes the returned clusters; -1 stays -1)."""
    flat = probes.ravel()
    valid = flat >= 0
    clusters, inverse = np.unique(flat[valid], return_inverse=True)
    local = np.full(flat.shape, -1, dtype=np.int64)
    local[valid] = inverse
    return clusters.astype(np.int64), local.reshape(probes.shape)
