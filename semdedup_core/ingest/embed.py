"""From raw data to a results folder: find the items, embed them, run the SemDeDup engine.

Embeddings stream into a memory-mapped array in the results folder's scratch space (``DIR/.work/embed``)
in chunks of ``chunk_size`` items; after each chunk the array is flushed and ``state.json`` records it
(atomically), so a killed run starts again from the last finished chunk. Images are decoded and
preprocessed by ``DataLoader`` worker processes while the main process runs the model under
``torch.inference_mode`` (and float16 autocast on CUDA). Images are opened by
:mod:`semdedup_core.media.images` (regular files only, a pixel limit checked before decoding). An item
that cannot be used (unreadable, truncated, oversize or non-image file, a FIFO, a link out of the image
folder, missing path, empty or huge text, duplicate id, NaN row) is recorded in ``errors.parquet`` and
left out; only a run where nothing is usable fails.
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

from ..errors import SemDedupError
from ..kernels.device import resolve_device
from ..media.images import ImageRefused, open_image
from ..results import io
from ..results.folder import ResultsFolder
from ..results.names import ERRORS, REFERENCE_CARRIED, WORK
from ..run.config import ClusterConfig, DedupConfig, ReferenceConfig, _check_device, _check_int
from .encoders import get_encoder
from .inputs import Items, input_fingerprint, load_input

__all__ = ["EmbedConfig", "open_image", "run_input"]

if TYPE_CHECKING:
    from ..results.results import Results

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


def reference_items(reference: str | os.PathLike[str], items: Items, embed: EmbedConfig) -> Items | None:
    """The items of a reference (held-out) set for a run over ``items``: raw data of the same kind,
    read with the same column options, to be embedded with the run's encoder — or ``None`` for an
    ``.npy`` file of reference embeddings, which only a run over precomputed embeddings may use.
    Raises :class:`SemDedupError` when the two sides would not come from the same encoder."""
    p = Path(reference)
    if p.suffix.lower() == ".npy":
        if items.kind != "shards":
            raise SemDedupError(
                f"--reference {str(p)!r} holds embeddings from an unknown encoder, but this run embeds its input "
                f"with {embed.encoder or 'the default ' + items.modality + ' encoder'}; pass the held-out raw data "
                "(a folder or table like --input) so that both sides are embedded by the same encoder"
            )
        return None
    try:
        ref = load_input(
            p,
            text_column=embed.text_column,
            image_column=embed.image_column,
            id_column=embed.id_column,
            max_text_chars=embed.max_text_chars,
        )
    except SemDedupError as exc:
        raise SemDedupError(f"reference set: {exc}") from None
    if (ref.kind == "shards") != (items.kind == "shards"):
        what = "precomputed embeddings" if ref.kind == "shards" else "raw data"
        run = "precomputed embeddings" if items.kind == "shards" else "raw data embedded by the run's encoder"
        raise SemDedupError(
            f"--reference {str(p)!r} is {what} but the run's input is {run}: the two would come from different "
            "encoders; pass a reference of the same kind as --input"
        )
    if ref.kind == "shards" and ref.source.get("embeddings") != items.source.get("embeddings"):
        raise SemDedupError(
            f"--reference {str(p)!r} holds {ref.source.get('embeddings')} shards but the input holds "
            f"{items.source.get('embeddings')}; compare embeddings of one model and modality"
        )
    if ref.modality != items.modality:
        raise SemDedupError(
            f"--reference {str(p)!r} holds {ref.modality} items but the run embeds {items.modality} items; "
            "pass a held-out set of the same kind as --input"
        )
    return ref


def run_input(
    input_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    embed: EmbedConfig | None = None,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    progress: Progress | None = None,
    reuse: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
    reference: str | os.PathLike[str] | None = None,
    reference_ids: Any = None,
    reference_config: ReferenceConfig | None = None,
) -> Results:
    """Embed the items of ``input_path`` (image folder, table or embedding shards) and deduplicate them.

    Writes the results folder ``out`` (the same contract as :func:`semdedup_core.dedup`, plus
    ``errors.parquet``); ``run.json`` records the input, the encoder and its parameters under
    ``embed``, and ``counts.errors``. Running again with the same arguments resumes (embedding from
    its last finished chunk) or returns the finished results. ``reuse``: a finished results folder made
    with the same encoder; its items (same id and text or image path) are not embedded again but
    taken from it (:func:`reusable_embeddings`; ``run.json`` counts them as ``embed.reused``).
    ``extra``: more facts for ``run.json``.

    ``reference``: a held-out set to look for leaks of (see :func:`semdedup_core.dedup`): raw data of
    the same kind as the input, read with the same column options and embedded with the same encoder
    (its unusable items are listed in ``errors.parquet`` with a reason starting ``reference set:``), or,
    for a run over precomputed embedding shards, shards of the same kind or an ``.npy`` file with
    ``reference_ids``. ``reference_config``: the reference search (probe count or exact).
    """
    from ..results.results import Results
    from ..run.pipeline import dedup, engine_params, params_match

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
    if 0 < len(items) < cluster.n_clusters:  # before any embedding: the count is known from the listing
        raise SemDedupError(
            f"n_clusters must be between 1 and the number of usable items ({len(items)} of {items.n_input} in "
            f"{str(input_path)!r}), got {cluster.n_clusters}; pass a smaller --clusters"
        )
    ref_items = None
    if reference is not None:
        reference_config = reference_config or ReferenceConfig()
        ref_items = reference_items(reference, items, embed)
        if ref_items is not None and reference_ids is not None:
            raise SemDedupError("--reference-ids applies to a reference .npy file; raw reference data has its own ids")
    elif reference_ids is not None or reference_config is not None:
        raise SemDedupError("--reference-ids and --reference-probe/--exact-reference need --reference HELD_OUT")
    # one writer per folder, from before the model loads to the end (dedup takes the lock again)
    with ResultsFolder(out).lock() as folder:
        device = resolve_device(embed.device)
        if items.kind == "shards":
            if embed.encoder is not None or embed.pretrained is not None:
                raise SemDedupError("--encoder/--pretrained do not apply to precomputed embedding shards; drop them")
            encoder = None
            enc_params: dict[str, Any] = {"name": "precomputed", "source": items.source.get("embeddings")}
        else:
            encoder = get_encoder(embed.encoder, modality=items.modality, pretrained=embed.pretrained, device=device)
            enc_params = encoder.params()
        identity = {
            **embed.identity(),
            "encoder": enc_params,
            "input": items.source,
            "fingerprint": items.fingerprint(),
        }
        ref_identity = None
        if reference is not None:
            ref_identity = (
                {"npy": str(Path(reference).resolve())}
                if ref_items is None
                else {
                    **embed.identity(),
                    "encoder": enc_params,
                    "input": ref_items.source,
                    "fingerprint": ref_items.fingerprint(),
                }
            )

        if folder.is_complete():
            meta = folder.finished_run()
            same = (
                meta.get("embed", {}).get("identity") == identity
                and meta.get("embed", {}).get("reference_identity") == ref_identity
                and params_match(
                    meta.get("params"),
                    engine_params(cluster, config, reference_config if reference is not None else None),
                )
            )
            if not same:
                raise SemDedupError(
                    f"results folder {str(out)!r} holds a run with another input, encoder or parameters; "
                    "choose another --out folder (or delete that folder yourself)"
                )
            return Results.load(out)

        workers = default_workers(device) if embed.workers is None else embed.workers
        known = reusable_embeddings(reuse, items, enc_params) if reuse is not None else None
        x, ids, columns, errors = _embed_side(
            items, encoder, out / WORK / "embed", identity, embed, workers, device, progress, known
        )
        if x is None:
            _nothing_usable(out, input_path, items.n_input, errors, "")
        ref_x, ref_ids, ref_columns = reference, reference_ids, None
        if ref_items is not None:

            def ref_progress(stage: str, done: int, total: int) -> None:
                progress("embed ref", done, total)

            ref_x, ref_ids, ref_columns, ref_errors = _embed_side(
                ref_items, encoder, out / WORK / "embed-reference", ref_identity, embed, workers, device, ref_progress
            )
            errors += [{**e, "reason": f"{_REF_ERROR}{e['reason']}"} for e in ref_errors]
            if ref_x is None:
                _nothing_usable(out, reference, ref_items.n_input, errors, _REF_ERROR)
            ref_columns = ref_columns[[c for c in REFERENCE_CARRIED if c in ref_columns.columns]]
        embed_seconds = time.perf_counter() - t0
        out.mkdir(parents=True, exist_ok=True)
        write_errors(out / ERRORS, errors)
        runtime = encoder.runtime() if encoder is not None else {"backend": "precomputed"}
        facts = {
            "input": {**items.source, "fingerprint": input_fingerprint(input_path)},
            "embed": {
                "identity": identity,
                "reference_identity": ref_identity,
                "encoder": enc_params,
                "batch_size": embed.batch_size,
                "workers": workers,
                "device": device,
                **runtime,
                "reused": 0 if known is None else len(known[0]),
                "reused_from": None if known is None else str(Path(reuse).resolve()),  # type: ignore[arg-type]
                "seconds": round(embed_seconds, 4),
            },
            "counts": {"input_items": items.n_input, "errors": len(errors), "skipped": items.skipped},
            "stages": {"embed": {"done": True, "seconds": round(embed_seconds, 4), "backend": runtime["backend"]}},
        }
        if ref_items is not None:
            facts["counts"]["reference_input_items"] = ref_items.n_input
            facts["reference_input"] = ref_items.source
        facts.update(extra or {})
        log.info("embedded %d items (%d errors) in %.1fs", len(ids), len(errors), embed_seconds)
        return dedup(
            x,
            ids,
            cluster=cluster,
            config=config,
            out=out,
            progress=progress,
            columns=columns,
            extra=facts,
            reference=ref_x,
            reference_ids=ref_ids,
            reference_columns=ref_columns,
            reference_config=reference_config if reference is not None else None,
        )


_REF_ERROR = "reference set: "  # how errors.parquet marks the reference set's unusable items


def _nothing_usable(out: Path, src: Any, n_input: int, errors: list[dict[str, Any]], prefix: str) -> None:
    """Write ``errors.parquet`` and raise: no item of one side (the input, or the ``prefix``-marked
    reference set) could be used."""
    out.mkdir(parents=True, exist_ok=True)
    write_errors(out / ERRORS, errors)
    mine = [e["reason"][len(prefix) :] for e in errors if e["reason"].startswith(_REF_ERROR) == bool(prefix)]
    reasons = sorted({r.split(" (")[0] for r in mine})[:3]
    raise SemDedupError(
        f"nothing usable in {prefix}{str(src)!r}: all {n_input} items failed ({'; '.join(reasons)}); "
        f"see {str(out / ERRORS)!r}"
    )


def _embed_side(
    items: Items,
    encoder: Any,
    folder: Path,
    identity: dict[str, Any],
    embed: EmbedConfig,
    workers: int,
    device: str,
    progress: Progress,
    known: Any = None,
) -> tuple[Any, np.ndarray, Any, list[dict[str, Any]]]:
    """Embed one side of a run (the input, or the reference set) resumably into ``folder``; returns the
    usable rows' embeddings (``None`` when none is usable), ids, carried columns, and every item left out.
    ``known``: embeddings an earlier run made of some of the items (see :func:`reusable_embeddings`)."""
    state = _EmbedState(folder, identity, len(items), embed.chunk_size)
    if len(items):
        embed_items(
            items,
            encoder,
            state,
            batch_size=embed.batch_size,
            workers=min(workers, max(0, len(items) // embed.batch_size)) if workers else 0,
            device=device,
            progress=progress,
            known=known,
        )
    errors = items.errors + state.meta["errors"]
    failed = {e["id"] for e in state.meta["errors"]}
    ok = np.array([i for i, item_id in enumerate(items.ids) if item_id not in failed], dtype=np.int64)
    if len(ok) == 0:
        return None, np.array([], dtype=object), items.columns.iloc[:0], errors
    raw = state.raw
    assert raw is not None
    x = raw if len(ok) == len(items) else raw[ok]
    ids = np.asarray(items.ids, dtype=object)[ok]
    columns = items.columns.iloc[ok].reset_index(drop=True)
    return x, ids, columns, errors
