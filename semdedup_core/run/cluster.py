"""The clustering stages: the seeded k-means sample and fit (once, on the driver), then per part the nearest
centroid of every row (``assign``) and, with probing, the clusters each row also looks into (``probe``).

The sample is drawn from the rows' global numbers, so it is the same rows however the input is split;
assignment and probing decide on exact cosines (:func:`~semdedup_core.kernels.kmeans.assign`,
:func:`~semdedup_core.kernels.probe.nearest_centroids`), so a row's cluster does not depend on its part.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..kernels.kmeans import assign, fit_centroids, kmeans_backend, kmeans_device
from ..kernels.probe import nearest_centroids
from ..results import io
from ..results.names import CENTROIDS
from .config import ClusterConfig
from .layout import Layout
from .meta import Progress


def kmeans_sample(n: int, cluster: ClusterConfig) -> np.ndarray | None:
    """The rows k-means is fitted on (sorted; a seeded sample of ``n_clusters × max_points_per_centroid``),
    or ``None`` when that is every row."""
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


def assign_part(layout: Layout, p: int, device: str, backend: str, k: int) -> np.ndarray:
    """Part ``p``'s labels and distances (``p/NNNNN/assign.npz``); returns its per-cluster counts."""
    out = layout.part(p) / "assign.npz"
    if not out.is_file():
        x = np.load(layout.embeddings(p), mmap_mode="r")
        labels, dist = assign(x, np.load(Path(layout.out) / CENTROIDS), device, backend)
        io.save_npz(out, labels=labels, dist=dist)
    with np.load(out) as z:
        return np.bincount(z["labels"], minlength=k)


def load_assign(layout: Layout, p: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(layout.part(p) / "assign.npz") as z:
        return z["labels"], z["dist"]


def probe_part(layout: Layout, p: int, probe: int, device: str) -> int:
    """Part ``p``'s own cluster and its ``probe`` nearest others, ``n_p × (1 + probe)`` int32, into its
    probes file (``probes.npy``, or ``probes/part-NNNNN.npy`` of several parts)."""
    dest = layout.probes(p)
    if not dest.is_file():
        x = np.load(layout.embeddings(p), mmap_mode="r")
        labels, _ = load_assign(layout, p)
        probes = nearest_centroids(x, np.load(Path(layout.out) / CENTROIDS), probe, own=labels, device=device)
        io.save_npy(dest, probes)
    return int(np.load(dest, mmap_mode="r").shape[0])
