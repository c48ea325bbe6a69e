"""From raw data to a results folder: find the items, embed them, run the SemDeDup engine.

Embeddings stream into a memory-mapped array in the results folder's scratch space (``DIR/.work/embed``)
in chunks of ``chunk_size`` items; after each chunk the array is flushed and ``state.json`` records it
(atomically), so a killed run starts again from the last finished chunk. Images are decoded and
preprocessed by ``DataLoader`` worker processes while the main process runs the model under
``torch.inference_mode`` (and float16 autocast on CUDA). An item that cannot be used (unreadable,
truncated or non-image file, missing path, empty or huge text, duplicate id, NaN row) is recorded in
``errors.parquet`` and left out; only a run where nothing is usable fails.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine import io
from ..engine.config import ClusterConfig, DedupConfig, _check_device, _check_int
from ..engine.device import resolve_device
from ..engine.schema import ERRORS, WORK, ResultsFolder
from ..errors import SemDedupError
from .encoders import get_encoder
from .inputs import Items, load_input

if TYPE_CHECKING:
    from ..engine.results import Results

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def default_workers(device: str = "cpu") -> int:
    """Image-decoding processes: on CUDA up to 8 (the GPU waits on decoding); on CPU the model already
    uses every core, so one worker per four cores (at least one); more compete with it for the cores
    (bench/bench_embed.py on 2 cores: 1 worker 93–96 % of the bare forward pass; 2 workers 94 % when
    the machine is otherwise idle but as low as 58 % when anything else runs)."""
    cores = os.cpu_count() or 1
    if device == "cuda":
        return max(1, min(8, cores))
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


def open_image(path: str) -> Any:
    """Decode an image fully to RGB (first frame of an animation or multi-page file). ``path`` is a file
    or a container member (see :mod:`semdedup_core.engine.media`).

    Truncated files raise (``LOAD_TRUNCATED_IMAGES`` stays off); transparency is composited on white.
    """
    from PIL import Image

    from ..engine import media

    with media.open_binary(path) as f, Image.open(f) as im:
        im.seek(0)
        im.draft("RGB", (448, 448))  # JPEG: decode at a reduced scale when far larger than needed
        im.load()
        if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(im, dtype=np.float32)
            lo, hi = float(arr.min()), float(arr.max())
            arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
            return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        return im.convert("RGB")


class _ImageDataset:
    """``dataset[i] -> (i, tensor or None, reason or None)``: decoding never raises."""

    def __init__(self, paths: list[str], preprocess: Callable[[Any], Any]):
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.preprocess(open_image(self.paths[i])), None
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


def _chunk_batches(start: int, n: int, chunk: int, batch: int) -> Iterator[list[int]]:
    """Index batches from ``start`` to ``n`` that never straddle a chunk boundary."""
    i = start
    while i < n:
        end = min(n, (i // chunk + 1) * chunk, i + batch)
        yield list(range(i, end))
        i = end


class _ChunkBatchSampler:
    """:func:`_chunk_batches` as a re-iterable batch sampler (generated lazily: no list of all batches)."""

    def __init__(self, start: int, n: int, chunk: int, batch: int):
        self.args = (start, n, chunk, batch)

    def __iter__(self) -> Iterator[list[int]]:
        return _chunk_batches(*self.args)

    def __len__(self) -> int:
        return sum(1 for _ in _chunk_batches(*self.args))


# ---------------------------------------------------------------------------------------------------
# the resumable embedding stage


class _EmbedState:
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
    state: _EmbedState,
    *,
    batch_size: int,
    workers: int,
    device: str,
    progress: Progress,
) -> None:
    """Fill ``state``'s array with the embeddings of ``items``, chunk by chunk, from the first unfinished one."""
    n = len(items)
    chunk = state.chunk_size
    start = state.start
    progress("embed", start, n)
    if start >= n:
        return
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
        _embed_images(items, encoder, state, start, batch_size, workers, device, record, after)
    else:
        _embed_texts(items, encoder, state, start, batch_size, record, after, lambda done: progress("embed", done, n))


def _embed_images(items, encoder, state, start, batch_size, workers, device, record, after) -> None:
    import torch

    n = len(items)
    dataset = _ImageDataset(items.paths, encoder.preprocess)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_ChunkBatchSampler(start, n, state.chunk_size, batch_size),
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=device == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
    )
    iter_loader = iter(loader)
    for batch_idx in _chunk_batches(start, n, state.chunk_size, batch_size):
        ok, tensor, bad = next(iter_loader)
        for i, reason in bad:
            record(i, reason)
        if ok:
            vecs = encoder.encode(tensor)
            raw = state.ensure(vecs.shape[1])
            _store(raw, ok, vecs, record)
        after(batch_idx[-1] + 1)


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


def _embed_texts(items, encoder, state, start, batch_size, record, after, tick) -> None:
    n = len(items)
    texts = items.texts
    for chunk_start in range(start, n, state.chunk_size):
        chunk_end = min(n, chunk_start + state.chunk_size)
        # longest first within a chunk: batches of similar length pad least
        order = sorted(range(chunk_start, chunk_end), key=lambda i: -len(texts[i]))
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
# the whole run


def write_errors(path: Path, errors: list[dict[str, Any]]) -> None:
    """``errors.parquet``: one row per item left out, with ``id``, ``path`` and ``reason`` (maybe empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array([e.get("id") for e in errors], pa.string()),
            "path": pa.array([e.get("path") for e in errors], pa.string()),
            "reason": pa.array([e.get("reason") for e in errors], pa.string()),
        }
    )
    with io.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def run_input(
    input_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    embed: EmbedConfig | None = None,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    progress: Progress | None = None,
) -> Results:
    """Embed the items of ``input_path`` (image folder, table or embedding shards) and deduplicate them.

    Writes the results folder ``out`` (the same contract as :func:`semdedup_core.dedup`, plus
    ``errors.parquet``); ``run.json`` records the input, the encoder and its parameters under
    ``embed``, and ``counts.errors``. Running again with the same arguments resumes (embedding from
    its last finished chunk) or returns the finished results.
    """
    from ..engine.pipeline import dedup, engine_params
    from ..engine.results import Results

    embed = embed or EmbedConfig()
    config = config or DedupConfig()
    progress = progress or (lambda stage, done, total: None)
    out = Path(out)
    t0 = time.perf_counter()
    items = load_input(
        input_path,
        text_column=embed.text_column,
        image_column=embed.image_column,
        id_column=embed.id_column,
        max_text_chars=embed.max_text_chars,
    )
    device = resolve_device(embed.device)
    if items.kind == "shards":
        if embed.encoder is not None or embed.pretrained is not None:
            raise SemDedupError("--encoder/--pretrained do not apply to precomputed embedding shards; drop them")
        encoder = None
        enc_params: dict[str, Any] = {"name": "precomputed", "source": items.source.get("embeddings")}
    else:
        encoder = get_encoder(embed.encoder, modality=items.modality, pretrained=embed.pretrained, device=device)
        enc_params = encoder.params()
    identity = {**embed.identity(), "encoder": enc_params, "input": items.source, "fingerprint": items.fingerprint()}

    folder = ResultsFolder(out)
    folder.check_writable()
    if folder.is_complete():
        meta = folder.finished_run()
        if meta.get("embed", {}).get("identity") != identity or meta.get("params") != engine_params(cluster, config):
            raise SemDedupError(
                f"results folder {str(out)!r} holds a run with another input, encoder or parameters; "
                "choose another --out folder (or delete that folder yourself)"
            )
        return Results.load(out)

    state = _EmbedState(out / WORK / "embed", identity, len(items), embed.chunk_size)
    workers = default_workers(device) if embed.workers is None else embed.workers
    if len(items):
        embed_items(
            items,
            encoder,
            state,
            batch_size=embed.batch_size,
            workers=min(workers, max(0, len(items) // embed.batch_size)) if workers else 0,
            device=device,
            progress=progress,
        )
    embed_seconds = time.perf_counter() - t0
    errors = items.errors + state.meta["errors"]
    failed = {e["id"] for e in state.meta["errors"]}
    ok = np.array([i for i, item_id in enumerate(items.ids) if item_id not in failed], dtype=np.int64)
    out.mkdir(parents=True, exist_ok=True)
    write_errors(out / ERRORS, errors)
    if len(ok) == 0:
        reasons = sorted({e["reason"].split(" (")[0] for e in errors})[:3]
        raise SemDedupError(
            f"nothing usable in {str(input_path)!r}: all {items.n_input} items failed ({'; '.join(reasons)}); "
            f"see {str(out / ERRORS)!r}"
        )
    raw = state.raw
    assert raw is not None
    x = raw if len(ok) == len(items) else raw[ok]
    ids = np.asarray(items.ids, dtype=object)[ok]
    columns = items.columns.iloc[ok].reset_index(drop=True)
    extra = {
        "input": items.source,
        "embed": {
            "identity": identity,
            "encoder": enc_params,
            "batch_size": embed.batch_size,
            "workers": workers,
            "device": device,
            "seconds": round(embed_seconds, 4),
        },
        "counts": {"input_items": items.n_input, "errors": len(errors), "skipped": items.skipped},
        "stages": {"embed": {"done": True, "seconds": round(embed_seconds, 4)}},
    }
    log.info("embedded %d items (%d errors) in %.1fs", len(ok), len(errors), embed_seconds)
    return dedup(x, ids, cluster=cluster, config=config, out=out, progress=progress, columns=columns, extra=extra)
