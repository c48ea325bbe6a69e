"""Tables: the kept rows of a ``.jsonl``, ``.csv`` or ``.parquet`` file, unchanged, in the input's order.

- JSONL: each kept line is copied byte for byte (blank lines, which are no rows, are left out);
- CSV: the header and each kept record are copied byte for byte (a record may span lines inside quotes);
- Parquet: row group by row group, the kept rows with the input's Arrow schema (types, pandas metadata)
  and compression.

The ids of the rows are found as the table reader finds them (:mod:`semdedup_core.ingest.inputs.table`):
the ``--id-column`` values, or the row numbers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from .common import Task, atomic, row_numbers, unit_strings


def unit_ids(source: dict[str, Any]) -> Any:
    """The id of every row of the table, as the reader finds it (``None`` for a row it leaves out: a
    missing, repeated or unusable id)."""
    path = Path(source["path"])
    column = source.get("id_column")
    if column is None:
        return row_numbers(row_count(path))
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return unit_strings(_jsonl_column(path, column))
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pq.read_table(path, columns=[column]).column(column)
        if pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type):  # as pandas reads them
            return unit_strings(arrow)
    return unit_strings(_read(path, [column])[column])


def row_count(path: Path) -> int:
    """The number of rows the table reader sees in ``path``."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if suffix == ".csv":
        return len(_read(path, [0]))
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def _read(path: Path, columns: list[Any]) -> Any:
    """Some columns of a CSV or Parquet table, read with the table reader's options."""
    import pandas as pd

    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path, columns=columns)
    return pd.read_csv(path, usecols=columns, keep_default_na=False, na_values=[""], dtype_backend="numpy_nullable")


def _jsonl_column(path: Path, column: str) -> Any:
    """One field of every JSONL row, typed as ``pandas.read_json(lines=True)`` types the whole column: read
    by pyarrow when every value is a string (or missing), else line by line."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(column, pa.string())])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        return pj.read_json(path, parse_options=options).column(column)
    except pa.ArrowInvalid:  # numbers, objects: as pandas types them
        pass

    values = []
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                values.append(row.get(column) if isinstance(row, dict) else None)
    return pd.DataFrame({"v": values})["v"]


def write(task: Task) -> None:
    """Write the kept rows into ``task.target`` (one file, one piece)."""
    path = Path(task.source["path"])
    suffix = path.suffix.lower()
    with task.job.piece(task.target.name) as todo:
        if not todo:
            return
        with atomic(task.target) as tmp:
            if suffix == ".parquet":
                write_parquet_rows(path, task.keep, tmp)
            elif suffix == ".csv":
                _write_csv(path, task.keep, tmp)
            else:
                _write_jsonl(path, task.keep, tmp)
        task.progress("apply", len(task.keep), len(task.keep))


def _write_jsonl(path: Path, keep: np.ndarray, dest: Path) -> None:
    row, wanted = 0, keep.tolist()
    with open(path, "rb") as f, open(dest, "wb") as out:
        for line in f:
            if not line.strip():
                continue
            if row < len(wanted) and wanted[row]:
                out.write(line if line.endswith(b"\n") else line + b"\n")
            row += 1
    if row != len(keep):
        raise _mismatch(path, row, len(keep))


def _records(f: Any) -> Any:
    """The CSV records of a binary file, each as its bytes: lines joined while a quote is open (RFC 4180:
    a doubled quote inside quotes toggles twice)."""
    pending, quotes = b"", 0
    for line in f:
        pending += line
        quotes += line.count(b'"')
        if quotes % 2 == 0:
            yield pending
            pending, quotes = b"", 0
    if pending:
        yield pending


def _write_csv(path: Path, keep: np.ndarray, dest: Path) -> None:
    row, header, wanted = 0, None, keep.tolist()
    with open(path, "rb") as f, open(dest, "wb") as out:
        for record in _records(f):
            if not record.strip(b"\r\n"):
                continue  # a blank line is no row
            if header is None:
                header = record
                out.write(record if record.endswith(b"\n") else record + b"\n")
                continue
            if row < len(wanted) and wanted[row]:
                end = b"\r\n" if header.endswith(b"\r\n") else b"\n"
                out.write(record if record.endswith(b"\n") else record + end)
            row += 1
    if row != len(keep):
        raise _mismatch(path, row, len(keep))


def write_parquet_rows(path: Path, keep: np.ndarray, dest: Path) -> None:
    """The rows of the Parquet file ``path`` where ``keep`` holds, into ``dest``: row group by row group,
    with the input's schema (and its metadata) and compression."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    meta = pf.metadata
    if meta.num_rows != len(keep):
        raise _mismatch(path, meta.num_rows, len(keep))
    codec = meta.row_group(0).column(0).compression.lower() if meta.num_row_groups and meta.num_columns else "snappy"
    with pq.ParquetWriter(str(dest), pf.schema_arrow, compression=codec) as writer:
        start = 0
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            mask = keep[start : start + n]
            start += n
            if mask.any():
                writer.write_table(pf.read_row_group(g).filter(pa.array(mask)))


def _mismatch(path: Path, found: int, expected: int) -> SemDedupError:
    return SemDedupError(
        f"apply splits table {str(path)!r} into {found:,} rows where the table reader finds {expected:,}; "
        "convert it to .parquet (or .jsonl), run on that, then apply"
    )
