"""Hugging Face ``save_to_disk`` folders: the same folder layout with the kept rows, which
``datasets.load_from_disk`` opens.

Each Arrow file of the input (``state.json``'s ``_data_files``) becomes a file of the same name holding
its kept rows, record batch by record batch, with the input's schema (its features included) and IPC
format; ``dataset_info.json`` is copied; ``state.json`` is copied with a new ``_fingerprint`` (the
dataset's cache key in ``datasets``), so nothing cached for the whole dataset is taken for this one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .common import Task, atomic, mask_digest, row_numbers, unit_strings


def _data_files(folder: Path) -> list[Path]:
    state = json.loads((folder / "state.json").read_text())
    return [folder / f["filename"] for f in state["_data_files"]]


def unit_ids(source: dict[str, Any]) -> Any:
    """The id of every row, as the reader finds it: the ``--id-column`` values (typed as pandas types the
    whole column), or the global row numbers."""
    import pandas as pd

    from ...media import files as media

    folder = Path(source["path"])
    tables = [media.arrow_table(str(f)) for f in _data_files(folder)]
    column = source.get("id_column")
    n = sum(t.num_rows for t in tables)
    if column is None:
        return row_numbers(n)
    return unit_strings(pd.concat([t.select([column]).to_pandas() for t in tables], ignore_index=True)[column])


def write(task: Task) -> None:
    folder = Path(task.source["path"])
    files = _data_files(folder)
    task.target.mkdir(parents=True, exist_ok=True)
    start = 0
    for f in files:
        with task.job.piece(f.name) as todo:
            rows = _write_arrow(f, task.keep, start, task.target / f.name if todo else None)
        start += rows
        task.progress("apply", start, len(task.keep))
    with task.job.piece("dataset_info.json") as todo:
        if todo:
            with atomic(task.target / "dataset_info.json") as tmp:
                shutil.copyfile(folder / "dataset_info.json", tmp)
    with task.job.piece("state.json") as todo:
        if todo:
            state = json.loads((folder / "state.json").read_text())
            old = str(state.get("_fingerprint", ""))
            state["_fingerprint"] = hashlib.blake2b(
                f"{old}|{mask_digest(task.keep)}".encode(), digest_size=8
            ).hexdigest()
            with atomic(task.target / "state.json") as tmp:
                tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def _write_arrow(path: Path, keep: Any, start: int, dest: Path | None) -> int:
    """Write the rows of the Arrow file ``path`` (global rows ``start…``) where ``keep`` holds into ``dest``
    (nothing when ``None``); return the file's row count."""
    import pyarrow as pa

    from ...media import files as media

    if dest is None:
        return media.arrow_table(str(path)).num_rows
    source = pa.memory_map(str(path), "r")
    try:
        reader = pa.ipc.open_stream(source)
        batches, schema, new = iter(reader), reader.schema, pa.ipc.new_stream
    except pa.ArrowInvalid:
        reader = pa.ipc.open_file(source)
        batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        schema, new = reader.schema, pa.ipc.new_file
    n = 0
    with atomic(dest) as tmp, new(str(tmp), schema) as writer:
        for batch in batches:
            mask = keep[start + n : start + n + batch.num_rows]
            n += batch.num_rows
            if mask.any():
                writer.write_batch(batch.filter(pa.array(mask)))
    return n
