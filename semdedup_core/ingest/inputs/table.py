"""A table (``.parquet``, ``.csv``, ``.jsonl``) of texts and/or image paths."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import SemDedupError
from ...media.images import file_problem
from ...results.io import bad_id_char
from .common import Items, _carried, _check_column, _clean, _err, _ids_with_errors, text_problem


def read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype_backend="numpy_nullable")
        return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        where = _bad_jsonl_line(path) if suffix == ".jsonl" else None
        reason = where or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise SemDedupError(f"table {str(path)!r} could not be read ({reason}); check its format") from None


def _bad_jsonl_line(path: Path) -> str | None:
    """``line N is not a JSON object (…)`` for the first line of a JSONL file that is not, else ``None``."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"line {number} is not valid JSON: {exc.msg} at column {exc.colno}"
                if not isinstance(value, dict):
                    return f"line {number} is not a JSON object but {type(value).__name__}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return None


def load_table(
    path: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    id_column: str | None,
    max_text_chars: int = 100_000,
    rows: tuple[int, int] | None = None,
) -> Items:
    """Rows of a table; images when ``image_column`` is given (paths relative to the table's folder),
    else texts. With both, the images are embedded and the texts carried as ``text``. ``rows``: only the
    rows ``start:stop`` (one part of a sharded run; default ids stay the table's row numbers)."""
    path = path.resolve()
    if text_column is None and image_column is None:
        raise SemDedupError(f"table {str(path)!r} needs --text-column NAME or --image-column NAME to say what to embed")
    df = read_table(path)
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        _check_column(df, name, option, path)
    first = 0
    if rows is not None:
        first = rows[0]
        df = df.iloc[rows[0] : rows[1]].reset_index(drop=True)
    n = len(df)
    if n == 0:
        raise SemDedupError(f"table {str(path)!r} has no rows; nothing to deduplicate")
    base = path.parent
    paths_all: list[str | None] = [None] * n
    if image_column is not None:
        for row, v in enumerate(_clean(df[image_column].tolist())):
            if v is not None and str(v).strip():
                p = Path(str(v).strip())
                paths_all[row] = str(p if p.is_absolute() else (base / p))
    raw_ids = _clean(df[id_column].tolist()) if id_column is not None else [str(first + i) for i in range(n)]
    ids_all, errors = _ids_with_errors(raw_ids, paths_all, first)
    texts_all = _clean(df[text_column].tolist()) if text_column is not None else None

    keep = []
    for row in range(n):
        if ids_all[row] is None:
            continue
        if image_column is not None:
            reason, where = _image_problem(df[image_column].iloc[row], paths_all[row], image_column)
        else:
            reason, where = (text_problem(texts_all[row], text_column, max_text_chars) if texts_all else None), None
        if reason is not None:
            errors.append(_err(ids_all[row], where, reason))
            continue
        keep.append(row)

    carried = _carried(df, [text_column, image_column, id_column]).iloc[keep].reset_index(drop=True)
    texts = None if texts_all is None else [None if texts_all[r] is None else str(texts_all[r]) for r in keep]
    source = {"kind": "table", "path": str(path), "text_column": text_column, "image_column": image_column}
    return Items.of_columns(
        "table",
        [ids_all[r] for r in keep],  # type: ignore[misc]
        [paths_all[r] for r in keep] if image_column is not None else None,
        texts,
        carried,
        errors=errors,
        n_input=n,
        source={**source, "id_column": id_column},
    )


def _image_problem(value: Any, path: str | None, column: str) -> tuple[str | None, Any]:
    """Why a table's image cell cannot be embedded, with the path to record: missing, a URL, a path with a
    line break, a file that is missing or not a readable regular file; ``(None, None)`` when it can."""
    if path is None:
        return f"missing image path in column {column!r}", None
    if re.match(r"^[a-z][a-z0-9+.-]*://", str(value).strip(), re.I):
        return "a URL, not a local file; download the images first (e.g. img2dataset)", value
    bad = bad_id_char(path)
    if bad is not None:
        return f"the image path holds a line break or NUL ('{bad}')", path
    problem = file_problem(path)
    if problem is not None:
        return ("file not found" if problem.startswith("file not found") else f"unreadable image ({problem})"), path
    return None, None
