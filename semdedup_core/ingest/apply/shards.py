"""Embedding shards (img2dataset / clip-retrieval layout): the kept rows of each ``img_emb_N.npy`` (or
``text_emb_N.npy``) and of its ``metadata_N.parquet``, under the same names.

The arrays keep their dtype and are copied a block of rows at a time; the metadata keeps its Arrow
schema and compression (:func:`.table.write_parquet_rows`). The ids are found as the shard reader finds
them (:mod:`semdedup_core.ingest.inputs.shards`): ``--id-column``, else ``key``, else ``N:row``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..inputs.shards import _shard_number
from .common import Task, atomic, batches, unit_strings
from .table import write_parquet_rows

ROWS_PER_COPY = 65_536


def _layout(source: dict[str, Any]) -> tuple[Path, str, list[Path]]:
    folder = Path(source["path"])
    kind = source.get("embeddings") or ("img_emb" if (folder / "img_emb").is_dir() else "text_emb")
    files = sorted((folder / kind).glob(f"{kind}_*.npy"), key=_shard_number)
    return folder, kind, files


def _meta(folder: Path, emb: Path) -> Path:
    return folder / "metadata" / f"metadata_{_shard_number(emb)}.parquet"


def unit_ids(source: dict[str, Any]) -> Any:
    """The id of every row of every shard, in shard order."""
    import pandas as pd
    import pyarrow.parquet as pq

    folder, _, files = _layout(source)
    column = source.get("id_column")
    names = pq.ParquetFile(_meta(folder, files[0])).schema_arrow.names if files else []
    column = column or ("key" if "key" in names else None)
    if column is None:
        return [
            f"{_shard_number(f)}:{r}" for f in files for r in range(pq.ParquetFile(_meta(folder, f)).metadata.num_rows)
        ]
    raw = pd.concat([pd.read_parquet(_meta(folder, f), columns=[column]) for f in files], ignore_index=True)
    return unit_strings(raw[column])


def write(task: Task) -> None:
    folder, kind, files = _layout(task.source)
    (task.target / kind).mkdir(parents=True, exist_ok=True)
    (task.target / "metadata").mkdir(parents=True, exist_ok=True)
    start = 0
    for f in files:
        x = np.load(f, mmap_mode="r", allow_pickle=False)
        mask = task.keep[start : start + len(x)]
        start += len(x)
        with task.job.piece(f.name) as todo:
            if todo:
                meta = _meta(folder, f)
                with atomic(task.target / "metadata" / meta.name) as tmp:
                    write_parquet_rows(meta, mask, tmp)
                with atomic(task.target / kind / f.name) as tmp:
                    _write_rows(x, mask, tmp)
        task.progress("apply", start, len(task.keep))


def _write_rows(x: np.ndarray, mask: np.ndarray, dest: Path) -> None:
    """The rows of ``x`` where ``mask`` holds, as an ``.npy`` of ``x``'s dtype, a block at a time."""
    rows = np.flatnonzero(mask)
    out = np.lib.format.open_memmap(dest, mode="w+", dtype=x.dtype, shape=(len(rows), *x.shape[1:]))
    for lo, hi in batches(len(rows), ROWS_PER_COPY):
        out[lo:hi] = x[rows[lo:hi]]
    out.flush()
    del out
