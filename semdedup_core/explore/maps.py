"""2-D maps of a run: a UMAP of the items (a stratified sample beyond ``max_points``) and of the centroids.

Computed once per run and method and cached in the results folder (``map-umap.parquet`` +
``map-umap.json``, ``centroid_map-umap.parquet``; ``-pca`` for the quick PCA projection), so the app never
recomputes them on a widget change. With ``store=False`` (the app's read-only mode), or when the folder
cannot be written (a read-only file system, another user's folder), a map is returned without being
stored; the caller keeps it in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.clusters import ClusterIndex
from ..results import io

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

log = logging.getLogger(__name__)

MAP_FILE = "map-{method}.parquet"
MAP_META = "map-{method}.json"
CENTROID_MAP_FILE = "centroid_map-{method}.parquet"
MAX_POINTS = 50_000
METHODS = ("umap", "pca")


def sample_rows(
    cluster: np.ndarray, max_sim: np.ndarray, dup_row: np.ndarray, max_points: int = MAX_POINTS, seed: int = 0
) -> np.ndarray:
    """Rows (sorted) to draw: all when ``n <= max_points``; otherwise whole clusters in a seeded random
    order until the budget is spent, so each sampled cluster keeps all its removed items and the items
    they duplicate. A cluster too large to fit on its own contributes its highest-scoring items (the ones
    removed first at any ε) with their ``dup_of`` targets."""
    n = len(cluster)
    if max_points < 1:
        raise SemDedupError(f"max_points must be at least 1, got {max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    groups = ClusterIndex.build(cluster)
    sizes = groups.sizes
    chosen: list[np.ndarray] = []
    budget = max_points
    for c in rng.permutation(len(sizes)):
        size = int(sizes[c])
        if size == 0 or budget <= 0:
            continue
        members = groups.members(c)
        if size <= budget:
            chosen.append(members)
            budget -= size
        elif not chosen or budget >= max_points // 4:  # a giant cluster: its top scores and their targets
            top = members[np.argsort(-max_sim[members], kind="stable")[: max(1, budget // 2)]]
            targets = dup_row[top]
            picked = np.unique(np.concatenate([top, targets[targets >= 0]]))[:budget]
            chosen.append(picked)
            budget -= len(picked)
    return np.unique(np.concatenate(chosen)) if chosen else np.arange(min(n, max_points), dtype=np.int64)


def embed_2d(x: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """Project the rows of ``x`` to 2-D with UMAP (cosine) or PCA; tiny inputs always use PCA."""
    if method not in METHODS:
        raise SemDedupError(f"map method must be one of {', '.join(METHODS)}, got {method!r}")
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[0]
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32)
    if method == "umap" and n >= 8:
        import umap

        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(15, n - 1), metric="cosine", random_state=seed, init="random", n_jobs=1
        )
        return reducer.fit_transform(x).astype(np.float32)
    centred = x - x.mean(axis=0, keepdims=True)
    if n < 2:
        return np.zeros((n, 2), dtype=np.float32)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    out = centred @ vt[:2].T
    if out.shape[1] < 2:
        out = np.hstack([out, np.zeros((n, 2 - out.shape[1]), dtype=out.dtype)])
    return out.astype(np.float32)


def _meta(results: Results, max_points: int, method: str, seed: int) -> dict[str, Any]:
    return {
        "n_items": results.n_items,
        "input_fingerprint": results.run.get("input_fingerprint"),
        "created": results.run.get("created"),
        "max_points": max_points,
        "method": method,
        "seed": seed,
    }


def load_map(
    results: Results, max_points: int = MAX_POINTS, method: str = "umap", seed: int = 0
) -> pd.DataFrame | None:
    """The cached map (``row``, ``x``, ``y``) when one was computed for this run with these settings."""
    import pandas as pd

    if results.path is None:
        return None
    path, meta_path = results.path / MAP_FILE.format(method=method), results.path / MAP_META.format(method=method)
    if not (path.exists() and meta_path.exists()):
        return None
    try:
        if io.read_json(meta_path, max_bytes=2**20) != _meta(results, max_points, method, seed):
            return None
        with io.parquet_source(path) as source:  # a regular file only (a FIFO would hang the page)
            return pd.read_parquet(source)
    except (ValueError, OSError):
        return None


def compute_all(
    results: Results,
    max_points: int = MAX_POINTS,
    method: str = "umap",
    progress: Callable[[str], None] | None = None,
    store: bool = True,
) -> pd.DataFrame:
    """The item map and the centroid map (both cached in the folder when ``store`` and it can be written);
    returns the item map (:func:`compute_both` returns both). ``progress(step)`` is told each step as it
    starts (``sample``, ``umap``/``pca``, ``centroids``)."""
    return compute_both(results, max_points, method, progress, store)[0]


def compute_both(
    results: Results,
    max_points: int = MAX_POINTS,
    method: str = "umap",
    progress: Callable[[str], None] | None = None,
    store: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(item map, centroid map)``, as :func:`compute_all` computes (and stores) them."""
    frame = compute_map(results, max_points=max_points, method=method, progress=progress, store=store)
    if progress:
        progress("centroids")
    return frame, centroid_map(results, method=method, store=store)


def _store(write: Callable[[], None], what: str) -> None:
    """Write a cached map into the results folder, or only log why not (the map is still returned)."""
    try:
        write()
    except OSError as exc:
        log.warning("the %s is kept in memory only: the results folder cannot be written (%s)", what, exc)


def compute_map(
    results: Results,
    max_points: int = MAX_POINTS,
    method: str = "umap",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    store: bool = True,
) -> pd.DataFrame:
    """Compute the item map, write it into the results folder (``store``) and return it (or the cached one)."""
    import pandas as pd

    cached = load_map(results, max_points, method, seed)
    if cached is not None:
        return cached
    if progress:
        progress("sample")
    rows = sample_rows(
        results.column("cluster"), results.column("max_sim"), results.dup_rows, max_points=max_points, seed=seed
    )
    x = np.asarray(results.embeddings[rows])
    if progress:
        progress(method)
    xy = embed_2d(x, method=method, seed=seed)
    frame = pd.DataFrame({"row": rows, "x": xy[:, 0], "y": xy[:, 1]})
    if results.path is not None and store:
        folder = results.path

        def write() -> None:
            io.write_parquet(folder / MAP_FILE.format(method=method), frame)
            io.write_json(folder / MAP_META.format(method=method), _meta(results, max_points, method, seed))

        _store(write, "map")
    return frame


def load_centroid_map(results: Results, method: str = "umap") -> pd.DataFrame | None:
    """The cached centroid map, or ``None`` when it has not been computed for this run and method."""
    import pandas as pd

    if results.path is None:
        return None
    path = results.path / CENTROID_MAP_FILE.format(method=method)
    try:
        with io.parquet_source(path) as source:
            frame = pd.read_parquet(source)
    except (ValueError, OSError):
        return None
    return frame if len(frame) == len(results.centroids) else None


def centroid_map(results: Results, method: str = "umap", seed: int = 0, store: bool = True) -> pd.DataFrame:
    """A 2-D map of the centroids (``cluster``, ``x``, ``y``, ``size``), cached in the results folder
    (``store``)."""
    import pandas as pd

    cached = load_centroid_map(results, method)
    if cached is not None:
        return cached
    path = results.path / CENTROID_MAP_FILE.format(method=method) if results.path is not None else None
    sizes = np.zeros(len(results.centroids), dtype=np.int64)
    sizes[: results.clusters.n_clusters] = results.clusters.sizes[: len(sizes)]
    xy = embed_2d(results.centroids, method=method, seed=seed)
    frame = pd.DataFrame({"cluster": np.arange(len(sizes)), "x": xy[:, 0], "y": xy[:, 1], "size": sizes})
    if path is not None and store:
        _store(lambda: io.write_parquet(path, frame), "centroid map")
    return frame
