"""Hugging Face datasets saved with ``save_to_disk`` (one split's folder); the Arrow files are memory-mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import SemDedupError
from .common import Items, _carried, _clean, _err, _ids_with_errors, text_problem


def is_hf_dataset(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()


def load_hf_dataset(
    folder: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    id_column: str | None,
    max_text_chars: int = 100_000,
    only: Path | None = None,
) -> Items:
    """A Hugging Face ``datasets`` folder written by ``save_to_disk``: its Arrow files are memory-mapped
    and read with pyarrow (the ``datasets`` package is not needed). ``--image-column`` (an ``Image()``
    feature: bytes or a path) or ``--text-column`` says what to embed; other columns are carried."""

    import pandas as pd

    folder = folder.resolve()
    if text_column is None and image_column is None:
        raise SemDedupError(
            f"Hugging Face dataset {str(folder)!r} needs --text-column NAME or --image-column NAME to say what to embed"
        )
    tables, first = _arrow_files(folder, only)
    names = tables[0][1].column_names if tables else []
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        if name is not None and name not in names:
            raise SemDedupError(
                f"{option} {name!r} is not a column of {str(folder)!r} (columns: {', '.join(names)}); pass one of them"
            )
    skip = {c for c in (image_column,) if c}
    frames, refs = [], []
    for f, table in tables:
        keep = [c for c in table.column_names if c not in skip]
        frames.append(table.select(keep).to_pandas())
        if image_column:
            refs.extend(f"{f}/{image_column}/{i}" for i in range(table.num_rows))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    n = len(df) if frames else 0
    if n == 0:
        raise SemDedupError(f"Hugging Face dataset {str(folder)!r} has no rows; nothing to deduplicate")
    raw_ids = _clean(df[id_column].tolist()) if id_column is not None else [str(first + i) for i in range(n)]
    where = refs if image_column else [f"{folder}#{first + i}" for i in range(n)]
    ids_all, errors = _ids_with_errors(raw_ids, where, first)
    texts_all = _clean(df[text_column].tolist()) if text_column is not None else None
    keep_rows = []
    for row in range(n):
        if ids_all[row] is None:
            continue
        if image_column is None and texts_all is not None:
            reason = text_problem(texts_all[row], text_column, max_text_chars)
            if reason:
                errors.append(_err(ids_all[row], None, reason))
                continue
        keep_rows.append(row)
    carried = _carried(df, [text_column, id_column]).iloc[keep_rows].reset_index(drop=True)
    texts = None if texts_all is None else [None if texts_all[r] is None else str(texts_all[r]) for r in keep_rows]
    source = {"kind": "hf", "path": str(folder), "text_column": text_column, "image_column": image_column}
    return Items.of_columns(
        "hf",
        [ids_all[r] for r in keep_rows],  # type: ignore[misc]
        [refs[r] for r in keep_rows] if image_column else None,
        texts,
        carried,
        errors=errors,
        n_input=n,
        source={**source, "id_column": id_column},
        files=[str(f) for f, _ in tables],
    )


def _arrow_files(folder: Path, only: Path | None) -> tuple[list[tuple[Path, Any]], int]:
    """The dataset's Arrow files (memory-mapped tables) in ``state.json``'s order — only ``only`` when given
    (one part of a sharded run) — and the global row number of the first row."""
    import json

    from ...media import files as media

    try:
        state = json.loads((folder / "state.json").read_text())
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise SemDedupError(
            f"{str(folder / 'state.json')!r} is not a datasets state file ({exc}); save the dataset again"
        ) from None
    first = 0
    if only is not None:  # default ids stay global row numbers
        before = files[: [f.resolve() for f in files].index(Path(only).resolve())]
        first = sum(media.arrow_table(str(f)).num_rows for f in before)
        files = [Path(only)]
    tables = []
    for f in files:
        try:
            tables.append((f, media.arrow_table(str(f))))
        except Exception as exc:
            raise SemDedupError(
                f"Arrow file {str(f)!r} of the dataset cannot be read ({exc}); save the dataset again"
            ) from None
    return tables, first
