"""The one owner of the rules about what a folder on disk is (missing, empty, somebody else's, a run in
progress, a finished run) and who may write it: one writer at a time (:meth:`ResultsFolder.lock`).

The ingest pipeline, the demos and the app's jobs ask :class:`ResultsFolder` before they write."""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SemDedupError
from ..media import safe
from . import io
from .names import ERRORS, FORMAT_VERSION, ITEMS, LOCK, RUN, WORK

# what a folder may already hold before a run has written run.json: the scratch space, and the
# errors.parquet that run_input writes before the engine starts
_PRE_RUN = (WORK, ERRORS, LOCK)

# the locks this process holds: (folder, thread) -> [fd, depth]; a holder may take its lock again
# (run_input holds it around dedup, an app job around the CLI)
_HELD: dict[tuple[str, int], list[int]] = {}
_HELD_GUARD = threading.Lock()


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
        """``run.json``, or ``None`` when there is none; raises ``ValueError`` (``FileRefused``) naming the
        reason when it is not a regular file of at most 64 MiB holding a JSON object of the shape the engine
        writes (:func:`check_run`)."""
        try:
            run = io.read_json(self.path / RUN)
        except FileNotFoundError:
            return None
        check_run(run)
        return run

    def state(self) -> FolderState:
        p = self.path
        if not p.exists():
            if any(a.exists() and not a.is_dir() for a in p.parents):  # a/file/sub
                return FolderState.FILE
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
            raise SemDedupError(f"output {str(self.path)!r} is a file (or inside one); pass a folder for --out")
        if state is FolderState.FOREIGN:
            raise SemDedupError(
                f"output folder {str(self.path)!r} exists and is not a semdedup results folder; "
                "choose an empty or new folder"
            )
        if state is FolderState.DAMAGED:
            raise SemDedupError(
                f"results folder {str(self.path)!r} has an unreadable run.json; choose another --out folder"
            )

    def holder(self) -> int | None:
        """The pid of the process writing this folder now, or ``None`` when nobody holds its lock."""
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_pid(fd) or -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def lock(self) -> Iterator[ResultsFolder]:
        """Hold the exclusive write lock of this folder (``DIR/.lock``, ``fcntl.flock``, the holder's pid
        written in it) for the duration of the ``with`` block.

        A second writer fails at once with :class:`SemDedupError` naming the folder and the holder's pid.
        The kernel releases the lock when its process dies, so a killed run never blocks a resume (its
        ``.lock`` file stays, unlocked, until the next writer is done). The folder is checked with
        :meth:`check_writable` first (somebody else's folder is never written) and created when missing;
        a folder this call created and that stays empty is removed again.
        The same thread may take the lock again while it holds it (``run_input`` around ``dedup``)."""
        self.check_writable()
        created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SemDedupError(
                f"cannot create the results folder {str(self.path)!r} ({exc}); choose another"
            ) from None
        key = (os.path.realpath(self.path), threading.get_ident())
        with _HELD_GUARD:
            entry = _HELD.get(key)
            if entry is not None:
                entry[1] += 1
        if entry is not None:
            try:
                yield self
            finally:
                with _HELD_GUARD:
                    entry[1] -= 1
            return
        fd = self._acquire()
        with _HELD_GUARD:
            _HELD[key] = [fd, 1]
        try:
            yield self
        finally:
            with _HELD_GUARD:
                _HELD.pop(key, None)
            # the lock file goes while still held (a writer that opened it meanwhile sees another inode
            # and tries again), and a folder this call created and left empty goes too
            with contextlib.suppress(OSError):
                (self.path / LOCK).unlink()
                if created and not any(self.path.iterdir()):
                    self.path.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire(self) -> int:
        lock = self.path / LOCK
        while True:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise SemDedupError(
                    f"cannot write the lock file {str(lock)!r} ({exc}); choose a folder you may write"
                ) from None
            try:
                _flock_soon(fd)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                who = f"pid {pid}" if pid else "another process"
                raise SemDedupError(
                    f"results folder {str(self.path)!r} is being written by another run ({who}); "
                    "wait for it to finish, or choose another --out folder"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file its last holder removed while we opened it
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                return fd
            os.close(fd)

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
            try:
                self.read_run()
                reason = "it changed while being read"
            except (ValueError, OSError) as exc:
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SemDedupError(
                f"run.json in {str(p)!r} cannot be used ({reason}); the folder is damaged, rerun into a new folder"
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


# the parts of run.json that readers walk into with .get(): each must be an object when present
_RUN_OBJECTS = (
    "params", "counts", "stages", "device", "versions", "items_arrow", "input", "reference_input", "embeddings",
    "first_look", "embed", "comparison", "backend",
)  # fmt: skip
_RUN_STRINGS = ("status", "input_fingerprint", "created", "executor")


def check_run(run: Any) -> None:
    """Raise ``FileRefused`` (a ``ValueError``) naming the first part of ``run`` (``run.json``'s content) that
    is not of the shape the engine writes: an object whose parts listed here are objects or strings (or
    absent / null), ``params.cluster`` and ``params.dedup`` objects, ``counts`` numbers."""
    safe.expect(run, dict, "run.json")
    for key in _RUN_OBJECTS:
        if run.get(key) is not None:
            safe.expect(run[key], dict, f"run.json's {key!r}")
    for key in _RUN_STRINGS:
        if run.get(key) is not None:
            safe.expect(run[key], str, f"run.json's {key!r}")
    for key in ("cluster", "dedup"):
        if (run.get("params") or {}).get(key) is not None:
            safe.expect(run["params"][key], dict, f"run.json's params.{key}")
    for key, value in (run.get("counts") or {}).items():
        if value is not None:
            safe.expect(value, (int, float), f"run.json's counts.{key}")


def _flock_soon(fd: int, tries: int = 4, pause: float = 0.05) -> None:
    """``flock(LOCK_EX | LOCK_NB)``, tried a few times over a moment: a :meth:`ResultsFolder.holder`
    probe holds a shared lock for microseconds and must not turn a writer away. Raises
    ``BlockingIOError`` when the lock stays taken."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(pause)


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None
