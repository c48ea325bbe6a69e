"""A cheap content identity of a raw input: every file its reader reads, with its size and modification time.

``run_input`` records it in ``run.json`` (``input.fingerprint``); ``apply`` computes it again and refuses
to write the kept part of an input that has changed since the run. Only listings and ``stat`` are used:
nothing is opened or decoded but a Hugging Face folder's ``state.json`` (which names its Arrow files).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ...errors import SemDedupError
from .folder import list_images
from .hf import is_hf_dataset
from .webdataset import wds_shards


def input_fingerprint(path: str | os.PathLike[str]) -> str:
    """The fingerprint of the raw input ``path`` (an image folder, a table, webdataset shards — a folder,
    one shard or a brace pattern —, a Hugging Face ``save_to_disk`` folder, or embedding shards): a hash
    of ``kind``, then of each file the reader reads, in its order, as (resolved path, size, mtime_ns)."""
    kind, files = input_files(str(path))
    return files_fingerprint(kind, files)


def source_fingerprint(source: dict[str, Any]) -> str:
    """The fingerprint of the input a run recorded (``run.json``'s ``input``), computed now: webdataset
    runs record their shards (``shards``), the other kinds their ``path``."""
    if source.get("kind") == "webdataset" and source.get("shards"):
        return files_fingerprint("webdataset", [Path(s) for s in source["shards"]])
    return input_fingerprint(source["path"])


def files_fingerprint(kind: str, files: Iterable[Path]) -> str:
    """blake2b over ``kind`` and each file's resolved path, size and ``st_mtime_ns``; a missing file
    counts as ``missing`` (so an input that lost a file differs)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{kind}\n".encode())
    for f in files:
        name = os.path.realpath(f)
        try:
            st = os.stat(name)
            h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
        except OSError:
            h.update(f"{name}|missing\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def input_files(path: str) -> tuple[str, list[Path]]:
    """The input's kind (as the readers name it) and the files its reader reads, from listings only."""
    shards = wds_shards(path)
    if shards is not None:
        return "webdataset", [s.resolve() for s in shards]
    p = Path(path)
    if p.is_dir() and is_hf_dataset(p):
        return "hf", _hf_files(p)
    if p.is_dir() and ((p / "img_emb").is_dir() or (p / "text_emb").is_dir()):
        return "shards", _embedding_files(p)
    if p.is_dir():
        return "folder", list_images(p)[0]
    if p.is_file():
        return "table", [p.resolve()]
    raise SemDedupError(f"input {path!r} does not exist; it cannot be fingerprinted")


def _hf_files(folder: Path) -> list[Path]:
    try:
        state = json.loads((folder / "state.json").read_text())
        data = [folder / f["filename"] for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError, OSError):
        data = []
    return [folder / "state.json", folder / "dataset_info.json", *data]


def _embedding_files(folder: Path) -> list[Path]:
    out = []
    for kind in ("img_emb", "text_emb"):
        out += sorted((folder / kind).glob(f"{kind}_*.npy"))
    return out + sorted((folder / "metadata").glob("metadata_*.parquet"))
