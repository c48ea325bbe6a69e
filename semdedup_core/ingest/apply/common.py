"""What every apply writer shares: the scratch folder beside ``OUT`` (resumable, renamed into place at the
end), the refusals about ``OUT``, and :class:`Task` — what to write: the input, which of its units
(rows, samples, files) are kept, and where the output is assembled.

The output is written into ``.<OUT name>.apply-partial/out`` beside ``OUT``, one *piece* at a time (a
file, an output shard, a batch of files), each piece written atomically and recorded in
``progress.json`` with the identity of the job (results folder, ε, rule, the kept units' hash, the
input's fingerprint, the options). A killed ``apply`` rerun with the same arguments skips the recorded
pieces; a rerun that asks for something else starts the scratch folder again. At the end ``out`` is
renamed to ``OUT`` in one step and the scratch folder removed: ``OUT`` exists only once it is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemDedupError
from ...results import io

PROGRESS = "progress.json"
PARTIAL_SUFFIX = ".apply-partial"
Progress = Callable[[str, int, int], None]


def scratch_of(out: Path) -> Path:
    """The scratch folder of an apply into ``out``: ``.<name>.apply-partial`` beside it."""
    return out.parent / f".{out.name}{PARTIAL_SUFFIX}"


def mask_digest(mask: np.ndarray) -> str:
    """A short hash of a boolean mask (which units are kept)."""
    return hashlib.blake2b(np.packbits(np.asarray(mask, dtype=bool)).tobytes(), digest_size=16).hexdigest()


@dataclass
class Task:
    """One apply: the run's input ``source`` (``run.json``'s ``input``, with the column options), ``keep``
    (one bool per input unit, in the reader's order), ``found`` (whether each unit is an item of the run),
    ``options`` (``mode``, ``shard_size``), ``target`` (where the output is assembled: a file or a folder,
    renamed to ``OUT`` at the end), the job's record and a progress callback."""

    source: dict[str, Any]
    keep: np.ndarray
    found: np.ndarray
    ids: Any
    target: Path
    options: dict[str, Any]
    job: Job
    progress: Progress = field(default=lambda stage, done, total: None)


class Job:
    """The scratch folder of one apply into ``out`` (see the module's docstring): its lock, its record
    of finished pieces, and the final rename."""

    def __init__(self, out: Path, identity: dict[str, Any]):
        self.out = out
        self.scratch = scratch_of(out)
        self.identity = identity
        self.target = self.scratch / "out"
        self.record: dict[str, Any] = {"identity": identity, "done": [], "finished": False}
        self._lock: int | None = None

    def __enter__(self) -> Job:
        self.scratch.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.scratch / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SemDedupError(
                f"another apply is writing {str(self.out)!r}; wait for it to finish, or choose another --out"
            ) from None
        self._lock = fd
        old = self._read_record()
        if old is not None and old.get("identity") == self.identity:
            self.record = old
        else:  # nothing yet, or another apply's partial output: start again
            remove(self.target)
            io.write_json(self.scratch / PROGRESS, self.record)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _read_record(self) -> dict[str, Any] | None:
        try:
            return io.read_json(self.scratch / PROGRESS)
        except (OSError, ValueError):
            return None

    def resumed(self) -> int:
        """How many pieces an earlier, killed apply finished."""
        return len(self.record["done"])

    @contextlib.contextmanager
    def piece(self, name: str) -> Iterator[bool]:
        """Write the piece ``name`` in the ``with`` body unless an earlier apply finished it (yields whether
        to write it); record it once the body returns."""
        if name in self.record["done"]:
            yield False
            return
        yield True
        self.record["done"].append(name)
        io.write_json(self.scratch / PROGRESS, self.record)

    def finish(self) -> None:
        """Rename the assembled output to ``OUT`` and remove the scratch folder."""
        if not self.target.exists():
            raise SemDedupError(f"apply wrote nothing into {str(self.target)!r}; rerun the same command")
        self.record["finished"] = True
        io.write_json(self.scratch / PROGRESS, self.record)
        os.rename(self.target, self.out)
        self.__exit__()
        shutil.rmtree(self.scratch, ignore_errors=True)


def remove(path: Path) -> None:
    """Remove a file or a folder tree, if there is one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def finished_before(out: Path, identity: dict[str, Any]) -> bool:
    """Whether ``out`` is the finished output of this very apply, killed between its rename and the removal
    of its scratch folder (the scratch folder is removed then)."""
    scratch = scratch_of(out)
    try:
        record = io.read_json(scratch / PROGRESS)
    except (OSError, ValueError):
        return False
    if record.get("finished") and record.get("identity") == identity and out.exists():
        shutil.rmtree(scratch, ignore_errors=True)
        return True
    return False


def check_out(out: Path, output: str, suffix: str | None, inside: list[Path]) -> None:
    """Refuse, in one line naming the path: an ``OUT`` that exists (apply never overwrites), a file output
    whose suffix is not the input's (``suffix``), an ``OUT`` inside the input (``inside``: folders the run
    read, which must only ever be read), a scratch folder that is not an apply's."""
    if out.exists() or out.is_symlink():
        raise SemDedupError(
            f"--out {str(out)!r} exists; apply never overwrites: choose a new path (or remove it yourself)"
        )
    if output == "file" and suffix and out.suffix.lower() != suffix.lower():
        raise SemDedupError(
            f"--out {str(out)!r} must be a {suffix} file, the input's own format; e.g. {str(out.with_suffix(suffix))!r}"
        )
    real = Path(os.path.realpath(out))
    for folder in inside:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            raise SemDedupError(
                f"--out {str(out)!r} is inside the run's input {str(folder)!r}, which apply only reads; "
                "choose a path outside it"
            )
    scratch = scratch_of(out)
    if scratch.exists() and not (scratch / PROGRESS).is_file():
        raise SemDedupError(
            f"{str(scratch)!r} exists and is not an apply's scratch folder; remove it or choose another --out"
        )


@contextlib.contextmanager
def atomic(dest: Path) -> Iterator[Path]:
    """:func:`semdedup_core.results.io.atomic_path`, with the file made readable as any new file is (the
    mode the umask gives, not the private mode of a temporary file): a dataset is for others to read."""
    with io.atomic_path(dest) as tmp:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of ``size`` over ``range(n)``."""
    for lo in range(0, n, size):
        yield lo, min(n, lo + size)


def match_units(units: Any, known: Any) -> np.ndarray:
    """The row in ``known`` (a run's ids) of each input unit's id (``units``, Arrow strings; null for a unit
    without one), -1 where it has none — and -1 for every repeat of an id after its first occurrence, as
    the readers make an error row of a repeated id. (The readers' other error rows — a missing or empty id,
    one with a line break — never match: a run's ids have none of those.)"""
    import pyarrow.compute as pc

    rows = pc.fill_null(pc.index_in(units.cast(known.type), value_set=known), -1).to_numpy(zero_copy_only=False).copy()
    found = np.flatnonzero(rows >= 0)
    if len(found) and np.bincount(rows[found]).max() > 1:
        _, first = np.unique(rows[found], return_index=True)
        repeats = np.setdiff1d(found, found[first], assume_unique=True)
        rows[repeats] = -1
    return rows


def unit_strings(values: Any) -> Any:
    """``values`` as one Arrow string array (nulls for missing values), each value as ``str`` writes it."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            return values
        values = values.to_pandas()
    if pd.api.types.is_string_dtype(values.dtype):
        return pa.array(values.to_numpy(dtype=object, na_value=None), type=pa.string())
    missing = pd.isna(values).to_numpy(dtype=bool)
    texts = [None if m else str(v) for v, m in zip(values.tolist(), missing, strict=True)]
    return pa.array(texts, type=pa.string())


def row_numbers(n: int) -> Any:
    """The default ids of ``n`` rows: ``"0"``, ``"1"``, … (an Arrow string array)."""
    import pyarrow as pa

    return pa.array(np.arange(n).astype(str), type=pa.string())
