"""Spherical k-means (faiss) and nearest-centroid assignment.

Both functions take and return plain arrays and hold no global state, so a distributed backend can
run them on workers unchanged.
"""

from __future__ import annotations

import logging

import numpy as np

from .device import faiss_gpu_available, resolve_device

log = logging.getLogger(__name__)

_ASSIGN_CHUNK = 1 << 17


def _unit_rows(c: np.ndarray) -> np.ndarray:
    c = np.ascontiguousarray(c, dtype=np.float32)
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return c / norms


def kmeans_device(device: str = "auto") -> str:
    """Where :func:`fit_centroids` and :func:`assign` really run for ``device``: ``cuda`` only when a GPU
    is asked for (or found by ``auto``) *and* faiss was built with GPU support; ``cpu`` otherwise (the
    pinned ``faiss-cpu`` runs k-means on the CPU even on a GPU machine). ``run.json`` records this."""
    return faiss_device(resolve_device(device), faiss_gpu_available())


def faiss_device(resolved: str, faiss_has_gpu: bool) -> str:
    """The device faiss runs on for a resolved ``cpu``/``cuda`` request: ``cuda`` needs a GPU build."""
    return "cuda" if resolved == "cuda" and faiss_has_gpu else "cpu"


def fit_centroids(
    x: np.ndarray,
    n_clusters: int,
    *,
    niter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    device: str = "auto",
) -> np.ndarray:
    """Fit spherical k-means on unit rows ``x`` and return ``k × d`` float32 unit centroids.

    faiss samples ``n_clusters * max_points_per_centroid`` rows (seeded) when ``x`` has more; the
    result is reproducible for a given seed, thread count and device.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    use_gpu = kmeans_device(device) == "cuda"
    km = faiss.Kmeans(
        x.shape[1],
        n_clusters,
        niter=niter,
        seed=seed,
        spherical=True,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
        gpu=use_gpu,
        verbose=False,
    )
    km.train(x)
    return _unit_rows(km.centroids)


def assign(x: np.ndarray, centroids: np.ndarray, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Assign each unit row of ``x`` to its highest-cosine centroid.

    Returns ``(labels int64, dist_to_centroid float32)`` with ``dist = 1 - cosine``. Works in chunks, so ``x`` may be a memory map larger than RAM.
    """
    import faiss

    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    index: faiss.Index = faiss.IndexFlatIP(centroids.shape[1])
    if kmeans_device(device) == "cuda":
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(centroids)
    n = x.shape[0]
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    for start in range(0, n, _ASSIGN_CHUNK):
        chunk = np.ascontiguousarray(x[start : start + _ASSIGN_CHUNK], dtype=np.float32)
        sims, idx = index.search(chunk, 1)
        labels[start : start + len(chunk)] = idx[:, 0]
        dist[start : start + len(chunk)] = 1.0 - sims[:, 0]
    return labels, dist
