"""The kept-vs-ε curve: the share of items kept at every ε of a grid, from the stored scores.

One definition for the app's charts and the report's: the grid runs from 0 to :func:`eps_max`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..engine.results import Results

POINTS = 401


def eps_max(results: Results) -> float:
    """The upper end of the ε scale: the ε that removes every item that has a predecessor, rounded up to
    a multiple of 0.05 (at least 0.5, at most 2)."""
    scores = results.items["max_sim"].to_numpy()
    scored = scores[scores > -1.0]
    low = float(scored.min()) if len(scored) else 0.5
    return float(min(2.0, max(0.5, np.ceil((1.0 - low) * 20) / 20)))


def kept_curve(results: Results, points: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """``(ε grid, kept fraction)``: ``points`` values of ε from 0 to :func:`eps_max`, and the share of
    items the paper's rule keeps at each."""
    grid = np.linspace(0.0, eps_max(results), points)
    return grid, np.asarray(results.kept_fraction(grid), dtype=np.float64)
