"""Opening a file that cannot hurt: the one way the CLI and the app open a results folder's files, the
verdict stores, the review sample, the app's own records and the files named on the command line.
(Images add a pixel limit on top: :mod:`.images`.)

- **Regular files only.** The file is opened with ``O_NONBLOCK`` and its type checked with ``fstat`` on
  the opened descriptor: a FIFO, a device or a socket named ``run.json`` never blocks a read (a FIFO
  without a writer would hang the reader for ever), and nothing swapped in after a check is read.
- **A size limit** per kind of file: a 10 GB ``run.json`` is refused before a byte of it is read.
- **JSON with a bounded depth**: 100,000 nested brackets are a refusal, not a ``RecursionError``; the
  caller checks the shape it expects (:func:`expect`).
- **Never memory-mapped**: a mapped file truncated by another process kills the reader with ``SIGBUS``
  when it touches a page past the new end, and no Python code can catch that. What is read here is
  copied into this process's memory.

Every refusal raises :class:`FileRefused` (a ``ValueError``) with a one-line reason that callers put
into their own message (which names the file and the fix).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

JSON_BYTES = 64 * 2**20
"""The largest JSON file read (``run.json`` of a sharded run with thousands of parts stays far below)."""
SMALL_BYTES = 2**20
"""The app's own small records (job files, the recent-runs list, a map's metadata)."""
TABLE_BYTES = 2**30
"""A verdict store or a review sample (parquet): a million verdicts take a few tens of MB."""


class FileRefused(ValueError):
    """A file that is not read: not a regular file, too large, empty where content is needed, a link out
    of its folder, or JSON nested too deeply."""


def inside(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether ``path``, with every symbolic link resolved, lies under ``root`` (resolved too)."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def kind(mode: int) -> str:
    """What a file that is not regular is, in words (``a FIFO``, ``a folder``…)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a plain file"


def file_problem(
    path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None, allow_empty: bool = False
) -> str | None:
    """Why ``path`` must not be read (without opening it), or ``None``: a symbolic link to a file outside
    ``root``, a broken link, not a regular file (FIFO, device, socket, folder), or (unless
    ``allow_empty``) an empty file."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if root is not None and not inside(path, root):
                return "a symbolic link to a file outside the input folder (not followed)"
            st = os.stat(path)
    except FileNotFoundError:
        return "file not found (or a broken link)"
    except (OSError, ValueError) as exc:
        return f"cannot be read ({type(exc).__name__}: {exc})"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({kind(st.st_mode)})"
    if st.st_size == 0 and not allow_empty:
        return "an empty file (0 bytes)"
    return None


def open_regular(
    path: str | os.PathLike[str],
    *,
    root: str | os.PathLike[str] | None = None,
    max_bytes: int | None = None,
    allow_empty: bool = True,
) -> BinaryIO:
    """Open ``path`` for binary reading, or raise :class:`FileRefused` (``FileNotFoundError`` when there
    is nothing at ``path``). The type and size are checked on the opened descriptor."""
    if root is not None and not inside(path, root):
        raise FileRefused("a symbolic link to a file outside the input folder (not followed)")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileRefused(f"not a regular file ({kind(st.st_mode)})")
        if st.st_size == 0 and not allow_empty:
            raise FileRefused("an empty file (0 bytes)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileRefused(f"{st.st_size:,} bytes, more than the {max_bytes:,} such a file may have")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike[str], *, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path`` (at most ``max_bytes``; see :func:`open_regular`)."""
    with open_regular(path, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the check
        raise FileRefused(f"more than the {max_bytes:,} bytes such a file may have")
    return data


def parse_json(data: bytes | str) -> Any:
    """JSON from ``data``; raises :class:`FileRefused` for text that is not JSON or nests too deeply."""
    try:
        return json.loads(data)
    except RecursionError:
        raise FileRefused("JSON nested too deeply to be a file this tool wrote") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FileRefused(f"not valid JSON ({str(exc).splitlines()[0]})") from None


def read_json(path: str | os.PathLike[str], *, max_bytes: int = JSON_BYTES) -> Any:
    """The JSON document in the regular file ``path`` (see :func:`open_regular` and :func:`parse_json`)."""
    return parse_json(read_bytes(path, max_bytes=max_bytes))


def expect(value: Any, shape: type | tuple[type, ...], what: str) -> Any:
    """``value`` when it is of ``shape`` (a type or types), else raise :class:`FileRefused` naming ``what``."""
    if isinstance(value, bool) and bool not in (shape if isinstance(shape, tuple) else (shape,)):
        raise FileRefused(f"{what} is true/false, not {_names(shape)}")
    if not isinstance(value, shape):
        raise FileRefused(f"{what} is {_json_type(value)}, not {_names(shape)}")
    return value


def _names(shape: type | tuple[type, ...]) -> str:
    words = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"}
    kinds = shape if isinstance(shape, tuple) else (shape,)
    return " or ".join(dict.fromkeys(words.get(k, k.__name__) for k in kinds if k is not type(None)))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(type(value), "a number")


def check_parts(path: str | os.PathLike[str], suffix: str = ".parquet") -> list[Path]:
    """The files of ``path``: the file itself, or the ``*suffix`` files of a folder of parts — each one a
    regular file (raises :class:`FileRefused` naming the first that is not)."""
    p = Path(path)
    parts = sorted(p.glob(f"*{suffix}")) if p.is_dir() else [p]
    for part in parts:
        problem = file_problem(part, allow_empty=True)
        if problem is not None:
            raise FileRefused(f"{part.name}: {problem}")
    return parts


@contextlib.contextmanager
def readable_path(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> Iterator[str]:
    """A path a library may open by name (pyarrow's parquet reader) that leads to the regular file
    ``path`` checked here: on Linux the descriptor opened and checked (``/proc/self/fd/N``), so a FIFO
    swapped in after the check is never opened; elsewhere ``path`` itself after the check."""
    with open_regular(path, max_bytes=max_bytes) as f:
        proc = f"/proc/self/fd/{f.fileno()}"
        yield proc if os.path.exists(proc) else os.fspath(path)
