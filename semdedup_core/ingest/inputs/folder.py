"""A folder of images, searched recursively."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import SemDedupError
from ...results.io import bad_id_char
from .common import IMAGE_SUFFIXES, Items, _err


def list_images(folder: Path) -> tuple[list[Path], int]:
    """The image files under ``folder`` (recursive; hidden files and folders left out; links to folders
    not followed), sorted by their path relative to ``folder``, and how many other files were skipped."""
    folder = folder.resolve()
    files, skipped = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES):
                files.append(Path(root, name))
            else:
                skipped += 1
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix()), skipped


def load_image_folder(folder: Path, only: list[str] | None = None) -> Items:
    """Every image file under ``folder`` (recursive, sorted; hidden files and folders left out; links to
    folders not followed), or the files ``only`` names (a slice of that listing, for one part of a sharded
    run). A file whose name holds a line break is an error row at once; a file that must not be decoded (a
    symbolic link to a file outside ``folder``, a FIFO, device or socket, an empty or oversize file)
    becomes one when the embedder opens it (:mod:`semdedup_core.media.images`)."""
    import pandas as pd

    folder = folder.resolve()
    if only is None:
        files, skipped = list_images(folder)
    else:
        files, skipped = [Path(f) for f in only], 0
    if not files:
        raise SemDedupError(
            f"folder {str(folder)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}); pass a folder of images "
            "or a table with --image-column"
        )
    ids, paths, errors = [], [], []
    for rel, path in sorted((f.relative_to(folder).as_posix(), str(f)) for f in files):
        bad = bad_id_char(rel)
        if bad is not None:
            errors.append(_err(rel, path, f"unreadable image (the file name holds a line break or NUL: '{bad}')"))
        else:
            ids.append(rel)
            paths.append(path)
    columns = pd.DataFrame({"path": paths})
    return Items(
        kind="folder",
        modality="image",
        ids=ids,
        columns=columns,
        paths=paths,
        errors=errors,
        n_input=len(files),
        skipped=skipped,
        source={"kind": "folder", "path": str(folder)},
    )
