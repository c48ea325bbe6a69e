"""Reading a results folder and asking it questions. Every ε is a filter over the stored scores."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .errors import SemDedupError
from .rules import check_rule, removed_kept_only

REQUIRED_COLUMNS = ("id", "cluster", "dist_to_centroid", "rank", "max_sim", "dup_of")


def check_eps(eps: float) -> float:
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise SemDedupError(f"eps must be a number between 0 and 2, got {eps!r}") from None
    if not 0.0 <= eps <= 2.0:
        raise SemDedupError(f"eps must be between 0 and 2 (similarity threshold 1 - eps), got {eps}")
    return eps


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

        path = Path(path)
        if not path.is_dir():
            raise SemDedupError(
                f"results folder {str(path)!r} does not exist; run `python -m semdedup_core run ... --out {path}` first"
            )
        run_path = path / io.RUN
        if not run_path.exists():
            raise SemDedupError(
                f"{str(path)!r} is not a semdedup results folder (no run.json); pick the folder a run wrote"
            )
        try:
            run = io.read_json(run_path)
        except ValueError:
            raise SemDedupError(
                f"run.json in {str(path)!r} is not valid JSON; the folder is damaged, rerun into a new folder"
            ) from None
        if run.get("status") != "complete":
            raise SemDedupError(
                f"the run in {str(path)!r} has not finished (status {run.get('status')!r}); "
                "wait for it, or start it again with the same arguments to resume"
            )
        from .pipeline import FORMAT_VERSION

        if run.get("format_version") != FORMAT_VERSION:
            raise SemDedupError(
                f"results folder {str(path)!r} has format version {run.get('format_version')!r}, this semdedup reads "
                f"version {FORMAT_VERSION}; rerun the dedup with this version"
            )
        items_path = path / io.ITEMS
        if not items_path.exists():
            raise SemDedupError(f"results folder {str(path)!r} lacks items.parquet; rerun into a new folder")
        items = pd.read_parquet(items_path)
        missing = [c for c in REQUIRED_COLUMNS if c not in items.columns]
        if missing:
            raise SemDedupError(f"items.parquet in {str(path)!r} lacks columns {missing}; rerun with this version")
        return cls(items, run, path)

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_clusters(self) -> int:
        return int(self.run.get("counts", {}).get("clusters", self.items["cluster"].max() + 1))

    @functools.cached_property
    def centroids(self) -> np.ndarray:
        return np.load(self._file(io.CENTROIDS))

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The unit embeddings in input order, memory-mapped (not read until used)."""
        return np.load(self._file(io.EMBEDDINGS), mmap_mode="r")

    def _file(self, name: str) -> Path:
        if self.path is None or not (self.path / name).exists():
            raise SemDedupError(f"{name} is not available for this results folder ({self.path}); rerun to recreate it")
        return self.path / name

    # -- the threshold ---------------------------------------------------------------------------
    @functools.cached_property
    def _sorted_scores(self) -> np.ndarray:
        return np.sort(self._scores.astype(np.float64))

    @functools.cached_property
    def _rank_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(dup_idx, order, offsets, rank)``: rows of ``dup_of``, rows grouped by cluster in rank order."""
        from .pairs import dup_rows

        items = self.items
        dup_idx = dup_rows(items)
        clusters = items["cluster"].to_numpy(np.int64)
        rank = items["rank"].to_numpy(np.int64)
        order = np.lexsort((rank, clusters))
        offsets = np.zeros(int(clusters.max()) + 2, dtype=np.int64)
        np.cumsum(np.bincount(clusters), out=offsets[1:])
        return dup_idx.astype(np.int64), order, offsets, rank

    def removed_mask(self, eps: float, rule: str = "paper") -> np.ndarray:
        """Boolean mask (input order) of the items removed at ``eps``.

        ``rule="paper"`` is SemDeDup's (``max_sim > 1 − eps``, chains included); ``"kept-only"`` removes
        an item only when it resembles an earlier *kept* item (see :mod:`semdedup_core.rules`).
        """
        eps = check_eps(eps)
        if check_rule(rule) == "paper":
            return self._scores.astype(np.float64) > 1.0 - eps
        dup_idx, order, offsets, rank = self._rank_layout
        return removed_kept_only(self._scores, dup_idx, order, offsets, rank, self.embeddings, eps)

    def n_removed(self, eps: float | np.ndarray, rule: str = "paper") -> int | np.ndarray:
        """How many items are removed at ``eps`` (a number or an array of them); O(log n) each for the
        paper's rule."""
        if check_rule(rule) != "paper":
            counts = [int(self.removed_mask(float(e), rule).sum()) for e in np.ravel(eps)]
            return counts[0] if np.ndim(eps) == 0 else np.array(counts)
        thr = 1.0 - np.asarray(eps, dtype=np.float64)
        if np.any((thr < -1.0) | (thr > 1.0)):
            check_eps(float(np.ravel(eps)[0]) if np.ndim(eps) else eps)
            raise SemDedupError("eps values must be between 0 and 2")
        kept = np.searchsorted(self._sorted_scores, thr, side="right")
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
        k = max(self.n_clusters, int(clusters.max()) + 1)
        size = np.bincount(clusters, minlength=k)
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
