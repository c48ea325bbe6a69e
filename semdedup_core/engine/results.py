"""Reading a results folder and asking it questions. Every ε is a filter over the stored scores."""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from .clusters import ClusterIndex
from .labels import LabelStore
from .rules import (
    Audited,
    audited_scores,
    check_eps,
    check_rule,
    leaked_by_score,
    removed_by_score,
    removed_kept_only,
    threshold,
)
from .schema import (
    CENTROIDS,
    EMBEDDINGS,
    ITEMS,
    PROBES,
    REFERENCE,
    REFERENCE_EMBEDDINGS,
    ResultsFolder,
    check_items,
)

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
        self._audited: dict[tuple, Audited] = {}  # the audited rule's column per (store, store stamp)
        self._audited_lock = threading.Lock()  # one Results serves every session of the app

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Results:
        """Open a results folder; raise :class:`SemDedupError` with the reason when it cannot be used.

        ``items.parquet`` is checked before anything uses it (:func:`~semdedup_core.engine.schema.check_items`:
        types, unique ids, finite scores, ``0 ≤ cluster < k``, every ``dup_of`` an earlier item of the
        same cluster); a folder that fails is refused in one line naming the problem."""
        import pandas as pd

        folder = ResultsFolder(path)
        run = folder.finished_run()
        try:
            items = pd.read_parquet(folder.file(ITEMS))
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise SemDedupError(
                f"could not read items.parquet in {str(folder.path)!r} ({type(exc).__name__}: {reason}); "
                "rerun into a new folder"
            ) from None
        dup_rows, clusters = check_items(items, run, str(folder.path))
        res = cls(items, run, folder.path)
        res.__dict__["dup_rows"] = dup_rows  # computed by the checks: the cached properties below
        res.__dict__["clusters"] = clusters
        return res

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
        index = self.row_of_id
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

    # -- probing (runs with probe > 0) -------------------------------------------------------------
    @property
    def probe(self) -> int:
        """How many clusters beyond its own each item was compared in (0: the paper's rule)."""
        return int(self.run.get("params", {}).get("dedup", {}).get("probe", 0))

    @functools.cached_property
    def probes(self) -> np.ndarray:
        """Each item's own cluster and its probed clusters (``n × (1 + probe)``; probing runs only)."""
        if not self.probe:
            return self.items["cluster"].to_numpy(np.int64)[:, None]
        return np.load(self._file(PROBES), mmap_mode="r")

    @functools.cached_property
    def global_position(self) -> np.ndarray:
        """Each item's place in the one global keep order that probing compares in (see
        :func:`semdedup_core.engine.probe.global_order`)."""
        from .probe import global_order

        dedup = self.run.get("params", {}).get("dedup", {})
        return global_order(self.items["dist_to_centroid"].to_numpy(), dedup.get("keep", "hard"), dedup.get("seed", 0))

    @functools.cached_property
    def cross_cluster(self) -> np.ndarray:
        """Whether each item's ``dup_of`` lies in another cluster (only with probing)."""
        dup = self.dup_rows
        cluster = self.items["cluster"].to_numpy()
        return (dup >= 0) & (cluster[np.maximum(dup, 0)] != cluster)

    # -- the threshold ---------------------------------------------------------------------------
    @functools.cached_property
    def _sorted_scores(self) -> np.ndarray:
        return np.sort(self._scores.astype(np.float64))

    def removed_mask(self, eps: float, rule: str = "paper", labels: Any = None) -> np.ndarray:
        """Boolean mask (input order) of the items removed at ``eps``.

        ``rule="paper"`` is SemDeDup's (``max_sim > 1 − eps``, chains included); ``"kept-only"`` removes
        an item only when it resembles an earlier *kept* item; ``"audited"`` is the paper's rule with
        the pairs judged ``not_duplicate`` in the verdict store ``labels`` (a :class:`LabelStore` or a
        path; default ``labels.parquet`` in the folder) taken out (see :mod:`semdedup_core.engine.rules`).
        """
        eps = check_eps(eps)
        rule = check_rule(rule)
        if rule == "paper":
            return removed_by_score(self._scores, eps)
        if rule == "audited":
            return self.audited(labels).removed(eps)
        rank = self.items["rank"].to_numpy(np.int64)
        if self.probe:
            return removed_kept_only(
                self._scores,
                self.dup_rows,
                self.clusters,
                rank,
                self.embeddings,
                eps,
                probes=np.asarray(self.probes),
                position=self.global_position,
            )
        return removed_kept_only(self._scores, self.dup_rows, self.clusters, rank, self.embeddings, eps)

    def n_removed(self, eps: float | np.ndarray, rule: str = "paper", labels: Any = None) -> int | np.ndarray:
        """How many items are removed at ``eps`` (a number or an array of them); O(log n) each for the
        paper's and the audited rule."""
        e = np.asarray(eps, dtype=np.float64)
        bad = ~((e >= 0.0) & (e <= 2.0))
        if np.any(bad):
            check_eps(float(np.ravel(e)[np.flatnonzero(np.ravel(bad))[0]]))
        rule = check_rule(rule)
        if rule == "audited":
            return self.audited(labels).n_removed(eps)
        if rule != "paper":
            counts = [int(self.removed_mask(float(e), rule).sum()) for e in np.ravel(eps)]
            return counts[0] if np.ndim(eps) == 0 else np.array(counts)
        thr = 1.0 - e
        kept = np.searchsorted(self._sorted_scores, thr, side="right")  # scores <= 1 - eps stay
        removed = self.n_items - kept
        return int(removed) if np.ndim(removed) == 0 else removed

    def kept_fraction(self, eps: float | np.ndarray, rule: str = "paper", labels: Any = None) -> float | np.ndarray:
        """Fraction of items kept at ``eps`` (a number or an array of them)."""
        removed = self.n_removed(eps, rule, labels)
        return 1.0 - removed / self.n_items

    def removed(self, eps: float, rule: str = "paper", labels: Any = None) -> Any:
        """The rows of ``items`` removed at ``eps``."""
        return self.items[self.removed_mask(eps, rule, labels)]

    def kept(self, eps: float, rule: str = "paper", labels: Any = None) -> Any:
        """The rows of ``items`` kept at ``eps``."""
        return self.items[~self.removed_mask(eps, rule, labels)]

    # -- verdicts ----------------------------------------------------------------------------------
    def label_store(self, labels: Any = None) -> LabelStore:
        """The verdict store ``labels`` (a :class:`LabelStore` or a path), else ``labels.parquet`` here."""
        return LabelStore.for_results(self.path, labels)

    @functools.cached_property
    def row_of_id(self) -> Any:
        """A ``pandas.Index`` of the ids: ``row_of_id.get_indexer(ids)`` gives rows (-1 for unknown ids)."""
        import pandas as pd

        return pd.Index(self.items["id"].astype(str))

    def audited(self, labels: Any = None) -> Audited:
        """The ``audited`` rule's column for the verdicts now in ``labels`` (computed once per state of
        the store: a write to it is a new state)."""
        store = self.label_store(labels)
        key = (str(store.path), store.stamp())
        with self._audited_lock:
            return self._audited_column(store, key)

    def _audited_column(self, store: LabelStore, key: tuple) -> Audited:
        if key not in self._audited:
            resolved = store.resolved()
            not_dup = resolved[resolved["verdict"] == "not_duplicate"]
            index = self.row_of_id
            a = index.get_indexer(not_dup["id_a"].astype(str)) if len(not_dup) else np.empty(0, np.int64)
            b = index.get_indexer(not_dup["id_b"].astype(str)) if len(not_dup) else np.empty(0, np.int64)
            rank = self.items["rank"].to_numpy(np.int64)
            emb = self.embeddings if len(not_dup) else np.empty((0, 0), np.float32)
            if len(self._audited) >= 4:
                self._audited.pop(next(iter(self._audited)))
            self._audited[key] = audited_scores(
                self._scores,
                self.dup_rows,
                self.clusters,
                rank,
                emb,
                a,
                b,
                self._sorted_scores,
                self.items["cluster"].to_numpy(np.int64),
                probes=np.asarray(self.probes) if self.probe else None,
                position=self.global_position if self.probe else None,
            )
        return self._audited[key]

    def eps_for_kept_fraction(self, fraction: float) -> float:
        """The largest ε that keeps at least ``fraction`` of the items, solved exactly from the scores.

        Items tied on ``max_sim`` go together, so the kept fraction at the returned ε may exceed
        ``fraction`` slightly; items with no earlier item to compare with (the first of each cluster under
        the paper's rule) are always kept, so a smaller fraction cannot be reached and returns the ε
        that keeps only them.
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

    def __getstate__(self) -> dict[str, Any]:  # picklable: the lock and the audited columns stay behind
        state = dict(self.__dict__)
        state.pop("_audited_lock", None)
        state["_audited"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._audited_lock = threading.Lock()

    # -- leakage (runs with a reference set) -----------------------------------------------------
    @property
    def has_reference(self) -> bool:
        """Whether this run was compared with a reference (held-out) set: ``ref_sim``/``ref_id`` exist."""
        return "ref_sim" in self.items.columns

    def _need_reference(self) -> None:
        if not self.has_reference:
            raise SemDedupError(
                f"the run in {str(self.path)!r} has no reference set; run it with --reference HELD_OUT "
                "(embeddings or raw data) to look for leaks"
            )

    @functools.cached_property
    def reference(self) -> Any:
        """The reference set: ``id``, ``cluster`` (its nearest centroid) and carried ``text``/``path``."""
        import pandas as pd

        self._need_reference()
        return pd.read_parquet(self._file(REFERENCE))

    @functools.cached_property
    def reference_embeddings(self) -> np.ndarray:
        """The reference set's unit embeddings, in :attr:`reference` order, memory-mapped."""
        self._need_reference()
        return np.load(self._file(REFERENCE_EMBEDDINGS), mmap_mode="r")

    @functools.cached_property
    def ref_rows(self) -> np.ndarray:
        """Row in :attr:`reference` of each item's ``ref_id``, or -1 where none was compared."""
        import pandas as pd

        self._need_reference()
        rows = np.full(self.n_items, -1, dtype=np.int64)
        ref = self.items["ref_id"]
        has = ref.notna().to_numpy()
        if has.any():
            rows[has] = pd.Index(self.reference["id"].astype(str)).get_indexer(ref[has].astype(str))
        return rows

    @functools.cached_property
    def _ref_scores(self) -> np.ndarray:
        self._need_reference()
        return self.items["ref_sim"].to_numpy(dtype=np.float32)

    @functools.cached_property
    def _sorted_ref_scores(self) -> np.ndarray:
        return np.sort(self._ref_scores.astype(np.float64))

    def leaked_mask(self, eps: float) -> np.ndarray:
        """Boolean mask (input order) of the items leaked at ``eps``: ``ref_sim > 1 − eps``."""
        return leaked_by_score(self._ref_scores, check_eps(eps))

    def n_leaked(self, eps: float | np.ndarray) -> int | np.ndarray:
        """How many items are leaked at ``eps`` (a number or an array of them), O(log n) each."""
        e = np.asarray(eps, dtype=np.float64)
        for value in np.ravel(e):
            check_eps(float(value))
        below = np.searchsorted(self._sorted_ref_scores, threshold(e), side="right")  # ref_sim <= 1 - eps stay
        leaked = self.n_items - below
        return int(leaked) if np.ndim(leaked) == 0 else leaked

    def leaked(self, eps: float) -> Any:
        """The rows of ``items`` leaked at ``eps``."""
        return self.items[self.leaked_mask(eps)]

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}, items={self.n_items}, clusters={self.n_clusters})"
