"""The last stage, per part: the results the buckets sent back, combined into the part's ``items.parquet``
(and its Arrow copy) with the ids, the carried columns and, with a reference set, the leakage columns.

With probing an item has candidate partners from several buckets (its own cluster's and each probed
cluster's); the partner is the one with the highest exact cosine, ties to the earliest in the global
keep order — the same choice whichever bucket found which candidate first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..results.items import pair_record, write_items
from ..results.names import DUP_ROW, REFERENCE
from .cluster import load_assign
from .layout import Layout
from .sources import Source


def _load_back(layout: Layout, kind: str, p: int) -> dict[str, np.ndarray]:
    """Every bucket's ``kind`` results for part ``p``, concatenated."""
    files = sorted(layout.back(kind, p).glob("*.npz")) if layout.back(kind, p).is_dir() else []
    cols: dict[str, list[np.ndarray]] = {}
    for f in files:
        with np.load(f) as z:
            for k in z.files:
                cols.setdefault(k, []).append(z[k])
    return {k: np.concatenate(v) for k, v in cols.items()}


def _partners(layout: Layout, p: int, n: int, probe: int) -> tuple[np.ndarray, ...]:
    """Each row's ``rank``, ``max_sim``, partner row (global) and partner id, from its own bucket and (when
    probing) the buckets it visited."""
    own = _load_back(layout, "scored", p)
    rank = np.full(n, -1, dtype=np.int64)
    if own:
        rank[own["local"]] = own["rank"]
    if n and (rank < 0).any():
        raise SemDedupError(f"part {p} has rows that no scoring task returned; rerun the same command to resume")
    max_sim = np.full(n, -1.0, dtype=np.float32)
    dup_gidx = np.full(n, -1, dtype=np.int64)
    dup_id = np.full(n, None, dtype=object)
    if not probe:
        loc = own["local"]
        max_sim[loc], dup_gidx[loc] = own["max_sim"], own["dup_gidx"]
        dup_id[loc] = np.where(own["dup_gidx"] >= 0, own["dup_id"].astype(object), None)
        return rank, max_sim, dup_gidx, dup_id
    visits = _load_back(layout, "visits", p)
    fields = ("local", "sim64", "dup_gidx", "dup_key", "dup_id")
    cand = {k: np.concatenate([own[k], visits[k]]) if visits else own[k] for k in fields}
    found = cand["dup_gidx"] >= 0
    cand = {k: v[found] for k, v in cand.items()}
    order = np.lexsort((cand["dup_key"], -cand["sim64"], cand["local"]))  # best first within each row
    first = order[np.r_[True, cand["local"][order][1:] != cand["local"][order][:-1]]] if len(order) else order
    loc = cand["local"][first]
    max_sim[loc] = cand["sim64"][first].astype(np.float32)
    dup_gidx[loc] = cand["dup_gidx"][first]
    dup_id[loc] = cand["dup_id"][first].astype(object)
    return rank, max_sim, dup_gidx, dup_id


def _leaks(layout: Layout, p: int, n: int, ref_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    leaks = _load_back(layout, "leaks", p)
    ref_sim = np.full(n, -1.0, dtype=np.float32)
    ref_row = np.full(n, -1, dtype=np.int64)
    if leaks:
        ref_sim[leaks["local"]], ref_row[leaks["local"]] = leaks["ref_sim"], leaks["ref_row"]
    ids = np.array(ref_ids, dtype=object)
    return ref_sim, np.where(ref_row >= 0, ids[np.maximum(ref_row, 0)] if len(ids) else None, None)


def write_part(source: Source, layout: Layout, p: int, probe: int, reference: bool) -> dict[str, Any]:
    """Part ``p``'s ``items.parquet`` and Arrow copy; returns their record for ``run.json``."""
    import pyarrow as pa

    parquet, arrow = layout.items(p)
    rows = np.load(layout.part(p) / "rows.npy")
    if parquet.is_file() and arrow.is_file():
        return pair_record(parquet, arrow, len(rows))
    labels, dist = load_assign(layout, p)
    n = len(labels)
    rank, max_sim, dup_gidx, dup_id = _partners(layout, p, n, probe)
    meta = source.table(p).take(pa.array(rows))
    table = pa.table(
        {
            "id": meta.column("id").cast(pa.string()),
            "cluster": pa.array(labels.astype(np.int64)),
            "dist_to_centroid": pa.array(dist.astype(np.float32)),
            "rank": pa.array(rank),
            "max_sim": pa.array(max_sim),
            "dup_of": pa.array(dup_id, pa.string()),
            DUP_ROW: pa.array(dup_gidx),
        }
    )
    if reference:
        import pyarrow.parquet as pq

        ref_ids = pq.read_table(Path(layout.out) / REFERENCE, columns=["id"]).column("id").to_pylist()
        ref_sim, ref_id = _leaks(layout, p, n, ref_ids)
        table = table.append_column("ref_sim", pa.array(ref_sim)).append_column("ref_id", pa.array(ref_id, pa.string()))
    for name in meta.column_names[1:]:
        if name in table.column_names:
            raise SemDedupError(f"column {name!r} is reserved by the results format; rename it")
        table = table.append_column(name, meta.column(name))
    return write_items(table, parquet, arrow)
