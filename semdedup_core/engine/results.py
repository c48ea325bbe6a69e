"""Reading a results folder and asking it questions. Every ε is a filter over the stored scores."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from .clusters import ClusterIndex
from .rules import check_eps, check_rule, removed_by_score, removed_kept_only
from .schema import CENTROIDS, EMBEDDINGS, ITEMS, ResultsFolder, check_columns

__all__ = ["Results", "check_eps"]


class Results:
    """One finished SemDeDup run: ``items`` (a DataFrame, one row per input item) and ``run`` (run.json).

    The paper's rule: at ε an item is removed iff ``max_sim > 1 − ε``, where ``max_sim`` is its highest
    similarity to an *earlier* item of its cluster, removed or not (so chains A≈B≈C remove B and C).
    """

    def __init__(self, items: Any, run: dict[str, Any], path: Path | None = None):
        self.items = items
        self.run = run
        self.path = path
        self._scores = items["max_sim"].to_numpy(dtype=np.float32)

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Open a results folder; raise :class:`SemDedupError` with the reason when it cannot be used."""
        import pandas as pd

        folder = ResultsFolder(path)
        run = folder.finished_run()
        items = pd.read_parquet(folder.file(ITEMS))
        check_columns(list(items.columns), str(folder.path))
        return cls(items, run, folder.path)

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_clusters(self) -> int:
        return int(self.run.get("counts", {}).get("clusters", self.items["cluster"].max() + 1))

    @functools.cached_property
    def centroids(self) -> np.ndarray:
        return np.load(self._file(CENTROIDS))

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The unit embeddings in input order, memory-mapped (not read until used); for a sharded run the
        shards run.json names, seen as one array."""
        shards = (
            (self.run.get("embeddings") or {}).get("shards") if isinstance(self.run.get("embeddings"), dict) else None
        )
        if shards:
            from .io import ShardedRows

            return ShardedRows([self._file(s) for s in shards])  # type: ignore[return-value]
        return np.load(self._file(EMBEDDINGS), mmap_mode="r")

    def _file(self, name: str) -> Path:
        if self.path is None or not (self.path / name).exists():
            raise SemDedupError(f"{name} is not available for this results folder ({self.path}); rerun to recreate it")
        return self.path / name

    # -- structure -------------------------------------------------------------------------------
    @functools.cached_property
    def dup_rows(self) -> np.ndarray:
        """Row number (input order) of each item's ``dup_of``, or -1 where it has none."""
        import pandas as pd

        index = pd.Index(self.items["id"].astype(str))
        dup = self.items["dup_of"]
        rows = np.full(self.n_items, -1, dtype=np.int64)
        has = dup.notna().to_numpy()
        if has.any():
            rows[has] = index.get_indexer(dup[has].astype(str))
        return rows

    @functools.cached_property
    def clusters(self) -> ClusterIndex:
        """Rows grouped by cluster, each cluster in keep (rank) order."""
        labels = self.items["cluster"].to_numpy(np.int64)
        k = max(self.n_clusters, int(labels.max()) + 1 if len(labels) else 0)
        return ClusterIndex.build(labels, k, rank=self.items["rank"].to_numpy(np.int64))

    # -- the threshold ---------------------------------------------------------------------------
    @functools.cached_property
    def _sorted_scores(self) -> np.ndarray:
        return np.sort(self._scores.astype(np.float64))

    def removed_mask(self, eps: float, rule: str = "paper") -> np.ndarray:
        """Boolean mask (input order) of the items removed at ``eps``.

        ``rule="paper"`` is SemDeDup's (``max_sim > 1 − eps``, chains included); ``"kept-only"`` removes
        an item only when it resembles an earlier *kept* item (see :mod:`semdedup_core.engine.rules`).
        """
        eps = check_eps(eps)
        if check_rule(rule) == "paper":
            return removed_by_score(self._scores, eps)
        rank = self.items["rank"].to_numpy(np.int64)
        return removed_kept_only(self._scores, self.dup_rows, self.clusters, rank, self.embeddings, eps)

    def n_removed(self, eps: float | np.ndarray, rule: str = "paper") -> int | np.ndarray:
        """How many items are removed at ``eps`` (a number or an array of them); O(log n) each for the
        paper's rule."""
        if check_rule(rule) != "paper":
            counts = [int(self.removed_mask(float(e), rule).sum()) for e in np.ravel(eps)]
            return counts[0] if np.ndim(eps) == 0 else np.array(counts)
        e = np.asarray(eps, dtype=np.float64)
        bad = ~((e >= 0.0) & (e <= 2.0))
        if np.any(bad):
            check_eps(float(np.ravel(e)[np.flatnonzero(np.ravel(bad))[0]]))
        thr = 1.0 - e
        kept = np.searchsorted(self._sorted_scores, thr, side="right")  # scores <= 1 - eps stay
        removed = self.n_items - kept
        return int(removed) if np.ndim(removed) == 0 else removed

    def kept_fraction(self, eps: float | np.ndarray, rule: str = "paper") -> float | np.ndarray:
        """Fraction of items kept at ``eps`` (a number or an array of them)."""
        removed = self.n_removed(eps, rule)
        return 1.0 - removed / self.n_items

    def removed(self, eps: float, rule: str = "paper") -> Any:
        """The rows of ``items`` removed at ``eps``."""
        return self.items[self.removed_mask(eps, rule)]

    def kept(self, eps: float, rule: str = "paper") -> Any:
        """The rows of ``items`` kept at ``eps``."""
        return self.items[~self.removed_mask(eps, rule)]

    def eps_for_kept_fraction(self, fraction: float) -> float:
        """The largest ε that keeps at least ``fraction`` of the items, solved exactly from the scores.

        Items tied on ``max_sim`` go together, so the kept fraction at the returned ε may exceed
        ``fraction`` slightly; first items of clusters are always kept, so a fraction below
        ``clusters / items`` cannot be reached and returns the ε that keeps only them.
        """
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            raise SemDedupError(f"kept fraction must be a number between 0 and 1, got {fraction!r}") from None
        if not 0.0 <= fraction <= 1.0:
            raise SemDedupError(f"kept fraction must be between 0 and 1, got {fraction}")
        s = self._sorted_scores
        n_keep = max(1, int(np.ceil(fraction * self.n_items - 1e-9)))
        threshold = s[n_keep - 1]
        eps = min(2.0, max(0.0, 1.0 - threshold))
        while eps > 0.0 and 1.0 - eps < threshold:  # make 1 - eps >= threshold despite rounding
            eps = float(np.nextafter(eps, -np.inf))
        return eps

    def cluster_table(self, eps: float) -> Any:
        """Per cluster: size, removed at ``eps``, mean and max ``max_sim`` (over items with a predecessor)."""
        import pandas as pd

        removed = self.removed_mask(eps)
        clusters = self.items["cluster"].to_numpy()
        k = self.clusters.n_clusters
        size = self.clusters.sizes
        n_rem = np.bincount(clusters, weights=removed, minlength=k).astype(np.int64)
        scored = self._scores > -1.0
        s_sum = np.bincount(clusters, weights=np.where(scored, self._scores, 0.0), minlength=k)
        s_cnt = np.bincount(clusters, weights=scored, minlength=k)
        s_max = np.full(k, np.nan)
        np.fmax.at(s_max, clusters[scored], self._scores[scored])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s_sum / s_cnt
        table = pd.DataFrame(
            {"cluster": np.arange(k), "size": size, "removed": n_rem, "mean_score": mean, "max_score": s_max}
        )
        return table[table["size"] > 0].reset_index(drop=True)

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}, items={self.n_items}, clusters={self.n_clusters})"
