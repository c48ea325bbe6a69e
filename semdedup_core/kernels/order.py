"""The keep order: which item of a cluster comes first, as one 64-bit key per item.

Every place that orders items — a cluster's keep order (its ``rank``), the one global order that probing
compares in, the checks of a results folder, the kept-only and audited rules — orders by
:func:`keep_keys`, so they all agree and none depends on how rows were batched or split into parts:

- ``hard`` (the paper's default): farthest from its own centroid first;
- ``easy``: nearest first;
- ``random``: a seeded pseudo-random number per item, a hash of ``(seed, row)``, so an item's place does
  not depend on which other items share its cluster or its part of the input;

and ties go to the lower ``row`` (the item's row in the run's input order). The key holds the policy's
value in its high 32 bits (a float32 mapped to an order-preserving integer) and the row in the low 32
bits, so one integer comparison decides ``a`` before ``b``.
"""

from __future__ import annotations

import numpy as np

from ..errors import SemDedupError

KEEP_POLICIES = ("hard", "easy", "random")
MAX_ROWS = 2**32
"""Rows a run may hold: the key keeps the row in 32 bits."""


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 ``values`` as uint64 numbers in ``[0, 2^32)`` that order as the floats do (``-0.0`` is ``0.0``)."""
    bits = (np.asarray(values, dtype=np.float32) + np.float32(0.0)).view(np.uint32).astype(np.uint64)
    negative = bits >= np.uint64(0x80000000)
    return np.where(negative, np.uint64(0xFFFFFFFF) - bits, bits | np.uint64(0x80000000))


def _hash32(seed: int, rows: np.ndarray) -> np.ndarray:
    """A 32-bit pseudo-random number per ``(seed, row)`` (splitmix64's finaliser): the ``random`` policy."""
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z >> np.uint64(32)


def keep_keys(dist_to_centroid: np.ndarray, keep: str, seed: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """One int64 key per item: items in ascending key order are in keep order (see the module docstring).
    ``rows``: the items' rows in the run's input order (default ``0..n-1``), the tie-break and the input
    of the ``random`` policy."""
    d = np.asarray(dist_to_centroid, dtype=np.float32)
    rows = np.arange(len(d), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= MAX_ROWS):
        raise SemDedupError(f"a run holds at most {MAX_ROWS:,} items; split the input into several runs")
    if keep == "hard":
        high = _ordered_bits(-d)
    elif keep == "easy":
        high = _ordered_bits(d)
    elif keep == "random":
        high = _hash32(seed, rows)
    else:
        raise SemDedupError(f"keep must be one of {', '.join(KEEP_POLICIES)}, got {keep!r}")
    signed = high.astype(np.int64) - np.int64(2**31)  # order-preserving into int64: no overflow when shifted
    return (signed << np.int64(32)) | rows


def order_cluster(dist_to_centroid: np.ndarray, keep: str, seed: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """Positions of a cluster's items in keep order (the first one is always kept): ``argsort`` of their
    :func:`keep_keys`. ``rows``: their rows in the run's input order (default ``0..n-1``)."""
    return np.argsort(keep_keys(dist_to_centroid, keep, seed, rows), kind="stable")


def global_order(dist_to_centroid: np.ndarray, keep: str, seed: int = 0) -> np.ndarray:
    """Each item's position in the one global keep order (int64, a permutation of ``0..n-1``); restricted
    to one cluster it is that cluster's keep order, so probing only ever adds comparisons to the paper's."""
    keys = keep_keys(dist_to_centroid, keep, seed)
    pos = np.empty(len(keys), dtype=np.int64)
    pos[np.argsort(keys, kind="stable")] = np.arange(len(keys))
    return pos


def ranks_in_clusters(keys: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows grouped by cluster (cluster ``j`` at ``offsets[j]:offsets[j+1]``): ``ordered`` (the row at
    each keep-order position of each cluster) and ``rank`` (each row's position in its cluster)."""
    n = len(keys)
    sizes = np.diff(offsets)
    group = np.repeat(np.arange(len(sizes)), sizes)
    ordered = np.lexsort((keys, group)).astype(np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[ordered] = np.arange(n) - np.repeat(offsets[:-1], sizes)
    return ordered, rank
