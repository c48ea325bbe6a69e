"""``items.parquet`` and its memory-mappable copy ``items.arrow``: writing both, and reading the fastest
one that is sound.

``items.parquet`` is the contract (one file, or a folder of parts; pandas, pyarrow and DuckDB read it).
Parquet is compressed and encoded, so reading 20,000,000 rows takes seconds. Beside it the engine writes
the same table as an uncompressed Arrow IPC file (``items.arrow``, or ``items.arrow/part-NNNNN.arrow``
beside ``items.parquet/part-NNNNN.parquet``), in record batches of :data:`BATCH_ROWS` rows: the
explorer's cache. It memory-maps in milliseconds and its columns are read only where a view touches
them.

``run.json`` records what each copy mirrors (``items_arrow``: for every part, the parquet file's size and
a hash of its footer, which holds its schema, row groups and statistics, and the Arrow file's size and
row count). A copy is used only when all of that still matches: a rewritten ``items.parquet`` (a new
footer), a missing, truncated or replaced ``items.arrow``, or a folder written before the copy existed
is read from parquet as before. Copying a folder (``cp -r``, ``rsync``) keeps the copy valid: nothing
here depends on times or paths. What is read is checked either way (:func:`~.schema.check_items`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import io

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

BATCH_ROWS = 1_000_000
"""Rows per record batch of the Arrow copy (string offsets stay 32-bit; a view reads whole batches)."""
MIRROR_KEY = "items_arrow"
"""The key of ``run.json`` that records the Arrow copy."""


def write_items(table: pa.Table, parquet: Path, arrow: Path) -> dict[str, Any]:
    """Write ``table`` to ``parquet`` and its Arrow copy to ``arrow``, each atomically, and return the
    pair's record (:func:`pair_record`; :func:`mirror_record` makes the ``run.json`` entry of all pairs)."""
    import pyarrow.parquet as pq

    with io.atomic_path(parquet) as tmp:
        pq.write_table(table, tmp)
    write_arrow(table, arrow)
    return pair_record(parquet, arrow, table.num_rows)


def write_arrow(table: pa.Table, path: Path) -> None:
    """``table`` as an uncompressed Arrow IPC file of record batches of :data:`BATCH_ROWS` rows, atomically."""
    import pyarrow as pa

    with io.atomic_path(path) as tmp, pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            w.write_batch(batch)


def footer_hash(path: Path) -> str:
    """A hash of a parquet file's footer (its schema, row groups, sizes and statistics): a rewrite of the
    file changes it. Reads only the end of the file."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size < 12:
            raise OSError(f"{path} is too short to be a parquet file")
        f.seek(size - 8)
        tail = f.read(8)
        length = int.from_bytes(tail[:4], "little")
        if tail[4:] != b"PAR1" or length + 8 > size:
            raise OSError(f"{path} has no parquet footer")
        f.seek(size - 8 - length)
        return hashlib.sha256(f.read(length)).hexdigest()[:32]


def pair_record(parquet: Path, arrow: Path, rows: int) -> dict[str, Any]:
    """What ``run.json`` keeps of one (parquet, Arrow copy) pair; the file names are set relative to the
    results folder by :func:`mirror_record`."""
    return {
        "parquet": str(parquet),
        "arrow": str(arrow),
        "rows": int(rows),
        "parquet_bytes": parquet.stat().st_size,
        "parquet_footer": footer_hash(parquet),
        "arrow_bytes": arrow.stat().st_size,
    }


def mirror_record(folder: Path, pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``run.json`` entry (:data:`MIRROR_KEY`) for ``pairs`` written into the results folder ``folder``."""
    files = []
    for p in pairs:
        files.append(
            {
                **p,
                "parquet": Path(p["parquet"]).relative_to(folder).as_posix(),
                "arrow": Path(p["arrow"]).relative_to(folder).as_posix(),
            }
        )
    return {
        "format": "arrow-ipc-file",
        "rows": sum(int(f["rows"]) for f in files),
        "note": "a memory-mappable copy of items.parquet for the explorer; ignored when it no longer matches",
        "files": files,
    }


def _fresh_copy(folder: Path, record: Any) -> list[Path] | None:
    """The Arrow files of a copy that still mirrors the folder's parquet, else ``None``."""
    if not isinstance(record, dict) or not isinstance(record.get("files"), list) or not record["files"]:
        return None
    paths = []
    try:
        for f in record["files"]:
            parquet, arrow = folder / f["parquet"], folder / f["arrow"]
            if not (parquet.is_file() and arrow.is_file()):
                return None
            if parquet.stat().st_size != f["parquet_bytes"] or arrow.stat().st_size != f["arrow_bytes"]:
                return None
            if footer_hash(parquet) != f["parquet_footer"]:
                return None
            paths.append(arrow)
    except (OSError, KeyError, TypeError):
        return None
    return paths


def open_arrow(paths: list[Path], rows: list[int] | None = None) -> pa.Table:
    """The Arrow files ``paths`` memory-mapped and seen as one table (no copy); ``rows``: the row count
    each must have."""
    import pyarrow as pa

    tables = []
    for i, path in enumerate(paths):
        table = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        if rows is not None and table.num_rows != rows[i]:
            raise OSError(f"{path} holds {table.num_rows} rows, not {rows[i]}")
        tables.append(table)
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def read_items(folder: Path, parquet: Path, run: dict[str, Any]) -> tuple[pa.Table, str]:
    """The items table of the results folder ``folder`` and where it came from: ``"arrow"`` (the
    memory-mapped copy, when ``run.json`` records one that still matches) or ``"parquet"``.
    Raises ``OSError``/``ValueError`` when ``items.parquet`` cannot be read."""
    import pyarrow.parquet as pq

    record = run.get(MIRROR_KEY)
    paths = _fresh_copy(folder, record)
    if paths is not None:
        try:
            table = open_arrow(paths, [int(f["rows"]) for f in record["files"]])
            if table.num_rows == int(record["rows"]):
                return table, "arrow"
        except (OSError, ValueError) as exc:  # a damaged copy: the parquet is the contract
            log.warning("the Arrow copy of %s is unreadable (%s); reading items.parquet", folder, exc)
    elif record is not None:
        log.info("the Arrow copy of %s no longer matches items.parquet; reading items.parquet", folder)
    return pq.read_table(parquet), "parquet"
