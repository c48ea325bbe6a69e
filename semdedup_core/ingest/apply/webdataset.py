"""Webdataset shards: new shards holding the kept samples, every member byte-identical, and the removed keys.

A sample is what the webdataset reader makes an item of (:mod:`semdedup_core.ingest.inputs.webdataset`):
the members of one shard sharing a key, the first occurrence of a key with an image member. Each kept
sample is written with all its members, in the input's order; ``shard-000000.tar``, ``shard-000001.tar``,
… hold ``shard_size`` samples each (the last fewer). A member is copied as the bytes it occupies in the
input — its header (with any PAX or GNU long-name header before it), its data and the padding — so its
name, mode, times, owner and data are byte-identical; nothing is decoded or re-encoded. ``removed.txt``
lists the keys of the run's items left out (one per line, in input order).
"""

from __future__ import annotations

import functools
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from ...media import files as media
from ...results.io import bad_id_char
from ..inputs.webdataset import WDS_IMAGE_EXT, _wds_key, wds_shards
from .common import Task, atomic

REMOVED = "removed.txt"
BLOCK = 512
RECORD = 20 * BLOCK  # tar files are written in records of 20 blocks
_EXTENDED = (b"x", b"L", b"K")  # a PAX header, a GNU long name or long link name: part of the next member


def shard_paths(source: dict[str, Any]) -> list[str]:
    """The run's shards: as ``run.json`` lists them (``shards``), else those its ``path`` names."""
    if source.get("shards"):
        return [str(s) for s in source["shards"]]
    return [str(s.resolve()) for s in wds_shards(str(source["path"])) or []]


def _samples(shard: str) -> list[tuple[str, list[str]]]:
    """The samples of one shard: (key, member names in file order), keys in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for name in media.tar_index(shard).order:
        key, _ = _wds_key(name)
        groups.setdefault(key, []).append(name)
    return list(groups.items())


def unit_ids(source: dict[str, Any]) -> list[str | None]:
    """The key of every sample of every shard, in order, as the reader makes ids of them (``None`` for a
    sample without an image member, a repeated key or a key holding a line break)."""
    ids: list[str | None] = []
    seen: set[str] = set()
    for shard in shard_paths(source):
        for key, names in _samples(shard):
            has_image = any(_wds_key(n)[1] in WDS_IMAGE_EXT for n in names)
            if not has_image or key in seen or bad_id_char(key) is not None:
                ids.append(None)
                continue
            seen.add(key)
            ids.append(key)
    return ids


@functools.lru_cache(maxsize=8)
def _spans(shard: str, stamp: tuple[int, int]) -> dict[str, tuple[int, int]]:
    """Where each complete regular member of ``shard`` lies in the file, headers included: name ->
    (start of its first header, end of its padded data). Read from the headers only."""
    index = media.tar_index(shard)
    by_data = {offset: name for name, (offset, _) in index.members.items()}
    spans: dict[str, tuple[int, int]] = {}
    with open(shard, "rb") as f:
        pos, chain = 0, None
        while pos + BLOCK <= stamp[0]:
            f.seek(pos)
            block = f.read(BLOCK)
            if block.count(0) == BLOCK:  # the end of the archive
                break
            try:
                size = tarfile.nti(block[124:136])
            except (tarfile.HeaderError, ValueError):
                break  # damaged: the reader stopped here too
            data = pos + BLOCK
            name = by_data.get(data)
            if name is not None:  # a regular member (a PAX header may hold its real size)
                size = index.members[name][1]
                spans[name] = (pos if chain is None else chain, data + -(-size // BLOCK) * BLOCK)
            chain = (pos if chain is None else chain) if block[156:157] in _EXTENDED else None
            pos = data + -(-size // BLOCK) * BLOCK
    return spans


def write(task: Task) -> None:
    """Write ``shard-NNNNNN.tar`` files of ``shard_size`` kept samples each, then ``removed.txt``."""
    size = int(task.options.get("shard_size") or 10_000)
    shards = shard_paths(task.source)
    counts = [len(_samples(s)) for s in shards]
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    kept = np.flatnonzero(task.keep)
    task.target.mkdir(parents=True, exist_ok=True)
    n_out = max(1, -(-len(kept) // size))
    for j in range(n_out):
        name = f"shard-{j:06d}.tar"
        with task.job.piece(name) as todo:
            if todo:
                units = kept[j * size : (j + 1) * size]
                with atomic(task.target / name) as tmp:
                    _write_shard(tmp, units, shards, starts)
        task.progress("apply", min(len(kept), (j + 1) * size), len(kept))
    with task.job.piece(REMOVED) as todo:
        if todo:
            removed = np.flatnonzero(task.found & ~task.keep)
            with atomic(task.target / REMOVED) as tmp:
                tmp.write_text("".join(f"{task.ids[u]}\n" for u in removed), encoding="utf-8")


def _write_shard(dest: Path, units: np.ndarray, shards: list[str], starts: np.ndarray) -> None:
    """The samples ``units`` (global sample numbers, increasing) into the tar file ``dest``: each member's
    bytes as they lie in its shard, then the end-of-archive blocks."""
    which = np.searchsorted(starts, units, side="right") - 1
    written = 0
    with open(dest, "wb") as out:
        for s in np.unique(which):
            shard = shards[int(s)]
            samples = _samples(shard)
            spans = _spans(os.path.abspath(shard), _stamp(shard))
            with open(shard, "rb") as f:
                for unit in units[which == s]:
                    for name in samples[int(unit - starts[s])][1]:
                        begin, end = spans[name]
                        f.seek(begin)
                        written += _copy(f, out, end - begin)
        tail = 2 * BLOCK + (-(written + 2 * BLOCK)) % RECORD
        out.write(bytes(tail))


def _stamp(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _copy(src: Any, dst: Any, n: int, chunk: int = 1 << 20) -> int:
    left = n
    while left:
        data = src.read(min(chunk, left))
        if not data:
            raise EOFError("the shard ended inside a member it held when it was listed")
        dst.write(data)
        left -= len(data)
    return n
