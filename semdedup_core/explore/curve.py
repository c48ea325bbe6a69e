"""The kept-vs-ε curve: the share of items kept at every ε of a grid, from the stored scores.

One definition for the app's charts and the report's: the grid runs from 0 to :func:`eps_max`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..results.results import Results

POINTS = 401


def eps_max(results: Results) -> float:
    """The upper end of the ε scale: the ε that removes every item that has a predecessor, rounded up to
    a multiple of 0.05 (at least 0.5, at most 2)."""
    s = results.sorted_scores
    first = int(np.searchsorted(s, np.float32(-1.0), side="right"))  # the lowest score above -1
    low = float(s[first]) if first < len(s) else 0.5
    return float(min(2.0, max(0.5, np.ceil((1.0 - low) * 20) / 20)))


def kept_curve(results: Results, points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(ε grid, kept fraction)``: ``points`` values of ε from 0 to :func:`eps_max`, and the share of
    items the paper's rule keeps at each."""
    grid = np.linspace(0.0, eps_max(results), points)
    return grid, np.asarray(results.kept_fraction(grid), dtype=np.float64)


def score_histogram(results: Results, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of ``max_sim`` over the items with a predecessor (score above −1), ``bins`` equal
    bins over [−1, 1] — what ``np.histogram`` gives for the scores clipped to [−1, 1] (float32 scores of
    identical items can exceed 1 by a hair: they count in the last bin) — read from the sorted scores by
    binary search instead of a pass over them."""
    s = results.sorted_scores
    edges = np.linspace(-1.0, 1.0, bins + 1, dtype=s.dtype)  # as np.histogram makes them for these scores
    start = int(np.searchsorted(s, s.dtype.type(-1.0), side="right"))
    inner = np.searchsorted(s, edges[1:-1], side="left")  # the scores below each inner edge
    bounds = np.concatenate([[start], np.maximum(inner, start), [len(s)]])
    return np.diff(bounds).astype(np.int64), edges
