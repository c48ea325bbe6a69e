"""What a command may write over: the one rule every ``--out`` (and ``--progress-file``) follows.

A file given to write is refused, in one line naming ``--force``, when it is

- **one of a results folder's own files** (``run.json``, ``items.parquet``, ``labels.parquet``,
  ``audit/sample.parquet``, anything under ``.work/`` …, of any results folder: a folder holding a
  ``run.json``): ``report --out DIR/run.json`` would destroy the folder, ``audit sample --out
  DIR/labels.parquet`` the verdicts;
- **an existing file that is not this command's own earlier output**, as the command recognises it
  (a report it wrote; a review queue whose verdict column is still empty — not one with verdicts filled
  in, which ``audit sample --out queue.csv`` would erase);
- a folder, or anything but a regular file (a FIFO would take the write).

``--force`` replaces the file anyway (never a folder, nor what is not a regular file).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import SemDedupError
from ..media import safe
from .names import (
    AUDIT,
    CENTROIDS,
    EMBEDDINGS,
    EMBEDDINGS_DIR,
    ERRORS,
    EXPORTS,
    ITEMS,
    ITEMS_ARROW,
    LABELS,
    LOCK,
    PROBES,
    REFERENCE,
    REFERENCE_EMBEDDINGS,
    RUN,
    WORK,
)

FOLDER_NAMES = (
    RUN, ITEMS, ITEMS_ARROW, CENTROIDS, EMBEDDINGS, EMBEDDINGS_DIR, ERRORS, LABELS, LABELS + ".lock", LOCK, PROBES,
    REFERENCE, REFERENCE_EMBEDDINGS, WORK, AUDIT, EXPORTS,
)  # fmt: skip
"""The names a results folder's own files and folders have (with ``map-*`` files of the app's maps)."""


def folder_file(path: str | os.PathLike[str]) -> tuple[Path, str] | None:
    """``(results folder, name inside it)`` when ``path`` (symbolic links resolved) is one of a results
    folder's own files or lies in one of its own subfolders, else ``None``."""
    real = Path(os.path.realpath(Path(path).expanduser()))
    for depth, folder in enumerate(real.parents):
        if depth > 3:
            break
        if not os.path.lexists(folder / RUN):
            continue
        first = real.relative_to(folder).parts[0]
        if first in FOLDER_NAMES or first.startswith("map-") or (depth == 0 and first.startswith(".")):
            return folder, real.relative_to(folder).as_posix()
    return None


def check_out(
    path: str | os.PathLike[str],
    *,
    force: bool = False,
    own: Callable[[Path], str | None] | None = None,
    option: str = "--out",
    forceable: bool = True,
) -> Path:
    """``path`` when a command may write it (see the module's docstring), else raise
    :class:`SemDedupError` naming the reason and ``--force``. ``own(path)``: why an existing file is *not*
    this command's earlier output (``None`` when it is); without it any existing file is refused.
    ``forceable``: the command has ``--force`` (the message names it)."""
    way_out = " (or add --force to replace it anyway)" if forceable else ""
    p = Path(path).expanduser()
    if p.is_dir():
        raise SemDedupError(f"{option} {str(p)!r} is a folder; give a file name such as {str(p / 'out')!r}")
    if os.path.lexists(p):
        problem = safe.file_problem(p, allow_empty=True)
        if problem is not None and not problem.startswith("file not found"):
            raise SemDedupError(f"{option} {str(p)!r}: {problem}; give the path of a file to write")
    if force:
        return p
    inside = folder_file(p)
    if inside is not None:
        folder, name = inside
        raise SemDedupError(
            f"{option} {str(p)!r} is {name!r} of the results folder {str(folder)!r}, which this would destroy; "
            f"choose another {option}{way_out}"
        )
    if os.path.lexists(p):
        why = "it is not a file this command wrote" if own is None else own(p)
        if why is not None:
            raise SemDedupError(
                f"{option} {str(p)!r} exists and would be replaced, but {why}; choose another {option}{way_out}"
            )
    return p
