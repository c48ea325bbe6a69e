"""A reference (held-out) set to look for leaks of: checked and normalised on the driver, written into the
results folder (``reference_embeddings.npy``, ``reference.parquet``) and *filed*: each reference item under
its nearest centroid and the ``probe`` next nearest ones, so that every bucket compares its items with the
reference items filed under its clusters (:func:`~semdedup_core.run.score.leak_bucket`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.probe import nearest_centroids
from ..kernels.vectors import check_matrix, normalize_rows
from ..results import io
from ..results.names import REFERENCE, REFERENCE_CARRIED, REFERENCE_EMBEDDINGS
from .config import ReferenceConfig
from .meta import array_fingerprint


@dataclass
class Reference:
    """A checked reference set: unit embeddings, ids, carried columns (text, path) and a fingerprint."""

    emb: np.ndarray
    ids: np.ndarray
    columns: Any
    fingerprint: str

    @classmethod
    def check(cls, embeddings: Any, ids: Any, columns: Any, d: int) -> Reference:
        """Validate and normalise a reference set before anything is written; raises :class:`SemDedupError`
        naming the problem (shape, dimension, NaN/inf or zero rows, ids)."""
        if isinstance(embeddings, (str, Path)):
            embeddings = io.load_embeddings(embeddings)
        check_matrix(embeddings, "reference embeddings")
        m, dr = embeddings.shape
        if dr != d:
            raise SemDedupError(
                f"reference embeddings have dimension {dr} but the run's embeddings have {d}; "
                "embed the reference set with the same model as the items"
            )
        ids = io.check_ids(ids if ids is not None else range(m), m, source="reference ids")
        if columns is not None:
            if len(columns) != m:
                raise SemDedupError(
                    f"reference columns have {len(columns)} rows but there are {m} reference items; give one row each"
                )
            columns = columns[[c for c in REFERENCE_CARRIED if c in columns.columns]].reset_index(drop=True)
        fp = array_fingerprint(embeddings, ids)
        emb = normalize_rows(np.array(embeddings, dtype=np.float32, copy=True), name="reference embeddings")
        return cls(emb, ids, columns, fp)


def file_reference(out: Path, work: Path, ref: Reference, config: ReferenceConfig, device: str) -> dict[str, Any]:
    """Write the reference set into the results folder and its filing under the centroids into ``work``
    (``ref-filing.npz``: reference rows grouped by cluster, each group in reference order, and the groups'
    offsets); returns the facts ``run.json`` records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..results.names import CENTROIDS

    centroids = np.load(out / CENTROIDS)
    k, m = centroids.shape[0], len(ref.ids)
    filing = nearest_centroids(ref.emb, centroids, 0 if config.exact else config.probe, device=device)
    io.save_npy(out / REFERENCE_EMBEDDINGS, ref.emb)
    table = pa.table({"id": pa.array(list(ref.ids), pa.string()), "cluster": pa.array(filing[:, 0].astype(np.int64))})
    if ref.columns is not None:
        extra = pa.Table.from_pandas(ref.columns, preserve_index=False)
        for name in extra.column_names:
            table = table.append_column(name, extra[name])
    with io.atomic_path(out / REFERENCE) as tmp:
        pq.write_table(table, tmp)
    rows = np.repeat(np.arange(m, dtype=np.int64), filing.shape[1])
    clusters = filing.ravel().astype(np.int64)
    by_cluster = np.lexsort((rows, clusters))
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(clusters, minlength=k), out=offsets[1:])
    io.save_npz(work / "ref-filing.npz", rows=rows[by_cluster], offsets=offsets)
    return {"filed": int(len(rows)), "offsets": offsets}


def reference_facts(ref: Reference, config: ReferenceConfig) -> dict[str, Any]:
    """What ``run.json`` says of the reference set and its search."""
    return {
        "items": len(ref.ids),
        "probe": config.probe,
        "search": "exact: every item against every reference item"
        if config.exact
        else "each reference item filed under its nearest centroid and the probe next nearest; "
        "each item compared with the reference items filed under its own cluster",
    }
