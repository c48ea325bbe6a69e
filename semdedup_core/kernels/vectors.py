"""Validating and L2-normalising embedding matrices."""

from __future__ import annotations

import numpy as np

from ..errors import SemDedupError

_CHUNK = 1 << 16


def _first_rows(mask: np.ndarray, offset: int, limit: int = 5) -> str:
    rows = (np.flatnonzero(mask)[:limit] + offset).tolist()
    return ", ".join(str(r) for r in rows)


def check_matrix(x: np.ndarray, name: str = "embeddings") -> None:
    """Raise :class:`SemDedupError` unless ``x`` is a non-empty 2-D float16/float32/float64 array."""
    if not isinstance(x, np.ndarray):
        raise SemDedupError(f"{name} must be a numpy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise SemDedupError(
            f"{name} must be a 2-D array of shape (n_items, dim), got shape {x.shape}; save one row per item"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise SemDedupError(f"{name} is empty (shape {x.shape}); it needs at least one row and one column")
    if x.dtype not in (np.float16, np.float32, np.float64):
        raise SemDedupError(
            f"{name} must hold float16 or float32 values, got dtype {x.dtype}; convert with .astype('float32')"
        )


def normalize_rows(x: np.ndarray, name: str = "embeddings", out: np.ndarray | None = None) -> np.ndarray:
    """Return the rows of ``x`` scaled to unit L2 norm, as float32.

    Works in chunks so that memory stays at one float32 copy (none when ``out`` is ``x`` itself).
    NaN/inf values and all-zero rows raise :class:`SemDedupError` naming the first offending rows.
    """
    check_matrix(x, name)
    if out is None:
        out = x if (x.dtype == np.float32 and x.flags.writeable) else np.empty(x.shape, np.float32)
    for start in range(0, x.shape[0], _CHUNK):
        block = np.asarray(x[start : start + _CHUNK], dtype=np.float32)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            raise SemDedupError(
                f"{name} rows {_first_rows(~finite, start)} contain NaN or inf; "
                "fix or drop those items before deduplicating"
            )
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64)).astype(np.float32)
        zero = norms == 0
        if zero.any():
            raise SemDedupError(
                f"{name} rows {_first_rows(zero, start)} are all zeros and have no direction; "
                "drop those items before deduplicating"
            )
        np.divide(block, norms[:, None], out=out[start : start + _CHUNK])
    return out
