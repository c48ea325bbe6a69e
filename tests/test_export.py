"""Exports of kept/removed items: contents, formats, atomic files in the results folder, inputs untouched."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd
import pytest

from semdedup_core import SemDedupError
from semdedup_core.explore.export import FORMATS, export_frame, file_name, to_bytes, write_export


def test_export_frame_matches_results(text_results):
    res = text_results
    for e in (0.0, 0.05, 0.3):
        removed = export_frame(res, e, "removed")
        kept = export_frame(res, e, "kept")
        assert removed["id"].tolist() == res.removed(e)["id"].tolist()
        assert kept["id"].tolist() == res.kept(e)["id"].tolist()
        assert len(removed) + len(kept) == res.n_items
        assert list(removed.columns) == ["id", "cluster", "max_sim", "dup_of"]
        assert (removed["max_sim"] > 1 - e).all() and removed["dup_of"].notna().all()


def test_formats_round_trip(text_results):
    frame = export_frame(text_results, 0.05, "removed")
    csv = pd.read_csv(io.BytesIO(to_bytes(frame, "csv")), dtype={"id": str, "dup_of": str})
    assert csv["id"].tolist() == frame["id"].tolist()
    assert csv["dup_of"].tolist() == frame["dup_of"].tolist()
    pq = pd.read_parquet(io.BytesIO(to_bytes(frame, "parquet")))
    pd.testing.assert_frame_equal(pq, frame)
    txt = to_bytes(frame, "txt").decode().splitlines()
    assert txt == frame["id"].tolist()
    with pytest.raises(SemDedupError, match="format must be one of"):
        to_bytes(frame, "xlsx")
    with pytest.raises(SemDedupError, match="txt_column 'path'"):
        to_bytes(frame, "txt", txt_column="path")


def _digest(paths):
    return {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def test_write_export_into_results_folder_never_touches_inputs(image_results):
    res = image_results
    paths = res.items["path"].tolist()
    before = _digest(paths)
    written = []
    for fmt in FORMATS:
        for which in ("kept", "removed"):
            written.append(write_export(res, 0.05, which, fmt))
    written.append(write_export(res, 0.05, "removed", "txt", txt_column="path"))
    assert _digest(paths) == before
    for p in written:
        assert p.parent == res.path / "exports" and p.exists()
    assert not [p for p in (res.path / "exports").iterdir() if p.name.startswith(".")]  # no temp files left
    lines = (res.path / "exports" / "removed-eps0.0500-path.txt").read_text().splitlines()
    assert lines == res.removed(0.05)["path"].tolist()
    df = pd.read_parquet(res.path / "exports" / "removed-eps0.0500.parquet")
    assert list(df.columns) == ["id", "path", "cluster", "max_sim", "dup_of"]
    assert df["id"].tolist() == res.removed(0.05)["id"].tolist()


def test_file_names_and_bad_arguments():
    assert file_name(0.05, "removed", "csv") == "removed-eps0.0500.csv"
    assert file_name(0.1, "kept", "txt", "path") == "kept-eps0.1000-path.txt"
    with pytest.raises(SemDedupError, match="which must be"):
        file_name(0.1, "gone", "csv")
    with pytest.raises(SemDedupError, match="eps must be between 0 and 2"):
        file_name(3.0, "kept", "csv")


@pytest.mark.parametrize("which", ["removed", "kept"])
def test_written_exports_stream_in_blocks_and_equal_the_whole_list(text_results, monkeypatch, which):
    """write_export writes a block of rows at a time (here 7): the file is the same bytes as the whole list
    encoded at once (CSV with its formula guard and one header, TXT), the same table for Parquet — also when
    the first block has no dup_of at all (kept: the first item of each cluster)."""
    from semdedup_core.explore import export as export_module

    e = 0.2
    whole = export_frame(text_results, e, which)
    assert len(whole) > 3 * 7
    monkeypatch.setattr(export_module, "EXPORT_BATCH_ROWS", 7)
    blocks = list(export_module.export_batches(text_results, e, which))
    assert len(blocks) == -(-len(whole) // 7) and all(len(b) <= 7 for b in blocks)
    for fmt in ("csv", "txt"):
        path = write_export(text_results, e, which, fmt)
        assert path.read_bytes() == to_bytes(whole, fmt)
    path = write_export(text_results, e, which, "parquet")
    back = pd.read_parquet(path)
    pd.testing.assert_frame_equal(back, pd.read_parquet(io.BytesIO(to_bytes(whole, "parquet"))))


def test_a_parquet_export_whose_first_block_has_no_dup_of(tmp_path):
    """A block whose dup_of column is all missing (say, the first items of clusters) and a later block with
    ids: one Parquet file with a string column."""
    from semdedup_core.explore.export import write_batches

    first = pd.DataFrame({"id": ["a", "b"], "max_sim": [-1.0, -1.0], "dup_of": [None, None]})
    second = pd.DataFrame({"id": ["c"], "max_sim": [0.97], "dup_of": ["a"]})
    write_batches([first, second], tmp_path / "x.parquet", "parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    assert pq.read_schema(tmp_path / "x.parquet").field("dup_of").type == pa.string()
    whole = pd.concat([first, second], ignore_index=True)
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "x.parquet"), pd.read_parquet(io.BytesIO(to_bytes(whole, "parquet")))
    )
    assert pd.read_parquet(tmp_path / "x.parquet")["dup_of"].iloc[2] == "a"


def test_an_empty_export_still_has_its_header(text_results):
    path = write_export(text_results, 0.0, "removed", "csv")
    assert path.read_text().splitlines() == [",".join(export_frame(text_results, 0.0).columns)]
