"""The results folder: its file names, format version and columns, and the one owner of the rules
about what a folder on disk is (missing, empty, somebody else's, a run in progress, a finished run).

The engine writes what this module names; :class:`~semdedup_core.engine.results.Results` reads it;
the ingest pipeline, the demos and the app's jobs ask :class:`ResultsFolder` before they write.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SemDedupError
from . import io

FORMAT_VERSION = 1

ITEMS = "items.parquet"
CENTROIDS = "centroids.npy"
EMBEDDINGS = "embeddings.npy"
EMBEDDINGS_DIR = "embeddings"  # a sharded run's unit vectors, one .npy per part (listed in run.json)
RUN = "run.json"
ERRORS = "errors.parquet"
WORK = ".work"  # scratch space of an unfinished run; removed when the run completes
EXPORTS = "exports"

REQUIRED_COLUMNS = ("id", "cluster", "dist_to_centroid", "rank", "max_sim", "dup_of")
"""The engine's columns of ``items.parquet``, first and in this order."""
RESERVED_COLUMNS = (*REQUIRED_COLUMNS, "path", "text", "ref_sim", "ref_id")
"""Column names with a meaning in a results folder: a carried input column of one of these names
is renamed (``text_input``) so that it cannot be mistaken for them."""

# what a folder may already hold before a run has written run.json: the scratch space, and the
# errors.parquet that run_input writes before the engine starts
_PRE_RUN = (WORK, ERRORS)


class FolderState(enum.Enum):
    MISSING = "missing"
    FILE = "file"  # the path is a file, not a folder
    EMPTY = "empty"  # a folder with nothing of anyone's in it (or only our own pre-run scratch)
    FOREIGN = "foreign"  # a folder with somebody else's files
    DAMAGED = "damaged"  # run.json unreadable
    RUNNING = "running"  # a run started here and has not finished (or was killed: rerun to resume)
    COMPLETE = "complete"


@dataclass(frozen=True)
class ResultsFolder:
    """A path that is, or is to become, a results folder."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path).expanduser())

    def file(self, name: str) -> Path:
        return self.path / name

    def read_run(self) -> dict[str, Any] | None:
        """``run.json``, or ``None`` when there is none; raises ``ValueError`` when it is not JSON."""
        try:
            return io.read_json(self.path / RUN)
        except FileNotFoundError:
            return None

    def state(self) -> FolderState:
        p = self.path
        if not p.exists():
            return FolderState.MISSING
        if not p.is_dir():
            return FolderState.FILE
        if (p / RUN).exists():
            try:
                run = self.read_run()
            except (ValueError, OSError):
                return FolderState.DAMAGED
            return FolderState.COMPLETE if (run or {}).get("status") == "complete" else FolderState.RUNNING
        if any(c.name not in _PRE_RUN for c in p.iterdir()):
            return FolderState.FOREIGN
        return FolderState.EMPTY

    def is_complete(self) -> bool:
        return self.state() is FolderState.COMPLETE

    def check_writable(self) -> None:
        """Raise unless a run may write here: a new or empty folder, or one of our runs (to resume or
        to find finished). Somebody else's files are never touched."""
        state = self.state()
        if state is FolderState.FILE:
            raise SemDedupError(f"output {str(self.path)!r} is a file; pass a folder for --out")
        if state is FolderState.FOREIGN:
            raise SemDedupError(
                f"output folder {str(self.path)!r} exists and is not a semdedup results folder; "
                "choose an empty or new folder"
            )
        if state is FolderState.DAMAGED:
            raise SemDedupError(
                f"results folder {str(self.path)!r} has an unreadable run.json; choose another --out folder"
            )

    def finished_run(self) -> dict[str, Any]:
        """``run.json`` of a finished run of this format; raises :class:`SemDedupError` saying why not."""
        p = self.path
        state = self.state()
        if state in (FolderState.MISSING, FolderState.FILE):
            raise SemDedupError(
                f"results folder {str(p)!r} does not exist; run `python -m semdedup_core run ... --out {p}` first"
            )
        if state in (FolderState.EMPTY, FolderState.FOREIGN):
            raise SemDedupError(
                f"{str(p)!r} is not a semdedup results folder (no run.json); pick the folder a run wrote"
            )
        if state is FolderState.DAMAGED:
            raise SemDedupError(
                f"run.json in {str(p)!r} is not valid JSON; the folder is damaged, rerun into a new folder"
            )
        run = self.read_run() or {}
        if state is FolderState.RUNNING:
            raise SemDedupError(
                f"the run in {str(p)!r} has not finished (status {run.get('status')!r}); "
                "wait for it, or start it again with the same arguments to resume"
            )
        if run.get("format_version") != FORMAT_VERSION:
            raise SemDedupError(
                f"results folder {str(p)!r} has format version {run.get('format_version')!r}, this semdedup reads "
                f"version {FORMAT_VERSION}; rerun the dedup with this version"
            )
        if not (p / ITEMS).exists():
            raise SemDedupError(f"results folder {str(p)!r} lacks items.parquet; rerun into a new folder")
        return run


def check_columns(columns: list[str], where: str) -> None:
    """Raise unless ``items.parquet`` (``where``) starts with the engine's columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise SemDedupError(f"items.parquet in {where!r} lacks columns {missing}; rerun with this version")
