"""``apply``: the kept part of a run's own input, in its own format — for every input kind, with every
field or member intact; resumable; refused in one line when it cannot be right."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from apply_data import (
    kept_ids,
    planted_run,
    table_rows,
    tar_members,
    write_csv,
    write_embedding_shards,
    write_hf,
    write_image_folder,
    write_jsonl,
    write_parquet,
    write_wds,
)

from semdedup_core import SemDedupError
from semdedup_core.ingest.apply import WRITERS, apply_run
from semdedup_core.ingest.apply.common import scratch_of
from semdedup_core.ingest.inputs import READERS, input_fingerprint
from semdedup_core.results.results import Results

ROOT = Path(__file__).resolve().parents[1]
EPS = 0.05


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "semdedup_core", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_every_reader_has_a_writer():
    assert {r.name for r in READERS} == set(WRITERS)


def test_planted_copies_are_removed(tmp_path):
    """The planted runs are what the tests below need: some items removed, most kept."""
    res = planted_run(
        write_jsonl(tmp_path / "t.jsonl", table_rows()), tmp_path / "run", text_column="text", id_column="id"
    )
    removed = res.rows(np.flatnonzero(res.removed_mask(EPS)), ["id"])["id"].str.replace("~1", "").tolist()
    copies = [i.replace("~1", "") for i in res.rows(np.arange(res.n_items), ["id"])["id"] if i.endswith("~1")]
    assert sorted(removed) == sorted(copies)  # one of each original and its copy


# -- tables ------------------------------------------------------------------------------------------------
def _jsonl_lines(path: Path) -> dict[str, bytes]:
    out = {}
    for line in path.read_bytes().split(b"\n"):
        if line.strip():
            out.setdefault(json.loads(line)["id"], line)
    return out


def test_jsonl_kept_lines_are_copied_byte_for_byte(tmp_path):
    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    before = src.read_bytes()
    s = apply_run(res, EPS, tmp_path / "kept.jsonl")
    assert src.read_bytes() == before  # the input is only read
    out = (tmp_path / "kept.jsonl").read_bytes()
    lines = out.split(b"\n")
    assert lines[-1] == b"" and all(lines[:-1])  # one row a line, each ended
    got = [json.loads(line)["id"] for line in lines[:-1]]
    assert got == kept_ids(res, EPS)  # exactly the kept ids, in the input's order
    first = _jsonl_lines(src)
    assert all(line == first[i] for line, i in zip(lines[:-1], got, strict=True))  # byte-identical rows
    assert "empty" not in got and ("r1" in got) != ("r1~1" in got)  # the reader's error row; one of a pair
    assert s.kept == len(got) and s.removed == res.n_removed(EPS) and s.not_in_run == 2  # empty text, repeated id
    assert not scratch_of(tmp_path / "kept.jsonl").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "kept.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask  # readable as any new file
    frame = pd.read_json(tmp_path / "kept.jsonl", lines=True, dtype=False)
    assert list(frame.columns) == ["id", "text", "group", "score", "count", "maybe", "tags", "meta"]


def test_jsonl_with_row_number_ids(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in table_rows()]
    src = write_jsonl(tmp_path / "data.jsonl", rows)
    res = planted_run(src, tmp_path / "run", text_column="text")
    apply_run(res, EPS, tmp_path / "kept.jsonl")
    all_rows = [line for line in src.read_bytes().split(b"\n") if line.strip()]
    want = [all_rows[int(i)] for i in kept_ids(res, EPS)]
    assert (tmp_path / "kept.jsonl").read_bytes() == b"".join(line + b"\n" for line in want)


def test_csv_kept_records_are_copied_byte_for_byte(tmp_path):
    src = write_csv(tmp_path / "data.csv", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    apply_run(res, EPS, tmp_path / "kept.csv")
    opts = {"keep_default_na": False, "na_values": [""], "dtype_backend": "numpy_nullable"}
    whole, kept = pd.read_csv(src, **opts), pd.read_csv(tmp_path / "kept.csv", **opts)
    ids = kept_ids(res, EPS)
    assert kept["id"].tolist() == ids
    expect = whole.set_index("id").loc[ids].reset_index()
    pd.testing.assert_frame_equal(kept, expect)  # every column, value and type
    out = (tmp_path / "kept.csv").read_bytes()
    assert out.startswith(src.read_bytes().split(b"\r\n")[0] + b"\r\n") and b'"line one\r\nline two' not in out
    assert b'"line one\nline two #' in out and out.count(b"\r\n") == len(ids) + 1  # records kept whole, CRLF


def test_parquet_kept_rows_keep_schema_types_and_order(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = write_parquet(tmp_path / "data.parquet", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    apply_run(res, EPS, tmp_path / "kept.parquet")
    whole, kept = pq.read_table(src), pq.read_table(tmp_path / "kept.parquet")
    assert kept.schema.equals(whole.schema, check_metadata=True)
    mask = pa.array(np.isin(whole.column("id").to_numpy(zero_copy_only=False), kept_ids(res, EPS)))
    assert kept.equals(whole.filter(mask))
    assert kept.column("id").to_pylist() == kept_ids(res, EPS)
    assert pq.ParquetFile(tmp_path / "kept.parquet").metadata.row_group(0).column(0).compression == "ZSTD"
    frame = pd.read_parquet(tmp_path / "kept.parquet")
    assert len(frame) == kept.num_rows and frame.dtypes.equals(pd.read_parquet(src).dtypes)


def test_a_table_is_written_in_its_own_format(tmp_path):
    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    with pytest.raises(SemDedupError, match=r"must be a \.jsonl file"):
        apply_run(res, EPS, tmp_path / "kept.parquet")


# -- webdataset --------------------------------------------------------------------------------------------
def test_webdataset_kept_samples_with_every_member_byte_identical(tmp_path):
    root = write_wds(tmp_path / "shards")
    res = planted_run(root, tmp_path / "run")
    s = apply_run(res, EPS, tmp_path / "out", shard_size=3)
    shards = sorted((tmp_path / "out").glob("*.tar"))
    kept = kept_ids(res, EPS)
    assert len(shards) == -(-len(kept) // 3) and [p.name for p in shards][0] == "shard-000000.tar"
    written: dict[str, bytes] = {}
    for p in shards:
        members = tar_members(p)
        assert len({n.split(".")[0] for n in members}) <= 3
        written.update(members)
    originals = {}
    for p in sorted(root.glob("*.tar")):
        for name, data in tar_members(p).items():
            originals.setdefault(name, data)  # a repeated key: the first occurrence is the item
    keys = list(dict.fromkeys(n.split(".")[0] for n in written))
    assert keys == kept  # the kept keys, in input order, and nothing else (no orphan, no cut member)
    for name, data in written.items():
        assert data == originals[name], name
        assert name.split(".")[1] in {"jpg", "png", "txt", "json", "cls"}
    for key in kept:  # every member of each kept sample
        assert {n for n in written if n.split(".")[0] == key} == {n for n in originals if n.split(".")[0] == key}
    with tarfile.open(shards[0]) as tf:
        info = tf.getmembers()[0]
        assert (info.mtime, info.mode, info.uname) == (1_700_000_000, 0o640, "someone")
    removed = (tmp_path / "out" / "removed.txt").read_text().split()
    assert removed == [i for i in res.rows(np.arange(res.n_items), ["id"])["id"] if i not in kept]
    assert s.removed == len(removed) > 0 and s.not_in_run == 2  # the orphan and the repeated p0


def test_webdataset_run_that_records_only_the_folder(tmp_path):
    """A run.json whose input names the folder of shards, not each shard, is applied the same."""
    root = write_wds(tmp_path / "shards")
    listed = planted_run(root, tmp_path / "listed")
    folder = planted_run(root, tmp_path / "folder", drop=("shards",))
    assert "shards" not in folder.run["input"] and folder.run["input"]["path"] == str(root.resolve())
    apply_run(listed, EPS, tmp_path / "a", shard_size=4)
    apply_run(folder, EPS, tmp_path / "b", shard_size=4)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert all((tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes() for n in names)


# -- Hugging Face ------------------------------------------------------------------------------------------
def test_hf_folder_opens_with_load_from_disk(tmp_path):
    import datasets

    src = write_hf(tmp_path / "hf", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    apply_run(res, EPS, tmp_path / "out")
    whole, kept = datasets.load_from_disk(str(src)), datasets.load_from_disk(str(tmp_path / "out"))
    ids = kept_ids(res, EPS)
    assert kept["id"] == ids and kept.features == whole.features
    index = {i: n for n, i in enumerate(whole["id"])}
    for row in kept:
        original = whole[index[row["id"]]]
        for column in whole.column_names:
            if column == "image":
                assert row["image"].tobytes() == original["image"].tobytes()
            else:
                assert row[column] == original[column], column
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in src.iterdir())
    state = json.loads((tmp_path / "out" / "state.json").read_text())
    assert state["_fingerprint"] != json.loads((src / "state.json").read_text())["_fingerprint"]


def test_hf_folder_with_row_number_ids(tmp_path):
    import datasets

    rows = [{k: v for k, v in r.items() if k != "id"} for r in table_rows()]
    src = write_hf(tmp_path / "hf", rows)
    res = planted_run(src, tmp_path / "run", text_column="text")
    apply_run(res, EPS, tmp_path / "out")
    whole, kept = datasets.load_from_disk(str(src)), datasets.load_from_disk(str(tmp_path / "out"))
    assert kept["text"] == [whole[int(i)]["text"] for i in kept_ids(res, EPS)]


# -- image folders ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["link", "copy", "list"])
def test_image_folder_modes_keep_relative_paths(tmp_path, mode):
    root = write_image_folder(tmp_path / "photos")
    res = planted_run(root, tmp_path / "run")
    out = tmp_path / ("kept.txt" if mode == "list" else "kept")
    apply_run(res, EPS, out, mode=mode)
    kept = kept_ids(res, EPS)
    assert 0 < len(kept) < res.n_items
    if mode == "list":
        assert out.read_text().splitlines() == kept
        return
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(kept) and any("/" in f for f in files)
    for rel in files:
        a, b = (root / rel).stat(), (out / rel).stat()
        assert (out / rel).read_bytes() == (root / rel).read_bytes()
        assert (a.st_ino == b.st_ino) == (mode == "link") and a.st_mtime_ns == b.st_mtime_ns


def test_image_folder_refusals(tmp_path):
    root = write_image_folder(tmp_path / "photos")
    res = planted_run(root, tmp_path / "run")
    with pytest.raises(SemDedupError, match="inside the run's input"):
        apply_run(res, EPS, root / "kept")
    with pytest.raises(SemDedupError, match="--shard-size applies to webdataset shards"):
        apply_run(res, EPS, tmp_path / "kept", shard_size=10)


# -- embedding shards --------------------------------------------------------------------------------------
def test_embedding_shards_keep_rows_and_metadata(tmp_path):
    src = write_embedding_shards(tmp_path / "emb")
    res = planted_run(src, tmp_path / "run")
    apply_run(res, EPS, tmp_path / "out")
    kept = set(kept_ids(res, EPS))
    assert 0 < len(kept) < res.n_items
    for s in range(3):
        meta = pd.read_parquet(src / "metadata" / f"metadata_{s}.parquet")
        x = np.load(src / "img_emb" / f"img_emb_{s}.npy")
        mask = meta["key"].isin(kept).to_numpy()
        got_meta = pd.read_parquet(tmp_path / "out" / "metadata" / f"metadata_{s}.parquet")
        got_x = np.load(tmp_path / "out" / "img_emb" / f"img_emb_{s}.npy")
        pd.testing.assert_frame_equal(got_meta, meta[mask].reset_index(drop=True))
        assert got_x.dtype == np.float16 and np.array_equal(got_x, x[mask])


# -- rules, leakage, refusals --------------------------------------------------------------------------------
def test_rules_and_leaked_items(tmp_path):
    from semdedup_core import ClusterConfig, dedup
    from semdedup_core.ingest.inputs import load_input

    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    items = load_input(str(src), text_column="text", id_column="id")
    from apply_data import group_of, vectors

    x = vectors([group_of(i, r) for i, r in zip(items.ids, items.columns.to_dict("records"), strict=True)])
    held_out = x[[0, 5]] + 0.001  # two items that leak
    source = {**items.source, "fingerprint": input_fingerprint(src)}
    res = dedup(
        x,
        items.ids,
        cluster=ClusterConfig(3, seed=0),
        out=tmp_path / "run",
        columns=items.columns,
        extra={"input": source},
        reference=held_out,
    )
    s = apply_run(res, EPS, tmp_path / "kept.jsonl", drop_leaked=True)
    leaked = set(res.rows(np.flatnonzero(res.leaked_mask(EPS)), ["id"])["id"])
    got = [json.loads(line)["id"] for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert leaked and not leaked & set(got) and set(got) == set(kept_ids(res, EPS)) - leaked
    assert s.leaked_dropped == len(leaked - set(res.rows(np.flatnonzero(res.removed_mask(EPS)), ["id"])["id"]))
    apply_run(res, 0.3, tmp_path / "kept-only.jsonl", rule="kept-only")
    got = [json.loads(line)["id"] for line in (tmp_path / "kept-only.jsonl").read_text().splitlines()]
    assert got == kept_ids(res, 0.3, "kept-only")


def test_refusals_are_one_line(tmp_path, text_results):
    p = cli("apply", str(text_results.path), "--eps", "0.05", "--out", str(tmp_path / "x"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no raw input" in p.stderr and "export" in p.stderr
    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    (tmp_path / "taken.jsonl").write_text("mine")
    p = cli("apply", str(res.path), "--eps", "0.05", "--out", str(tmp_path / "taken.jsonl"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "exists; apply never overwrites" in p.stderr
    assert (tmp_path / "taken.jsonl").read_text() == "mine"
    for extra, words in ((["--mode", "copy"], "--mode applies to image folders"), (["--drop-leaked"], "--reference")):
        p = cli("apply", str(res.path), "--eps", "0.05", "--out", str(tmp_path / "k.jsonl"), *extra)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and words in p.stderr, p.stderr
    with open(src, "a") as f:  # the input changes after the run
        f.write('\n{"id": "new", "text": "added later"}')
    p = cli("apply", str(res.path), "--eps", "0.05", "--out", str(tmp_path / "k.jsonl"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "has changed since the run" in p.stderr
    assert not (tmp_path / "k.jsonl").exists() and not scratch_of(tmp_path / "k.jsonl").exists()


def test_the_fingerprint_sees_every_file_the_reader_reads(tmp_path):
    root = write_image_folder(tmp_path / "photos")
    before = input_fingerprint(root)
    assert input_fingerprint(str(root)) == before  # a path or its string
    (root / "notes.md").write_text("not an image: the reader skips it")
    assert input_fingerprint(root) == before
    os.utime(root / "photo0.png", ns=(1, 1))
    assert input_fingerprint(root) != before
    wds = write_wds(tmp_path / "shards")
    assert input_fingerprint(wds) == input_fingerprint(str(wds / "{00000..00002}.tar"))


# -- resuming ---------------------------------------------------------------------------------------------
def test_an_interrupted_apply_resumes_to_the_same_bytes(tmp_path):
    root = write_wds(tmp_path / "shards")
    res = planted_run(root, tmp_path / "run")
    apply_run(res, EPS, tmp_path / "whole", shard_size=2)

    def stop_after_two(stage, done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_run(res, EPS, tmp_path / "out", shard_size=2, progress=stop_after_two)
    assert not (tmp_path / "out").exists()  # OUT appears only when complete
    partial = sorted(p.name for p in (scratch_of(tmp_path / "out") / "out").iterdir())
    assert partial == ["shard-000000.tar", "shard-000001.tar"]
    s = apply_run(res, EPS, tmp_path / "out", shard_size=2)
    assert s.resumed == 2
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "out").iterdir())
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    # another apply into the same OUT while a scratch folder of other options exists: it starts again
    with pytest.raises(KeyboardInterrupt):
        apply_run(res, EPS, tmp_path / "out2", shard_size=2, progress=stop_after_two)
    assert apply_run(res, EPS, tmp_path / "out2", shard_size=3).resumed == 0


@pytest.mark.slow
def test_a_killed_apply_resumes(tmp_path):
    """``kill -9`` in the middle of writing, then the same command: the same files as an uninterrupted apply."""
    root = tmp_path / "photos"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(600):
        (root / f"img{i:04d}.png").write_bytes(b"\x89PNG" + rng.bytes(200_000))
    res = planted_run(root, tmp_path / "run")
    args = ["apply", str(res.path), "--eps", "0.05", "--mode", "copy", "--quiet"]
    assert cli(*args, "--out", str(tmp_path / "whole")).returncode == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    from semdedup_core.ingest.apply import folder

    assert folder.BATCH_FILES > 100
    proc = subprocess.Popen([sys.executable, "-m", "semdedup_core", *args, "--out", str(tmp_path / "out")], env=env)
    scratch = scratch_of(tmp_path / "out") / "out"
    deadline = time.time() + 60
    while time.time() < deadline and not (scratch.exists() and len(list(scratch.iterdir())) > 50):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out").exists()
    p = cli(*args, "--out", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    names = sorted(q.name for q in (tmp_path / "whole").iterdir())
    assert names == sorted(q.name for q in (tmp_path / "out").iterdir()) and len(names) == 600
    for name in names:
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not any(q.name.startswith(".") for q in (tmp_path / "out").iterdir())
    assert Results.load(res.path).n_items == 600


@pytest.mark.parametrize(
    "values",
    [
        ["a", "b", None, "", "a", "x\ny", "c\u2028", "b", "d", float("nan"), "x\ny"],
        [1, 2, 2, None, 3, 1],
        [1.5, 2.0, float("nan"), 1.5],
        [True, False, True],
    ],
)
def test_units_are_matched_as_the_readers_make_ids(values):
    """The unit whose id the reader makes an item is the one matched with the run's item; the reader's error
    rows (missing, empty, a line break, a repeat) match nothing."""
    import pyarrow as pa

    from semdedup_core.ingest.apply.common import match_units, unit_strings
    from semdedup_core.ingest.inputs.common import _clean, _ids_with_errors

    series = pd.DataFrame({"v": values})["v"]
    want, _ = _ids_with_errors(_clean(series.tolist()), [None] * len(values))
    run_ids = pa.array([w for w in want if w is not None][::-1], type=pa.large_string())  # a run's ids, any order
    inputs = [series]
    if all(isinstance(v, str) or v is None or v != v for v in values):
        arrow = pa.array([None if v is None or v != v else v for v in values], type=pa.large_string())
        inputs += [series.astype("string[pyarrow]"), pa.chunked_array([arrow[:3], arrow[3:]])]
    for given in inputs:
        rows = match_units(unit_strings(given), run_ids)
        got = [run_ids[int(r)].as_py() if r >= 0 else None for r in rows]
        assert got == want


def test_the_audited_rule_keeps_what_reviewers_judged_not_duplicates(tmp_path):
    from semdedup_core.audit.labels import LabelStore

    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    res = planted_run(src, tmp_path / "run", text_column="text", id_column="id")
    gone = res.rows(np.flatnonzero(res.removed_mask(EPS)), ["id", "dup_of"])
    item, partner = gone.iloc[0]["id"], gone.iloc[0]["dup_of"]
    (tmp_path / "elsewhere").mkdir()
    store = LabelStore(tmp_path / "elsewhere" / "labels.parquet")
    store.record(item, partner, "not_duplicate", "ana")
    args = ["apply", str(res.path), "--eps", str(EPS), "--rule", "audited", "--labels", str(store.path)]
    p = cli(*args, "--out", str(tmp_path / "audited.jsonl"))
    assert p.returncode == 0, p.stderr
    got = [json.loads(line)["id"] for line in (tmp_path / "audited.jsonl").read_text().splitlines()]
    assert got == kept_ids(res, EPS, "audited", store) and item in got and item not in kept_ids(res, EPS)
    p = cli("apply", str(res.path), "--eps", str(EPS), "--labels", str(store.path), "--out", str(tmp_path / "x.jsonl"))
    assert p.returncode == 2 and "--labels applies to --rule audited" in p.stderr


@pytest.mark.slow
def test_apply_after_a_real_run_on_webdataset_shards(tmp_path):
    """``run_input`` with the offline image model on a brace pattern of shards records the fingerprint that
    apply checks; the kept samples are written whole."""
    from semdedup_core import ClusterConfig, run_input

    root = write_wds(tmp_path / "shards")
    res = run_input(str(root / "{00000..00002}.tar"), tmp_path / "run", cluster=ClusterConfig(n_clusters=2))
    assert res.run["input"]["fingerprint"] == input_fingerprint(str(root))
    eps = 0.3
    apply_run(res, eps, tmp_path / "out")
    written = tar_members(tmp_path / "out" / "shard-000000.tar")
    assert list(dict.fromkeys(n.split(".")[0] for n in written)) == kept_ids(res, eps)
    assert res.n_removed(eps) > 0 and (tmp_path / "out" / "removed.txt").read_text().split()
