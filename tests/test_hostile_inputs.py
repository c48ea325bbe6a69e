"""Hostile inputs and exports: ids and paths with line breaks or NUL, null ids, spreadsheet formulas in
CSV cells, a broken JSONL line, --out inside a file, an oversize --clusters, images that must not be
decoded (FIFOs, bombs, links out of the folder) — each refused in one line or made an error row."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
from conftest import write_png_bomb

from semdedup_core import ClusterConfig, SemDedupError, dedup, run_input
from semdedup_core.cli import main
from semdedup_core.explore.export import export_frame, to_bytes
from semdedup_core.ingest.inputs import load_input
from semdedup_core.media import images
from semdedup_core.results.io import read_ids


def test_a_null_id_in_a_parquet_ids_file_is_refused_not_named_nan(tmp_path):
    pd.DataFrame({"id": ["a", None, "c"]}).to_parquet(tmp_path / "ids.parquet")
    with pytest.raises(SemDedupError, match="missing \\(null\\) id at position 1"):
        read_ids(tmp_path / "ids.parquet", 3)
    pd.DataFrame({"id": [1.0, np.nan, 3.0]}).to_parquet(tmp_path / "f.parquet")
    with pytest.raises(SemDedupError, match="missing \\(null\\) id at position 1"):
        read_ids(tmp_path / "f.parquet", 3)


@pytest.mark.parametrize("bad", ["kept\nremoved", "a\rb", "nul\x00", "ls\u2028x", "nel\x85"])
def test_ids_with_a_line_break_or_nul_are_refused_naming_the_row(bad, tmp_path):
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    ids = ["a", "b", bad, "d"]
    with pytest.raises(SemDedupError, match="line break or NUL at position 2"):
        dedup(x, ids, cluster=ClusterConfig(1), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
    pd.DataFrame({"id": ids}).to_parquet(tmp_path / "ids.parquet")
    with pytest.raises(SemDedupError, match="position 2"):
        read_ids(tmp_path / "ids.parquet", 4)
    if "\n" not in bad:  # a text file cannot hold an id with a newline, but may hold the others
        (tmp_path / "ids.txt").write_bytes(("\n".join(ids) + "\n").encode())
        with pytest.raises(SemDedupError, match="position 2"):
            read_ids(tmp_path / "ids.txt", 4)


def test_windows_line_endings_are_not_part_of_an_id(tmp_path):
    (tmp_path / "ids.txt").write_bytes(b"a\r\nb\r\n")
    assert read_ids(tmp_path / "ids.txt", 2).tolist() == ["a", "b"]


def test_table_rows_with_a_line_break_in_the_id_or_path_are_error_rows(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(tmp_path / "ok.png")
    pd.DataFrame({"id": ["one", "two\nthree", "four"], "text": ["a", "b", "c"]}).to_parquet(tmp_path / "t.parquet")
    items = load_input(tmp_path / "t.parquet", text_column="text", id_column="id")
    assert items.ids == ["one", "four"]
    assert [e["reason"] for e in items.errors] == ["the id holds a line break or NUL ('\\n'; row 1)"]
    pd.DataFrame({"id": ["a", "b"], "path": ["ok.png", "ok\n.png"]}).to_parquet(tmp_path / "i.parquet")
    items = load_input(tmp_path / "i.parquet", image_column="path", id_column="id")
    assert items.ids == ["a"] and "line break or NUL" in items.errors[0]["reason"]


def test_an_image_file_named_with_a_line_break_is_an_error_row(tmp_path):
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "fine.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "two\nlines.png")
    items = load_input(tmp_path / "imgs")
    assert items.ids == ["fine.png"]
    assert items.errors[0]["id"] == "two\nlines.png" and "line break" in items.errors[0]["reason"]


def test_a_broken_jsonl_line_is_named_by_its_line_number(tmp_path, capsys):
    (tmp_path / "t.jsonl").write_text('{"id": 1, "t": "a"}\n{"id": 2, "t": "b"\n{"id": 3, "t": "c"}\n')
    rc = main(
        ["run", "--input", str(tmp_path / "t.jsonl"), "--text-column", "t", "--out", str(tmp_path / "o")]
        + ["--clusters", "1", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "line 2 is not valid JSON" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_out_inside_a_file_is_one_line(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "file").write_text("x")
    rc = main(
        ["run", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "file" / "sub")]
        + ["--clusters", "2", "--quiet"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "is a file (or inside one)" in err and len(err.strip().splitlines()) == 1, err


def test_oversize_clusters_is_refused_before_anything_is_embedded(tmp_path):
    """Before, the whole input was embedded first and the run failed in the engine."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    t0 = time.monotonic()
    with pytest.raises(SemDedupError, match="number of usable items \\(3 of 3"):
        run_input(tmp_path / "imgs", tmp_path / "out", cluster=ClusterConfig(5))
    assert time.monotonic() - t0 < 5 and not (tmp_path / "out").exists()


def test_csv_cells_a_spreadsheet_would_run_are_neutralised(text_results):
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2", "@SUM(A1)", "\tx", "\rx"]
    frame = export_frame(text_results, 0.3).head(len(hostile)).copy()
    frame["id"] = hostile
    frame["max_sim"] = -0.5  # a negative number is a number, not a formula
    back = pd.read_csv(io.BytesIO(to_bytes(frame, "csv")), keep_default_na=False)
    assert back["id"].tolist() == ["'" + h for h in hostile]
    assert back["max_sim"].tolist() == [-0.5] * len(hostile)
    assert pd.read_parquet(io.BytesIO(to_bytes(frame, "parquet")))["id"].tolist() == hostile  # verbatim
    frame["path"] = "in\rthe middle"  # quoted, so no reader splits the row there
    back = pd.read_csv(io.BytesIO(to_bytes(frame, "csv")), keep_default_na=False)
    assert len(back) == len(hostile) and back["path"].tolist() == ["in\rthe middle"] * len(hostile)


def test_a_txt_export_never_turns_one_value_into_two_lines(text_results):
    frame = export_frame(text_results, 0.3).head(3).copy()
    frame["path"] = ["a.png", "b\n.png", "c.png"]
    with pytest.raises(SemDedupError, match="path 'b\\\\n.png' of item .* line break or NUL"):
        to_bytes(frame, "txt", "path")
    assert to_bytes(frame, "txt", "id").decode().count("\n") == 3


# -- files that cannot hurt --------------------------------------------------------------------------------
def _in_thread(fn, timeout: float = 10.0):
    out: list = []
    t = threading.Thread(target=lambda: out.append(_call(fn)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "hung"
    return out[0]


def _call(fn):
    try:
        return fn()
    except Exception as exc:
        return exc


def test_open_image_refuses_fifos_empty_files_bombs_and_links_out(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    os.mkfifo(root / "x.jpg")
    (root / "zero.png").write_bytes(b"")
    bomb = write_png_bomb(root / "bomb.png")
    assert bomb.stat().st_size < 1_000_000
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    os.symlink(tmp_path / "outside.png", root / "link.png")
    expect = {
        "x.jpg": "not a regular file (a FIFO)",
        "zero.png": "an empty file (0 bytes)",
        "bomb.png": "12000 × 12000 pixels (144 megapixels) is more than the limit of 40 megapixels",
        "link.png": "a symbolic link to a file outside the input folder",
    }
    for name, reason in expect.items():
        exc = _in_thread(lambda n=name: images.open_image(root / n, root=root))
        assert isinstance(exc, images.ImageRefused) and reason in str(exc), (name, exc)
    assert images.open_image(root / "link.png").size == (8, 8)  # without a root (a table's paths) it is read


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_and_a_big_png_is_refused(tmp_path):
    from PIL import Image

    arr = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", quality=80)
    Image.fromarray(arr).save(tmp_path / "big.png")
    im = images.open_image(tmp_path / "big.jpg", size=200, max_pixels=1_000_000)  # 3 MP on disk
    assert im.size[0] * im.size[1] <= 1_000_000 and min(im.size) >= 200
    with pytest.raises(images.ImageRefused, match="2000 × 1500 pixels"):
        images.open_image(tmp_path / "big.png", size=200, max_pixels=1_000_000)
    png = images.thumbnail_png(tmp_path / "big.png", 256)  # under the default limit: fine, and small
    assert Image.open(io.BytesIO(png)).size == (256, 192)


def test_app_thumbnails_refuse_the_same_files_without_hanging(tmp_path):
    """Before, a 144-megapixel PNG cost about 0.9 GB and seconds per thumbnail, and a FIFO hung the page."""
    import semdedup_app as sa

    os.mkfifo(tmp_path / "x.jpg")
    bomb = write_png_bomb(tmp_path / "bomb.png")
    for path, reason in ((tmp_path / "x.jpg", "FIFO"), (bomb, "144 megapixels")):
        t0 = time.monotonic()
        data, why = _in_thread(lambda p=path: sa.image(None, p))
        assert data is None and reason in why and time.monotonic() - t0 < 5


def test_map_hover_labels_escape_ids_and_texts(tmp_path):
    """Plotly renders a subset of HTML in hover labels: ids and texts go in escaped (shown literally)."""
    import pandas as pd

    import semdedup_app as sa
    from semdedup_core.explore import maps

    x = np.random.default_rng(1).normal(size=(12, 4)).astype(np.float32)
    ids = [f"<a href='javascript:alert({i})'>x</a>" if i % 2 else f"<b>{i}</b>" for i in range(12)]
    texts = pd.DataFrame({"text": ["<img src=x onerror=alert(1)> & more"] * 12})
    res = dedup(x, ids, cluster=ClusterConfig(2), out=tmp_path / "r", columns=texts)
    maps.compute_map(res, method="pca")
    labels = sa.map_labels(res, "pca", res.n_items)
    assert len(labels) == 12
    for label in labels:
        assert "<a " not in label and "<b>" not in label and "<img" not in label
        assert label.count("<br>") == 1  # the one line break the label itself puts in
    assert "&lt;img src=x onerror=alert(1)&gt; &amp; more" in labels[0]
