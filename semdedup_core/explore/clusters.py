"""Questions about a run's clusters that the explorer asks at every ε: per-cluster counts and statistics,
the clusters with removals, and (probing runs) removals whose partner lies in another cluster.

Each is computed from arrays derived once per folder (kept with the :class:`Results` by
:meth:`~semdedup_core.results.results.Results.memo`), so a new ε costs one pass over the scores in cluster
order — or a binary search — never a mask of the whole run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..kernels.rules import n_above, removed_by_score, threshold32
from ..results.rules import check_eps

if TYPE_CHECKING:
    from ..results.results import Results


def scores_by_cluster(res: Results) -> np.ndarray:
    """``max_sim`` (float32) in the order of ``res.clusters`` (cluster by cluster, each in rank order)."""

    def compute() -> np.ndarray:
        out = res.scores[res.clusters.order]
        out.setflags(write=False)
        return out

    return res.memo("scores_by_cluster", compute)


def cluster_stats(res: Results) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: the start of each non-empty cluster in :func:`scores_by_cluster`, the mean and the max
    of ``max_sim`` over its items with a predecessor (NaN when none)."""

    def compute() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = res.clusters.n_clusters
        sizes = res.clusters.sizes
        starts = res.clusters.offsets[:-1][sizes > 0]
        s = scores_by_cluster(res)
        scored = s > -1.0
        mean, top = np.full(k, np.nan), np.full(k, np.nan)
        if len(starts):
            total = np.add.reduceat(np.where(scored, s, 0.0).astype(np.float64), starts)
            count = np.add.reduceat(scored.astype(np.int64), starts)
            high = np.maximum.reduceat(np.where(scored, s, -np.inf).astype(np.float64), starts)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean[sizes > 0] = total / count
            top[sizes > 0] = np.where(np.isfinite(high), high, np.nan)
        return starts, mean, top

    return res.memo("cluster_stats", compute)


def n_removed_per_cluster(res: Results, eps: float) -> np.ndarray:
    """How many items of each cluster the paper's rule removes at ``eps`` (one pass over the scores in
    cluster order, no mask of the whole run)."""
    starts, _, _ = cluster_stats(res)
    out = np.zeros(res.clusters.n_clusters, dtype=np.int64)
    if len(starts):
        above = scores_by_cluster(res) > threshold32(1.0 - check_eps(eps))
        out[res.clusters.sizes > 0] = np.add.reduceat(above, starts, dtype=np.int64)
    return out


def clusters_with_removals(res: Results, eps: float) -> np.ndarray:
    """The clusters in which the paper's rule removes at least one item at ``eps`` (ascending), from each
    cluster's highest score: O(k)."""
    _, _, top = cluster_stats(res)
    return np.flatnonzero(removed_by_score(np.nan_to_num(top, nan=-np.inf), check_eps(eps)))


def cluster_table(res: Results, eps: float) -> Any:
    """Per cluster: size, removed at ``eps``, mean and max ``max_sim`` (over items with a predecessor)."""
    import pandas as pd

    k = res.clusters.n_clusters
    _, mean, top = cluster_stats(res)
    table = pd.DataFrame(
        {
            "cluster": np.arange(k),
            "size": res.clusters.sizes,
            "removed": n_removed_per_cluster(res, eps),
            "mean_score": mean,
            "max_score": top,
        }
    )
    return table[table["size"] > 0].reset_index(drop=True)


def n_cross_cluster(res: Results, eps: float) -> int:
    """How many items the paper's rule removes at ``eps`` whose ``dup_of`` lies in another cluster (probing
    runs), in O(log n) once the scores are sorted."""

    def compute() -> np.ndarray:  # cum[i]: how many of the i lowest scores (ascending) are cross-cluster
        cum = np.zeros(res.n_items + 1, dtype=np.int64)
        np.cumsum(res.cross_cluster[res.score_order()], out=cum[1:])
        return cum

    cum = res.memo("cross_below", compute)
    first = res.n_items - int(n_above(res.sorted_scores, check_eps(eps)))
    return int(cum[-1] - cum[first])
