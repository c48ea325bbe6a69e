"""Items grouped by cluster: the one place where rows are sorted into clusters.

Every part of the house that walks clusters (scoring, the kept-only rule, the map's sample, the
explorer's cluster view) asks a :class:`ClusterIndex` instead of sorting labels itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClusterIndex:
    """Item rows grouped by cluster: ``order[offsets[c]:offsets[c + 1]]`` are the rows of cluster ``c``,
    in input order, or in rank (keep) order when built with ``rank``."""

    order: np.ndarray
    offsets: np.ndarray

    @classmethod
    def build(cls, labels: np.ndarray, n_clusters: int | None = None, rank: np.ndarray | None = None) -> ClusterIndex:
        labels = np.asarray(labels, dtype=np.int64)
        k = int(labels.max()) + 1 if n_clusters is None and len(labels) else int(n_clusters or 0)
        order = np.argsort(labels, kind="stable") if rank is None else np.lexsort((np.asarray(rank), labels))
        offsets = np.zeros(k + 1, dtype=np.int64)
        np.cumsum(np.bincount(labels, minlength=k), out=offsets[1:])
        return cls(order.astype(np.int64, copy=False), offsets)

    @property
    def n_clusters(self) -> int:
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def members(self, c: int) -> np.ndarray:
        """The rows of cluster ``c``."""
        return self.order[self.offsets[c] : self.offsets[c + 1]]

    def labels(self) -> np.ndarray:
        """The cluster of each row (the inverse of the grouping)."""
        out = np.empty(len(self.order), dtype=np.int64)
        out[self.order] = np.repeat(np.arange(self.n_clusters), self.sizes)
        return out
