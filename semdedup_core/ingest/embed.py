"""Embedding items: the encoder run over a part's items, resumably.

Embeddings stream into a memory-mapped array in the part's scratch space (``.work/parts/NNNNN/embed``) in
chunks of ``chunk_size`` items; after each chunk the array is flushed and ``state.json`` records it
(atomically), so a killed run starts again from the last finished chunk. Images are decoded and
preprocessed by ``DataLoader`` worker processes while the main process runs the model under
``torch.inference_mode`` (and float16 autocast on CUDA). Images are opened by
:mod:`semdedup_core.media.images` (regular files only, a pixel limit checked before decoding). An item that
cannot be used (unreadable, truncated, oversize or non-image file, a FIFO, a link out of the image folder,
missing path, empty or huge text, NaN row) is recorded as an error and left out; only a run where nothing
is usable fails. :mod:`.parts` splits an input into parts and :mod:`.raw` runs the whole pipeline."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..media.images import ImageRefused, open_image
from ..results import io
from ..results.folder import ResultsFolder
from ..run.config import _check_device, _check_int
from .inputs import Items

__all__ = ["EmbedConfig", "EmbedState", "embed_items", "open_image"]

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def default_workers(device: str = "cpu") -> int:
    """Image-decoding processes: on CUDA every core but one, up to 32 (a GPU embeds far faster than one
    core decodes, so decoding is what it waits on; the main process feeds it); on CPU the model already
    uses every core, so one worker per four cores (at least one); more compete with it for the cores
    (bench/bench_embed.py on 2 cores: 1 worker 93–96 % of the bare forward pass; 2 workers 94 % when
    the machine is otherwise idle but as low as 58 % when anything else runs)."""
    cores = os.cpu_count() or 1
    if device == "cuda":
        return max(1, min(32, cores - 1))
    return max(1, min(4, cores // 4))


@dataclass(frozen=True)
class EmbedConfig:
    """How raw items become vectors.

    ``encoder``: a name from :func:`semdedup_core.encoders.list_encoders` (``None``: ``efficientnet_lite0``
    for images, ``minilm`` for text); ``pretrained``: the open_clip tag or checkpoint file.
    ``text_column``/``image_column``/``id_column``: what a table holds (image paths are relative to the
    table's folder). ``workers``: image-decoding processes (``None``: one per four cores on CPU, up to 8 on
    CUDA; 0 decodes in the main process). ``chunk_size``: items per checkpoint. Texts longer than ``max_text_chars``
    are recorded as errors (models truncate long texts to their own limit; this stops pathological rows).
    """

    encoder: str | None = None
    pretrained: str | None = None
    text_column: str | None = None
    image_column: str | None = None
    id_column: str | None = None
    batch_size: int = 64
    workers: int | None = None
    device: str = "auto"
    chunk_size: int = 4096
    max_text_chars: int = 100_000

    def __post_init__(self) -> None:
        _check_int("batch_size", self.batch_size, 1)
        if self.workers is not None:
            _check_int("workers", self.workers, 0, 64)
        _check_int("chunk_size", self.chunk_size, 1)
        _check_int("max_text_chars", self.max_text_chars, 1)
        _check_device(self.device)
        for name in ("encoder", "pretrained", "text_column", "image_column", "id_column"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise SemDedupError(f"{name} must be a non-empty string or None, got {value!r}")

    def identity(self) -> dict[str, Any]:
        """The parameters that change the embeddings (not speed settings)."""
        return {
            "encoder": self.encoder,
            "pretrained": self.pretrained,
            "text_column": self.text_column,
            "image_column": self.image_column,
            "id_column": self.id_column,
            "max_text_chars": self.max_text_chars,
        }


# ---------------------------------------------------------------------------------------------------
# decoding


class _ImageDataset:
    """``dataset[i] -> (i, tensor or None, reason or None)``: decoding never raises. ``root``: the image
    folder the paths must stay in (symbolic links out of it are not followed), or ``None`` (tables)."""

    def __init__(self, paths: list[str], preprocess: Callable[[Any], Any], root: str | None = None):
        self.paths = paths
        self.preprocess = preprocess
        self.root = root

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.preprocess(open_image(self.paths[i], root=self.root)), None
        except ImageRefused as exc:
            return i, None, f"unreadable image ({exc})"
        except Exception as exc:  # any decoding problem is that item's error, never the run's
            msg = str(exc).splitlines()[0][:300] if str(exc) else ""
            return i, None, f"unreadable image ({type(exc).__name__}: {msg})"


def _collate(batch: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, list[tuple[int, str]]]:
    import torch

    ok = [(i, t) for i, t, r in batch if r is None]
    bad = [(i, r) for i, _t, r in batch if r is not None]
    tensor = torch.stack([t for _i, t in ok]) if ok else None
    return [i for i, _t in ok], tensor, bad  # type: ignore[misc]


def _worker_init(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)


def _chunk_batches(
    start: int, n: int, chunk: int, batch: int, skip: np.ndarray | None = None
) -> Iterator[tuple[list[int], int]]:
    """``(rows, end)``: batches of rows to embed from ``start`` to ``n`` that never straddle a chunk
    boundary, leaving out the rows where ``skip`` is true (already known). ``end`` is where the batch
    leaves off: the chunk's end for its last batch (an empty one when the whole chunk is skipped)."""
    first = start
    while first < n:
        stop = min(n, (first // chunk + 1) * chunk)
        rows = [i for i in range(first, stop) if skip is None or not skip[i]]
        if not rows:
            yield [], stop
        for b in range(0, len(rows), batch):
            part = rows[b : b + batch]
            yield part, (stop if b + batch >= len(rows) else part[-1] + 1)
        first = stop


class _ChunkBatchSampler:
    """:func:`_chunk_batches`' rows as a re-iterable batch sampler (generated lazily: no list of all batches)."""

    def __init__(self, start: int, n: int, chunk: int, batch: int, skip: np.ndarray | None = None):
        self.args = (start, n, chunk, batch, skip)

    def __iter__(self) -> Iterator[list[int]]:
        return (rows for rows, _end in _chunk_batches(*self.args))

    def __len__(self) -> int:
        return sum(1 for _ in _chunk_batches(*self.args))


# ---------------------------------------------------------------------------------------------------
# the resumable embedding stage


class EmbedState:
    """``DIR/.work/embed``: the memory-mapped raw array and ``state.json`` of finished chunks."""

    def __init__(self, folder: Path, identity: dict[str, Any], n: int, chunk_size: int):
        self.folder = folder
        self.path = folder / "state.json"
        self.raw_path = folder / "raw.npy"
        self.meta: dict[str, Any]
        if self.path.exists():
            meta = io.read_json(self.path)
            if meta.get("identity") != identity or meta.get("n") != n:
                raise SemDedupError(
                    f"results folder {str(folder.parent.parent)!r} holds an unfinished run with another input or "
                    "encoder; choose another --out folder (or delete that folder yourself)"
                )
            self.meta = meta
        else:
            self.meta = {
                "identity": identity,
                "n": n,
                "chunk_size": chunk_size,
                "dim": None,
                "done_chunks": 0,
                "errors": [],
            }
        self.raw: np.ndarray | None = None
        if self.meta["dim"] is not None and self.raw_path.exists():
            self.raw = np.load(self.raw_path, mmap_mode="r+")
        elif self.meta["done_chunks"]:
            self.meta.update(done_chunks=0, errors=[], dim=None)  # the array is gone: start over

    @property
    def chunk_size(self) -> int:
        return int(self.meta["chunk_size"])

    @property
    def start(self) -> int:
        return min(self.meta["n"], self.meta["done_chunks"] * self.chunk_size)

    def ensure(self, dim: int) -> np.ndarray:
        if self.raw is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            with io.atomic_path(self.raw_path) as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.meta["n"], dim)).flush()
            self.raw = np.load(self.raw_path, mmap_mode="r+")
            self.meta["dim"] = dim
        elif self.raw.shape[1] != dim:
            raise SemDedupError(f"the encoder gave {dim}-d vectors but this run started with {self.raw.shape[1]}-d")
        return self.raw

    def commit_chunk(self, errors: list[dict[str, Any]]) -> None:
        if self.raw is not None:
            self.raw.flush()
        self.meta["errors"].extend(errors)
        self.meta["done_chunks"] += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        io.write_json(self.path, self.meta)


def embed_items(
    items: Items,
    encoder: Any,
    state: EmbedState,
    *,
    batch_size: int,
    workers: int,
    device: str,
    progress: Progress,
    known: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Fill ``state``'s array with the embeddings of ``items``, chunk by chunk, from the first unfinished one.

    ``known``: ``(rows, vectors)`` already embedded elsewhere (see :func:`reusable_embeddings`); they are
    written as they are and not embedded again."""
    n = len(items)
    chunk = state.chunk_size
    start = state.start
    progress("embed", start, n)
    if start >= n:
        return
    skip = None
    if known is not None and len(known[0]) and items.kind != "shards":
        rows, vecs = known
        raw = state.ensure(vecs.shape[1])
        later = rows >= start
        raw[rows[later]] = vecs[later]
        skip = np.zeros(n, dtype=bool)
        skip[rows] = True
    pending: list[dict[str, Any]] = []
    done = start

    def record(i: int, reason: str) -> None:
        path = items.paths[i] if items.paths is not None else None
        pending.append({"id": items.ids[i], "path": path, "reason": reason})

    def after(batch_end: int) -> None:
        nonlocal pending, done
        done = batch_end
        if done % chunk == 0 or done == n:
            state.commit_chunk(pending)
            pending = []
        progress("embed", done, n)

    if items.kind == "shards":
        _copy_shards(items, state, record, after)
    elif items.modality == "image":
        _embed_images(items, encoder, state, start, batch_size, workers, device, record, after, skip)
    else:
        _embed_texts(items, encoder, state, start, batch_size, record, after, lambda d: progress("embed", d, n), skip)


def _embed_images(items, encoder, state, start, batch_size, workers, device, record, after, skip=None) -> None:
    import torch

    n = len(items)
    root = items.source.get("path") if items.kind == "folder" else None
    dataset = _ImageDataset(items.paths, encoder.preprocess, root)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_ChunkBatchSampler(start, n, state.chunk_size, batch_size, skip),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
    )
    iter_loader = iter(loader)
    for _rows, end in _chunk_batches(start, n, state.chunk_size, batch_size, skip):
        ok, tensor, bad = next(iter_loader)
        for i, reason in bad:
            record(i, reason)
        if ok:
            vecs = encoder.encode(tensor)
            raw = state.ensure(vecs.shape[1])
            _store(raw, ok, vecs, record)
        after(end)


def _store(raw: np.ndarray, rows: list[int], vecs: np.ndarray, record: Callable[[int, str], None]) -> None:
    """Write ``vecs`` into ``raw``; a row that is not finite or is all zero becomes an error (zero row)."""
    bad = ~np.isfinite(vecs).all(axis=1) | ~(np.abs(vecs) > 0).any(axis=1)
    if bad.any():
        vecs = vecs.copy()
        vecs[bad] = 0
        for j in np.flatnonzero(bad):
            record(rows[j], "embedding is NaN, infinite or all zero")
    lo, hi = rows[0], rows[-1] + 1
    if hi - lo == len(rows):
        raw[lo:hi] = vecs
    else:
        raw[np.asarray(rows)] = vecs


def _embed_texts(items, encoder, state, start, batch_size, record, after, tick, skip=None) -> None:
    n = len(items)
    texts = items.texts
    for chunk_start in range(start, n, state.chunk_size):
        chunk_end = min(n, chunk_start + state.chunk_size)
        # longest first within a chunk: batches of similar length pad least
        todo = [i for i in range(chunk_start, chunk_end) if skip is None or not skip[i]]
        order = sorted(todo, key=lambda i: -len(texts[i]))
        for b in range(0, len(order), batch_size):
            rows = sorted(order[b : b + batch_size])
            try:
                vecs = encoder.encode([texts[i] for i in rows])
            except SemDedupError:
                raise
            except Exception:  # find the culprit(s): one at a time
                vecs_list, good = [], []
                for i in rows:
                    try:
                        vecs_list.append(encoder.encode([texts[i]])[0])
                        good.append(i)
                    except Exception as exc:
                        record(i, f"text could not be encoded ({type(exc).__name__}: {str(exc)[:200]})")
                if not good:
                    continue
                rows, vecs = good, np.stack(vecs_list)
            raw = state.ensure(vecs.shape[1])
            _store(raw, rows, vecs, record)
            if b + batch_size < len(order):
                tick(chunk_start + b + batch_size)
        after(chunk_end)


def _copy_shards(items, state, record, after) -> None:
    """Copy precomputed shard rows into the array, one memory-mapped shard at a time."""
    pos = 0
    start = state.start
    for path, rows in items.shards:
        count = len(rows)
        if pos + count <= start:
            pos += count
            continue
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
        raw = state.ensure(arr.shape[1])
        for a in range(max(0, start - pos), count, 8192):
            b = min(count, a + 8192, ((pos + a) // state.chunk_size + 1) * state.chunk_size - pos)
            vecs = np.asarray(arr[rows[a:b]], dtype=np.float32)
            _store(raw, list(range(pos + a, pos + b)), vecs, record)
            after(pos + b)
        pos += count


# ---------------------------------------------------------------------------------------------------
# reusing the embeddings of an earlier run


def reusable_embeddings(
    folder: str | os.PathLike[str], items: Items, encoder_params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray] | None:
    """``(rows, vectors)``: the items of ``items`` that the finished results folder ``folder`` already
    embedded with the same encoder — the same id *and* the same text (or image path) — with their
    vectors from its ``embeddings.npy``. ``None`` when the folder is not finished, used another encoder
    or shares no item. (Its vectors are unit length; every run normalises its rows anyway.)"""
    import pandas as pd

    from ..results.names import EMBEDDINGS, ITEMS

    rf = ResultsFolder(folder)
    if items.kind == "shards" or not rf.is_complete():
        return None
    meta = rf.read_run() or {}
    if meta.get("embed", {}).get("encoder") != encoder_params:
        log.info("not reusing %s: it was embedded with another encoder", folder)
        return None
    column = "path" if items.modality == "image" else "text"
    content = items.paths if items.modality == "image" else items.texts
    try:
        old = pd.read_parquet(rf.file(ITEMS), columns=["id", column])
    except (KeyError, ValueError, OSError):
        return None
    where = {(i, c): r for r, (i, c) in enumerate(zip(old["id"], old[column], strict=True))}
    pairs = [(row, where.get((item_id, content[row]))) for row, item_id in enumerate(items.ids)]
    pairs = [(row, old_row) for row, old_row in pairs if old_row is not None]
    if not pairs:
        return None
    rows, old_rows = (np.array(v, dtype=np.int64) for v in zip(*pairs, strict=True))
    vecs = np.asarray(np.load(rf.file(EMBEDDINGS), mmap_mode="r")[np.sort(old_rows)], dtype=np.float32)
    vecs = vecs[np.argsort(np.argsort(old_rows))]  # back into the order of rows
    return rows, vecs


# ---------------------------------------------------------------------------------------------------
# the whole run
