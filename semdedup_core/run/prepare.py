"""The first stages, each a unit of work per part (or per id bucket): checking the input and writing the unit
vectors where the results folder keeps them.

1. ``prepare`` (raw parts only): a 64-bit hash of each usable id, filed into :data:`ID_BUCKETS` buckets;
2. ``ids`` (per bucket): an id seen again is an error row for every occurrence after the first (in input
   order); inputs whose ids are known unique (an ``.npy`` with ``--ids``, already checked, or none) skip
   both;
3. ``normalize``: each part's rows L2-normalised into the final embeddings file. A NaN, infinite or
   all-zero row fails a strict input (an ``.npy``: named by its row) and is an error row of raw data.

Every function here is a module-level unit (it pickles for Ray) that reads and writes files only.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..results import io
from .layout import Layout
from .sources import Source

ID_BUCKETS = 16
_CHUNK = 1 << 16
BAD_VECTOR = "embedding is NaN, infinite or all zero"


def _id_hash(ids: Any) -> np.ndarray:
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(i).encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
            for i in ids
        ],
        dtype=np.uint64,
    )


def validate_part(source: Source, p: int) -> int:
    """A strict input's part ``p``: raise naming its first NaN, infinite or all-zero rows (by their row in
    the input); returns its row count."""
    x = source.vectors(p)
    rows = np.arange(source.rows(p), dtype=np.int64)
    bad = _bad_rows(_squared_norms(x, rows))
    if len(bad):
        raise _strict_refusal(x, rows, bad, source.bounds[p][0])
    return len(rows)


def prepare_part(source: Source, layout: Layout, p: int) -> int:
    """Hash part ``p``'s ids (those not already errors) into buckets: ``p/NNNNN/prep.npz``."""
    d = layout.part(p)
    out = d / "prep.npz"
    if out.is_file():
        with np.load(out) as z:
            return len(z["rows"])
    ids = source.ids(p)
    rows = np.setdiff1d(np.arange(len(ids), dtype=np.int64), source.failed(p))
    h = _id_hash(ids[rows])
    io.save_npz(out, rows=rows, hash=h, bucket=(h % np.uint64(ID_BUCKETS)).astype(np.int64))
    return len(rows)


def check_id_bucket(source: Source, layout: Layout, bucket: int) -> list[tuple[int, int, str, int]]:
    """Repeated ids among the rows hashed to ``bucket``: ``(part, row in part, id, first part)`` for every
    occurrence after the first (in input order)."""
    hs, where = [], []
    for p in range(source.n_parts):
        with np.load(layout.part(p) / "prep.npz") as z:
            sel = np.flatnonzero(z["bucket"] == bucket)
            hs.append(z["hash"][sel])
            where.append(np.stack([np.full(len(sel), p), z["rows"][sel]], axis=1))
    h, w = np.concatenate(hs), np.concatenate(where)
    order = np.lexsort((w[:, 1], w[:, 0], h))  # by hash, then input order
    h, w = h[order], w[order]
    same = np.flatnonzero(h[1:] == h[:-1]) + 1
    if not len(same):
        return []
    ids_of: dict[int, np.ndarray] = {}
    out, seen = [], {}
    for i in sorted(set(same) | {s - 1 for s in same}):
        p, r = int(w[i, 0]), int(w[i, 1])
        if p not in ids_of:
            ids_of[p] = source.ids(p)
        item = str(ids_of[p][r])
        if item in seen:
            out.append((p, r, item, seen[item]))
        else:
            seen[item] = p
    return out


def save_keep(source: Source, layout: Layout, repeated: list[tuple[int, int, str, int]]) -> None:
    """Each raw part's rows that survive the id check: ``p/NNNNN/keep.npy``."""
    drops: dict[int, set[int]] = {}
    for p, r, _item, _first in repeated:
        drops.setdefault(p, set()).add(r)
    for p in range(source.n_parts):
        with np.load(layout.part(p) / "prep.npz") as z:
            rows = z["rows"]
        if drops.get(p):
            rows = rows[~np.isin(rows, sorted(drops[p]))]
        io.save_npy(layout.part(p) / "keep.npy", rows.astype(np.int64))


def _squared_norms(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The squared L2 norm of each of ``rows`` of ``x``, summed in float64 (a float32 row cannot overflow it)."""
    out = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), _CHUNK):
        block = _take(x, rows[s : s + _CHUNK])
        out[s : s + len(block)] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
    return out


def _bad_rows(squared_norms: np.ndarray) -> np.ndarray:
    """Positions of the rows that are NaN, infinite (their norm is too) or all zero (a zero norm)."""
    return np.flatnonzero(~(np.isfinite(squared_norms) & (squared_norms > 0)))


def _take(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``x[rows]`` as float32; a slice when ``rows`` are consecutive (a memory map reads them in one go)."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:
        return np.asarray(x[int(rows[0]) : int(rows[-1]) + 1], dtype=np.float32)
    return np.asarray(x[rows], dtype=np.float32)


def _strict_refusal(x: np.ndarray, rows: np.ndarray, bad: np.ndarray, first: int) -> SemDedupError:
    """The one-line refusal of a strict input's bad rows, named by their rows in the input."""
    block = _take(x, rows[bad[:5]])
    named = ", ".join(str(first + int(rows[b])) for b in bad[:5])
    if not np.isfinite(block).all(axis=1).all():
        nan = bad[~np.isfinite(block).all(axis=1)][:5]
        named = ", ".join(str(first + int(rows[b])) for b in nan)
        return SemDedupError(
            f"embeddings rows {named} contain NaN or inf; fix or drop those items before deduplicating"
        )
    return SemDedupError(
        f"embeddings rows {named} are all zeros and have no direction; drop those items before deduplicating"
    )


def normalise_part(source: Source, layout: Layout, p: int) -> dict[str, Any]:
    """Part ``p``'s usable rows, L2-normalised, into its embeddings file; ``p/NNNNN/rows.npy`` (the rows of
    the part they are) and ``norm.json`` (their count, dimension and the rows left out)."""
    d = layout.part(p)
    summary = d / "norm.json"
    if summary.is_file() and layout.embeddings(p).is_file():
        return io.read_json(summary)
    x = source.vectors(p)
    keep = d / "keep.npy"
    rows = np.load(keep) if keep.is_file() else np.arange(source.rows(p), dtype=np.int64)
    squared = _squared_norms(x, rows)
    bad = _bad_rows(squared)
    errors: list[dict[str, Any]] = []
    if len(bad) and source.strict:
        raise _strict_refusal(x, rows, bad, source.bounds[p][0])
    if len(bad):
        ids = source.ids(p)
        errors = [{"id": str(ids[rows[b]]), "path": None, "reason": BAD_VECTOR} for b in bad]
        rows, squared = np.delete(rows, bad), np.delete(squared, bad)
    norms = np.sqrt(squared).astype(np.float32)
    dim = int(x.shape[1]) if x.ndim == 2 else 0
    with io.atomic_path(layout.embeddings(p)) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(rows), dim))
        for s in range(0, len(rows), _CHUNK):
            block = _take(x, rows[s : s + _CHUNK])
            out[s : s + len(block)] = block / norms[s : s + len(block), None]
        out.flush()
        del out
    io.save_npy(d / "rows.npy", rows.astype(np.int64))
    result = {"part": p, "rows": int(len(rows)), "dim": dim, "errors": errors}
    io.write_json(summary, result)
    return result


def read_rows(layout: Layout, p: int, rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` (within part ``p``) of the unit vectors, in memory: what the k-means sample and a bucket read."""
    return np.asarray(np.load(layout.embeddings(p), mmap_mode="r")[np.asarray(rows, dtype=np.int64)], dtype=np.float32)


def collect_errors(source: Source, layout: Layout, repeated: list, norms: list[dict[str, Any]]) -> list[dict]:
    """Every item left out of the run: the source's own errors, bad vectors, and repeated ids."""
    errors: list[dict[str, Any]] = []
    for p in range(source.n_parts):
        errors.extend(source.errors(p))
        errors.extend(norms[p]["errors"])
    errors.extend(
        {"id": item, "path": None, "reason": f"duplicate id (in part {p}; first in part {first})"}
        for p, _, item, first in repeated
    )
    return errors
