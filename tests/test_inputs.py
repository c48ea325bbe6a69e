"""Finding the items of raw inputs: image folders, tables and embedding shards (no models involved)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import make_image_folder

from semdedup_core.errors import SemDedupError
from semdedup_core.ingest.inputs import load_input


def test_image_folder_is_searched_recursively_and_sorted(tmp_path):
    made = make_image_folder(tmp_path / "imgs")
    items = load_input(tmp_path / "imgs")
    assert items.kind == "folder" and items.modality == "image"
    # every image-named file is a candidate (bad ones fail later, when decoded); others are skipped
    assert items.ids == sorted(made["good"] + made["bad"])
    assert items.skipped == len(made["skipped"])
    assert ".hidden.png" not in items.ids
    assert items.paths[0] == str((tmp_path / "imgs" / items.ids[0]).resolve())
    assert list(items.columns.columns) == ["path"]


def test_image_folder_errors(tmp_path):
    with pytest.raises(SemDedupError, match="does not exist"):
        load_input(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(SemDedupError, match="holds no image files"):
        load_input(tmp_path / "empty")
    with pytest.raises(SemDedupError, match="apply to tables"):
        load_input(tmp_path / "empty", text_column="text")
    (tmp_path / "x.npy").write_bytes(b"")
    with pytest.raises(SemDedupError, match="neither a folder nor a table"):
        load_input(tmp_path / "x.npy")


def _write(df: pd.DataFrame, path):
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_text_table_checks_rows_and_carries_columns(tmp_path, suffix):
    df = pd.DataFrame(
        {
            "doc": ["a", "b", "", "c", None, "x" * 50, "d", "e"],
            "key": ["k1", "k2", "k3", "k4", "k5", "k6", "k1", None],
            "label": [1, 2, 3, 4, 5, 6, 7, 8],
            "rank": [9, 9, 9, 9, 9, 9, 9, 9],  # clashes with the results format: renamed
        }
    )
    path = tmp_path / f"t{suffix}"
    _write(df, path)
    items = load_input(path, text_column="doc", id_column="key", max_text_chars=20)
    assert items.modality == "text" and items.n_input == 8
    assert items.ids == ["k1", "k2", "k4"]
    assert items.texts == ["a", "b", "c"]
    assert list(items.columns.columns) == ["text", "label", "rank_input"]
    assert items.columns["label"].tolist() == [1, 2, 4]
    reasons = {e["id"]: e["reason"] for e in items.errors}
    # CSV cannot tell an empty cell from a missing one
    assert reasons["k3"] == ("missing text in column 'doc'" if suffix == ".csv" else "empty text")
    assert reasons["k5"].startswith("missing text")
    assert "longer than 20" in reasons["k6"]
    assert reasons["k1"].startswith("duplicate id (row 6; first at row 0)")
    assert any(e["id"] is None and e["reason"].startswith("missing id") for e in items.errors)
    assert len(items.errors) == 5


def test_image_table_resolves_paths_relative_to_the_table(tmp_path):
    made = make_image_folder(tmp_path / "data" / "imgs", n_scenes=3)
    df = pd.DataFrame(
        {
            "file": [
                "imgs/" + made["good"][0],
                "imgs/missing.png",
                None,
                "https://example.com/a.jpg",
                "imgs/" + made["good"][1],
            ],
            "caption": ["one", "two", "three", "four", "five"],
            "url": ["u1", "u2", "u3", "u4", "u5"],
        }
    )
    df.to_parquet(tmp_path / "data" / "table.parquet")
    items = load_input(tmp_path / "data" / "table.parquet", image_column="file", text_column="caption")
    assert items.modality == "image"  # with both columns the images are embedded, the texts carried
    assert items.ids == ["0", "4"]
    assert items.paths == [str((tmp_path / "data" / "imgs" / made["good"][i]).resolve()) for i in (0, 1)]
    assert list(items.columns.columns) == ["path", "text", "url"]
    assert items.columns["text"].tolist() == ["one", "five"]
    reasons = sorted(e["reason"].split(" (")[0].split(";")[0] for e in items.errors)
    assert reasons == ["a URL, not a local file", "file not found", "missing image path in column 'file'"]


def test_table_errors_name_the_value_and_the_fix(tmp_path):
    pd.DataFrame({"a": ["x"], "b": ["y"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(SemDedupError, match=r"--text-column 'text' is not a column .*columns: a, b"):
        load_input(tmp_path / "t.csv", text_column="text")
    with pytest.raises(SemDedupError, match="needs --text-column NAME or --image-column NAME"):
        load_input(tmp_path / "t.csv")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SemDedupError, match="could not be read"):
        load_input(tmp_path / "bad.parquet", text_column="a")
    pd.DataFrame({"a": []}).to_parquet(tmp_path / "empty.parquet")
    with pytest.raises(SemDedupError, match="has no rows"):
        load_input(tmp_path / "empty.parquet", text_column="a")


def make_shards(root, sizes=(5, 7), d=8, seed=0, key=True):
    rng = np.random.default_rng(seed)
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    mats = []
    for s, n in enumerate(sizes):
        x = rng.normal(size=(n, d)).astype(np.float16)
        np.save(root / "img_emb" / f"img_emb_{s}.npy", x)
        meta = {"caption": [f"c{s}-{i}" for i in range(n)], "url": [f"http://x/{s}/{i}" for i in range(n)]}
        if key:
            meta["key"] = [f"{s:05d}{i:04d}" for i in range(n)]
        pd.DataFrame(meta).to_parquet(root / "metadata" / f"metadata_{s}.parquet")
        mats.append(x)
    return np.concatenate(mats)


def test_shards_are_found_in_numeric_order(tmp_path):
    make_shards(tmp_path / "e", sizes=(2, 3, 2, 2, 2, 2, 2, 2, 2, 2, 4))  # _10 sorts after _9
    items = load_input(tmp_path / "e", text_column="caption")
    assert items.kind == "shards" and items.modality == "image"
    assert [p.rsplit("_", 1)[1] for p, _ in items.shards] == [f"{i}.npy" for i in range(11)]
    assert items.ids[:3] == ["000000000", "000000001", "000010000"]
    assert items.columns["text"].iloc[-1] == "c10-3"
    assert {"url", "shard", "shard_row"} <= set(items.columns.columns)


def test_shards_errors(tmp_path):
    make_shards(tmp_path / "a", key=False)
    items = load_input(tmp_path / "a")
    assert items.ids[:2] == ["0:0", "0:1"]
    pd.DataFrame({"caption": ["x"]}).to_parquet(tmp_path / "a" / "metadata" / "metadata_1.parquet")
    with pytest.raises(SemDedupError, match="must match row for row"):
        load_input(tmp_path / "a")
    make_shards(tmp_path / "b")
    np.save(tmp_path / "b" / "img_emb" / "img_emb_1.npy", np.zeros((7, 4), np.float32))
    with pytest.raises(SemDedupError, match="d = 4 but earlier shards have 8"):
        load_input(tmp_path / "b")
    make_shards(tmp_path / "c")
    (tmp_path / "c" / "metadata" / "metadata_0.parquet").unlink()
    with pytest.raises(SemDedupError, match="has no metadata file"):
        load_input(tmp_path / "c")


def test_text_embedding_shards(tmp_path):
    make_shards(tmp_path / "t", sizes=(3,))
    (tmp_path / "t" / "img_emb").rename(tmp_path / "t" / "text_emb")
    (tmp_path / "t" / "text_emb" / "img_emb_0.npy").rename(tmp_path / "t" / "text_emb" / "text_emb_0.npy")
    items = load_input(tmp_path / "t", text_column="caption")
    assert items.modality == "text" and items.source["embeddings"] == "text_emb"
    assert items.columns["text"].tolist() == ["c0-0", "c0-1", "c0-2"]
