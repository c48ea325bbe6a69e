"""Precomputed embedding shards in the img2dataset / clip-retrieval layout (``img_emb/img_emb_N.npy`` with
``metadata/metadata_N.parquet``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from .common import Items, _carried, _clean, _ids_with_errors


def _shard_number(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else -1


def load_shards(
    folder: Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    only: Path | None = None,
) -> Items:
    """img2dataset / clip-retrieval embeddings: ``img_emb/img_emb_N.npy`` (or ``text_emb/text_emb_N.npy``)
    with ``metadata/metadata_N.parquet`` of as many rows. Image embeddings are used when both exist.

    Only the metadata is read here; the arrays are memory-mapped shard by shard when copied. Ids come
    from ``--id-column``, else the ``key`` column img2dataset writes, else ``N:row``.
    """
    import pandas as pd

    folder = folder.resolve()
    kind = "img_emb" if (folder / "img_emb").is_dir() else "text_emb"
    emb_files = sorted((folder / kind).glob(f"{kind}_*.npy"), key=_shard_number)
    if only is not None:  # one part of a sharded run
        emb_files = [f for f in emb_files if f.resolve() == Path(only).resolve()]
    if not emb_files:
        raise SemDedupError(
            f"folder {str(folder / kind)!r} holds no {kind}_N.npy files; pass an embeddings folder as img2dataset writes it"
        )
    frames, shard_rows, dim = [], [], None
    for f in emb_files:
        meta, rows, dim = _read_shard(folder, f, dim)
        frames.append(meta)
        shard_rows.append((str(f), rows))
    df = pd.concat(frames, ignore_index=True)
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        if name is not None and name not in df.columns:
            cols = ", ".join(map(str, df.columns[:30]))
            raise SemDedupError(f"{option} {name!r} is not a metadata column (columns: {cols}); pass one of them")
    n = len(df)
    if n == 0:
        raise SemDedupError(f"the shards in {str(folder)!r} hold no rows; nothing to deduplicate")
    if id_column is not None:
        raw_ids = _clean(df[id_column].tolist())
    elif "key" in df.columns:
        raw_ids = _clean(df["key"].tolist())
    else:
        raw_ids = [f"{s}:{r}" for s, r in zip(df["shard"], df["shard_row"], strict=True)]
    where = [f"{Path(p).name}#{r}" for p, count in shard_rows for r in range(count)]
    ids_all, errors = _ids_with_errors(raw_ids, where)
    keep = np.array([i for i, v in enumerate(ids_all) if v is not None], dtype=np.int64)
    shards = []
    start = 0
    for f, count in shard_rows:
        local = keep[(keep >= start) & (keep < start + count)] - start
        shards.append((f, local))
        start += count
    used = [c for c in (text_column, image_column) if c is not None]
    if id_column is not None:
        used.append(id_column)
    elif "key" in df.columns:
        used.append("key")
    front = {}
    if image_column is not None:
        front["path"] = [
            None if v is None else str(Path(v) if Path(str(v)).is_absolute() else folder / str(v))
            for v in _clean(df[image_column].iloc[keep].tolist())
        ]
    if text_column is not None:
        front["text"] = [None if v is None else str(v) for v in _clean(df[text_column].iloc[keep].tolist())]
    carried = _carried(df, used).iloc[keep].reset_index(drop=True)
    columns = pd.concat([pd.DataFrame(front), carried], axis=1)
    return Items(
        kind="shards",
        modality="image" if kind == "img_emb" else "text",
        ids=[ids_all[i] for i in keep],  # type: ignore[misc]
        columns=columns,
        shards=shards,
        errors=errors,
        n_input=n,
        source={"kind": "shards", "path": str(folder), "embeddings": kind, "shards": len(shard_rows), "dim": dim},
    )


def _read_shard(folder: Path, f: Path, dim: int | None) -> tuple[Any, int, int]:
    """One shard's metadata (with its ``shard`` number and ``shard_row``), its row count and its dimension,
    checked against the earlier shards' ``dim``: readable, ``n × d``, one model, metadata row for row."""
    import pandas as pd

    num = _shard_number(f)
    meta_path = folder / "metadata" / f"metadata_{num}.parquet"
    try:
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise SemDedupError(f"embedding shard {str(f)!r} is not a readable .npy array ({exc}); re-create it") from None
    if arr.ndim != 2:
        raise SemDedupError(f"embedding shard {str(f)!r} has shape {arr.shape}; each shard must be n × d")
    if dim is not None and arr.shape[1] != dim:
        raise SemDedupError(
            f"embedding shard {str(f)!r} has d = {arr.shape[1]} but earlier shards have {dim}; use shards of one model"
        )
    if not meta_path.is_file():
        raise SemDedupError(
            f"embedding shard {str(f)!r} has no metadata file {str(meta_path)!r}; every shard needs one"
        )
    meta = pd.read_parquet(meta_path)
    if len(meta) != arr.shape[0]:
        raise SemDedupError(
            f"metadata {str(meta_path)!r} has {len(meta)} rows but {str(f)!r} has {arr.shape[0]}; they must match row for row"
        )
    meta = meta.copy()
    meta["shard"] = num
    meta["shard_row"] = np.arange(len(meta))
    return meta, int(arr.shape[0]), int(arr.shape[1])
