"""Rows of a results folder's large ``.npy`` arrays (embeddings, probes), read with positioned reads.

The explorer serves folders that other processes may change: a memory-mapped file that is truncated
under a reader kills it with ``SIGBUS`` the moment it touches a lost page — no exception, no log line.
:class:`NpyRows` reads the rows a caller asks for with ``os.pread`` on a descriptor opened once: a file
replaced by rename keeps serving the copy it opened; a file truncated in place gives a short read, which
is raised as one :class:`~semdedup_core.SemDedupError` naming the file. :class:`ShardedRows` joins
several such files into one array (a run of several parts).

Both look like a read-only ``n × d`` array to the code that indexes rows: ``shape``, ``dtype``, ``ndim``,
``len`` and indexing by an int, a slice or an integer/boolean array (rows come back in the order asked,
as a new array); ``np.asarray`` reads them whole.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..media import safe

#: Rows closer than this many bytes apart are read in one call (the gap is read and dropped): one
#: system call costs about as much as copying this much from the page cache.
MERGE_GAP_BYTES = 64 * 1024


def _row_numbers(key: Any, n: int) -> np.ndarray:
    """The rows ``key`` (a slice, or an integer or boolean array) selects out of ``n``, as int64."""
    rows = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key)
    if rows.dtype == bool:
        rows = np.flatnonzero(rows)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"rows must be integers or booleans, got {rows.dtype}")
    rows = rows.astype(np.int64, copy=False).reshape(-1)
    rows = np.where(rows < 0, rows + n, rows)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"row index out of range for {n:,} rows")
    return rows


class _Rows:
    """Row indexing over :meth:`_take` (sorted, unique, in-range rows → their values)."""

    ndim = 2
    shape: tuple[int, int]
    dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def _take(self, rows: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            picked = self[rows]
            return picked[(slice(None), *rest)] if picked.ndim == 2 else picked[rest]
        if isinstance(key, (int, np.integer)):
            return self[np.array([int(key)])][0]
        rows = _row_numbers(key, self.shape[0])
        unique, back = np.unique(rows, return_inverse=True)
        out = self._take(unique)
        return out if len(unique) == len(rows) and np.array_equal(unique, rows) else out[back]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


class NpyRows(_Rows):
    """A 2-D numeric ``.npy`` file read row by row with positioned reads (see the module's docstring).
    ``rows``: the row count it must have. Its header and size are checked on opening (:func:`open_npy`)."""

    def __init__(self, path: str | os.PathLike[str], what: str, rows: int | None = None):
        self.path, self.what = Path(path), what
        self._fd = -1
        self._open(rows)

    def _open(self, rows: int | None = None) -> None:
        with safe.open_regular(self.path) as f:
            shape, dtype = read_npy_header(f, rows)
            self.shape, self.dtype, self._offset = (int(shape[0]), int(shape[1])), dtype, f.tell()
            self._fd = os.dup(f.fileno())
        self._row_bytes = self.shape[1] * self.dtype.itemsize

    def __getstate__(self) -> dict[str, Any]:  # a descriptor does not travel: reopened where unpickled
        return {"path": self.path, "what": self.what, "shape": self.shape}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.what, self._fd = state["path"], state["what"], -1
        self._open(state["shape"][0])

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def _pread_into(self, dest: memoryview, first: int) -> None:
        """Fill ``dest`` (whole rows) with the file's rows from ``first`` on."""
        offset, done, want = self._offset + first * self._row_bytes, 0, len(dest)
        while done < want:
            got = os.preadv(self._fd, [dest[done:]], offset + done)
            if got <= 0:
                raise SemDedupError(
                    f"{self.what} {str(self.path)!r} was shortened while it was read (another process truncated or "
                    "rewrote it in place); reopen the results folder, or rerun into a new folder"
                )
            done += got

    def _take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if not len(rows) or not self._row_bytes:
            return out
        rb = self._row_bytes
        flat = memoryview(out.reshape(-1).view(np.uint8))
        gap = max(1, MERGE_GAP_BYTES // rb)
        breaks = np.flatnonzero(np.diff(rows) > gap) + 1
        los, his = np.r_[0, breaks].tolist(), np.r_[breaks, len(rows)].tolist()
        firsts, lasts = rows[los].tolist(), rows[np.asarray(his) - 1].tolist()
        for lo, hi, first, last in zip(los, his, firsts, lasts, strict=True):
            if last - first == hi - lo - 1:  # consecutive rows: straight into the output
                self._pread_into(flat[lo * rb : hi * rb], first)
            else:  # rows close together: one read of their span, then picked
                span = np.empty((last - first + 1, self.shape[1]), dtype=self.dtype)
                self._pread_into(memoryview(span.reshape(-1).view(np.uint8)), first)
                out[lo:hi] = span[rows[lo:hi] - first]
        return out


class ShardedRows(_Rows):
    """Several ``.npy`` files of ``n_i × d`` rows seen as one ``n × d`` array: a run of several parts'
    ``embeddings`` and ``probes``."""

    def __init__(self, paths: list[str | os.PathLike[str]], what: str = "embeddings shard"):
        self.parts = [load_npy(p, what, lazy=True) for p in paths]
        sizes = [len(a) for a in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        dims = {a.shape[1] for a in self.parts}
        if len(dims) > 1:
            raise SemDedupError(f"the {what}s have different widths ({sorted(dims)}); rerun into a new folder")
        self.shape = (int(self.starts[-1]), dims.pop() if dims else 0)
        self.dtype = self.parts[0].dtype if self.parts else np.dtype(np.float32)

    def _take(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        for p in np.unique(owner):
            sel = owner == p
            out[sel] = self.parts[p]._take(rows[sel] - self.starts[p])
        return out


def read_npy_header(f: Any, rows: int | None = None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the 2-D numeric ``.npy`` array whose file ``f`` is at its start (left at its
    data), once its size is checked. Raises ``FileRefused`` (a ``ValueError``) naming what is wrong."""
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    if dtype.hasobject or dtype.kind not in "fiu" or len(shape) != 2 or fortran:
        raise safe.FileRefused(f"holds a {dtype} array of shape {shape}, not a 2-D numeric one")
    if rows is not None and shape[0] != rows:
        raise safe.FileRefused(f"has {shape[0]:,} rows, not the {rows:,} the results folder has")
    need = f.tell() + int(np.prod(shape)) * dtype.itemsize
    if os.fstat(f.fileno()).st_size < need:
        raise safe.FileRefused("is shorter than its header says (truncated)")
    return tuple(shape), dtype


def load_npy(path: str | os.PathLike[str], what: str, *, lazy: bool = False, rows: int | None = None) -> Any:
    """The 2-D numeric ``.npy`` array ``path`` of a results folder (``what`` names it in messages): read into
    memory, or (``lazy``) opened as :class:`~semdedup_core.results.rows.NpyRows`, whose rows are read when
    indexed and never memory-mapped; ``rows``: the row count it must have. A FIFO, a pickle, another shape
    or a file shorter than its header says raise :class:`SemDedupError` in one line naming the file."""
    where = f"{what} {str(path)!r}"
    try:
        if lazy:
            return NpyRows(path, what, rows)
        with safe.open_regular(path) as f:
            read_npy_header(f, rows)
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except FileNotFoundError:
        raise SemDedupError(f"{where} is missing; rerun into a new folder to recreate it") from None
    except (OSError, ValueError, EOFError) as exc:  # FileRefused is a ValueError; numpy raises ValueError
        if isinstance(exc, SemDedupError):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SemDedupError(f"{where} cannot be used ({reason}); rerun into a new folder") from None
