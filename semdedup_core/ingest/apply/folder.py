"""Image folders: the kept images at their relative paths, as hard links or copies, or their list.

``--mode link`` (default) makes hard links (no extra space; the files are the input's own, so edit
neither), ``copy`` copies them (with their times), ``list`` writes one relative path per line (for
``rsync --files-from`` and the like). The ids of an image folder's items are these relative paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from ...results.io import bad_id_char
from ..inputs.folder import list_images
from .common import Task, atomic, batches

MODES = ("link", "copy", "list")
BATCH_FILES = 5_000  # files per recorded piece: a killed apply redoes at most this many


def _relative(folder: Path) -> list[str]:
    root = folder.resolve()
    files, _ = list_images(root)
    return [f.relative_to(root).as_posix() for f in files]


def unit_ids(source: dict[str, Any]) -> list[str | None]:
    """The relative path of every image file under the folder (``None`` for one with a line break)."""
    return [None if bad_id_char(rel) is not None else rel for rel in _relative(Path(source["path"]))]


def write(task: Task) -> None:
    mode = task.options.get("mode") or "link"
    rels = task.ids
    kept = np.flatnonzero(task.keep)
    if mode == "list":
        with task.job.piece("list") as todo:
            if todo:
                with atomic(task.target) as tmp:
                    tmp.write_text("".join(f"{rels[u]}\n" for u in kept), encoding="utf-8")
        task.progress("apply", len(kept), len(kept))
        return
    root = Path(task.source["path"])
    task.target.mkdir(parents=True, exist_ok=True)
    for lo, hi in batches(len(kept), BATCH_FILES):
        with task.job.piece(f"files-{lo}") as todo:
            if todo:
                for u in kept[lo:hi]:
                    _place(root / rels[u], task.target / rels[u], mode)
        task.progress("apply", hi, len(kept))


def _place(src: Path, dest: Path, mode: str) -> None:
    """``dest`` becomes a hard link to, or a copy of, ``src`` (replacing what a killed apply left)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    if mode == "copy":
        shutil.copy2(src, tmp)
    else:
        try:
            os.link(src, tmp)
        except OSError as exc:
            raise SemDedupError(
                f"cannot hard-link {str(src)!r} into {str(dest.parent)!r} ({exc.strerror}); hard links need one "
                "filesystem: use --mode copy, or an --out on the input's filesystem"
            ) from None
    os.replace(tmp, dest)
