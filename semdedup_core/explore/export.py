"""Lists of kept, removed or leaked items at one ε, as CSV, Parquet or TXT.

An export is a list of ids (and paths, when the run has a ``path`` column) — never a deletion. Files are
written atomically into ``<results>/exports/``; the user's input data is never touched. ``leaked`` (runs
with a reference set) lists the items whose similarity to a reference item exceeds 1 − ε, each with
that reference item's id (and path) and the similarity.

Safe to open anywhere: a CSV cell that a spreadsheet would run as a formula (text starting with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return) is written with a single quote in front (``'=1+1``), as
OWASP advises, and a cell starting with a quote gets one more, so that ``audit import`` reads every value
back as it was (:mod:`semdedup_core.results.text`); Parquet and TXT keep every value verbatim. A TXT export lists one value per line, so a
value holding a line break or NUL is refused (naming its row) instead of becoming two lines.
"""

from __future__ import annotations

import io as _io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..results import io
from ..results.names import EXPORTS
from ..results.rules import check_eps
from ..results.text import FORMULA_STARTS, csv_bytes, neutralize_formulas  # noqa: F401 - the earlier home

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

FORMATS = ("csv", "parquet", "txt")
WHICH = ("removed", "kept", "leaked")
EXPORT_DIR = EXPORTS
COLUMNS = ("id", "path", "cluster", "max_sim", "dup_of")
LEAKED_COLUMNS = ("id", "path", "cluster", "ref_sim", "ref_id", "ref_path")


def verdicts(results: Results, rule: str, labels: Any) -> Any:
    """What the ``audited`` rule takes: the verdict store ``labels`` (a store or a path), by default the
    folder's ``labels.parquet``; ``None`` for the other rules."""
    if rule != "audited":
        return None
    from ..audit.labels import LabelStore

    return LabelStore.for_results(results.path, labels)


def _check(which: str, fmt: str | None = None, rule: str = "paper") -> None:
    if which not in WHICH:
        raise SemDedupError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
    if fmt is not None and fmt not in FORMATS:
        raise SemDedupError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if which == "leaked" and rule != "paper":
        raise SemDedupError(
            f"--rule {rule} applies to removed and kept items; leaked items are those whose similarity to a "
            "reference item exceeds 1 - eps whatever the rule: drop --rule"
        )


def export_frame(
    results: Results,
    eps: float,
    which: str = "removed",
    rule: str = "paper",
    labels: Any = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """The ``which`` items at ``eps``: ``id``, ``path`` (when the run has one), ``cluster``, ``max_sim``
    (the score: similarity to the most similar earlier item of the cluster) and ``dup_of`` (that item).
    ``rule``: ``paper`` (SemDeDup's), ``kept-only`` or ``audited`` (see :mod:`semdedup_core.kernels.rules`).
    Under ``audited`` (verdicts from the store ``labels``, default the folder's ``labels.parquet``),
    ``max_sim`` and ``dup_of`` are the rescored ones: for a removed item, ``dup_of`` is the partner that
    justifies its removal, never one judged not a duplicate of it (-1 and empty when none is left).
    ``leaked``: ``id``, ``path``, ``cluster``, ``ref_sim`` (similarity to the most similar reference
    item), ``ref_id`` and ``ref_path`` (that reference item's, when the reference set has paths).

    ``limit``: only the first ``limit`` of them (in input order; a preview reads only those rows). The
    whole list is a bulk use of the ids: the folder's string checks run first
    (:meth:`~semdedup_core.results.results.Results.check_strings`). :func:`export_batches` gives the same
    rows a block at a time."""
    _check(which)
    if limit is None:
        results.check_strings()
    return _frame_of(results, export_rows(results, eps, which, rule, labels)[:limit], which, rule, labels)


def export_rows(
    results: Results, eps: float, which: str = "removed", rule: str = "paper", labels: Any = None
) -> np.ndarray:
    """The rows (input order) of the ``which`` items at ``eps`` under ``rule``: what an export lists."""
    _check(which, rule=rule)
    if which == "leaked":
        return np.flatnonzero(results.leaked_mask(eps))
    mask = results.removed_mask(eps, rule, verdicts(results, rule, labels))
    return np.flatnonzero(~mask if which == "kept" else mask)


def export_count(results: Results, eps: float, which: str = "removed", rule: str = "paper", labels: Any = None) -> int:
    """How many rows the export of the ``which`` items at ``eps`` under ``rule`` lists (O(log n) under the
    paper's and the audited rule)."""
    _check(which, rule=rule)
    if which == "leaked":
        return int(results.n_leaked(eps))
    removed = int(results.n_removed(eps, rule, verdicts(results, rule, labels)))
    return removed if which == "removed" else results.n_items - removed


EXPORT_BATCH_ROWS = 1_000_000
"""Rows an export reads and writes per step (:func:`export_batches`, :func:`write_export`)."""


def export_batches(
    results: Results,
    eps: float,
    which: str = "removed",
    rule: str = "paper",
    labels: Any = None,
    batch_rows: int | None = None,
) -> Iterator[pd.DataFrame]:
    """:func:`export_frame`'s rows in blocks of ``batch_rows`` (default :data:`EXPORT_BATCH_ROWS`), so an
    export of 20,000,000 items never holds more than one block (at least one block, empty when no item
    matches). The string checks run first."""
    _check(which)
    results.check_strings()
    rows = export_rows(results, eps, which, rule, labels)
    step = max(1, int(batch_rows or EXPORT_BATCH_ROWS))
    for lo in range(0, max(len(rows), 1), step):
        yield _frame_of(results, rows[lo : lo + step], which, rule, labels)


def _frame_of(results: Results, rows: np.ndarray, which: str, rule: str, labels: Any) -> pd.DataFrame:
    """The export's columns for ``rows`` (see :func:`export_frame`)."""
    if which == "leaked":
        frame = results.rows(rows, [c for c in LEAKED_COLUMNS[:5] if c in results.columns]).reset_index(drop=True)
        if "path" in results.reference.columns:
            frame["ref_path"] = results.reference["path"].to_numpy()[results.ref_rows[rows]]
        return frame
    frame = results.rows(rows, [c for c in COLUMNS if c in results.columns]).reset_index(drop=True)
    if rule == "audited":
        audited = results.audited(verdicts(results, rule, labels))
        partner = audited.partner[rows]
        ids = results.rows(np.maximum(partner, 0), ["id"])["id"].to_numpy(dtype=object)
        frame["max_sim"] = audited.score[rows]
        frame["dup_of"] = np.where(partner >= 0, ids, None)
    return frame


def to_bytes(frame: pd.DataFrame, fmt: str, txt_column: str = "id") -> bytes:
    """``frame`` encoded as ``csv``, ``parquet`` or ``txt`` (one ``txt_column`` value per line)."""
    _check("removed", fmt)
    if fmt == "csv":
        return _csv(frame)
    if fmt == "parquet":
        buf = _io.BytesIO()
        frame.to_parquet(buf, index=False)
        return buf.getvalue()
    if txt_column not in frame.columns:
        raise SemDedupError(f"txt_column {txt_column!r} is not a column of this run; use one of {list(frame.columns)}")
    values = frame[txt_column].astype(str)
    bad = io.first_bad_string(values.to_numpy(dtype=object))
    if bad is not None:
        what = f"{txt_column} {values.iat[bad]!r}"
        if txt_column != "id" and "id" in frame.columns:
            what += f" of item {frame['id'].iat[bad]!r}"
        raise SemDedupError(
            f"{what} holds a line break or NUL, which a TXT list of one value per line cannot hold; "
            "export as csv or parquet"
        )
    return ("".join(v + "\n" for v in values)).encode("utf-8")


def _csv(frame: pd.DataFrame, header: bool = True) -> bytes:
    """``frame`` as CSV (see :func:`semdedup_core.results.text.csv_bytes`: formulas neutralised, CRLF)."""
    return csv_bytes(frame, header)


def file_name(eps: float, which: str, fmt: str, txt_column: str = "id", rule: str = "paper") -> str:
    """The export's file name, e.g. ``removed-eps0.0500.csv`` (``removed-eps0.0500-path.txt`` for paths,
    ``removed-eps0.0500-kept-only.csv`` under the conservative rule)."""
    _check(which, fmt)
    suffix = f"-{txt_column}" if fmt == "txt" and txt_column != "id" else ""
    suffix += "" if rule == "paper" or which == "leaked" else f"-{rule}"
    return f"{which}-eps{check_eps(eps):.4f}{suffix}.{fmt}"


def write_export(
    results: Results,
    eps: float,
    which: str = "removed",
    fmt: str = "csv",
    txt_column: str = "id",
    rule: str = "paper",
    labels: Any = None,
) -> Path:
    """Write the export into ``<results>/exports/`` atomically and return its path. It is written a block
    of :data:`EXPORT_BATCH_ROWS` rows at a time (the same bytes as :func:`to_bytes` of the whole list), so
    memory stays bounded whatever the size of the run."""
    if results.path is None:
        raise SemDedupError("these results have no folder to write into; load them with Results.load(DIR)")
    _check(which, fmt)
    dest = Path(results.path) / EXPORT_DIR / file_name(eps, which, fmt, txt_column, rule)
    batches = export_batches(results, eps, which, rule, labels)
    with io.atomic_path(dest) as tmp:
        write_batches(batches, tmp, fmt, txt_column)
    return dest


def write_batches(batches: Iterable[pd.DataFrame], path: Path, fmt: str, txt_column: str = "id") -> None:
    """Write frames of the same columns one after another as one ``csv``, ``parquet`` or ``txt`` file at
    ``path`` (what :func:`to_bytes` gives for their concatenation)."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        writer, schema = None, None
        try:
            for frame in batches:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:  # a column that is all missing in the first block is still a string column
                    schema = _string_columns_for_nulls(table.schema)
                    writer = pq.ParquetWriter(str(path), schema)
                writer.write_table(table.replace_schema_metadata(schema.metadata).cast(schema))
        finally:
            if writer is not None:
                writer.close()
        return
    with open(path, "wb") as f:
        for i, frame in enumerate(batches):
            if fmt == "csv":
                f.write(_csv(frame, header=i == 0))
            else:
                f.write(to_bytes(frame, fmt, txt_column))


def _string_columns_for_nulls(schema: Any) -> Any:
    """``schema`` with each all-missing (null-typed) column made a string column, in the Arrow types and in
    the pandas metadata (so pandas reads its missing values back as ``None``, as for the whole list)."""
    import json

    import pyarrow as pa

    nulls = {f.name for f in schema if pa.types.is_null(f.type)}
    fields = [f.with_type(pa.string()) if f.name in nulls else f for f in schema]
    metadata = dict(schema.metadata or {})
    if nulls and b"pandas" in metadata:
        meta = json.loads(metadata[b"pandas"])
        for col in meta.get("columns", []):
            if col.get("name") in nulls:
                col["pandas_type"], col["numpy_type"] = "unicode", "object"
        metadata[b"pandas"] = json.dumps(meta).encode()
    return pa.schema(fields, metadata=metadata or None)
