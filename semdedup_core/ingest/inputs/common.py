"""What every input reader returns (:class:`Items`) and the checks they share (ids, carried columns)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from ...results.io import bad_id_char
from ...results.names import RESERVED_COLUMNS as RESERVED

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


@dataclass
class Items:
    """The candidate items of an input, in order.

    ``kind``: ``folder``, ``table``, ``shards`` (precomputed embeddings), ``webdataset`` or ``hf``. ``modality``: ``image`` or ``text`` (what an encoder
    must embed; for shards, what the shards hold). ``paths``/``texts``: one per item for the modality
    embedded (``None`` otherwise). ``shards``: for precomputed embeddings, ``(npy_path, first_item,
    rows_in_file)`` with ``rows`` the file rows that are items, in item order. ``errors``: dicts with
    ``id``, ``path`` and ``reason`` for input rows already left out. ``skipped``: files in an image
    folder that are not named like images (captions, json beside them), not counted as errors.
    """

    kind: str
    modality: str
    ids: list[str]
    columns: Any  # pandas.DataFrame, one row per item
    paths: list[str] | None = None
    texts: list[str] | None = None
    shards: list[tuple[str, np.ndarray]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    n_input: int = 0
    skipped: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # container files the items live in (tar shards, Arrow)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of_columns(
        cls, kind: str, ids: list[str], paths: list | None, texts: list | None, carried: Any, **facts: Any
    ) -> Items:
        """The items of a table-like input: ``path`` and/or ``text`` first among the carried columns, the
        images embedded when there are paths (texts then carried), else the texts."""
        import pandas as pd

        front = {k: v for k, v in (("path", paths), ("text", texts)) if v is not None}
        modality = "image" if paths is not None else "text"
        return cls(
            kind=kind,
            modality=modality,
            ids=ids,
            columns=pd.concat([pd.DataFrame(front), carried], axis=1),
            paths=paths if modality == "image" else None,
            texts=texts if modality == "text" else None,
            **facts,
        )

    def fingerprint(self) -> str:
        """Identity of the candidate items (ids, paths or texts, file sizes and times)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.kind}|{self.modality}|{len(self.ids)}".encode())
        for i, item_id in enumerate(self.ids):
            h.update(item_id.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
            if self.paths is not None:
                p = self.paths[i]
                try:
                    st = os.stat(p)
                    h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogatepass"))
                except OSError:
                    h.update(p.encode("utf-8", "surrogatepass"))
            elif self.texts is not None:
                h.update(self.texts[i].encode("utf-8", "surrogatepass"))
        for path, rows in self.shards:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}|{len(rows)}".encode())
        for path in self.files:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()


def _err(item_id: Any, path: Any, reason: str) -> dict[str, Any]:
    return {
        "id": None if item_id is None else str(item_id),
        "path": None if path is None else str(path),
        "reason": reason,
    }


def _carried(df: Any, used: list[str]) -> Any:
    """The table's other columns, renamed where they clash with the results format."""
    rest = df.drop(columns=[c for c in used if c is not None]).copy()
    rest.columns = [str(c) for c in rest.columns]
    renames = {}
    for c in rest.columns:
        if c in RESERVED:
            new = f"{c}_input"
            while new in rest.columns or new in renames.values():
                new += "_"
            renames[c] = new
    return rest.rename(columns=renames)


def _check_column(df: Any, name: str | None, option: str, path: Path) -> None:
    if name is not None and name not in df.columns:
        cols = ", ".join(map(str, df.columns[:30]))
        raise SemDedupError(f"{option} {name!r} is not a column of {str(path)!r} (columns: {cols}); pass one of them")


def _ids_with_errors(
    raw_ids: list[Any], paths: list[Any], first_row: int = 0
) -> tuple[list[str | None], list[dict[str, Any]]]:
    """Stringified ids; a missing or repeated id is an error for that row (its id becomes ``None``).
    Rows are numbered from ``first_row`` in the messages."""
    seen: dict[str, int] = {}
    ids: list[str | None] = []
    errors = []
    for row, (raw, p) in enumerate(zip(raw_ids, paths, strict=True), start=first_row):
        if raw is None or str(raw) == "":
            errors.append(_err(None, p, f"missing id (row {row})"))
            ids.append(None)
            continue
        s = str(raw)
        bad = bad_id_char(s)
        if bad is not None:
            errors.append(_err(s, p, f"the id holds a line break or NUL ('{bad}'; row {row})"))
            ids.append(None)
            continue
        if s in seen:
            errors.append(_err(s, p, f"duplicate id (row {row}; first at row {seen[s]})"))
            ids.append(None)
            continue
        seen[s] = row
        ids.append(s)
    return ids, errors


def _clean(values: Any) -> list[Any]:
    import pandas as pd

    return [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in values]


def text_problem(text: Any, column: str | None, max_chars: int) -> str | None:
    """Why a table's text cannot be embedded (missing, empty, too long), or ``None``."""
    if text is None:
        return f"missing text in column {column!r}"
    t = str(text)
    if not t.strip():
        return "empty text"
    if len(t) > max_chars:
        return f"text of {len(t):,} characters is longer than {max_chars:,}"
    return None
