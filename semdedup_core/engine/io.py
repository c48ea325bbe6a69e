"""Reading user inputs and writing files atomically. Nothing here ever writes to an input path.

The names of the files in a results folder live in :mod:`semdedup_core.engine.schema`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError


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


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text())


def save_npy(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def save_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def write_parquet(path: str | os.PathLike[str], df: Any) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


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


def read_ids(path: str | os.PathLike[str], n_items: int) -> np.ndarray:
    """Read ids (one per line, or a parquet ``id`` column) and check count and uniqueness."""
    path = Path(path)
    if not path.is_file():
        raise SemDedupError(
            f"ids file {str(path)!r} does not exist; pass a text file or a parquet file with an id column"
        )
    if path.suffix == ".parquet":
        import pandas as pd

        df = pd.read_parquet(path)
        if "id" not in df.columns:
            raise SemDedupError(
                f"ids file {str(path)!r} has no 'id' column (columns: {', '.join(map(str, df.columns))}); add one"
            )
        ids = df["id"].astype(str).to_numpy(dtype=object)
    else:
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        ids = np.array([line.rstrip("\r") for line in lines], dtype=object)
    return check_ids(ids, n_items, source=str(path))


def check_ids(ids: Any, n_items: int, source: str = "ids") -> np.ndarray:
    ids = np.asarray([str(i) for i in ids], dtype=object)
    if len(ids) != n_items:
        raise SemDedupError(
            f"{source} holds {len(ids)} ids but the embeddings have {n_items} rows; give one id per row, in order"
        )
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise SemDedupError(f"{source} has an empty id at position {int(empty[0])}; every item needs an id")
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise SemDedupError(
            f"{source} has duplicate ids, e.g. {str(dup[0])!r} ({int(counts[counts > 1][0])} times, "
            f"{len(dup)} ids repeated); ids must be unique"
        )
    return ids


class ShardedRows:
    """Several ``.npy`` files of ``n_i × d`` rows, memory-mapped and seen as one ``n × d`` array: ``shape``,
    ``dtype``, ``len`` and row indexing by an int, a slice or an integer/boolean array (rows come back in
    the order asked, as a new array). A sharded run's ``embeddings`` look like this."""

    ndim = 2

    def __init__(self, paths: list[str | os.PathLike[str]]):
        self.parts = [np.load(p, mmap_mode="r") for p in paths]
        sizes = [len(a) for a in self.parts]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        dims = {a.shape[1] for a in self.parts if a.ndim == 2}
        self.shape = (int(self.starts[-1]), dims.pop() if dims else 0)
        self.dtype = self.parts[0].dtype if self.parts else np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, tuple):
            rows, rest = key[0], key[1:]
            return self[rows][(slice(None), *rest)]
        if isinstance(key, (int, np.integer)):
            return self[np.array([int(key)])][0]
        rows = np.arange(self.shape[0])[key] if isinstance(key, slice) else np.asarray(key)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = np.where(rows < 0, rows + self.shape[0], rows).astype(np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        owner = np.searchsorted(self.starts, rows, side="right") - 1
        for p in np.unique(owner):
            sel = owner == p
            out[sel] = self.parts[p][rows[sel] - self.starts[p]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)
