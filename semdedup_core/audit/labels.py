"""The verdict store: what reviewers said about pairs of items, kept apart from any one run.

A verdict is about an *unordered* pair of ids — an item and the earlier item that makes it a
duplicate — and is ``duplicate``, ``not_duplicate`` or ``unsure``. It applies wherever the same two
items meet again: in another run over the same data (another k, seed, encoder or ε). The store is one
parquet file with one row per (pair, reviewer):

============== =====================================================================================
``id_a``       the smaller id of the pair (string)
``id_b``       the larger id of the pair (string)
``verdict``    ``duplicate`` | ``not_duplicate`` | ``unsure``
``reviewer``   who gave it
``time``       when (UTC)
``similarity`` the pair's cosine similarity in the run it was judged in (NaN when unknown)
``run``        the input fingerprint of that run (null when unknown)
============== =====================================================================================

By default the store is ``labels.parquet`` in the results folder; a store elsewhere can be shared by
every run over the same ids. A later verdict by the same reviewer on the same pair replaces the earlier
one; different reviewers' verdicts coexist and :func:`resolve` settles a pair by majority (a tie goes
to the most recent verdict).

Every write holds an exclusive ``flock`` on the sidecar ``<store>.lock`` around read → merge → atomic
replace, so concurrent writers — two browser sessions (threads of one server) or two processes — never
lose a verdict, and a reader never sees a half-written file. A store that cannot be read is never
overwritten.
"""

from __future__ import annotations

import contextlib
import os
import time as _time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..media import safe
from ..results import io
from ..results.names import LABELS
from ..results.text import check_reviewer

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("duplicate", "not_duplicate", "unsure")
COLUMNS = ("id_a", "id_b", "verdict", "reviewer", "time", "similarity", "run")
RESOLVED_COLUMNS = ("id_a", "id_b", "verdict", "reviewers", "time", "similarity", "tied")


def check_verdict(value: Any, where: str = "verdict") -> str:
    if value not in VERDICTS:
        raise SemDedupError(f"{where} must be one of {', '.join(VERDICTS)}, got {value!r}")
    return str(value)


def sorted_pairs(a: Sequence[Any], b: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(id_a, id_b)``: each pair's two ids as strings, the smaller first (object arrays)."""
    a = np.asarray(a, dtype=object).astype(str)
    b = np.asarray(b, dtype=object).astype(str)
    swap = a > b
    return np.where(swap, b, a).astype(object), np.where(swap, a, b).astype(object)


def row_keys(left: Sequence[np.ndarray], right: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Integer keys for the rows of two tables over the same columns (``left`` and ``right`` are their
    columns, in the same order): equal rows get equal keys. Much faster than a pandas MultiIndex for
    string columns."""
    import pandas as pd

    n_left = len(left[0]) if len(left) else 0
    key = np.zeros(n_left + (len(right[0]) if len(right) else 0), dtype=np.int64)
    for i, col in enumerate(left):
        both = np.concatenate([np.asarray(col, dtype=object), np.asarray(right[i], dtype=object)]) if right else col
        codes, uniques = pd.factorize(both)
        key = key * (len(uniques) + 1) + codes
    return key[:n_left], key[n_left:]


def empty_frame() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "id_a": pd.Series([], dtype=object),
            "id_b": pd.Series([], dtype=object),
            "verdict": pd.Series([], dtype=object),
            "reviewer": pd.Series([], dtype=object),
            "time": pd.Series([], dtype="datetime64[us, UTC]"),
            "similarity": pd.Series([], dtype=np.float64),
            "run": pd.Series([], dtype=object),
        }
    )


def make_rows(
    ids: Sequence[Any],
    others: Sequence[Any],
    verdicts: Sequence[str],
    reviewers: Sequence[str] | str,
    similarity: Sequence[float] | None = None,
    run: str | None = None,
    when: Any = None,
) -> pd.DataFrame:
    """Store rows for verdicts on the pairs ``(ids[i], others[i])``, judged now (or at ``when``).

    Raises :class:`SemDedupError` for an unknown verdict, an empty id or reviewer, or a pair of an item
    with itself."""
    import pandas as pd

    n = len(ids)
    if len(others) != n or len(verdicts) != n:
        raise SemDedupError(
            f"got {n} ids, {len(others)} partners and {len(verdicts)} verdicts; give one of each per pair"
        )
    reviewers = [reviewers] * n if isinstance(reviewers, str) else list(reviewers)
    a, b = sorted_pairs(ids, others)
    for i in range(n):
        check_verdict(verdicts[i], f"the verdict on ({a[i]!r}, {b[i]!r})")
        if a[i] == "" or b[i] == "":
            raise SemDedupError(f"a verdict needs two ids, got ({a[i]!r}, {b[i]!r})")
        if a[i] == b[i]:
            raise SemDedupError(f"a verdict is about two different items, got {a[i]!r} twice")
        reviewers[i] = check_reviewer(reviewers[i])
    stamp = np.datetime64(int(when if when is not None else _time.time_ns()), "ns").astype("datetime64[us]")
    sim = np.full(n, np.nan) if similarity is None else np.asarray(similarity, dtype=np.float64)
    return pd.DataFrame(
        {
            "id_a": pd.Series(a, dtype=object),
            "id_b": pd.Series(b, dtype=object),
            "verdict": pd.Series(np.asarray(verdicts, dtype=object), dtype=object),
            "reviewer": pd.Series(reviewers, dtype=object),
            "time": pd.DatetimeIndex(np.full(n, stamp)).tz_localize("UTC"),
            "similarity": sim,
            "run": pd.Series([run] * n, dtype=object),
        }
    )


def resolve(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per judged pair: ``id_a``, ``id_b``, the pair's ``verdict`` (the majority of its
    reviewers' verdicts; a tie goes to the verdict given most recently), ``reviewers`` (how many judged
    it), ``time`` (the latest verdict), ``similarity`` (as last recorded) and ``tied`` (no verdict has a
    majority: a disagreement to settle, see :mod:`~semdedup_core.audit.agreement`). Vectorised: a store of 5,000 verdicts resolves in milliseconds."""
    import pandas as pd

    if rows.empty:
        out = empty_frame()[["id_a", "id_b", "verdict", "time", "similarity"]]
        out.insert(3, "reviewers", pd.Series([], dtype=np.int64))
        out["tied"] = pd.Series([], dtype=bool)
        return out
    a = rows["id_a"].to_numpy(dtype=object)
    b = rows["id_b"].to_numpy(dtype=object)
    key, _ = row_keys([a, b])
    uniq, first, pair = np.unique(key, return_index=True, return_inverse=True)
    verdict = pd.Categorical(rows["verdict"], categories=VERDICTS).codes.astype(np.int64)
    when = pd.DatetimeIndex(rows["time"]).asi8
    n_pairs, n_v = len(uniq), len(VERDICTS)
    # latest first: the first row of each (pair, verdict) in this order is its most recent verdict
    order = np.lexsort((np.arange(len(rows)), -when))
    rank = np.empty(len(rows), dtype=np.int64)
    rank[order] = np.arange(len(rows))[::-1] + 1  # higher = more recent (ties: the row written later)
    cell = pair * n_v + verdict
    votes = np.bincount(cell, minlength=n_pairs * n_v).reshape(n_pairs, n_v)
    newest = np.zeros(n_pairs * n_v, dtype=np.int64)
    np.maximum.at(newest, cell, rank)
    score = votes * (len(rows) + 1) + newest.reshape(n_pairs, n_v)  # majority first, then the most recent
    best = np.argmax(score, axis=1)
    last = np.full(n_pairs, -1, dtype=np.int64)  # each pair's most recent row
    np.maximum.at(last, pair, rank)
    row_of_rank = np.empty(len(rows) + 1, dtype=np.int64)
    row_of_rank[rank] = np.arange(len(rows))
    last_row = row_of_rank[last]
    top = votes.max(axis=1)
    return pd.DataFrame(
        {
            "id_a": pd.Series(a[first], dtype=object),
            "id_b": pd.Series(b[first], dtype=object),
            "verdict": pd.Series(np.asarray(VERDICTS, dtype=object)[best], dtype=object),
            "reviewers": votes.sum(axis=1),
            "time": pd.DatetimeIndex(rows["time"])[last_row],
            "similarity": rows["similarity"].to_numpy(np.float64)[last_row],
            "tied": (votes == top[:, None]).sum(axis=1) > 1,
        }
    ).astype({"time": "datetime64[us, UTC]"})


def lookup(resolved: pd.DataFrame, a: Sequence[Any], b: Sequence[Any], presorted: bool = False) -> np.ndarray:
    """Position in ``resolved`` of each pair ``(a[i], b[i])`` (either order; ``presorted``: already
    ``a[i] < b[i]``), or -1 where unjudged."""
    if resolved.empty or len(a) == 0:
        return np.full(len(a), -1, dtype=np.int64)
    lo, hi = (np.asarray(a, dtype=object), np.asarray(b, dtype=object)) if presorted else sorted_pairs(a, b)
    ids = [resolved["id_a"].to_numpy(dtype=object), resolved["id_b"].to_numpy(dtype=object)]
    known, asked = row_keys(ids, [lo, hi])
    order = np.argsort(known, kind="stable")
    pos = np.minimum(np.searchsorted(known[order], asked), len(known) - 1)
    return np.where(known[order][pos] == asked, order[pos], -1).astype(np.int64)


_TYPES = {
    "id_a": ("string", "ids (strings)"),
    "id_b": ("string", "ids (strings)"),
    "verdict": ("string", "strings"),
    "reviewer": ("string", "strings (names)"),
    "time": ("timestamp", "times"),
    "similarity": ("number", "numbers"),
    "run": ("string", "strings (input fingerprints)"),
}


def _check_types(table: Any, where: str) -> None:
    """Refuse a store whose columns are not of the types :func:`make_rows` writes (a column of nulls only is
    allowed where nulls are: ``similarity``, ``run``)."""
    import pyarrow as pa

    tests = {
        "string": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        "timestamp": pa.types.is_timestamp,
        "number": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    }
    for name, (kind, words) in _TYPES.items():
        t = table.schema.field(name).type
        if not (tests[kind](t) or (pa.types.is_null(t) and name in ("similarity", "run"))):
            held = "text" if tests["string"](t) else f"{t} values"
            raise SemDedupError(
                f"{where}: column {name!r} holds {held}, not {words}; it was not written by semdedup, "
                "fix it or pass another --labels path"
            )


def _check_rows(rows: pd.DataFrame, where: str) -> None:
    """Refuse nulls where a verdict needs a value, an unknown verdict, and a pair not stored smaller id first
    (the store's key: such a row would never match a pair and count as not judged)."""
    for name in ("id_a", "id_b", "verdict", "reviewer", "time"):
        null = rows[name].isna().to_numpy()
        if null.any():
            raise SemDedupError(f"{where} row {int(np.flatnonzero(null)[0]) + 1} has no {name}; fix or remove that row")
    bad = ~rows["verdict"].isin(VERDICTS).to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SemDedupError(
            f"{where} row {i + 1} has verdict {rows['verdict'].iat[i]!r}, not one of {', '.join(VERDICTS)}; "
            "fix or remove that row"
        )
    a, b = rows["id_a"].to_numpy(dtype=object), rows["id_b"].to_numpy(dtype=object)
    unsorted = np.flatnonzero(a >= b) if len(a) else np.zeros(0, dtype=np.int64)
    if len(unsorted):
        i = int(unsorted[0])
        raise SemDedupError(
            f"{where} row {i + 1} stores the pair ({a[i]!r}, {b[i]!r}) with id_a not before id_b; each pair is "
            "stored smaller id first: fix or remove that row"
        )


class LabelStore:
    """A verdict store on disk (see the module's docstring). Nothing is written until :meth:`add`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path).expanduser()

    @classmethod
    def for_results(cls, folder: str | os.PathLike[str] | None, labels: Any = None) -> LabelStore:
        """``labels`` (a store or a path) when given, else the results folder's ``labels.parquet``."""
        if isinstance(labels, LabelStore):
            return labels
        if labels is not None and str(labels) != "":
            return cls(labels)
        if folder is None:
            raise SemDedupError("these results have no folder, so no default labels store; pass labels=PATH")
        return cls(Path(folder) / LABELS)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def exists(self) -> bool:
        return self.path.is_file()

    def stamp(self) -> tuple[int, int, int]:
        """``(inode, mtime_ns, size)`` of the store, zeros when there is none: changes with every write
        (each write renames a new file into place, so even two writes within the file system's clock
        tick differ)."""
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0, 0)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> pd.DataFrame:
        """Every row of the store (an empty frame when there is none yet). A store that is not a regular
        file (a FIFO, a folder), not parquet, or whose columns are not of the types this module writes
        (string ids with the smaller first, a UTC time, …) is refused in one line naming the problem."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        where = f"labels store {str(self.path)!r}"
        if not os.path.lexists(self.path):
            return empty_frame()
        try:  # one open file: a writer renaming a new store in meanwhile is harmless
            with safe.open_regular(self.path, max_bytes=safe.TABLE_BYTES) as f:
                table = pq.read_table(f)
        except FileNotFoundError:
            return empty_frame()
        except safe.FileRefused as exc:
            raise SemDedupError(f"{where} cannot be read ({exc}); pass the path of a .parquet file") from None
        except Exception as exc:  # pyarrow raises several types for a damaged or foreign file
            raise SemDedupError(
                f"{where} is not a readable parquet file ({type(exc).__name__}); "
                "pass another --labels path (this one is left as it is)"
            ) from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise SemDedupError(
                f"{where} lacks columns {missing}; it is not a semdedup labels store, pass another --labels path"
            )
        _check_types(table, where)
        table = table.select(list(COLUMNS))
        table = table.set_column(
            COLUMNS.index("time"), "time", table["time"].cast(pa.timestamp("us", tz="UTC"), safe=False)
        )
        rows = table.to_pandas()
        for c in ("id_a", "id_b", "verdict", "reviewer", "run"):
            rows[c] = rows[c].astype(object)
        _check_rows(rows, where)
        return rows

    def resolved(self) -> pd.DataFrame:
        """One verdict per judged pair (see :func:`resolve`)."""
        return resolve(self.read())

    def not_duplicate_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """The pairs the store's verdicts call not duplicates, as two arrays of ids: what the audited rule
        takes out of the comparison (:meth:`semdedup_core.results.results.Results.audited`)."""
        resolved = self.resolved()
        not_dup = resolved[resolved["verdict"] == "not_duplicate"]
        return not_dup["id_a"].to_numpy(dtype=object), not_dup["id_b"].to_numpy(dtype=object)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive write lock (a ``flock`` on ``<store>.lock``)."""
        folder = self.path.parent
        if not folder.is_dir():
            raise SemDedupError(
                f"the folder of the labels store {str(self.path)!r} does not exist; create it or pass another --labels"
            )
        with io.locked(self.lock_path):
            yield

    def add(self, rows: pd.DataFrame) -> dict[str, int]:
        """Merge ``rows`` (from :func:`make_rows`) into the store under the lock, atomically.

        A row replaces the store's row of the same pair and reviewer. Returns ``{"added": new pairs of
        this reviewer, "replaced": verdicts that replaced an earlier one, "rows": rows in the store}``."""
        import pandas as pd

        if rows.empty:
            return {"added": 0, "replaced": 0, "rows": len(self.read())}
        rows = rows[list(COLUMNS)]
        with self.locked():
            old = self.read()
            cols = ["id_a", "id_b", "reviewer"]
            merged = pd.concat([old, rows], ignore_index=True) if len(old) else rows.reset_index(drop=True)
            key, _ = row_keys([merged[c].to_numpy(dtype=object) for c in cols])
            # keep the last row of each (pair, reviewer): a later verdict replaces an earlier one
            last = len(key) - 1 - np.unique(key[::-1], return_index=True)[1]
            keep = np.zeros(len(key), dtype=bool)
            keep[last] = True
            fresh_keys = np.unique(key[len(old) :])
            replaced = int(np.isin(fresh_keys, key[: len(old)]).sum())
            n_fresh = len(fresh_keys)
            merged = merged[keep].reset_index(drop=True)
            merged["time"] = merged["time"].astype("datetime64[us, UTC]")
            io.write_parquet(self.path, merged)
        return {"added": n_fresh - replaced, "replaced": replaced, "rows": len(merged)}

    def record(
        self,
        item: Any,
        other: Any,
        verdict: str,
        reviewer: str,
        similarity: float | None = None,
        run: str | None = None,
    ) -> None:
        """Store one verdict on the pair ``(item, other)`` (replacing this reviewer's earlier one)."""
        sim = None if similarity is None else [similarity]
        self.add(make_rows([item], [other], [verdict], reviewer, sim, run))

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"
