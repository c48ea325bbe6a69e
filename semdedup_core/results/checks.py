"""What ``items.parquet`` must hold to be read: the numbers, always on load (:func:`check_numeric`), and the
strings, on load below :data:`~.names.STRING_CHECK_ROWS` items and otherwise on first bulk use
(:func:`check_strings`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.clusters import ClusterIndex
from . import io
from .names import DUP_ROW, REQUIRED_COLUMNS


def check_columns(columns: list[str], where: str) -> None:
    """Raise unless ``items.parquet`` (``where``) starts with the engine's columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SemDedupError(f"items.parquet in {where!r} lacks columns {missing}; rerun with this version")


# -- what items.parquet must hold ---------------------------------------------------------------------
SCORE_SLACK = 0.01  # scores of identical items may exceed 1 by a hair (float16 scoring: by about 2e-3)


def _digit_counts(n: int) -> np.ndarray:
    """The number of decimal digits of each of ``0 .. n-1`` (1 for 0..9, 2 for 10..99, …)."""
    bounds = [0, *(10**j for j in range(1, len(str(max(n - 1, 0))))), n]
    return np.repeat(np.arange(1, len(bounds), dtype=np.int64), np.diff(bounds))


def _is_row_numbers(ids: Any) -> bool:
    """Whether the ids are exactly ``"0".."n-1"`` in order (the engine's default): the numbers, and as many
    bytes as their digits (no sign, no leading zero)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    if n == 0 or ids[0].as_py() != "0" or ids[n - 1].as_py() != str(n - 1):  # else skip the full cast
        return False
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
        as_int = pc.cast(ids, pa.int64()).to_numpy(zero_copy_only=False)
        return bool(
            np.array_equal(as_int, np.arange(n))
            and np.array_equal(pc.binary_length(ids).to_numpy(zero_copy_only=False), _digit_counts(n))
        )
    return False


def _rows_of(ids: Any, dup: Any, where: str) -> np.ndarray:
    """Check ``ids`` are unique and map each non-null ``dup`` to its row (``-1`` for null); raise naming the
    first id that repeats or the first ``dup_of`` that is no id. One dictionary encoding of the ids and
    ``dup`` together, or none when the ids are the row numbers ``"0".."n-1"`` (the engine's default). For
    folders written before ``dup_row``; the others never map strings to rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(ids)
    has = pc.is_valid(dup).to_numpy(zero_copy_only=False)
    present = pc.drop_null(dup)
    rows = np.full(n, -1, dtype=np.int64)
    if _is_row_numbers(ids):
        digits = _digit_counts(n)
        with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
            targets = pc.cast(present, pa.int64()).to_numpy(zero_copy_only=False)
            if ((targets >= 0) & (targets < n)).all() and np.array_equal(
                pc.binary_length(present).to_numpy(zero_copy_only=False), digits[targets]
            ):
                rows[has] = targets
                return rows
    # one array (64-bit offsets), so one dictionary: encoding chunk by chunk would grow a dictionary per
    # chunk and make combining them cost far more than the encoding
    both = pa.concat_arrays([c.cast(pa.large_string()) for c in (*ids.chunks, *present.chunks)])
    codes = pc.dictionary_encode(both).indices.to_numpy(zero_copy_only=False)
    own = codes[:n]
    repeat = np.flatnonzero(own != np.arange(n))
    if len(repeat):
        r = int(repeat[0])
        first = int(np.flatnonzero(own[:r] == own[r])[0])
        raise SemDedupError(
            f"items.parquet in {where!r} has the id {ids[r].as_py()!r} twice (rows {first} and {r}); "
            "ids must be unique: rerun into a new folder"
        )
    targets = codes[n:]
    missing = np.flatnonzero(targets >= n)
    if len(missing):
        j = int(np.flatnonzero(has)[missing[0]])
        raise SemDedupError(
            f"items.parquet in {where!r}: dup_of {present[int(missing[0])].as_py()!r} of the item in row {j} "
            f"({ids[j].as_py()!r}) is not an id of this folder; the folder is damaged, rerun into a new folder"
        )
    rows[has] = targets
    return rows


@dataclass(frozen=True)
class ItemsCheck:
    """What :func:`check_numeric` computed and readers need: ``dup_rows`` (the row of each ``dup_of``, -1
    for none), the :class:`ClusterIndex` of the rows in rank order, the numeric ``columns`` it read (numpy
    arrays by column name) and whether the string checks are done too (``strings_checked``: a folder
    without ``dup_row`` resolves ``dup_of`` from the strings, which checks them on the way)."""

    dup_rows: np.ndarray
    clusters: ClusterIndex
    columns: dict[str, np.ndarray]
    strings_checked: bool


def check_items(items: Any, run: dict[str, Any], where: str) -> tuple[np.ndarray, ClusterIndex]:
    """Refuse an ``items.parquet`` (``where``: its folder; ``items`` a DataFrame or an Arrow table) that
    the engine could not have written, in one line naming the first problem: all of
    :func:`check_numeric`, then :func:`check_strings`.

    Returns ``dup_rows`` (the row of each ``dup_of``, -1 for none) and the :class:`ClusterIndex` of the
    rows in rank order.
    """
    table = as_table(items)
    checked = check_numeric(table, run, where)
    if not checked.strings_checked:
        check_strings(table, checked.dup_rows, run, where, checked.columns)
    return checked.dup_rows, checked.clusters


def as_table(items: Any) -> Any:
    """``items`` (a DataFrame or an Arrow table) as an Arrow table (no copy of an Arrow table)."""
    import pyarrow as pa

    return items if isinstance(items, pa.Table) else pa.Table.from_pandas(items, preserve_index=False)


def _refuser(where: str) -> Any:
    def refuse(problem: str) -> SemDedupError:
        return SemDedupError(f"items.parquet in {where!r} {problem}; the folder is damaged, rerun into a new folder")

    return refuse


def _first(mask: Any) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_types(table: Any, refuse: Any) -> None:
    """Each engine column that is there has its kind: strings, integers or floats."""
    import pyarrow as pa

    def is_string(t: Any) -> bool:
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)

    kinds = {
        "id": (is_string, "strings"),
        "dup_of": (lambda t: is_string(t) or pa.types.is_null(t), "strings"),
        "cluster": (pa.types.is_integer, "integers"),
        "rank": (pa.types.is_integer, "integers"),
        "max_sim": (pa.types.is_floating, "floats"),
        "dist_to_centroid": (pa.types.is_floating, "floats"),
        DUP_ROW: (pa.types.is_integer, "integers"),
    }
    for col, (test, kind) in kinds.items():
        if col in table.column_names and not test(table.schema.field(col).type):
            raise refuse(f"has column {col!r} of type {table.schema.field(col).type}, not {kind}")


def _check_scores(table: Any, refuse: Any) -> dict[str, np.ndarray]:
    """``max_sim`` and ``dist_to_centroid`` as arrays, finite, and each ``max_sim`` a cosine (within
    :data:`SCORE_SLACK`)."""
    floats = {}
    for col in ("max_sim", "dist_to_centroid"):
        values = _floats(table[col])
        finite = np.isfinite(values)
        if not finite.all():
            r = _first(~finite)
            raise refuse(f"has {col} {values[r]} in row {r}; scores must be finite numbers")
        floats[col] = values
    scores = floats["max_sim"]
    out = (scores < -1 - SCORE_SLACK) | (scores > 1 + SCORE_SLACK)
    if out.any():
        r = _first(out)
        raise refuse(f"has max_sim {scores[r]} in row {r}; a cosine similarity lies between -1 and 1")
    return floats


def check_numeric(table: Any, run: dict[str, Any], where: str) -> ItemsCheck:
    """The checks of the numbers, vectorised and without a pass over the strings: column types, null ids,
    finite scores, ``0 ≤ cluster < k``, ranks ``0..size-1`` in each cluster, and — from ``dup_row`` — that
    exactly the items after the first of a cluster have a ``dup_of``, each an *earlier* item of the same
    cluster (of a probing run: earlier in the global keep order), so no chain of ``dup_of`` can loop.

    A folder written before ``dup_row`` existed has its ``dup_of`` resolved from the strings here, which
    runs the string checks too (``strings_checked``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    refuse = _refuser(where)
    names = list(table.column_names)
    check_columns(names, where)
    n = table.num_rows
    counts = run.get("counts", {}) if isinstance(run.get("counts"), dict) else {}
    if counts.get("items") is not None and counts["items"] != n:
        raise refuse(f"has {n} rows but run.json counts {counts['items']} items")
    if n == 0:
        raise refuse("has no rows")

    _check_types(table, refuse)
    ids = io.strings(table["id"])
    if ids.null_count:
        raise refuse(f"has a missing (null) id in row {pc.index(pc.is_null(ids), True).as_py()}")
    for col in ("cluster", "rank", DUP_ROW):
        if col in names and table[col].null_count:
            raise refuse(f"has a missing {col} in row {pc.index(pc.is_null(table[col]), True).as_py()}")
    dup = io.strings(table["dup_of"]) if not pa.types.is_null(table.schema.field("dup_of").type) else None
    if dup is None:
        dup = pa.chunked_array([pa.nulls(n, ids.type)])
    elif dup.type != ids.type:
        dup = dup.cast(ids.type)

    k = counts.get("clusters")
    cluster = _ints(table["cluster"])
    if k is None:
        k = int(cluster.max()) + 1
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
        raise refuse(f"comes with a cluster count of {k!r} in run.json; it must be between 1 and {n}")
    lo, hi = int(cluster.min()), int(cluster.max())
    if lo < 0 or hi >= k:
        r = _first((cluster < 0) | (cluster >= k))
        raise refuse(f"has cluster {int(cluster[r])} in row {r}; clusters must be between 0 and {k - 1}")
    floats = _check_scores(table, refuse)
    scores = floats["max_sim"]

    rank = _ints(table["rank"])
    sizes = np.bincount(cluster, minlength=k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    wrong = (rank < 0) | (rank >= sizes[cluster])
    pos = offsets[cluster] + np.where(wrong, 0, rank)
    order = np.full(n, -1, dtype=np.int64)
    order[pos] = np.arange(n)
    if wrong.any() or (order < 0).any():
        r = _first(wrong) if wrong.any() else _repeated_rank(pos)
        raise refuse(
            f"has rank {int(rank[r])} in row {r} (cluster {int(cluster[r])} of {int(sizes[cluster[r]])} items); "
            "the ranks of a cluster must be 0, 1, 2, … each once"
        )
    del wrong
    columns = {"cluster": cluster, "rank": rank, "max_sim": scores, "dist_to_centroid": floats["dist_to_centroid"]}
    clusters = ClusterIndex(order, offsets)

    has = pc.is_valid(dup).to_numpy(zero_copy_only=False)
    links = _Links(ids, cluster, rank, scores, floats["dist_to_centroid"], run, refuse, slot=pos)
    links.check_first(has)
    if DUP_ROW not in names:  # written before dup_row: resolve dup_of from the strings (checking them)
        _check_id_text(ids, refuse)
        dup_rows = _rows_of(ids, dup, where)
        links.check(dup_rows)
        return ItemsCheck(dup_rows, clusters, columns, True)
    dup_rows = _ints(table[DUP_ROW])
    bad = (dup_rows < -1) | (dup_rows >= n)
    if bad.any():
        r = _first(bad)
        raise refuse(f"has dup_row {int(dup_rows[r])} in row {r}; it must be -1 (none) or a row from 0 to {n - 1}")
    differ = has != (dup_rows >= 0)
    if differ.any():
        r = _first(differ)
        what = "a dup_of but dup_row -1" if has[r] else f"dup_row {int(dup_rows[r])} but no dup_of"
        raise refuse(f"row {r} has {what}; both name the item's earlier duplicate, or neither")
    links.check(dup_rows)
    columns[DUP_ROW] = dup_rows
    return ItemsCheck(dup_rows, clusters, columns, False)


_COMPARE_ROWS = 1_000_000
"""Rows of ``dup_of`` compared with the ids they name per step of :func:`check_strings`."""


def check_strings(
    table: Any, dup_rows: np.ndarray, run: dict[str, Any], where: str, columns: dict[str, np.ndarray] | None = None
) -> None:
    """The checks of the strings, for a table :func:`check_numeric` passed: no id holds a line break or NUL,
    the ids are unique, and each ``dup_of`` is the id of the row its ``dup_row`` names. One hash pass over
    the ids (none when they are the row numbers ``"0".."n-1"``). ``columns``: the numeric columns
    :func:`check_numeric` returned (read again when not given)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    refuse = _refuser(where)
    ids = io.strings(table["id"])
    _check_id_text(ids, refuse)
    _check_unique(ids, where)
    has = dup_rows >= 0
    if not has.any():
        return
    dup = io.strings(table["dup_of"]) if not pa.types.is_null(table.schema.field("dup_of").type) else None
    if dup is None:
        raise refuse("has no dup_of although dup_row names earlier items")
    if dup.type != ids.type:
        dup = dup.cast(ids.type)
    present = pc.drop_null(dup)  # aligned with the rows that have a dup_row
    targets = dup_rows[has]
    bad = -1
    for lo in range(0, len(targets), _COMPARE_ROWS):  # in blocks: never a second copy of the column
        block = targets[lo : lo + _COMPARE_ROWS]
        same = pc.equal(_take(ids, block), present.slice(lo, len(block))).to_numpy(zero_copy_only=False)
        if not same.all():
            bad = lo + _first(~same)
            break
    if bad < 0:
        return
    # say what is wrong with the strings as a folder without dup_row would be told, else that they disagree
    cols = columns or {}

    def col(name: str) -> np.ndarray:
        return (
            cols[name] if name in cols else (_floats if name in ("max_sim", "dist_to_centroid") else _ints)(table[name])
        )

    from_text = _rows_of(ids, dup, where)
    _Links(ids, col("cluster"), col("rank"), col("max_sim"), col("dist_to_centroid"), run, refuse).check(from_text)
    r = int(np.flatnonzero(has)[bad])
    t = int(dup_rows[r])
    raise refuse(
        f"row {r} ({ids[r].as_py()!r}) has dup_of {dup[r].as_py()!r} but dup_row {t} (the item "
        f"{ids[t].as_py()!r}); they must name the same item"
    )


def _take(values: Any, rows: np.ndarray) -> Any:
    """``values`` (an Arrow chunked array) at ``rows``, chunk by chunk (never concatenating the column)."""
    import pyarrow as pa

    return take_chunked(values, rows) if isinstance(values, pa.ChunkedArray) else values.take(pa.array(rows))


def take_chunked(values: Any, rows: np.ndarray) -> Any:
    """The elements of the chunked array ``values`` at ``rows`` (in that order) as one array: each chunk is
    read only at the rows that fall in it, so a page of rows costs the page, not the column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = np.asarray(rows, dtype=np.int64)
    if values.num_chunks == 1:
        return values.chunk(0).take(pa.array(rows))
    if len(rows) == 0:
        return pa.array([], type=values.type)
    if len(rows) > len(values) // 32:  # much of the column: Arrow's own take (it reads every chunk) is faster
        return pc.take(values, pa.array(rows)).combine_chunks()
    lengths = np.fromiter((len(c) for c in values.chunks), dtype=np.int64, count=values.num_chunks)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    owner = np.searchsorted(starts, rows, side="right") - 1
    by_chunk = np.argsort(owner, kind="stable")
    parts = []
    for c in np.unique(owner):
        sel = by_chunk[np.searchsorted(owner[by_chunk], c) : np.searchsorted(owner[by_chunk], c, side="right")]
        parts.append(values.chunk(int(c)).take(pa.array(rows[sel] - starts[c])))
    gathered = pa.chunked_array(parts, values.type).combine_chunks()
    back = np.empty(len(rows), dtype=np.int64)
    back[by_chunk] = np.arange(len(rows))
    return pc.take(gathered, pa.array(back))


def _check_id_text(ids: Any, refuse: Any) -> None:
    bad = io.first_bad_string(ids)
    if bad is not None:
        raise refuse(f"has an id with a line break or NUL in row {bad} ({ids[bad].as_py()!r})")


def _check_unique(ids: Any, where: str) -> None:
    """Raise naming the first id that repeats. No pass over the strings when the ids are the row numbers;
    otherwise one 64-bit hash of each id (:func:`~.io.hash_strings`) and a sort of the hashes, and only
    the ids whose hashes meet are compared as strings — never a hash table of every id (at 20,000,000 ids
    that took 10 s and 3 GB)."""
    import pyarrow.compute as pc

    if len(ids) < 2 or _is_row_numbers(ids):
        return
    h = io.hash_strings(ids)
    s = np.sort(h)
    meet = s[1:] == s[:-1]
    if not meet.any():
        return
    rows = np.flatnonzero(np.isin(h, np.unique(s[1:][meet])))  # ascending: the first repeat comes first
    del h, s
    codes = pc.dictionary_encode(_take(ids, rows)).indices.to_numpy(zero_copy_only=False)
    _, first_of_code = np.unique(codes, return_index=True)
    repeat = np.flatnonzero(first_of_code[codes] != np.arange(len(rows)))
    if len(repeat):
        i = int(repeat[0])
        r, first = int(rows[i]), int(rows[first_of_code[codes[i]]])
        raise SemDedupError(
            f"items.parquet in {where!r} has the id {ids[r].as_py()!r} twice (rows {first} and {r}); "
            "ids must be unique: rerun into a new folder"
        )


class _Links:
    """The checks of the ``dup_of`` links (as rows): who has one, and that each points earlier."""

    def __init__(self, ids, cluster, rank, scores, dist, run, refuse, slot=None):
        self.ids, self.cluster, self.rank, self.scores, self.dist = ids, cluster, rank, scores, dist
        self.slot = slot  # each row's place in the grouping by (cluster, rank), when the caller has it
        self.dedup = (run.get("params") or {}).get("dedup") or {}
        self.probe = int(self.dedup.get("probe", 0) or 0) > 0
        self.refuse = refuse

    def check_first(self, has: np.ndarray) -> None:
        """Who has a ``dup_of``: the items after the first of a cluster (probing: those with a score)."""
        scores, refuse = self.scores, self.refuse
        if self.probe:
            if (has != (scores > -1.0)).any():
                r = _first(has != (scores > -1.0))
                raise refuse(f"row {r} has {'a dup_of but no score' if has[r] else 'a score but no dup_of'}")
            return
        first = self.rank == 0
        if (has == first).any():
            r = _first(has == first)
            what = "has a dup_of" if first[r] else "has no dup_of"
            raise refuse(
                f"row {r} (rank {int(self.rank[r])}) {what}; exactly the items after the first of a cluster have one"
            )
        if (scores[first] != -1.0).any():
            r = _first(first & (scores != -1.0))
            raise refuse(f"row {r} is the first of its cluster but has max_sim {scores[r]} (it must be -1)")

    def check(self, dup_rows: np.ndarray) -> None:
        """Each ``dup_of`` (``dup_rows``) is an earlier item: of the same cluster, or for a probing run
        earlier in the run's global keep order."""
        ids, cluster, rank = self.ids, self.cluster, self.rank
        if self.probe:
            src = np.flatnonzero(dup_rows >= 0)
            tgt = dup_rows[src]
            from ..kernels.order import global_order

            pos = global_order(self.dist, self.dedup.get("keep", "hard"), int(self.dedup.get("seed", 0)))
            bad = pos[tgt] >= pos[src]
            if bad.any():
                r, t = int(src[bad][0]), int(tgt[bad][0])
                raise self.refuse(
                    f"row {r} ({ids[r].as_py()!r}) has dup_of {ids[t].as_py()!r}, which is not earlier in the "
                    "run's keep order; dup_of must be an earlier item"
                )
            return
        slot = self.slot
        if slot is None:
            starts = np.concatenate([[0], np.cumsum(np.bincount(cluster))])
            slot = starts[cluster] + rank
        # the same cluster and an earlier rank: a slot from the start of the item's cluster to its own
        # (over every row, the rows without a dup_of masked: no gathers through a list of rows)
        there = slot[np.maximum(dup_rows, 0)]
        bad = (there >= slot) | (there < slot - rank)
        bad &= dup_rows >= 0
        if bad.any():
            r = _first(bad)
            t = int(dup_rows[r])
            raise self.refuse(
                f"row {r} ({ids[r].as_py()!r}, cluster {int(cluster[r])}, rank {int(rank[r])}) has dup_of "
                f"{ids[t].as_py()!r} (cluster {int(cluster[t])}, rank {int(rank[t])}); dup_of must be an earlier "
                "item of the same cluster"
            )


def _ints(column: Any) -> np.ndarray:
    """An integer Arrow column (no nulls) as an int64 numpy array."""
    return np.asarray(column.to_numpy(), dtype=np.int64)


def _floats(column: Any) -> np.ndarray:
    """A float Arrow column as a numpy array (nulls become NaN), float32 kept as float32."""
    import pyarrow as pa

    if column.null_count:
        column = column.cast(pa.float64()).fill_null(np.nan)
    return column.to_numpy()


def _repeated_rank(pos: np.ndarray) -> int:
    """The first row whose (cluster, rank) slot an earlier row already took."""
    seen = np.zeros(len(pos), dtype=bool)
    _, first = np.unique(pos, return_index=True)
    seen[first] = True
    return int(np.flatnonzero(~seen)[0])
