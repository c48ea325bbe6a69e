"""Reading user inputs and writing files atomically. Nothing here ever writes to an input path.

The names of the files in a results folder live in :mod:`semdedup_core.results.names`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..media import safe


def cache_dir() -> Path:
    """Where demos, the app's runs and its job records live: ``$SEMDEDUP_CACHE``, else ``~/.cache/semdedup``."""
    env = os.environ.get("SEMDEDUP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semdedup"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | os.PathLike[str], max_bytes: int = safe.JSON_BYTES) -> Any:
    """The JSON in the regular file ``path`` (see :func:`semdedup_core.media.safe.read_json`: a FIFO, a file
    over ``max_bytes`` or JSON nested too deeply raise ``FileRefused``, a ``ValueError``)."""
    return safe.read_json(path, max_bytes=max_bytes)


def save_npy(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def write_parquet(path: str | os.PathLike[str], df: Any) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def frame_to_arrow(frame: Any) -> Any:
    """A DataFrame of carried columns as an Arrow table. A column Arrow cannot type as it is (a JSON field
    holding ``[1, "a"]`` in one row and ``["x"]`` in another) is carried as JSON text instead, one string
    per value (missing values stay missing): the run goes on and nothing is lost."""
    import json

    import pyarrow as pa

    frame = frame.reset_index(drop=True)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    columns = {}
    for name in frame.columns:
        try:
            columns[name] = pa.Table.from_pandas(frame[[name]], preserve_index=False).column(0)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            values = [
                None if v is None or (isinstance(v, float) and v != v) else json.dumps(v, default=str)
                for v in frame[name]
            ]
            columns[name] = pa.array(values, pa.string())
    return pa.table(columns)


def write_errors(path: str | os.PathLike[str], errors: list[dict[str, Any]]) -> None:
    """``errors.parquet``: one row per item left out, with ``id``, ``path`` and ``reason`` (maybe empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def text(v: Any) -> str | None:
        return None if v is None or (isinstance(v, float) and v != v) else str(v)

    table = pa.table({k: pa.array([text(e.get(k)) for e in errors], pa.string()) for k in ("id", "path", "reason")})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created when missing) while the block runs: writers of
    one file (a verdict store, a review sample) take turns through its sidecar lock."""
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def load_embeddings(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map an ``.npy`` file of shape ``(n, d)``; raise a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SemDedupError(f"embeddings file {str(path)!r} does not exist; pass the path of an .npy file")
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # numpy raises several types for non-.npy content
        raise SemDedupError(
            f"embeddings file {str(path)!r} is not a readable .npy array ({exc}); save it with numpy.save"
        ) from None
    if not isinstance(x, np.ndarray):
        raise SemDedupError(f"embeddings file {str(path)!r} holds several arrays; save a single (n, d) array")
    return x


@contextlib.contextmanager
def parquet_source(path: str | os.PathLike[str], max_bytes: int | None = None) -> Iterator[str]:
    """A path pyarrow or pandas may read the parquet file (or folder of parts) ``path`` from, once every
    file of it is a regular file (a FIFO named ``items.parquet`` would hang the reader): see
    :func:`semdedup_core.media.safe.readable_path`. Raises ``FileRefused`` (a ``ValueError``) or ``OSError``."""
    if Path(path).is_dir():
        safe.check_parts(path)
        yield os.fspath(path)
        return
    with safe.readable_path(path, max_bytes=max_bytes) as source:
        yield source


def read_ids(path: str | os.PathLike[str], n_items: int, what: str = "ids") -> np.ndarray:
    """Read ids (one per line, or a parquet ``id`` column) and check count and uniqueness. ``what`` names
    them in messages (``"reference ids"``)."""
    path = Path(path)
    problem = safe.file_problem(path, allow_empty=True)
    if problem is not None:
        raise SemDedupError(
            f"{what} file {str(path)!r} cannot be read ({problem}); pass a text file or a parquet file with an "
            "id column"
        )
    if path.suffix == ".parquet":
        import pandas as pd

        try:
            with safe.open_regular(path) as f:
                df = pd.read_parquet(f)
        except (OSError, ValueError) as exc:
            raise SemDedupError(f"ids file {str(path)!r} is not a readable parquet file ({exc}); check it") from None
        if "id" not in df.columns:
            raise SemDedupError(
                f"{what} file {str(path)!r} has no 'id' column (columns: {', '.join(map(str, df.columns))}); add one"
            )
        ids = df["id"].to_numpy(dtype=object)  # nulls stay nulls (check_ids refuses them): never "nan"
    else:
        try:  # bytes, not read_text: universal newlines would turn a "\r" inside an id into a line break
            with safe.open_regular(path) as f:
                text = f.read().decode("utf-8").removeprefix("\ufeff")  # a BOM is no part of the first id
        except UnicodeDecodeError as exc:
            raise SemDedupError(f"ids file {str(path)!r} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        ids = np.array([line[:-1] if line.endswith("\r") else line for line in lines], dtype=object)
    return check_ids(ids, n_items, source=f"{what} file {str(path)!r}" if what != "ids" else str(path))


def check_ids(ids: Any, n_items: int, source: str = "ids") -> np.ndarray:
    """``ids`` as an object array of strings; raise naming the position of a missing (null) or empty id,
    an id holding a line break or NUL (one id would become two lines of a TXT export), or a repeated id."""
    import pandas as pd

    raw = np.asarray(list(ids), dtype=object)
    if len(raw) != n_items:
        raise SemDedupError(
            f"{source} holds {len(raw)} ids but the embeddings have {n_items} rows; give one id per row, in order"
        )
    null = np.flatnonzero(pd.isna(raw))
    if len(null):
        raise SemDedupError(f"{source} has a missing (null) id at position {int(null[0])}; every item needs an id")
    ids = np.asarray([str(i) for i in raw], dtype=object)
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise SemDedupError(f"{source} has an empty id at position {int(empty[0])}; every item needs an id")
    pos = first_bad_string(ids)
    if pos is not None:
        raise SemDedupError(
            f"{source} has an id with a line break or NUL at position {pos} ({ids[pos]!r}); ids must be one line each"
        )
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise SemDedupError(
            f"{source} has duplicate ids, e.g. {str(dup[0])!r} ({int(counts[counts > 1][0])} times, "
            f"{len(dup)} ids repeated); ids must be unique"
        )
    return ids


# -- strings that must stay on one line (ids, paths) ------------------------------------------------
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
"""Every character that some tool reads as the end of a line (Python's ``str.splitlines`` set)."""
_BAD_ID = re.compile(r"[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # NUL or LINE_BREAKS
_BAD_ID_RE2 = r"[\x00\n\r\x0b\x0c\x1c\x1d\x1e\x{85}\x{2028}\x{2029}]"  # the same, for Arrow's RE2


def bad_id_char(value: str) -> str | None:
    """The first line break or NUL in ``value`` (as ``repr`` shows it), or ``None``: an id or path with
    one would turn one line of a TXT list into two."""
    m = _BAD_ID.search(value)
    return repr(m.group())[1:-1] if m else None


def first_bad_string(values: Any) -> int | None:
    """The position of the first string in ``values`` (an Arrow array or a pandas column of strings, nulls
    allowed) holding a line break or NUL, or ``None``. The bytes are screened first (two reductions: a
    control byte, or any non-ASCII byte, for U+0085/U+2028/U+2029); only a hit runs the regex."""
    import pyarrow.compute as pc

    arr = strings(values)
    if not any(_suspect(chunk) for chunk in arr.chunks):
        return None
    hit = pc.fill_null(pc.match_substring_regex(arr, _BAD_ID_RE2), False)
    first = pc.index(hit, True).as_py()
    return None if first < 0 else int(first)


def _suspect(chunk: Any) -> bool:
    """Whether the bytes of a string array's values hold a control byte or a non-ASCII byte."""
    if len(chunk) == 0 or chunk.null_count == len(chunk):
        return False
    _, view = _string_bytes(chunk)
    return bool(len(view)) and (int(view.min()) < 0x20 or int(view.max()) >= 0x80)


def _string_bytes(chunk: Any) -> tuple[np.ndarray, np.ndarray]:
    """The offsets of a string array's values (``len(chunk) + 1`` of them, as stored: int32, or int64 for
    large strings; the first need not be 0) and the bytes they index, as views (no copy)."""
    import pyarrow as pa

    _, offsets, data = chunk.buffers()
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    bounds = np.frombuffer(offsets, width)[chunk.offset : chunk.offset + len(chunk) + 1]
    view = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return bounds, view[int(bounds[0]) : int(bounds[-1])]


_HASH_BASE = 0x100000001B3  # odd, so it has an inverse modulo 2**64
_HASH_BYTES = 1 << 24  # bytes hashed per step: the step's temporaries stay near 400 MB


def _powers(base: int, n: int) -> np.ndarray:
    """``base**0 .. base**(n-1)`` modulo 2**64 (``uint64``)."""
    out = np.ones(n, dtype=np.uint64)
    if n > 1:
        np.cumprod(np.full(n - 1, base, dtype=np.uint64), dtype=np.uint64, out=out[1:])
    return out


def hash_strings(values: Any) -> np.ndarray:
    """A 64-bit hash (``uint64``) of each string of ``values`` (an Arrow array or chunked array, no nulls),
    computed on the Arrow buffers with numpy: the polynomial ``Σ (byte_j + 1)·B**j`` modulo 2**64 over each
    string's bytes, mixed with its length and finalised (splitmix64). Equal strings hash equal; a screen
    for uniqueness (one sort of 8 bytes an item) where hashing every string into a table would copy them
    all. Per step of about :data:`_HASH_BYTES` bytes: one prefix sum of ``(byte + 1)·B**position`` over
    the step, each string's difference of two prefixes brought back to its own start by ``B**-start``."""
    arr = strings(values)
    out = np.empty(len(arr), dtype=np.uint64)
    up = down = np.zeros(0, dtype=np.uint64)
    at = 0
    for chunk in arr.chunks:
        bounds, data = _string_bytes(chunk)
        bounds = bounds.astype(np.int64) - int(bounds[0])  # from the first value's first byte
        lo = 0
        while lo < len(chunk):  # row blocks of about _HASH_BYTES bytes (one longer string alone)
            hi = int(np.searchsorted(bounds, bounds[lo] + _HASH_BYTES, side="right")) - 1
            hi = min(len(chunk), max(hi, lo + 1))
            start = bounds[lo : hi + 1] - bounds[lo]
            size = int(start[-1])
            if len(up) < size + 1:
                up = _powers(_HASH_BASE, max(size + 1, min(_HASH_BYTES + 1, int(bounds[-1]) + 1)))
                down = _powers(pow(_HASH_BASE, -1, 2**64), len(up))
            with np.errstate(over="ignore"):
                sums = np.zeros(size + 1, dtype=np.uint64)
                terms = data[int(bounds[lo]) : int(bounds[hi])].astype(np.uint64)
                terms += np.uint64(1)
                terms *= up[:size]
                np.cumsum(terms, out=sums[1:])
                del terms
                h = (sums[start[1:]] - sums[start[:-1]]) * down[start[:-1]]
                h ^= np.diff(start).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
                h ^= h >> np.uint64(30)
                h *= np.uint64(0xBF58476D1CE4E5B9)
                h ^= h >> np.uint64(27)
                h *= np.uint64(0x94D049BB133111EB)
                h ^= h >> np.uint64(31)
            out[at + lo : at + hi] = h
            lo = hi
        at += len(chunk)
    return out


def strings(values: Any) -> Any:
    """``values`` (a pandas column of strings, nulls allowed, or an Arrow array) as an Arrow
    ``ChunkedArray`` of strings, without copying an Arrow-backed column."""
    import pyarrow as pa

    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, from_pandas=True)
    if isinstance(arr, pa.Array):
        arr = pa.chunked_array([arr])
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    return arr
