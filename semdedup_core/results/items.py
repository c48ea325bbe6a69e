"""``items.parquet`` and its uncompressed copy ``items.arrow``: writing both, and reading the fastest one
that is sound.

``items.parquet`` is the contract (one file, or a folder of parts; pandas, pyarrow and DuckDB read it).
Parquet is compressed and encoded, so reading 20,000,000 rows takes seconds. Beside it the engine writes
the same table as an uncompressed Arrow IPC file (``items.arrow``, or ``items.arrow/part-NNNNN.arrow``
beside ``items.parquet/part-NNNNN.parquet``), in record batches of :data:`BATCH_ROWS` rows: the
explorer's cache. It is read at the speed of the disk (no decoding), and its columns are the file's
bytes, with no further copy.

``run.json`` records what each copy mirrors (``items_arrow``: for every part, the parquet file's size and
a hash of its footer, which holds its schema, row groups and statistics, and the Arrow file's size, row
count and the CRC-32 of each 64 MiB block of its content). A copy is used only when all of that still matches: a rewritten
``items.parquet`` (a new footer), a missing, truncated, replaced or edited ``items.arrow`` (the same size,
other bytes: the checksums), or a folder written before the copy (or its checksum) existed is read from
parquet as before. Copying a folder (``cp -r``, ``rsync``) keeps the copy valid: nothing here depends on
times or paths. What is read is checked either way (:func:`~.checks.check_numeric`).

**The copy is read into memory, never memory-mapped.** A process that touches a mapped page past the
end of a file another process truncated (or copied over in place) dies of ``SIGBUS``, which no Python
code can catch: the explorer serving a folder would die with it, logging nothing. So the copy is read
once, in one pass that also computes its checksums (the read of the next block overlaps the checking of
the last), into one buffer of this process's own memory that the table's columns point into without a further copy; what happens
to the file afterwards cannot touch what was read. The cost, measured in ``bench/bench_app.py``, is in
the README's Results folder section.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..media import safe
from . import io

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

BATCH_ROWS = 1_000_000
"""Rows per record batch of the Arrow copy (string offsets stay 32-bit; a view reads whole batches)."""
MIRROR_KEY = "items_arrow"
"""The key of ``run.json`` that records the Arrow copy."""
DIGEST_KEY = "arrow_crc32"
"""The key of each file's record holding the checksum of the Arrow file's content: the CRC-32 of each of its
:data:`DIGEST_BLOCK`-byte blocks, in order (blocks are checked in parallel, and a mismatch names the block).
A checksum, not a signature: whoever can edit the copy can edit ``run.json`` too, so what it guards
against is a copy that changed (edited, patched, replaced, truncated), which a CRC detects but for a
chance of 2**-32 per block, at twice the speed of SHA-256 here."""
DIGEST_BLOCK = 64 * 2**20
"""Bytes per block of the checksum, and per read when the copy is read."""


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
    with safe.open_regular(path) as f:
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
        DIGEST_KEY: file_digest(arrow),
    }


def _crc(block: Any) -> int:
    return zlib.crc32(block)  # releases the GIL: blocks are checked in parallel


def _workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def file_digest(path: Path) -> list[int]:
    """The checksum (:data:`DIGEST_KEY`) of the content of the regular file ``path``: each block checked in a
    thread while the next ones are read (at most a few blocks in memory)."""
    sums: list[int] = []
    with safe.open_regular(path) as f, ThreadPoolExecutor(_workers(), thread_name_prefix="semdedup-digest") as pool:
        pending: list[Any] = []
        for block in iter(lambda: f.read(DIGEST_BLOCK), b""):
            pending.append(pool.submit(_crc, block))
            while len(pending) > _workers():
                sums.append(pending.pop(0).result())
        sums += [p.result() for p in pending]
    return sums


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
        "note": "an uncompressed copy of items.parquet for the explorer, read whole and checked against arrow_crc32; "
        "ignored when it no longer matches",
        "files": files,
    }


def _fresh_copy(folder: Path, record: Any) -> list[tuple[Path, int, list[int], int]] | None:
    """``(Arrow file, its size, its checksum, its rows)`` of each part of a copy whose record still matches
    the folder's parquet files, else ``None`` (a record without checksums included: it cannot be checked)."""
    if not isinstance(record, dict) or not isinstance(record.get("files"), list) or not record["files"]:
        return None
    parts = []
    try:
        for f in record["files"]:
            parquet, arrow = folder / f["parquet"], folder / f["arrow"]
            if not isinstance(f.get(DIGEST_KEY), list):
                return None
            if safe.file_problem(parquet, allow_empty=True) or safe.file_problem(arrow, allow_empty=True):
                return None
            if parquet.stat().st_size != f["parquet_bytes"] or arrow.stat().st_size != f["arrow_bytes"]:
                return None
            if footer_hash(parquet) != f["parquet_footer"]:
                return None
            parts.append((arrow, int(f["arrow_bytes"]), f[DIGEST_KEY], int(f["rows"])))
    except (OSError, KeyError, TypeError, ValueError):
        return None
    return parts


def _anonymous(size: int) -> mmap.mmap:
    """``size`` bytes of this process's own memory, its pages allocated at once (``MAP_POPULATE``: no page
    fault per 4 KiB while the file is read in) and given back to the system when the table goes. Anonymous
    memory, not a file: nothing another process does to a file can take it away."""
    flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0x20) | getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, max(size, 1), flags=flags)


def read_verified(path: Path, size: int, digest: list[int]) -> Any | None:
    """The ``size`` bytes of ``path`` read into one Arrow buffer when their checksum is ``digest``, else
    ``None`` (another size, a file that shrinks or grows while read, other content). One pass: each block
    is checked in a thread while the next ones are read (reads and checksums release the GIL)."""
    import pyarrow as pa

    memory = _anonymous(size)
    view = memoryview(memory)
    with safe.open_regular(path) as f, ThreadPoolExecutor(_workers(), thread_name_prefix="semdedup-digest") as pool:
        if os.fstat(f.fileno()).st_size != size:
            return None
        pending, pos = [], 0
        while pos < size:
            start, end = pos, min(pos + DIGEST_BLOCK, size)
            while pos < end:  # one block (a read may return less)
                n = f.readinto(view[pos:end])
                if not n:
                    return None
                pos += n
            pending.append(pool.submit(_crc, view[start:end]))
        if f.read(1):
            return None
        sums = [p.result() for p in pending]
    view.release()
    return pa.py_buffer(memory).slice(0, size) if sums == list(digest) else None


def _read_copy(parts: list[tuple[Path, int, list[int], int]]) -> pa.Table | None:
    """The copy's parts read and checked (:func:`read_verified`) and seen as one table, or ``None`` when
    one of them no longer holds what ``run.json`` recorded."""
    import pyarrow as pa

    tables = []
    for path, size, digest, rows in parts:
        buf = read_verified(path, size, digest)
        if buf is None:
            log.warning("the Arrow copy %s is not what run.json records (edited or replaced); reading parquet", path)
            return None
        table = pa.ipc.open_file(pa.BufferReader(buf)).read_all()
        if table.num_rows != rows:
            return None
        tables.append(table)
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def read_items(folder: Path, parquet: Path, run: dict[str, Any]) -> tuple[pa.Table, str]:
    """The items table of the results folder ``folder`` and where it came from: ``"arrow"`` (the copy, read
    into memory and checked against its checksum, when ``run.json`` records one that still matches) or
    ``"parquet"``. Raises ``OSError``/``ValueError`` when ``items.parquet`` cannot be read (a FIFO or
    another file that is not regular: ``FileRefused``, a ``ValueError``)."""
    import pyarrow.parquet as pq

    record = run.get(MIRROR_KEY)
    parts = _fresh_copy(folder, record)
    if parts is not None:
        try:
            table = _read_copy(parts)
            if table is not None and table.num_rows == int(record["rows"]):
                return table, "arrow"
        except (OSError, ValueError) as exc:  # a damaged copy: the parquet is the contract
            log.warning("the Arrow copy of %s is unreadable (%s); reading items.parquet", folder, exc)
    elif record is not None:
        log.info("the Arrow copy of %s no longer matches items.parquet; reading items.parquet", folder)
    with io.parquet_source(parquet) as source:
        return pq.read_table(source), "parquet"
