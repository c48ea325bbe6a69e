"""Raw data to parts, shard by shard, for the sharded engine (:mod:`semdedup_core.run.sharded`).

Each input shard becomes one *part*: a webdataset ``.tar``, an embedding shard (``img_emb_N.npy`` with
its metadata), an Arrow file of a Hugging Face dataset, a slice of a table's rows or of an image
folder's files. A part is read and embedded by whoever runs it — on Ray, a pool of model actors fed by
Ray Data ``map_batches`` (GPU actors where GPUs exist); locally, this process — and written into
``DIR/.work/parts/NNNNN`` with its own resumable embedding state, so a killed run loses at most the
chunk in flight of each part. The driver lists the shards and keeps one summary per part, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.device import resolve_device
from ..results import io
from ..results.folder import ResultsFolder
from ..results.names import WORK
from ..run.config import ClusterConfig, DedupConfig
from ..run.executors import Executor, LocalExecutor, get_executor
from ..run.sharded import PARTS, dedup_parts, part_dir, part_done, split_npy, write_part
from .embed import EmbedConfig, _EmbedState, default_workers, embed_items
from .encoders import get_encoder
from .inputs import is_hf_dataset, list_images, wds_shards

log = logging.getLogger(__name__)

TABLE_PART_ROWS = 100_000
FOLDER_PART_FILES = 20_000


@dataclass(frozen=True)
class PartSpec:
    """What one part reads: ``kind`` (``wds``, ``emb``, ``hf``, ``table``, ``files``), the source file and,
    for slices, the rows (or files) it covers."""

    kind: str
    source: str
    start: int = 0
    stop: int = 0
    files: tuple[str, ...] = ()


def plan_parts(path: str | os.PathLike[str], embed: EmbedConfig) -> tuple[list[PartSpec], str]:
    """The parts of an input and its modality, from listings and metadata only (nothing decoded)."""
    import pyarrow.parquet as pq

    path = str(path)
    tars = wds_shards(path)
    if tars is not None:
        return [PartSpec("wds", str(t.resolve())) for t in tars], "image"
    p = Path(path)
    if not p.exists():
        raise SemDedupError(
            f"input {path!r} does not exist; pass an image folder, a table, shards or an embeddings folder"
        )
    if p.is_dir() and ((p / "img_emb").is_dir() or (p / "text_emb").is_dir()):
        kind = "img_emb" if (p / "img_emb").is_dir() else "text_emb"
        files = sorted(
            (p / kind).glob(f"{kind}_*.npy"), key=lambda f: int("".join(c for c in f.stem if c.isdigit()) or -1)
        )
        if not files:
            raise SemDedupError(f"folder {str(p / kind)!r} holds no {kind}_N.npy files")
        return [PartSpec("emb", str(f.resolve())) for f in files], "image" if kind == "img_emb" else "text"
    if p.is_dir() and is_hf_dataset(p):
        state = json.loads((p / "state.json").read_text())
        return [PartSpec("hf", str((p / f["filename"]).resolve())) for f in state["_data_files"]], (
            "image" if embed.image_column else "text"
        )
    if p.is_dir():
        found, _ = list_images(p)
        if not found:
            raise SemDedupError(f"folder {path!r} holds no image files; pass a folder of images or shards")
        files = [str(f) for f in found]
        return [
            PartSpec(
                "files",
                str(p.resolve()),
                i,
                min(len(files), i + FOLDER_PART_FILES),
                tuple(files[i : i + FOLDER_PART_FILES]),
            )
            for i in range(0, len(files), FOLDER_PART_FILES)
        ], "image"
    if p.suffix.lower() == ".parquet":
        n = pq.ParquetFile(p).metadata.num_rows
    else:
        from .inputs import read_table

        n = len(read_table(p))
    return [
        PartSpec("table", str(p.resolve()), i, min(n, i + TABLE_PART_ROWS)) for i in range(0, n, TABLE_PART_ROWS)
    ], ("image" if embed.image_column else "text")


def _part_items(spec: PartSpec, embed: EmbedConfig) -> Any:
    """The :class:`~semdedup_core.ingest.inputs.Items` of one part."""
    from .inputs import load_hf_dataset, load_image_folder, load_shards, load_table, load_webdataset

    if spec.kind == "wds":
        return load_webdataset([Path(spec.source)], id_column=embed.id_column)
    if spec.kind == "emb":
        return load_shards(
            Path(spec.source).parent.parent,
            only=Path(spec.source),
            text_column=embed.text_column,
            image_column=embed.image_column,
            id_column=embed.id_column,
        )
    if spec.kind == "hf":
        return load_hf_dataset(
            Path(spec.source).parent,
            only=Path(spec.source),
            text_column=embed.text_column,
            image_column=embed.image_column,
            id_column=embed.id_column,
            max_text_chars=embed.max_text_chars,
        )
    if spec.kind == "files":
        return load_image_folder(Path(spec.source), only=list(spec.files))
    return load_table(
        Path(spec.source),
        text_column=embed.text_column,
        image_column=embed.image_column,
        id_column=embed.id_column,
        max_text_chars=embed.max_text_chars,
        rows=(spec.start, spec.stop),
    )


class PartEmbedder:
    """Embeds whole parts: holds one encoder (loaded on first use), so a Ray actor loads its model once."""

    def __init__(self, embed: dict[str, Any], modality: str, work: str, device: str, workers: int):
        self.embed = EmbedConfig(**embed)
        self.modality, self.work, self.device, self.workers = modality, work, device, workers
        self._encoder: Any = None

    def encoder(self) -> Any:
        if self._encoder is None and self.modality:
            device = resolve_device(self.device)
            self._encoder = get_encoder(
                self.embed.encoder, modality=self.modality, pretrained=self.embed.pretrained, device=device
            )
        return self._encoder

    def run(self, p: int, spec: dict[str, Any]) -> dict:
        import pandas as pd

        spec_ = PartSpec(**{**spec, "files": tuple(spec.get("files", ()))})
        work = Path(self.work)
        if part_done(work, p):
            return io.read_json(part_dir(work, p) / "done.json")
        items = _part_items(spec_, self.embed)
        meta = pd.concat([pd.DataFrame({"id": items.ids}), items.columns.reset_index(drop=True)], axis=1)
        if spec_.kind == "emb":
            ((path, rows),) = items.shards
            emb = np.asarray(np.load(path, mmap_mode="r")[rows], dtype=np.float32)
            return write_part(work, p, meta, emb, items.errors, spec_.source)
        state = _EmbedState(part_dir(work, p) / "embed", {"part": p, "spec": spec}, len(items), self.embed.chunk_size)
        if len(items):
            device = resolve_device(self.device)
            embed_items(
                items,
                self.encoder(),
                state,
                batch_size=self.embed.batch_size,
                workers=self.workers,
                device=device,
                progress=lambda *a: None,
            )
        emb = state.raw if state.raw is not None else np.zeros((len(items), 0), np.float32)
        return write_part(work, p, meta, emb, items.errors + state.meta["errors"], spec_.source)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:  # Ray Data map_batches
        out = [self.run(int(p), json.loads(s)) for p, s in zip(batch["part"], batch["spec"], strict=True)]
        return {"part": [o["part"] for o in out], "rows": [o["rows"] for o in out]}


def _embed_part(embed: dict, modality: str, work: str, device: str, p: int, spec: dict) -> dict:
    return PartEmbedder(embed, modality, work, device, 0).run(p, spec)


def _claim(work: Path, identity: dict[str, Any]) -> None:
    """Parts belong to one input and embedding setup: another one in the same folder is refused."""
    f = work / PARTS / "identity.json"
    if f.is_file():
        if io.read_json(f) != json.loads(json.dumps(identity, default=str)):
            raise SemDedupError(
                f"results folder {str(work.parent)!r} holds an unfinished run with another input or encoder; "
                "choose another --out folder (or delete that folder yourself)"
            )
        return
    io.write_json(f, identity)


def _fingerprint(identity: dict[str, Any], specs: list[PartSpec]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    for s in specs:
        st = os.stat(s.source)
        h.update(f"{s.kind}|{s.source}|{s.start}|{s.stop}|{len(s.files)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def run_sharded(input_path: str | os.PathLike[str] | None, out: str | os.PathLike[str], **kwargs: Any) -> Any:
    """The whole run, shard by shard (see :func:`_run_sharded`), holding the results folder's write lock
    from the first part to the last file."""
    with ResultsFolder(out).lock():
        return _run_sharded(input_path, out, **kwargs)


def _run_sharded(
    input_path: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    embeddings: str | None = None,
    ids: str | None = None,
    embed: EmbedConfig | None = None,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    executor: str | Executor | None = "ray",
    progress: Any = None,
    part_rows: int = 1_000_000,
    actors: int | None = None,
    num_gpus: float = 0,
) -> Any:
    """The whole run, shard by shard: ``input_path`` (raw data or embedding shards) or ``embeddings`` (one
    ``.npy`` matrix split into parts of ``part_rows`` rows, with optional ``ids``). On Ray, embedding runs
    on ``actors`` model actors (default: the cluster's CPUs, or its GPUs with ``num_gpus``); every stage
    after it is a set of per-part or per-bucket tasks. Rerunning the same call resumes."""
    embed = embed or EmbedConfig()
    config = config or DedupConfig()
    progress = progress or (lambda *a: None)
    out = Path(out)
    ResultsFolder(out).check_writable()
    ex = get_executor(executor)
    work = out / WORK
    if ResultsFolder(out).is_complete():
        from ..results.results import Results

        return Results.load(out)
    if embeddings is not None:
        x = io.load_embeddings(embeddings)
        identity = {
            "embeddings": str(Path(embeddings).resolve()),
            "ids": ids,
            "part_rows": part_rows,
            "shape": list(x.shape),
        }
        _claim(work, identity)
        st = os.stat(embeddings)
        fp = hashlib.blake2b(f"{identity}|{st.st_size}|{st.st_mtime_ns}".encode(), digest_size=16).hexdigest()
        summaries = split_npy(str(embeddings), ids, work, part_rows, ex)
        extra = {"input": {"kind": "npy", "path": str(Path(embeddings).resolve())}}
        return dedup_parts(
            out,
            len(summaries),
            cluster=cluster,
            config=config,
            executor=ex,
            progress=progress,
            extra=extra,
            strict=True,
            fingerprint=fp,
        )

    specs, modality = plan_parts(str(input_path), embed)
    precomputed = specs[0].kind == "emb"
    if precomputed and (embed.encoder or embed.pretrained):
        raise SemDedupError("--encoder/--pretrained do not apply to precomputed embedding shards; drop them")
    encoder_params = (
        {"name": "precomputed"}
        if precomputed
        else get_encoder(embed.encoder, modality=modality, pretrained=embed.pretrained, device="cpu").params()
    )
    identity = {"input": str(input_path), "embed": embed.identity(), "encoder": encoder_params, "parts": len(specs)}
    _claim(work, identity)
    fp = _fingerprint(identity, specs)
    todo = [(p, s) for p, s in enumerate(specs) if not part_done(work, p)]
    t0 = time.perf_counter()
    progress("embed", len(specs) - len(todo), len(specs))
    device = embed.device
    args = (asdict(embed), "" if precomputed else modality, str(work), device)
    done = len(specs) - len(todo)
    if todo and ex.name == "ray" and not precomputed:
        import ray

        n_actors = actors or max(
            1, int(ray.cluster_resources().get("GPU" if num_gpus else "CPU", 1) // (num_gpus or 1))
        )
        ds = ray.data.from_items([{"part": p, "spec": json.dumps(asdict(s))} for p, s in todo])
        embedded = ds.map_batches(
            PartEmbedder,
            fn_constructor_args=(*args, 0),
            batch_size=1,
            concurrency=min(n_actors, len(todo)),
            num_gpus=num_gpus or None,
            num_cpus=None if num_gpus else 1,
        )
        for _ in embedded.iter_rows():
            done += 1
            progress("embed", done, len(specs))
    else:
        workers = default_workers(resolve_device(device)) if embed.workers is None else embed.workers
        if isinstance(ex, LocalExecutor) and not precomputed:
            embedder = PartEmbedder(*args, workers)
            for p, s in todo:
                embedder.run(p, asdict(s))
                done += 1
                progress("embed", done, len(specs))
        else:
            for _ in ex.imap(_embed_part, ((p, (*args, p, asdict(s))) for p, s in todo)):
                done += 1
                progress("embed", done, len(specs))
    seconds = round(time.perf_counter() - t0, 4)
    extra = {
        "input": {"kind": specs[0].kind, "path": str(input_path), "parts": len(specs)},
        "embed": {"identity": identity, "encoder": encoder_params, "seconds": seconds},
        "stages": {"embed": {"done": True, "seconds": seconds}},
    }
    return dedup_parts(
        out, len(specs), cluster=cluster, config=config, executor=ex, progress=progress, extra=extra, fingerprint=fp
    )
