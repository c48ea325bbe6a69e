"""Leaks at a given ε: training items beside the held-out (reference) item they copy, and counts per cluster.

Pure functions over a :class:`~semdedup_core.results.results.Results` of a run with a reference set.
Which items are leaked always comes from ``Results.leaked_mask`` (``ref_sim > 1 − ε``) — nothing here
re-implements the threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import SemDedupError

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

SORTS = ("borderline", "similarity", "cluster")
"""``borderline``: closest above the threshold 1 − ε first (the pairs worth auditing); ``similarity``:
most similar first; ``cluster``: by cluster, then most similar."""


def leak_pairs(results: Results, eps: float, *, sort: str = "borderline") -> pd.DataFrame:
    """One row per item leaked at ``eps``: ``row``, ``id``, ``cluster``, ``ref_sim``, ``ref_row`` (the
    reference item's row in ``results.reference``), ``ref_id`` and ``margin`` (how far ``ref_sim`` lies
    above 1 − ε)."""
    import pandas as pd

    if sort not in SORTS:
        raise SemDedupError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    mask = results.leaked_mask(eps)
    rows = np.flatnonzero(mask)
    text = results.rows(rows, ["id", "ref_id"])
    sim = results.column("ref_sim")[rows].astype(np.float64)
    frame = pd.DataFrame(
        {
            "row": rows,
            "id": text["id"].to_numpy(),
            "cluster": results.column("cluster")[rows],
            "ref_sim": sim,
            "ref_row": results.ref_rows[rows],
            "ref_id": text["ref_id"].to_numpy(),
            "margin": sim - (1.0 - float(eps)),
        }
    )
    if sort == "borderline":
        order = np.lexsort((rows, sim))
    elif sort == "similarity":
        order = np.lexsort((rows, -sim))
    else:
        order = np.lexsort((rows, -sim, frame["cluster"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def leak_clusters(results: Results, eps: float) -> pd.DataFrame:
    """Per cluster with at least one leak at ``eps``: ``cluster``, ``size``, ``leaked``, ``share``
    (leaked / size) and ``max_ref_sim``; most leaks first."""
    import pandas as pd

    leaked = results.leaked_mask(eps)
    cluster = results.column("cluster")
    k = results.clusters.n_clusters
    size = results.clusters.sizes
    n_leak = np.bincount(cluster, weights=leaked, minlength=k).astype(np.int64)
    sim = results.column("ref_sim")
    top = np.full(k, -1.0)
    np.fmax.at(top, cluster, sim)
    has = np.flatnonzero(n_leak)
    frame = pd.DataFrame(
        {
            "cluster": has,
            "size": size[has],
            "leaked": n_leak[has],
            "share": n_leak[has] / np.maximum(size[has], 1),
            "max_ref_sim": top[has],
        }
    )
    return frame.sort_values(["leaked", "cluster"], ascending=[False, True]).reset_index(drop=True)


def ref_sim_histogram(results: Results, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Counts and edges of ``ref_sim`` over the items that were compared with a reference item."""
    s = results.column("ref_sim")[results.ref_rows >= 0]
    # clipped: float32 cosines of identical items can exceed 1 by a hair
    return np.histogram(np.clip(s, -1.0, 1.0), bins=bins, range=(-1.0, 1.0))
