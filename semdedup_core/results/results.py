"""Reading a results folder and asking it questions. Every ε is a filter over the stored scores.

A folder opens without decoding its items into one DataFrame: the table is read from the Arrow
copy the engine writes beside ``items.parquet`` (:mod:`~semdedup_core.results.items`; parquet otherwise),
the numbers are checked on load and the strings on load below
:data:`~semdedup_core.results.names.STRING_CHECK_ROWS` items, else on first bulk use of the ids
(:meth:`Results.check_strings`). Views read what they need: a numeric column (:meth:`Results.column`,
read once), a few rows (:meth:`Results.rows`), the scores sorted once (:attr:`Results.sorted_scores`,
:meth:`Results.score_order`). :attr:`Results.items` is still there, built on first use.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.clusters import ClusterIndex
from ..kernels.rules import Audited, audited_scores, removed_by_score
from . import io, rules
from .checks import check_numeric, check_strings, take_chunked
from .folder import ResultsFolder
from .names import CENTROIDS, DUP_ROW, EMBEDDINGS, ITEMS, PROBES, REFERENCE, REFERENCE_EMBEDDINGS, STRING_CHECK_ROWS
from .rows import ShardedRows, load_npy
from .rules import check_eps, check_rule

__all__ = ["Results", "check_eps"]


class Results:
    """One finished SemDeDup run: its items (one row per input item: :meth:`column`, :meth:`rows`, or the
    whole :attr:`items` DataFrame) and ``run`` (run.json).

    The paper's rule: at ε an item is removed iff ``max_sim > 1 − ε``, where ``max_sim`` is its highest
    similarity to an *earlier* item of its cluster, removed or not (so chains A≈B≈C remove B and C).

    ``items``: a DataFrame, or an Arrow table (what :meth:`load` gives, from the Arrow copy where it can).
    """

    def __init__(self, items: Any, run: dict[str, Any], path: Path | None = None):
        import pyarrow as pa

        self.run = run
        self.path = path
        if not isinstance(items, pa.Table):
            raise SemDedupError("Results reads a results folder: use Results.load(DIR)")
        self.source = "table"  # load: "arrow" (the checked copy, read whole) or "parquet"
        self._table = items
        self._columns: dict[str, np.ndarray] = {}
        self._audited: dict[tuple, Audited] = {}  # the audited rule's column per (store, store stamp)
        self._audited_lock = threading.Lock()  # one Results serves every session of the app
        self._strings: bool | SemDedupError | None = True  # the string checks: to do (None), passed, or failed
        self._strings_lock = threading.Lock()
        self._memo: dict[str, Any] = {}
        self._memo_lock = threading.Lock()
        self._memo_locks: dict[str, threading.Lock] = {}

    def memo(self, name: str, compute: Any) -> Any:
        """``compute()`` once per folder and ``name``, kept with this :class:`Results` (thread-safe): what the
        explorer derives from a run (per-cluster statistics, sorted orders) is computed once and shared."""
        with self._memo_lock:  # one lock per name: a long computation never holds up the others
            lock = self._memo_locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._memo:
                self._memo[name] = compute()
            return self._memo[name]

    # -- loading ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, strings: bool | None = None) -> Results:
        """Open a results folder; raise :class:`SemDedupError` with the reason when it cannot be used.

        The items are read from the folder's Arrow copy (checked by its checksums) when it still mirrors ``items.parquet``,
        else read from ``items.parquet``. They are checked before anything uses them, and a folder that
        fails is refused in one line naming the problem: the numbers always
        (:func:`~semdedup_core.results.checks.check_numeric`: types, finite scores, ``0 ≤ cluster < k``,
        ranks, every ``dup_of`` an earlier item of the same cluster), the strings
        (:func:`~semdedup_core.results.checks.check_strings`: unique one-line ids, each ``dup_of`` the id
        of its ``dup_row``) now when ``strings`` is true or, by default, when the folder has at most
        :data:`~semdedup_core.results.names.STRING_CHECK_ROWS` items — otherwise on first bulk use of the
        ids (:meth:`check_strings`)."""
        from .items import read_items

        folder = ResultsFolder(path)
        run = folder.finished_run()
        try:
            table, source = read_items(folder.path, folder.file(ITEMS), run)
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise SemDedupError(
                f"could not read items.parquet in {str(folder.path)!r} ({type(exc).__name__}: {reason}); "
                "rerun into a new folder"
            ) from None
        checked = check_numeric(table, run, str(folder.path))
        res = cls(table, run, folder.path)
        res.source = source
        res.__dict__["dup_rows"] = _readonly(checked.dup_rows)  # computed by the checks: the cached properties
        res.__dict__["clusters"] = checked.clusters
        for name, values in checked.columns.items():
            res._columns[name] = _readonly(values)
        res._strings = True if checked.strings_checked else None
        if strings or (strings is None and res.n_items <= STRING_CHECK_ROWS):
            res.check_strings()
        return res

    # -- the string checks -------------------------------------------------------------------------
    def check_strings(self) -> None:
        """Run the string checks of a loaded folder once (unique one-line ids, each ``dup_of`` the id of
        its ``dup_row``; see :func:`~semdedup_core.results.checks.check_strings`), or wait for the run
        already going; raise :class:`SemDedupError` naming the problem when they fail (every call)."""
        with self._strings_lock:
            if self._strings is None:
                try:
                    check_strings(self._arrow(), self.dup_rows, self.run, str(self.path), self._columns)
                    self._strings = True
                except SemDedupError as exc:
                    self._strings = exc
        if isinstance(self._strings, SemDedupError):
            raise SemDedupError(str(self._strings))

    @property
    def strings_checked(self) -> bool:
        """Whether the string checks have run (passed or failed)."""
        return self._strings is not None

    @property
    def strings_problem(self) -> SemDedupError | None:
        """The string checks' refusal, once they ran and failed; ``None`` otherwise (never waits)."""
        return self._strings if isinstance(self._strings, SemDedupError) else None

    def check_strings_in_background(self) -> threading.Thread | None:
        """Start the string checks in a daemon thread (the app: its pages ask :attr:`strings_problem`);
        ``None`` when they have run already."""
        if self._strings is not None:
            return None

        def work() -> None:
            try:
                self.check_strings()
            except SemDedupError:
                pass  # kept in self._strings: strings_problem reports it

        thread = threading.Thread(target=work, name="semdedup-check-strings", daemon=True)
        thread.start()
        return thread

    # -- columns and rows --------------------------------------------------------------------------
    @functools.cached_property
    def items(self) -> Any:
        """All items as one DataFrame (built on first use from the items table; the views of the
        explorer use :meth:`column` and :meth:`rows` instead)."""
        return self._table.to_pandas()

    @property
    def columns(self) -> list[str]:
        """The names of the items' columns (``items.parquet``'s, in order)."""
        return list(self._table.column_names)

    def column(self, name: str) -> np.ndarray:
        """Column ``name`` as a read-only numpy array, read once and kept (numbers as they are stored;
        strings as objects — avoid that for the ids of a big run: use :meth:`rows`)."""
        got = self._columns.get(name)
        if got is None:
            if name not in self._table.column_names:
                raise KeyError(name)
            col = self._table.column(name)
            import pyarrow as pa

            if pa.types.is_floating(col.type) and col.null_count:
                col = col.fill_null(np.nan)
            got = col.to_numpy()
            got = self._columns[name] = _readonly(got)
        return got

    def rows(self, indices: Any, columns: list[str] | tuple[str, ...] | None = None) -> Any:
        """The items at the rows ``indices`` (in that order) as a DataFrame indexed by row, with
        ``columns`` (default all) — what ``items.iloc[indices][columns]`` gives, reading only those rows."""
        import pyarrow as pa

        idx = np.asarray(indices, dtype=np.int64).ravel()
        n = self.n_items
        if len(idx) and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"rows must be between {-n} and {n - 1}")
        idx = np.where(idx < 0, idx + n, idx)
        names = self.columns if columns is None else list(columns)
        missing = [c for c in names if c not in self.columns]
        if missing:
            raise KeyError(missing[0])
        table = pa.table({c: take_chunked(self._table.column(c), idx) for c in names})
        frame = table.to_pandas()
        frame.index = idx
        return frame

    def _arrow(self) -> Any:
        return self._table

    @functools.cached_property
    def scores(self) -> np.ndarray:
        """``max_sim`` as float32, read-only: every rule and count filters it."""
        return _readonly(np.asarray(self.column("max_sim"), dtype=np.float32))

    # -- sizes -----------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return int(self._table.num_rows)

    @property
    def n_clusters(self) -> int:
        return int(self.run.get("counts", {}).get("clusters", self.column("cluster").max() + 1))

    @functools.cached_property
    def centroids(self) -> np.ndarray:
        return load_npy(self._file(CENTROIDS), CENTROIDS)

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The unit embeddings in input order, read row by row when indexed (never memory-mapped: see
        :mod:`semdedup_core.results.rows`); for a run of several parts the shards run.json names, seen as one
        array."""
        shards = (
            (self.run.get("embeddings") or {}).get("shards") if isinstance(self.run.get("embeddings"), dict) else None
        )
        if shards:
            return ShardedRows([self._file(s) for s in shards])  # type: ignore[return-value]
        return load_npy(self._file(EMBEDDINGS), EMBEDDINGS, lazy=True, rows=self.n_items)

    def _file(self, name: str) -> Path:
        if self.path is None or not (self.path / name).exists():
            raise SemDedupError(f"{name} is not available for this results folder ({self.path}); rerun to recreate it")
        return self.path / name

    # -- structure -------------------------------------------------------------------------------
    @functools.cached_property
    def dup_rows(self) -> np.ndarray:
        """Row number (input order) of each item's ``dup_of``, or -1 where it has none (set by the checks
        on load)."""
        return self.column(DUP_ROW)

    @functools.cached_property
    def clusters(self) -> ClusterIndex:
        """Rows grouped by cluster, each cluster in keep (rank) order."""
        labels = np.asarray(self.column("cluster"), dtype=np.int64)
        k = max(self.n_clusters, int(labels.max()) + 1 if len(labels) else 0)
        return ClusterIndex.build(labels, k, rank=np.asarray(self.column("rank"), dtype=np.int64))

    # -- probing (runs with probe > 0) -------------------------------------------------------------
    @property
    def probe(self) -> int:
        """How many clusters beyond its own each item was compared in (0: the paper's rule)."""
        return int(self.run.get("params", {}).get("dedup", {}).get("probe", 0))

    @functools.cached_property
    def probes(self) -> np.ndarray:
        """Each item's own cluster and its probed clusters (``n × (1 + probe)``; probing runs only), read from
        ``probes.npy`` or, for a run of several parts, the shards ``run.json`` names."""
        if not self.probe:
            return np.asarray(self.column("cluster"), dtype=np.int64)[:, None]
        shards = (self.run.get("probes") or {}).get("shards") if isinstance(self.run.get("probes"), dict) else None
        if shards:
            return ShardedRows([self._file(s) for s in shards], "probes shard")  # type: ignore[return-value]
        return load_npy(self._file(PROBES), PROBES, lazy=True, rows=self.n_items)

    @functools.cached_property
    def global_position(self) -> np.ndarray:
        """Each item's place in the one global keep order that probing compares in (see
        :func:`semdedup_core.kernels.probe.global_order`)."""
        from ..kernels.order import global_order

        dedup = self.run.get("params", {}).get("dedup", {})
        return global_order(self.column("dist_to_centroid"), dedup.get("keep", "hard"), dedup.get("seed", 0))

    @functools.cached_property
    def cross_cluster(self) -> np.ndarray:
        """Whether each item's ``dup_of`` lies in another cluster (only with probing)."""
        dup = self.dup_rows
        cluster = self.column("cluster")
        return _readonly((dup >= 0) & (cluster[np.maximum(dup, 0)] != cluster))

    # -- the scores in order ------------------------------------------------------------------------
    @functools.cached_property
    def sorted_scores(self) -> np.ndarray:
        """``max_sim`` (float32) in ascending order: every count at an ε is a binary search in it."""
        return _readonly(np.sort(self.scores))

    def score_order(self, descending: bool = False) -> np.ndarray:
        """The rows in order of ``max_sim``, ascending (or ``descending``), ties in row order either way
        (computed once per direction). With :func:`~semdedup_core.kernels.rules.n_above`, the items removed
        at ε are the last ``n_above`` rows of the ascending order and the first of the descending one."""
        name = "_order_desc" if descending else "_order_asc"
        got = self.__dict__.get(name)
        if got is None:
            got = self.__dict__[name] = _readonly(score_order(self.scores, descending))
        return got

    # -- the threshold: every rule through the one table (results/rules.py) -----------------------
    def removed_mask(self, eps: float, rule: str = "paper", labels: Any = None, rows: Any = None) -> np.ndarray:
        """Boolean mask (input order) of the items removed at ``eps`` under ``rule`` (see
        :data:`~semdedup_core.results.rules.RULES`) — of the items at ``rows`` only when given (under the
        paper's rule that reads only those scores). ``labels``: the verdicts the ``audited`` rule takes
        (see :meth:`audited`)."""
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64)
            if check_rule(rule).name == "paper":
                return removed_by_score(self.scores[rows], check_eps(eps))
            return self.removed_mask(eps, rule, labels)[rows]
        return rules.mask(self, eps, rule, labels, kind="removed")

    def n_removed(self, eps: float | np.ndarray, rule: str = "paper", labels: Any = None) -> int | np.ndarray:
        """How many items are removed at ``eps`` (a number or an array of them); O(log n) each for the
        paper's and the audited rule."""
        return rules.count(self, eps, rule, labels, kind="removed")

    def kept_fraction(self, eps: float | np.ndarray, rule: str = "paper", labels: Any = None) -> float | np.ndarray:
        """Fraction of items kept at ``eps`` (a number or an array of them)."""
        return 1.0 - self.n_removed(eps, rule, labels) / self.n_items

    def removed(self, eps: float, rule: str = "paper", labels: Any = None) -> Any:
        """The rows of ``items`` removed at ``eps`` (a DataFrame: for small runs)."""
        return self.items[self.removed_mask(eps, rule, labels)]

    def kept(self, eps: float, rule: str = "paper", labels: Any = None) -> Any:
        """The rows of ``items`` kept at ``eps`` (a DataFrame: for small runs)."""
        return self.items[~self.removed_mask(eps, rule, labels)]

    # -- verdicts ----------------------------------------------------------------------------------
    @functools.cached_property
    def row_of_id(self) -> Any:
        """A ``pandas.Index`` of the ids: ``row_of_id.get_indexer(ids)`` gives rows (-1 for unknown ids).
        A bulk use of the ids: the string checks run first (:meth:`check_strings`)."""
        import pandas as pd

        self.check_strings()
        return pd.Index(self._table.column("id").to_pandas())

    def audited(self, verdicts: Any) -> Audited:
        """The ``audited`` rule's column for the pairs ``verdicts`` calls not duplicates. ``verdicts`` is any
        object with ``not_duplicate_pairs() -> (ids_a, ids_b)``, a ``path`` and a ``stamp()`` that changes
        with its content (the audit's :class:`~semdedup_core.audit.labels.LabelStore`); the column is
        computed once per state of it."""
        if verdicts is None or not hasattr(verdicts, "not_duplicate_pairs"):
            raise SemDedupError(
                "the audited rule needs the reviewers' verdicts: pass labels=LabelStore(PATH) "
                "(semdedup_core.audit.labels), or use --labels STORE on the command line"
            )
        key = (str(verdicts.path), verdicts.stamp())
        with self._audited_lock:
            if key not in self._audited:
                if len(self._audited) >= 4:
                    self._audited.pop(next(iter(self._audited)))
                self._audited[key] = self._audited_column(*verdicts.not_duplicate_pairs())
            return self._audited[key]

    def _audited_column(self, ids_a: np.ndarray, ids_b: np.ndarray) -> Audited:
        index = self.row_of_id
        a = index.get_indexer(np.asarray(ids_a).astype(str)) if len(ids_a) else np.empty(0, np.int64)
        b = index.get_indexer(np.asarray(ids_b).astype(str)) if len(ids_b) else np.empty(0, np.int64)
        rank = np.asarray(self.column("rank"), dtype=np.int64)
        emb = self.embeddings if len(ids_a) else np.empty((0, 0), np.float32)
        return audited_scores(
            self.scores,
            self.dup_rows,
            self.clusters,
            rank,
            emb,
            a,
            b,
            self.sorted_scores,
            np.asarray(self.column("cluster"), dtype=np.int64),
            probes=np.asarray(self.probes) if self.probe else None,
            position=self.global_position if self.probe else None,
        )

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
        s = self.sorted_scores
        n_keep = max(1, int(np.ceil(fraction * self.n_items - 1e-9)))
        threshold = float(s[n_keep - 1])
        eps = min(2.0, max(0.0, 1.0 - threshold))
        while eps > 0.0 and 1.0 - eps < threshold:  # make 1 - eps >= threshold despite rounding
            eps = float(np.nextafter(eps, -np.inf))
        return eps

    def __getstate__(self) -> dict[str, Any]:  # picklable: the locks and the audited columns stay behind
        state = dict(self.__dict__)
        state.pop("_audited_lock", None)
        state.pop("_strings_lock", None)
        state.pop("_memo_lock", None)
        state["_memo_locks"] = {}
        state["_audited"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._audited_lock = threading.Lock()
        self._strings_lock = threading.Lock()
        self._memo_lock = threading.Lock()

    # -- leakage (runs with a reference set) -----------------------------------------------------
    @property
    def has_reference(self) -> bool:
        """Whether this run was compared with a reference (held-out) set: ``ref_sim``/``ref_id`` exist."""
        return "ref_sim" in self.columns

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
        try:
            with io.parquet_source(self._file(REFERENCE)) as source:
                return pd.read_parquet(source)
        except (OSError, ValueError) as exc:
            raise SemDedupError(
                f"{REFERENCE} in {str(self.path)!r} cannot be read ({str(exc).splitlines()[0] if str(exc) else exc}); "
                "rerun into a new folder"
            ) from None

    @functools.cached_property
    def reference_embeddings(self) -> np.ndarray:
        """The reference set's unit embeddings, in :attr:`reference` order, read row by row when indexed."""
        self._need_reference()
        return load_npy(self._file(REFERENCE_EMBEDDINGS), REFERENCE_EMBEDDINGS, lazy=True)

    @functools.cached_property
    def ref_rows(self) -> np.ndarray:
        """Row in :attr:`reference` of each item's ``ref_id``, or -1 where none was compared."""
        import pandas as pd

        self._need_reference()
        rows = np.full(self.n_items, -1, dtype=np.int64)
        ref = self._table.column("ref_id").to_pandas()
        has = ref.notna().to_numpy()
        if has.any():
            rows[has] = pd.Index(self.reference["id"].astype(str)).get_indexer(ref[has].astype(str))
        return rows

    @functools.cached_property
    def ref_scores(self) -> np.ndarray:
        """``ref_sim`` as float32 (runs with a reference set)."""
        self._need_reference()
        return _readonly(np.asarray(self.column("ref_sim"), dtype=np.float32))

    @functools.cached_property
    def sorted_ref_scores(self) -> np.ndarray:
        """``ref_sim`` in ascending order: every count of leaks at an ε is a binary search in it."""
        return _readonly(np.sort(self.ref_scores))

    def leaked_mask(self, eps: float) -> np.ndarray:
        """Boolean mask (input order) of the items leaked at ``eps``: ``ref_sim > 1 − eps``."""
        return rules.mask(self, eps, "leaked", kind="leaked")

    def n_leaked(self, eps: float | np.ndarray) -> int | np.ndarray:
        """How many items are leaked at ``eps`` (a number or an array of them), O(log n) each."""
        return rules.count(self, eps, "leaked", kind="leaked")

    def leaked(self, eps: float) -> Any:
        """The rows of ``items`` leaked at ``eps``."""
        return self.items[self.leaked_mask(eps)]

    def __repr__(self) -> str:
        return f"Results({str(self.path)!r}, items={self.n_items}, clusters={self.n_clusters})"


def _readonly(values: np.ndarray) -> np.ndarray:
    """``values`` marked read-only: the arrays a :class:`Results` keeps are shared by every view."""
    values.setflags(write=False)
    return values


def score_order(scores: np.ndarray, descending: bool = False) -> np.ndarray:
    """The positions of ``scores`` (finite float32) in ascending (or ``descending``) order, ties in position
    order either way: one sort of 64-bit keys (the score's bits above, the position below), several times
    faster than a stable argsort of 20,000,000 scores."""
    scores = np.asarray(scores, dtype=np.float32)
    n = len(scores)
    if n >= 2**32:
        return np.argsort(-scores if descending else scores, kind="stable")
    bits = (scores + np.float32(0.0)).view(np.int32)  # a new array (and -0.0 becomes 0.0, its tie)
    flip = bits >> 31
    flip &= 0x7FFFFFFF
    bits ^= flip  # now the int32s order as the floats do
    if descending:
        np.negative(bits, out=bits)  # no overflow: only a NaN maps to the smallest int32
    key = bits.astype(np.int64)
    del bits, flip
    key <<= 32
    key |= np.arange(n, dtype=np.int64)
    key.sort()
    key &= 0xFFFFFFFF
    return key
