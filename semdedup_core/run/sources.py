"""Where a run's rows come from: the input split into *parts*, each read by whoever runs its unit of work.

A :class:`Source` is a small picklable description, so a part's unit reads its own rows wherever it runs:

- ``npy``: an ``n × d`` ``.npy`` matrix (the user's file, memory-mapped and only ever read, or an in-memory
  array spilled once into the run's scratch space), split into row ranges of ``part_rows`` rows; its ids
  and carried columns, when there are any, in a parquet file whose row group ``p`` is part ``p``. Such an
  input is *strict*: a NaN, infinite or all-zero row is an error of the run, named by its row.
- ``parts``: raw data already embedded part by part (:mod:`semdedup_core.ingest.embed`) into
  ``DIR/.work/parts/NNNNN/`` — ``meta.parquet`` (``id`` and carried columns), ``emb.npy`` (raw vectors,
  rows aligned with it), ``failed.npy`` (rows whose embedding failed) and ``errors.parquet`` (every item
  left out, with the reason). Bad vectors and repeated ids become rows of ``errors.parquet``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..results import io

PARTS = "parts"
DEFAULT_PART_ROWS = 1_000_000
"""Rows per part of an ``.npy`` input when nothing else is asked (``--part-rows``)."""


def part_dir(work: Path, p: int) -> Path:
    """The folder of raw part ``p`` under a run's ``.work``."""
    return Path(work) / PARTS / f"{p:05d}"


@dataclass(frozen=True)
class Source:
    """The input of a run, as parts (see the module docstring). ``bounds``: the row range of each part
    (``npy``) or its row count (``parts``: ``(0, rows)``)."""

    kind: str
    path: str
    bounds: tuple[tuple[int, int], ...]
    meta: str | None = None
    strict: bool = True
    ids_unique: bool = True
    columns: tuple[str, ...] = field(default=())

    @property
    def n_parts(self) -> int:
        return len(self.bounds)

    @property
    def n_rows(self) -> int:
        return sum(b - a for a, b in self.bounds)

    def rows(self, p: int) -> int:
        a, b = self.bounds[p]
        return b - a

    def vectors(self, p: int) -> np.ndarray:
        """Part ``p``'s raw vectors (a memory map: read only the rows used)."""
        if self.kind == "npy":
            a, b = self.bounds[p]
            return np.load(self.path, mmap_mode="r")[a:b]
        return np.load(part_dir(Path(self.path), p) / "emb.npy", mmap_mode="r")

    def table(self, p: int, columns: list[str] | None = None) -> Any:
        """Part ``p``'s ``id`` and carried columns (an Arrow table, one row per row of the part)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.kind == "parts":
            return pq.read_table(part_dir(Path(self.path), p) / "meta.parquet", columns=columns)
        a, b = self.bounds[p]
        if self.meta is None:
            return pa.table({"id": pa.array(np.arange(a, b).astype(str), pa.string())})
        return pq.ParquetFile(self.meta).read_row_group(p, columns=columns)

    def ids(self, p: int) -> np.ndarray:
        """Part ``p``'s ids as an object array of strings."""
        return self.table(p, ["id"]).column("id").to_numpy(zero_copy_only=False).astype(object)

    def errors(self, p: int) -> list[dict[str, Any]]:
        """The items of part ``p`` left out before the engine saw them (embedding errors)."""
        if self.kind != "parts":
            return []
        import pyarrow.parquet as pq

        return pq.read_table(part_dir(Path(self.path), p) / "errors.parquet").to_pylist()

    def failed(self, p: int) -> np.ndarray:
        """The rows of part ``p`` whose embedding failed (raw parts; listed in its errors)."""
        if self.kind != "parts":
            return np.zeros(0, np.int64)
        return np.load(part_dir(Path(self.path), p) / "failed.npy")

    def describe(self, p: int) -> str:
        return f"rows {self.bounds[p][0]}–{self.bounds[p][1] - 1}" if self.kind == "npy" else f"part {p}"


def npy_bounds(n: int, part_rows: int | None) -> tuple[tuple[int, int], ...]:
    """Row ranges of ``part_rows`` rows (default :data:`DEFAULT_PART_ROWS`) covering ``0..n-1``."""
    step = int(part_rows or DEFAULT_PART_ROWS)
    if step < 1:
        raise SemDedupError(f"--part-rows must be at least 1, got {part_rows}")
    return tuple((a, min(n, a + step)) for a in range(0, n, step))


def write_meta(path: Path, table: Any, bounds: tuple[tuple[int, int], ...]) -> None:
    """The ids and carried columns of an ``npy`` source as parquet, one row group per part, atomically."""
    import pyarrow.parquet as pq

    with io.atomic_path(path) as tmp, pq.ParquetWriter(str(tmp), table.schema) as w:
        for a, b in bounds:
            w.write_table(table.slice(a, b - a), row_group_size=max(1, b - a))


def npy_source(path: str | Path, meta: Any, n: int, part_rows: int | None, work: Path) -> Source:
    """The ``npy`` source of the matrix at ``path`` with ids/columns ``meta`` (an Arrow table with ``id``
    first, or ``None`` for ``"0".."n-1"``), written once into ``work`` split at the parts."""
    bounds = npy_bounds(n, part_rows)
    meta_path = None
    if meta is not None:
        meta_path = work / "input-meta.parquet"
        if not meta_path.is_file():  # the scratch folder is the input's own: a file there is this one
            write_meta(meta_path, meta, bounds)
    columns = () if meta is None else tuple(c for c in meta.column_names if c != "id")
    return Source("npy", str(path), bounds, None if meta_path is None else str(meta_path), True, True, columns)


def parts_source(work: Path, rows: list[int], columns: tuple[str, ...] = ()) -> Source:
    """The ``parts`` source of raw parts already written under ``work`` (``rows``: each part's row count)."""
    return Source("parts", str(work), tuple((0, r) for r in rows), None, False, False, columns)
