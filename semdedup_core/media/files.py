"""Reading an item's payload (an image's bytes) from what the ``path`` column of a results folder holds.

A ``path`` is either a file, or a member of a container file, written as if the container were a folder:

- ``/data/shards/00012.tar/a1b2c3.jpg`` — the member ``a1b2c3.jpg`` of a webdataset (POSIX tar) shard,
  read at its offset without extracting anything;
- ``/data/hf/train/data-00000-of-00002.arrow/image/417`` — row 417 of the ``image`` column of an Arrow
  file that Hugging Face ``datasets`` wrote with ``save_to_disk`` (a struct with ``bytes``, or a path).

The ingest pipeline, the explorer's thumbnails and the report all read payloads through :func:`open_binary`
/ :func:`read_bytes`, so one run's items look the same wherever they are shown. Nothing here writes.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from dataclasses import dataclass
from typing import BinaryIO

CONTAINERS = (".tar", ".arrow")


@dataclass(frozen=True)
class Ref:
    """A resolved ``path``: the file on disk and, for a container, the member inside it."""

    file: str
    member: str | None = None


def resolve(path: str) -> Ref:
    """Split ``path`` into the file that exists and the member inside it (``None`` for a plain file).
    Raises ``FileNotFoundError`` when neither the file nor a container prefix exists."""
    path = os.fspath(path)
    if os.path.isfile(path) or not any(c + "/" in path for c in CONTAINERS):
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        return Ref(path)
    cut = len(path)
    while True:
        cut = path.rfind("/", 0, cut)
        if cut <= 0:
            raise FileNotFoundError(path)
        head = path[:cut]
        if head.endswith(CONTAINERS) and os.path.isfile(head):
            return Ref(head, path[cut + 1 :])


def _stamp(file: str) -> tuple[int, int]:
    st = os.stat(file)
    return st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class TarIndex:
    """Where each member's data lies in a tar file (headers read once; data never extracted)."""

    members: dict[str, tuple[int, int]]  # name -> (offset of the data, size)
    order: tuple[str, ...]  # names in file order
    error: str | None  # why reading stopped early (a truncated or damaged shard), else None


@functools.lru_cache(maxsize=64)
def _tar_index(file: str, stamp: tuple[int, int]) -> TarIndex:
    members: dict[str, tuple[int, int]] = {}
    order: list[str] = []
    error = None
    try:
        with tarfile.open(file, mode="r:") as tf:  # uncompressed tar: seeks over each member's data
            for info in tf:
                if info.isfile():
                    members[info.name] = (info.offset_data, info.size)
                    order.append(info.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # a member whose data runs past the end of the file was cut off
    size = stamp[0]
    for name in list(order):
        off, n = members[name]
        if off + n > size:
            error = error or f"truncated in member {name!r}"
            del members[name]
            order.remove(name)
    return TarIndex(members, tuple(order), error)


def tar_index(file: str) -> TarIndex:
    return _tar_index(os.path.abspath(file), _stamp(file))


@functools.lru_cache(maxsize=8)
def _arrow_table(file: str, stamp: tuple[int, int]):
    import pyarrow as pa

    source = pa.memory_map(file, "r")
    try:
        return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        return pa.ipc.open_file(source).read_all()


def arrow_table(file: str):
    """An Arrow IPC file (stream or file format), memory-mapped: reading it costs no copy."""
    return _arrow_table(os.path.abspath(file), _stamp(file))


def _arrow_member(file: str, member: str) -> bytes:
    column, _, row = member.rpartition("/")
    table = arrow_table(file)
    if column not in table.column_names or not row.isdigit() or int(row) >= table.num_rows:
        raise FileNotFoundError(f"{file}/{member}")
    value = table.column(column)[int(row)].as_py()
    if isinstance(value, dict):  # datasets.Image(): {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            p = value["path"]
            return read_bytes(p if os.path.isabs(p) else os.path.join(os.path.dirname(file), p))
        raise FileNotFoundError(f"{file}/{member}: neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise FileNotFoundError(f"{file}/{member}: not an image value ({type(value).__name__})")


def read_bytes(path: str) -> bytes:
    """The bytes of the file or container member ``path`` names."""
    ref = resolve(path)
    if ref.member is None:
        with open(ref.file, "rb") as f:
            return f.read()
    if ref.file.endswith(".tar"):
        index = tar_index(ref.file)
        if ref.member not in index.members:
            raise FileNotFoundError(path)
        offset, size = index.members[ref.member]
        with open(ref.file, "rb") as f:
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise EOFError(f"{path}: the shard ends inside this member")
        return data
    return _arrow_member(ref.file, ref.member)


def open_binary(path: str) -> BinaryIO:
    """A binary file object for ``path``: the file itself, or an in-memory copy of a container member."""
    ref = resolve(path)
    if ref.member is None:
        return open(ref.file, "rb")  # noqa: SIM115 - the caller closes it
    return io.BytesIO(read_bytes(path))


def stamp(path: str) -> tuple[str, int, int]:
    """What identifies ``path``'s current content cheaply (for caches): the file's (or container's)
    size and modification time, with the member name."""
    ref = resolve(path)
    size, mtime = _stamp(ref.file)
    return ref.member or "", size, mtime
