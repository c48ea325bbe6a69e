"""Webdataset shards: new shards holding the kept samples, every member byte-identical, and the removed keys.

A sample is what the webdataset reader makes an item of (:mod:`semdedup_core.ingest.inputs.webdataset`):
the members of one shard sharing a key, the first occurrence of a key with an image member. Each kept
sample is written with all its members, in the input's order, with their names, modes, times and
owners; ``shard-000000.tar``, ``shard-000001.tar``, … hold ``shard_size`` samples each (the last fewer).
``removed.txt`` lists the keys of the run's items left out (one per line, in input order).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from ...media import files as media
from ...results import io
from ...results.io import bad_id_char
from ..inputs.webdataset import WDS_IMAGE_EXT, _wds_key
from .common import Task

REMOVED = "removed.txt"


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
    for shard in source["shards"]:
        for key, names in _samples(shard):
            has_image = any(_wds_key(n)[1] in WDS_IMAGE_EXT for n in names)
            if not has_image or key in seen or bad_id_char(key) is not None:
                ids.append(None)
                continue
            seen.add(key)
            ids.append(key)
    return ids


def _headers(shard: str) -> dict[str, tarfile.TarInfo]:
    """Each regular member's header (its data is not read); a damaged shard gives those before the damage."""
    out: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(shard, mode="r:") as tf:
            for info in tf:
                if info.isfile():
                    out.setdefault(info.name, info)
    except (tarfile.TarError, OSError, EOFError):
        pass
    return out


def write(task: Task) -> None:
    """Write ``shard-NNNNNN.tar`` files of ``shard_size`` kept samples each, then ``removed.txt``."""
    size = int(task.options.get("shard_size") or 10_000)
    shards = list(task.source["shards"])
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
                with io.atomic_path(task.target / name) as tmp:
                    _write_shard(tmp, units, shards, starts)
        task.progress("apply", min(len(kept), (j + 1) * size), len(kept))
    with task.job.piece(REMOVED) as todo:
        if todo:
            removed = np.flatnonzero(task.found & ~task.keep)
            with io.atomic_path(task.target / REMOVED) as tmp:
                tmp.write_text("".join(f"{task.ids[u]}\n" for u in removed), encoding="utf-8")


def _write_shard(dest: Path, units: np.ndarray, shards: list[str], starts: np.ndarray) -> None:
    """The samples ``units`` (global sample numbers, increasing) into the tar file ``dest``."""
    which = np.searchsorted(starts, units, side="right") - 1
    with tarfile.open(dest, mode="w") as out:
        for s in np.unique(which):
            shard = shards[int(s)]
            samples = _samples(shard)
            index = media.tar_index(shard)
            headers = _headers(shard)
            with open(shard, "rb") as f:
                for unit in units[which == s]:
                    for name in samples[int(unit - starts[s])][1]:
                        offset, size = index.members[name]
                        info = _copy_header(headers.get(name), name, size)
                        f.seek(offset)
                        out.addfile(info, f)


def _copy_header(src: tarfile.TarInfo | None, name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    if src is not None:
        info.mode, info.mtime = src.mode, src.mtime
        info.uid, info.gid, info.uname, info.gname = src.uid, src.gid, src.uname, src.gname
    return info
