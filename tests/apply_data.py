"""Raw inputs of every kind the readers take — JSONL, CSV and Parquet tables, webdataset shards, a Hugging
Face ``save_to_disk`` folder, an image folder, embedding shards — each with planted near-copies, awkward
values and rows the reader leaves out; and runs over them.

:func:`planted_run` runs the real reader and the real engine; only the encoder is replaced by vectors
that make each planted copy a near-duplicate of its original (items share a vector when they share a
*group*: the ``group`` field, else the id without its ``~N`` suffix). :func:`planted_run` records the
run's input exactly as ``run_input`` does, fingerprint included.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

from semdedup_core import ClusterConfig, dedup
from semdedup_core.ingest.inputs import input_fingerprint, load_input

AWKWARD = ['say "hi", then go', "line one\nline two", "<script>alert(1)</script>", "naïve café ☕", "a,b;c\td"]


def group_of(item_id: str, row: dict) -> str:
    if row.get("group") is not None and row.get("group") == row.get("group"):
        return str(row["group"])
    stem = item_id.rsplit(".", 1)[0] if "/" in item_id or "." in item_id else item_id
    return re.sub(r"~\d+$", "", stem)


def vectors(groups: list[str], d: int = 16, seed: int = 0) -> np.ndarray:
    """One random unit vector per group; each item its group's vector plus a little noise (cosine > 0.99
    within a group, about 0 across groups)."""
    rng = np.random.default_rng(seed)
    base = {g: rng.normal(size=d) for g in sorted(set(groups))}
    x = np.stack([base[g] + 0.01 * rng.normal(size=d) for g in groups]).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted_run(input_path, out: Path, k: int = 3, drop: tuple[str, ...] = (), **options):
    """A finished run over ``input_path`` read by its reader (``options``: the column options); ``drop``:
    keys of the reader's ``source`` that ``run.json`` does not record (as the sharded pipeline does not
    record a webdataset's ``shards``, only its ``path``)."""
    items = load_input(str(input_path), **options)
    rows = items.columns.to_dict("records")
    x = vectors([group_of(i, r) for i, r in zip(items.ids, rows, strict=True)])
    source = {**items.source, "fingerprint": input_fingerprint(input_path)}
    if drop:
        source = {"path": str(Path(input_path).resolve()), **{k: v for k, v in source.items() if k not in drop}}
    return dedup(
        x, items.ids, cluster=ClusterConfig(k, seed=0), out=out, columns=items.columns, extra={"input": source}
    )


def kept_ids(results, eps: float, rule: str = "paper", labels=None) -> list[str]:
    """The ids the run keeps at ``eps``, in input order."""
    ids = results.rows(np.arange(results.n_items), ["id"])["id"].tolist()
    removed = results.removed_mask(eps, rule, labels)
    return [i for i, r in zip(ids, removed, strict=True) if not r]


# -- tables ---------------------------------------------------------------------------------------------
def table_rows(n: int = 30) -> list[dict]:
    """Rows with an id, a text, typed fields (ints, floats, nulls, lists, nested objects) and planted copies
    (id ``rN~1``, same ``group``); awkward texts among them."""
    rows = []
    for i in range(n):
        text = AWKWARD[i % len(AWKWARD)] + f" #{i}" if i % 4 == 0 else f"quote number {i} about things"
        rows.append(
            {
                "id": f"r{i}",
                "text": text,
                "group": f"g{i}",
                "score": i / 7,
                "count": i,
                "maybe": None if i % 3 else i * 1.5,
                "tags": [f"t{i % 3}", "x"],
                "meta": {"a": i, "b": [1, 2]},
            }
        )
        if i % 5 == 1:  # a near-copy of row i
            rows.append({**rows[-1], "id": f"r{i}~1", "text": rows[-1]["text"] + " (copy)", "count": -i})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """JSONL with varied spacing, a blank line, a whitespace line, a row with an empty text (left out by the
    reader), a repeated id (the second left out) and no newline after the last line."""
    lines = []
    for j, row in enumerate(rows):
        lines.append(json.dumps(row, ensure_ascii=j % 2 == 0, separators=(",", ":") if j % 3 else (", ", ": ")))
        if j == 3:
            lines += ["", "   "]
    lines.append(json.dumps({**rows[0], "id": "empty", "text": "  ", "group": "empty"}))
    lines.append(json.dumps({**rows[2], "text": "a repeated id"}))
    path.write_bytes(("\n".join(lines)).encode())
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    """CSV with CRLF line ends, quoted fields holding commas, quotes and line breaks, a blank line."""
    frame = pd.DataFrame(rows).drop(columns=["tags", "meta"])
    text = frame.to_csv(index=False, lineterminator="\r\n")
    head, rest = text.split("\r\n", 1)
    path.write_bytes((head + "\r\n\r\n" + rest).encode())
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    """Parquet of several row groups with ints, floats, nulls, strings, lists, structs and timestamps."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame(rows)
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="h", tz="UTC")
    frame["flag"] = frame["count"] % 2 == 0
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, row_group_size=7, compression="zstd")
    return path


# -- webdataset -------------------------------------------------------------------------------------------
def _add(tf: tarfile.TarFile, name: str, data: bytes, mtime: int = 1_700_000_000) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname = len(data), mtime, 0o640, "someone"
    tf.addfile(info, io.BytesIO(data))


def photos(n: int = 6, size: int = 96) -> list[np.ndarray]:
    """Crops of the photographs scikit-image ships (RGB uint8)."""
    from skimage import data

    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
        img = getattr(data, name)()
        h, w = img.shape[:2]
        out.append(np.ascontiguousarray(img[(h - size) // 2 : (h + size) // 2, (w - size) // 2 : (w + size) // 2, :3]))
    return out[:n]


def encode(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_wds(root: Path) -> Path:
    """Three shards: samples ``pN`` (jpg/png + txt + json + cls), near-copies ``pN~1`` in another shard, a
    sample without an image, a repeated key, and a last shard cut off inside a member."""
    root.mkdir(parents=True, exist_ok=True)
    pics = photos()
    layout: list[list[tuple[str, np.ndarray, str]]] = [[], [], []]
    for i, arr in enumerate(pics):
        layout[i % 3].append((f"p{i}", arr, "jpg" if i % 2 else "png"))
        if i % 2 == 0:
            layout[(i + 1) % 3].append((f"p{i}~1", arr, "jpg"))
    for n, samples in enumerate(layout):
        with tarfile.open(root / f"{n:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for key, arr, ext in samples:
                _add(
                    tf,
                    f"{key}.{ext}",
                    encode(arr, "JPEG" if ext == "jpg" else "PNG", **({"quality": 80} if ext == "jpg" else {})),
                )
                _add(tf, f"{key}.txt", f"caption of {key}: {AWKWARD[n]}".encode())
                _add(tf, f"{key}.json", json.dumps({"url": f"http://x/{key}", "group": key.split("~")[0]}).encode())
                _add(tf, f"{key}.cls", str(n).encode())
            if n == 0:
                _add(tf, "orphan.txt", b"a caption without an image")
            if n == 1:
                _add(tf, "p0.png", encode(pics[0]))  # the key p0 again: an error row
            if n == 2:
                _add(tf, "tail.jpg", encode(pics[1], "JPEG") * 3)
    last = root / "00002.tar"
    with tarfile.open(last) as tf:
        cut = next(m for m in tf if m.name == "tail.jpg")
    last.write_bytes(last.read_bytes()[: cut.offset_data + cut.size // 2])
    return root


def tar_members(path: Path) -> dict[str, bytes]:
    """Each regular member's bytes, by name (a truncated tar gives what precedes the cut)."""
    out = {}
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                if m.isfile():
                    data = tf.extractfile(m).read()
                    if len(data) == m.size:
                        out[m.name] = data
    except (tarfile.TarError, OSError):
        pass
    return out


# -- Hugging Face, image folders, embedding shards ----------------------------------------------------------
def write_hf(folder: Path, rows: list[dict]) -> Path:
    """A ``save_to_disk`` folder of two Arrow files with the rows' columns and an ``Image()`` column."""
    import datasets

    pics = photos()
    frame = pd.DataFrame(rows).drop(columns=["maybe"])
    data = frame.to_dict("list")
    data["image"] = [{"bytes": encode(pics[i % len(pics)][: 32 + i % 7]), "path": None} for i in range(len(frame))]
    features = datasets.Dataset.from_dict({k: v for k, v in data.items() if k != "image"}).features
    features["image"] = datasets.Image()
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(folder), num_shards=2)
    return folder


def write_image_folder(root: Path) -> Path:
    """Photos under sub-folders (png, jpg, webp), near-copies ``name~1``, a caption file beside them."""
    from PIL import Image

    for i, arr in enumerate(photos()):
        sub = root / ("" if i % 3 == 0 else f"set{i % 3}") / ("deep" if i == 5 else "")
        sub.mkdir(parents=True, exist_ok=True)
        ext = ("png", "jpg", "webp")[i % 3]
        Image.fromarray(arr).save(sub / f"photo{i}.{ext}")
        if i % 2 == 0:
            Image.fromarray(arr[::-1]).save(sub / f"photo{i}~1.jpg", quality=70)
    (root / "captions.txt").write_text("not an image")
    return root


def write_embedding_shards(folder: Path, rows_per_shard: int = 12, shards: int = 3, d: int = 8) -> Path:
    """``img_emb/img_emb_N.npy`` (float16) with ``metadata/metadata_N.parquet`` (key, group, caption)."""
    rng = np.random.default_rng(1)
    (folder / "img_emb").mkdir(parents=True)
    (folder / "metadata").mkdir()
    for s in range(shards):
        keys = [f"k{s}_{r}" if r % 4 else f"k{s}_{r - 1}~1" if r else f"k{s}_{r}" for r in range(rows_per_shard)]
        np.save(folder / "img_emb" / f"img_emb_{s}.npy", rng.normal(size=(rows_per_shard, d)).astype(np.float16))
        meta = pd.DataFrame({"key": keys, "caption": [f"{AWKWARD[r % 5]} {k}" for r, k in enumerate(keys)]})
        meta["group"] = [k.split("~")[0] for k in keys]
        meta.to_parquet(folder / "metadata" / f"metadata_{s}.parquet", index=False)
    return folder
