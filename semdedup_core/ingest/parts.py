"""Raw data to parts: the ``embed`` stage of a run, one unit of work per part of the input.

Each input shard becomes one *part*: a webdataset ``.tar``, an embedding shard (``img_emb_N.npy`` with its
metadata), an Arrow file of a Hugging Face dataset, a slice of ``part_rows`` rows of a table or of an image
folder's files. A part is read and embedded by whoever runs it — this process, or a pool of Ray actors that
each load the model once (GPU actors where GPUs exist) — and written into ``DIR/.work/parts/NNNNN`` with its
own resumable embedding state, so a killed run loses at most the chunk in flight of each part. The driver
lists the shards and keeps one summary per part, nothing else. The engine then runs over the parts
(:mod:`semdedup_core.run.pipeline`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.device import resolve_device
from ..results import io
from ..run.sources import PARTS
from .embed import EmbedConfig, EmbedState, embed_items
from .encoders import get_encoder
from .inputs import is_hf_dataset, list_images, wds_shards

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


def _sliced(kind: str, source: str, n: int, step: int, files: list[str] | None = None) -> list[PartSpec]:
    return [
        PartSpec(kind, source, i, min(n, i + step), tuple(files[i : i + step]) if files is not None else ())
        for i in range(0, n, step)
    ]


@dataclass(frozen=True)
class Plan:
    """An input's parts, its modality, and the files of an image folder not named like images."""

    specs: list[PartSpec]
    modality: str
    skipped: int = 0


def plan_parts(path: str | os.PathLike[str], embed: EmbedConfig, part_rows: int | None = None) -> Plan:
    """The parts of an input and its modality, from listings and metadata only (nothing decoded).
    ``part_rows``: rows (or files) per part of a table or an image folder; shards are one part each."""
    import pyarrow.parquet as pq

    path = str(path)
    tars = wds_shards(path)
    if tars is not None:
        return Plan([PartSpec("wds", str(t.resolve())) for t in tars], "image")
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
        return Plan([PartSpec("emb", str(f.resolve())) for f in files], "image" if kind == "img_emb" else "text")
    modality = "image" if embed.image_column else "text"
    if p.is_dir() and is_hf_dataset(p):
        state = json.loads((p / "state.json").read_text())
        return Plan([PartSpec("hf", str((p / f["filename"]).resolve())) for f in state["_data_files"]], modality)
    if p.is_dir():
        found, skipped = list_images(p)
        if not found:
            raise SemDedupError(f"folder {path!r} holds no image files; pass a folder of images or shards")
        files = [str(f) for f in found]
        return Plan(
            _sliced("files", str(p.resolve()), len(files), part_rows or FOLDER_PART_FILES, files), "image", skipped
        )
    if p.suffix.lower() == ".parquet":
        n = pq.ParquetFile(p).metadata.num_rows
    else:
        from .inputs import read_table

        n = len(read_table(p))
    return Plan(_sliced("table", str(p.resolve()), max(n, 1), part_rows or TABLE_PART_ROWS), modality)


def part_items(spec: PartSpec, embed: EmbedConfig) -> Any:
    """The :class:`~semdedup_core.ingest.inputs.Items` of one part."""
    from .inputs import load_hf_dataset, load_image_folder, load_shards, load_table, load_webdataset

    if spec.kind == "wds":
        return load_webdataset([Path(spec.source)], id_column=embed.id_column)
    columns = {"text_column": embed.text_column, "image_column": embed.image_column, "id_column": embed.id_column}
    if spec.kind == "emb":
        return load_shards(Path(spec.source).parent.parent, only=Path(spec.source), **columns)
    if spec.kind == "hf":
        return load_hf_dataset(
            Path(spec.source).parent, only=Path(spec.source), max_text_chars=embed.max_text_chars, **columns
        )
    if spec.kind == "files":
        return load_image_folder(Path(spec.source), only=list(spec.files))
    return load_table(Path(spec.source), max_text_chars=embed.max_text_chars, rows=(spec.start, spec.stop), **columns)


class PartEmbedder:
    """Embeds whole parts: holds one encoder (loaded on first use), so a Ray actor loads its model once.
    ``reuse``: a finished results folder whose vectors of the same items (same id and content, same
    encoder) are copied instead of embedded again."""

    def __init__(
        self, embed: dict[str, Any], modality: str, folder: str, device: str, workers: int, reuse: str | None = None
    ):
        self.embed = EmbedConfig(**embed)
        self.modality, self.folder, self.device, self.workers, self.reuse = modality, folder, device, workers, reuse
        self._encoder: Any = None

    def encoder(self) -> Any:
        if self._encoder is None and self.modality:
            device = resolve_device(self.device)
            self._encoder = get_encoder(
                self.embed.encoder, modality=self.modality, pretrained=self.embed.pretrained, device=device
            )
        return self._encoder

    def run(self, p: int, spec: dict[str, Any], progress: Any = None) -> dict[str, Any]:
        import pandas as pd

        spec_ = PartSpec(**{**spec, "files": tuple(spec.get("files", ()))})
        d = Path(self.folder) / f"{p:05d}"
        if (d / "done.json").is_file():
            return io.read_json(d / "done.json")
        items = part_items(spec_, self.embed)
        meta = pd.concat([pd.DataFrame({"id": items.ids}), items.columns.reset_index(drop=True)], axis=1)
        facts = {
            "n_input": items.n_input,
            "skipped": items.skipped,
            "reused": 0,
            "failed": 0,
            "source": spec_.source,
            "input": items.source,
            "columns": [c for c in meta.columns if c != "id"],
        }
        if spec_.kind == "emb":
            ((path, rows),) = items.shards
            emb = np.asarray(np.load(path, mmap_mode="r")[rows], dtype=np.float32)
            return write_part(d, meta, emb, items.errors, facts)
        state = EmbedState(d / "embed", {"part": p, "spec": spec}, len(items), self.embed.chunk_size)
        if len(items):
            known = self._known(items)
            facts["reused"] = 0 if known is None else len(known[0])
            device = resolve_device(self.device)
            workers = min(self.workers, max(0, len(items) // self.embed.batch_size)) if self.workers else 0
            tick = progress or (lambda *a: None)
            embed_items(
                items,
                self.encoder(),
                state,
                batch_size=self.embed.batch_size,
                workers=workers,
                device=device,
                progress=tick,
                known=known,
            )
        emb = state.raw if state.raw is not None else np.zeros((len(items), 0), np.float32)
        row_of = {item_id: r for r, item_id in enumerate(items.ids)}  # unique within a part
        failed = np.array(sorted(row_of[e["id"]] for e in state.meta["errors"]), dtype=np.int64)
        return write_part(d, meta, emb, items.errors + state.meta["errors"], facts, failed)

    def _known(self, items: Any) -> Any:
        if self.reuse is None:
            return None
        from .embed import reusable_embeddings

        return reusable_embeddings(self.reuse, items, self.encoder().params())

    def __call__(self, p: int, spec: dict[str, Any]) -> dict[str, Any]:  # a Ray actor's method
        return self.run(p, spec)


def write_part(
    d: Path, meta: Any, emb: np.ndarray, errors: list[dict[str, Any]], facts: dict[str, Any], failed: Any = None
) -> dict:
    """Write one raw part into the folder ``d`` (``meta`` a DataFrame with ``id`` first; ``emb`` rows aligned
    with it). Items that failed to embed stay as rows (``failed.npy`` names them; the engine drops them) and
    are listed in ``errors.parquet`` with the items left out before embedding."""
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(d / "meta.parquet") as tmp:
        pq.write_table(io.frame_to_arrow(meta), tmp)
    io.save_npy(d / "emb.npy", np.ascontiguousarray(emb, dtype=np.float32))
    io.write_errors(d / "errors.parquet", errors)
    failed = np.zeros(0, np.int64) if failed is None else np.asarray(failed, dtype=np.int64)
    io.save_npy(d / "failed.npy", failed)
    facts = {**facts, "failed": int(len(failed))}
    summary = {"part": int(d.name), "rows": int(len(meta)), "dim": int(emb.shape[1]) if emb.ndim == 2 else 0, **facts}
    io.write_json(d / "done.json", summary)
    return summary


def claim(work: Path, identity: dict[str, Any], folder: str = PARTS) -> None:
    """Parts belong to one input and embedding setup: another one in the same folder is refused."""
    f = work / folder / "identity.json"
    if f.is_file():
        if io.read_json(f) != json.loads(json.dumps(identity, default=str)):
            raise SemDedupError(
                f"results folder {str(work.parent)!r} holds an unfinished run with another input or encoder; "
                "choose another --out folder (or delete that folder yourself)"
            )
        return
    io.write_json(f, identity)


def fingerprint(identity: dict[str, Any], specs: list[PartSpec]) -> str:
    """The identity of an input: its embedding setup and every part's file (size and time)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    for s in specs:
        for f in (s.source, *s.files):
            st = os.stat(f)
            h.update(f"{s.kind}|{f}|{s.start}|{s.stop}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def specs_json(specs: list[PartSpec]) -> list[dict[str, Any]]:
    """The specs as ``run.json`` holds them (lists, not tuples), so a rerun compares like with like."""
    return [{**asdict(s), "files": list(s.files)} for s in specs]
