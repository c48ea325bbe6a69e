"""Webdataset shards and Hugging Face datasets as --input: read in place, embedded with the offline
encoders, every bad member an error row, and the items' images readable by the app through media."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import _scene, brute_force_scores

from semdedup_core import ClusterConfig, EmbedConfig, Results, SemDedupError, run_input
from semdedup_core.ingest.inputs import expand_braces, load_input
from semdedup_core.media import files as media

ROOT = Path(__file__).resolve().parents[1]


def _png(arr: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def make_wds(root: Path, seed: int = 0) -> dict:
    """Three shards of image samples (jpg/png/webp) with txt and json sides; near-copies across shards;
    a key without an image, a corrupt image, a repeated key and a truncated last shard."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    scenes = [_scene(rng) for _ in range(8)]
    copies = {}
    layout = [[], [], []]
    for i, arr in enumerate(scenes):
        layout[i % 3].append((f"s{i:03d}", arr, ["jpg", "png", "webp"][i % 3]))
    for i in range(3):  # near-copies of scenes 0..2, re-encoded and resized, in another shard
        small = np.asarray(Image.fromarray(scenes[i]).resize((120, 90)))
        layout[(i + 1) % 3].append((f"c{i:03d}", small, "jpg"))
        copies[f"c{i:03d}"] = f"s{i:03d}"
    for n, samples in enumerate(layout):
        with tarfile.open(root / f"shard-{n:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for key, arr, ext in samples:
                data = _png(arr, {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}[ext])
                _add(tf, f"{key}.{ext}", data)
                _add(tf, f"{key}.txt", f"caption of {key} <b>bold</b>".encode())
                _add(tf, f"{key}.json", json.dumps({"url": f"http://x/{key}", "width": 128, "meta": {"a": 1}}).encode())
            if n == 0:
                _add(tf, "orphan.txt", b"a caption without an image")
                _add(tf, "broken.jpg", b"not a jpeg at all" * 10)
            if n == 1:
                _add(tf, "s000.png", _png(scenes[0]))  # the key s000 again, in another shard
    # the last shard is cut off in the middle of a member
    last = root / "shard-00002.tar"
    with tarfile.open(last) as tf:
        cut = next(m for m in tf if m.name == "c001.jpg")
    last.write_bytes(last.read_bytes()[: cut.offset_data + cut.size // 2])
    return {"copies": copies}


@pytest.fixture(scope="module")
def wds(tmp_path_factory):
    root = tmp_path_factory.mktemp("wds") / "shards"
    return root, make_wds(root)


def test_expand_braces():
    assert expand_braces("a/{000..002}.tar") == ["a/000.tar", "a/001.tar", "a/002.tar"]
    assert expand_braces("{x,y}-{1..2}") == ["x-1", "x-2", "y-1", "y-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    with pytest.raises(SemDedupError, match="runs backwards"):
        expand_braces("{5..1}")


def test_webdataset_items_sides_and_errors(wds):
    root, _ = wds
    items = load_input(str(root))
    assert items.kind == "webdataset" and items.modality == "image"
    assert "s001" in items.ids and "c000" in items.ids and "orphan" not in items.ids
    row = items.columns.iloc[items.ids.index("s001")]
    assert row["text"] == "caption of s001 <b>bold</b>" and row["url"] == "http://x/s001"
    assert json.loads(row["meta"]) == {"a": 1} and row["width"] == 128
    reasons = {e["id"]: e["reason"] for e in items.errors}
    assert "no image member" in reasons["orphan"]
    assert "duplicate key" in reasons["s000"]
    assert any("truncated" in e["reason"] or "damaged" in e["reason"] for e in items.errors if e["id"] is None)
    assert "c001" not in items.ids  # its image was cut off
    # every path names a member that media reads without extracting anything
    heads = {media.read_bytes(p)[:3] for p in items.paths if not p.endswith("broken.jpg")}
    assert heads <= {b"\xff\xd8\xff", b"\x89PN", b"RIF"}, heads  # jpeg, png, webp (RIFF)
    assert sorted(os.listdir(root)) == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]  # nothing extracted
    # a brace pattern names the same shards
    same = load_input(str(root / "shard-{00000..00002}.tar"))
    assert same.ids == items.ids
    with pytest.raises(SemDedupError, match="do not exist"):
        load_input(str(root / "shard-{00000..00009}.tar"))


@pytest.mark.slow
def test_webdataset_run_end_to_end(wds, tmp_path):
    root, made = wds
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-m", "semdedup_core", "run", "--input", str(root), "--out", str(out),
         "--clusters", "2", "--workers", "0", "--quiet"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    items = pd.read_parquet(out / "items.parquet")
    errors = pd.read_parquet(out / "errors.parquet")
    assert set(errors["reason"].str.split(" ").str[0]) >= {"no", "duplicate", "unreadable", "shard"}
    assert "broken" in set(errors["id"]) and "broken" not in set(items["id"])
    emb = np.asarray(Results.load(out).embeddings[np.arange(len(items))])  # a part per shard
    max_sim, dup_of = brute_force_scores(emb, items)
    np.testing.assert_allclose(items["max_sim"], max_sim, atol=1e-5)
    # the planted near-copies (other shard, re-encoded, resized) are each other's closest items
    sims = emb @ emb.T
    ids = items["id"].tolist()
    for copy, src in made["copies"].items():
        if copy == "c001":
            continue  # cut off with the truncated shard
        a, b = ids.index(copy), ids.index(src)
        row = sims[a].copy()
        row[a] = -1
        assert int(np.argmax(row)) == b, (copy, src)
    assert items["text"].str.startswith("caption of").all()
    # the app and the report read an item's image through media: the path is a member reference
    from PIL import Image

    with media.open_binary(items["path"].iloc[0]) as f, Image.open(f) as im:
        assert im.size[0] > 0


@pytest.fixture(scope="module")
def hf_text(tmp_path_factory):
    datasets = pytest.importorskip("datasets", reason="the datasets package is a dev dependency")
    texts = [
        "The quick brown fox jumps over the lazy dog.",
        "A quick brown fox leaps over a lazy dog.",
        "Tomorrow the weather will be sunny and warm.",
        "It will be warm and sunny tomorrow.",
        "Stock markets fell sharply on Monday.",
        "I like to eat pizza with friends.",
        "",
        "Quantum computers use qubits.",
    ]
    ds = datasets.Dataset.from_dict(
        {"uid": [f"u{i}" for i in range(len(texts))], "sentence": texts, "lang": ["en"] * 8}
    )
    folder = tmp_path_factory.mktemp("hf") / "text"
    ds.save_to_disk(str(folder))
    return folder


def test_hf_text_dataset(hf_text, tmp_path):
    items = load_input(str(hf_text), text_column="sentence", id_column="uid")
    assert items.kind == "hf" and items.modality == "text"
    assert items.ids == ["u0", "u1", "u2", "u3", "u4", "u5", "u7"]
    assert [e["reason"] for e in items.errors] == ["empty text"]
    assert list(items.columns.columns) == ["text", "lang"]
    with pytest.raises(SemDedupError, match="--text-column 'nope' is not a column"):
        load_input(str(hf_text), text_column="nope")
    res = run_input(
        hf_text,
        tmp_path / "run",
        embed=EmbedConfig(text_column="sentence", id_column="uid"),
        cluster=ClusterConfig(1),
    )
    by_id = res.items.set_index("id")
    # each rewording pair: the later item of the two is a duplicate of the earlier one
    for a, b in (("u0", "u1"), ("u2", "u3")):
        later, earlier = (a, b) if by_id.at[a, "rank"] > by_id.at[b, "rank"] else (b, a)
        assert by_id.at[later, "dup_of"] == earlier and by_id.at[later, "max_sim"] > 0.75, by_id


def test_hf_image_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets package is a dev dependency")
    rng = np.random.default_rng(3)
    blobs = [_png(_scene(rng)) for _ in range(4)] + [b"broken"]
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b in blobs], "label": [0, 1, 2, 3, 4]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    dd = datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(SemDedupError, match="several splits .* pass one of them"):
        load_input(str(tmp_path / "dd"), image_column="image")
    items = load_input(str(tmp_path / "dd" / "train"), image_column="image")
    assert items.modality == "image" and len(items) == 5 and "label" in items.columns
    assert media.read_bytes(items.paths[1]) == blobs[1]
    res = run_input(
        tmp_path / "dd" / "train",
        tmp_path / "run",
        embed=EmbedConfig(image_column="image", workers=0),
        cluster=ClusterConfig(1),
    )
    assert res.n_items == 4
    errors = pd.read_parquet(tmp_path / "run" / "errors.parquet")
    assert errors["id"].tolist() == ["4"] and errors["reason"].str.startswith("unreadable image").all()


@pytest.mark.slow
def test_the_explorer_shows_shard_members(wds, tmp_path, monkeypatch):
    """Pairs of a webdataset run show thumbnails read from inside the shards."""
    from streamlit.testing.v1 import AppTest

    import semdedup_app as sa

    root, _ = wds
    res = run_input(root, tmp_path / "run", embed=EmbedConfig(workers=0), cluster=ClusterConfig(2))
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(res.path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.session_state["sd_eps"] = 0.5
    at.switch_page(sa.PAGES["pairs"]).run()
    assert not at.exception and not at.warning, [w.value for w in at.warning]
    assert res.n_removed(0.5) > 0 and len(at.get("image")) >= 2
