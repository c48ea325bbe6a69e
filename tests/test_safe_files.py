"""Files that cannot hurt (issue 19, findings 6, 7 and 12): the folder's files are opened one safe way
(regular files only, size limits, JSON of the engine's shape), the Arrow copy is read into memory and
checked against the checksum the engine records (never memory-mapped: a truncated copy cannot kill a
serving process), and every damaged file is one line, in the CLI and in the app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from semdedup_core import Results, SemDedupError
from semdedup_core.cli import main
from semdedup_core.results.folder import FolderState, ResultsFolder
from semdedup_core.results.items import MIRROR_KEY

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def copy_folder(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("exports", "*map-*", "audit", "labels*")))


def child(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python with this repository importable (a crash or a hang stays there)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]), HF_HUB_OFFLINE="1")
    for name in ("SEMDEDUP_RESULTS", "SEMDEDUP_READ_ONLY", "SEMDEDUP_ALLOWED_ROOTS", "SEMDEDUP_REVIEWERS"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


# -- finding 6: the Arrow copy -------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["truncated", "copied over in place"])
def test_a_copy_changed_underneath_a_serving_process_never_kills_it(text_results, tmp_path, how):
    """Before, the copy was memory-mapped: truncating it (or copying a shorter file over it in place) while
    a process served the folder killed that process with SIGBUS at its next touch of the items."""
    folder = copy_folder(text_results.path, tmp_path / "run")
    shorter = tmp_path / "shorter.arrow"
    shorter.write_bytes((folder / "items.arrow").read_bytes()[:4096])
    change = (
        "os.truncate(folder / 'items.arrow', 512)"
        if how == "truncated"
        else f"shutil.copyfile({str(shorter)!r}, folder / 'items.arrow')"  # the same inode, rewritten
    )
    p = child(
        f"""
        import os, shutil
        from pathlib import Path
        import pandas as pd
        from semdedup_core import Results
        folder = Path({str(folder)!r})
        res = Results.load(folder)
        assert res.source == "arrow", res.source
        {change}
        frame = res.rows(range(res.n_items))  # every row and column, the texts included
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), pd.read_parquet(folder / "items.parquet"))
        print("alive", len(frame))
        """
    )
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])  # SIGBUS: returncode -7
    assert p.stdout.split() == ["alive", str(text_results.n_items)]


@pytest.mark.parametrize("how", ["truncated", "replaced by rename"])
def test_embeddings_changed_underneath_a_serving_process_never_kill_it(text_results, tmp_path, how):
    """Before, embeddings.npy (and probes, the reference's vectors) were memory-mapped: a truncation while
    the explorer served the folder killed it with SIGBUS at the next rule or map that read a row. Now a
    truncated file is one SemDedupError naming it; a file replaced by rename keeps serving what was
    opened."""
    folder = copy_folder(text_results.path, tmp_path / "run")
    change = (
        "os.truncate(folder / 'embeddings.npy', 256)"
        if how == "truncated"
        else "np.save(folder / 'other.npy', np.zeros((3, 2), np.float32)); "
        "os.replace(folder / 'other.npy', folder / 'embeddings.npy')"
    )
    p = child(
        f"""
        import os
        from pathlib import Path
        import numpy as np
        from semdedup_core import Results, SemDedupError
        folder = Path({str(folder)!r})
        res = Results.load(folder)
        before = np.load(folder / "embeddings.npy")
        emb = res.embeddings
        {change}
        try:
            rows = emb[np.arange(res.n_items)[::-1]]
            assert np.array_equal(rows, before[::-1]), "other rows"
            print("same rows")
        except SemDedupError as exc:
            print("refused:", exc)
        """
    )
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])  # SIGBUS: returncode -7
    if how == "truncated":
        assert p.stdout.startswith("refused:") and "embeddings.npy" in p.stdout and "shortened" in p.stdout
        assert len(p.stdout.strip().splitlines()) == 1
    else:
        assert p.stdout.strip() == "same rows"


def test_rows_read_by_positioned_reads_are_numpy_s_rows(tmp_path):
    """NpyRows and ShardedRows index like the array they stand for: ints, negative ints, slices, integer
    arrays in any order with repeats, boolean masks, a column; across shard edges; and whole."""
    from semdedup_core.results.rows import MERGE_GAP_BYTES, ShardedRows, load_npy

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 12)).astype(np.float32)
    np.save(tmp_path / "all.npy", x)
    cuts = [0, 7, 1800, 1801, 5000]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:], strict=False)):
        np.save(tmp_path / f"part-{i}.npy", x[a:b])
    whole = load_npy(tmp_path / "all.npy", "embeddings", lazy=True, rows=5000)
    parts = ShardedRows([tmp_path / f"part-{i}.npy" for i in range(4)])
    far = MERGE_GAP_BYTES // (12 * 4) + 5  # rows further apart than one read covers
    keys = [
        3,
        -1,
        slice(None),
        slice(10, 4000, 7),
        np.array([4999, 0, 6, 7, 1800, 6, 6, 1801]),
        np.array([0, far, 2 * far, 2 * far + 1]),
        rng.integers(0, 5000, 3000),
        rng.random(5000) < 0.1,
        np.array([], dtype=np.int64),
        (np.array([5, 3]), 4),
    ]
    for arr in (whole, parts):
        assert arr.shape == x.shape and len(arr) == 5000 and arr.dtype == np.float32
        for key in keys:
            np.testing.assert_array_equal(arr[key], x[key], err_msg=repr(key))
        np.testing.assert_array_equal(np.asarray(arr), x)
        with pytest.raises(IndexError):
            arr[np.array([5000])]
    with pytest.raises(SemDedupError, match="has 5,000 rows, not the 4 "):
        load_npy(tmp_path / "all.npy", "embeddings", lazy=True, rows=4)


def patch_scores(folder: Path, n: int) -> int:
    """Rewrite items.arrow with ``n`` scores raised to 0.9999 (same schema, rows and size: only the bytes
    of those floats differ); returns how many items the paper's rule removes at ε 0.001 in the copy."""
    table = pa.ipc.open_file(pa.OSFile(str(folder / "items.arrow"))).read_all()
    scores = table["max_sim"].to_numpy().copy()
    later = np.flatnonzero(scores > 0)[:n]
    scores[later] = 0.9999
    table = table.set_column(table.column_names.index("max_sim"), "max_sim", pa.array(scores))
    size = (folder / "items.arrow").stat().st_size
    with pa.OSFile(str(folder / "items.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for batch in table.to_batches():
            w.write_batch(batch)
    assert (folder / "items.arrow").stat().st_size == size
    return int((scores > 0.999).sum())


def test_a_same_size_edit_of_the_copy_is_detected_by_its_checksum(text_results, tmp_path, capsys):
    """Before, a copy of the recorded size was trusted: after 118-odd scores were patched in it, `export`
    counted the patched scores instead of items.parquet's."""
    folder = copy_folder(text_results.path, tmp_path / "run")
    truth = int((pd.read_parquet(folder / "items.parquet")["max_sim"] > 0.999).sum())
    patched = patch_scores(folder, 100)
    assert patched > truth + 50
    res = Results.load(folder)
    assert res.source == "parquet" and res.n_removed(0.001) == truth
    assert main(["export", str(folder), "--eps", "0.001"]) == 0
    assert f"removed: {truth:,} of {res.n_items:,}" in capsys.readouterr().out
    record = json.loads((folder / "run.json").read_text())[MIRROR_KEY]["files"][0]
    assert len(record["arrow_crc32"]) == 1  # the engine records the CRC-32 of each 64 MiB block of the copy
    # a copy whose record has no checksum (written before it existed) cannot be checked: parquet too
    run = json.loads((folder / "run.json").read_text())
    shutil.copyfile(text_results.path / "items.arrow", folder / "items.arrow")
    assert Results.load(folder).source == "arrow"
    del run[MIRROR_KEY]["files"][0]["arrow_crc32"]
    (folder / "run.json").write_text(json.dumps(run))
    assert Results.load(folder).source == "parquet"


# -- finding 7: a FIFO where a file should be ------------------------------------------------------------
def test_a_fifo_named_run_json_hangs_neither_home_nor_export(text_results, tmp_path):
    """Before, reading run.json blocked for ever on a FIFO: Home (which lists the folders under the roots)
    hung for every session, and so did `export` on that folder."""
    root = tmp_path / "shared"
    copy_folder(text_results.path, root / "good")
    (root / "bad").mkdir(parents=True)
    os.mkfifo(root / "bad" / "run.json")
    p = child(
        f"""
        import os, sys
        sys.argv = ["app.py", "--read-only"]
        os.environ["SEMDEDUP_ALLOWED_ROOTS"] = {str(root)!r}
        os.environ["SEMDEDUP_CACHE"] = {str(tmp_path / "home")!r}
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({APP!r}, default_timeout=60)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        print([t.value for t in at.text])
        """,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "['good']"  # the sound folder is listed, the FIFO's is not
    p = child(
        f"from semdedup_core.cli import main; raise SystemExit(main(['export', {str(root / 'bad')!r}, '--eps', '0.1']))"
    )
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "run.json" in p.stderr and "not a regular file (a FIFO)" in p.stderr
    assert ResultsFolder(root / "bad").state() is FolderState.DAMAGED  # (in this process only once it cannot hang)


@pytest.mark.parametrize("name", ["items.parquet", "labels.parquet", "centroids.npy"])
def test_a_fifo_in_place_of_a_folder_file_is_refused_not_read(text_results, tmp_path, name):
    folder = copy_folder(text_results.path, tmp_path / "run")
    (folder / name).unlink(missing_ok=True)
    os.mkfifo(folder / name)
    if name == "items.parquet":
        (folder / "items.arrow").unlink()  # so that the parquet is what would be read
    code = {
        "items.parquet": "Results.load(folder)",
        "labels.parquet": "LabelStore.for_results(folder).read()",
        "centroids.npy": "Results.load(folder).centroids",
    }[name]
    p = child(
        f"""
        from pathlib import Path
        from semdedup_core import Results, SemDedupError
        from semdedup_core.audit.labels import LabelStore
        folder = Path({str(folder)!r})
        try:
            {code}
        except SemDedupError as exc:
            print(exc)
        """,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "not a regular file (a FIFO)" in p.stdout and len(p.stdout.strip().splitlines()) == 1, p.stdout


def test_safe_open_refuses_what_cannot_be_read_safely(tmp_path):
    from semdedup_core.media import safe

    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(safe.FileRefused, match="not a regular file \\(a FIFO\\)"):
        safe.read_json(tmp_path / "fifo")
    (tmp_path / "big.json").write_text("[" + "0," * 1000 + "0]")
    with pytest.raises(safe.FileRefused, match="2,003 bytes, more than the 100"):
        safe.read_json(tmp_path / "big.json", max_bytes=100)
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(safe.FileRefused, match="nested too deeply"):
        safe.read_json(tmp_path / "deep.json")
    with pytest.raises(safe.FileRefused, match="is a list, not an object"):
        safe.expect([], dict, "run.json")


# -- finding 12: one line, never a traceback ---------------------------------------------------------------
RUN_JSONS = {
    "a list": "[1, 2, 3]",
    "nested brackets": "[" * 100_000 + "]" * 100_000,
    "counts that are text": '{"format_version": 1, "status": "complete", "counts": "many"}',
}


@pytest.mark.parametrize("kind", list(RUN_JSONS))
def test_a_run_json_of_another_shape_is_one_line(text_results, tmp_path, kind, capsys):
    folder = copy_folder(text_results.path, tmp_path / "run")
    (folder / "run.json").write_text(RUN_JSONS[kind])
    assert ResultsFolder(folder).state() is FolderState.DAMAGED
    with pytest.raises(SemDedupError, match="run.json in .* cannot be used .*rerun into a new folder"):
        Results.load(folder)
    assert main(["export", str(folder), "--eps", "0.1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "cannot be used" in err, err
    from streamlit.testing.v1 import AppTest

    sys.argv[:] = ["app.py", "--results", str(folder)]
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
    finally:
        sys.argv[:] = ["pytest"]
    assert not at.exception, [e.value for e in at.exception]
    assert any("cannot be used" in e.value for e in at.error), [e.value for e in at.error]


def foreign_store(path: Path, kind: str) -> None:
    rows = pd.DataFrame(
        {
            "id_a": ["t0001", "t0002"],
            "id_b": ["t0100", "t0101"],
            "verdict": ["duplicate", "not_duplicate"],
            "reviewer": ["ana", "ana"],
            "time": pd.to_datetime(["2025-01-01", "2025-01-02"], utc=True),
            "similarity": [0.9, 0.8],
            "run": [None, None],
        }
    )
    if kind == "int ids":
        rows["id_a"], rows["id_b"] = [1, 2], [100, 101]
    elif kind == "string time":
        rows["time"] = ["yesterday", "today"]
    elif kind == "unsorted ids":
        rows["id_a"], rows["id_b"] = rows["id_b"].copy(), rows["id_a"].copy()
    rows.to_parquet(path, index=False)


@pytest.mark.parametrize(
    "kind, words",
    [
        ("int ids", "column 'id_a' holds int64 values, not ids"),
        ("string time", "column 'time' holds text, not times"),
        ("unsorted ids", "row 1 stores the pair ('t0100', 't0001') with id_a not before id_b"),
    ],
)
def test_a_labels_store_of_foreign_types_is_one_line(audit_copy, tmp_path, kind, words, capsys):
    """Before: int ids and a string time raised tracebacks, and with int or unsorted ids `audit report`
    silently counted 0 judged pairs."""
    folder = str(audit_copy.path)
    assert main(["audit", "sample", folder, "--n", "20", "--out", str(tmp_path / "queue.csv")]) == 0
    store = tmp_path / "store.parquet"
    foreign_store(store, kind)
    capsys.readouterr()
    for args in (
        ["audit", "report", folder, "--labels", str(store)],
        ["report", folder, "--eps", "0.1", "--out", str(tmp_path / "r.html"), "--labels", str(store)],
        ["export", folder, "--eps", "0.1", "--rule", "audited", "--labels", str(store)],
    ):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and words in err, (args, err)


@pytest.mark.parametrize("damage", ["centroids.npy", "embeddings.npy"])
def test_a_damaged_array_shows_one_line_on_the_map_page(text_results, tmp_path, damage):
    from streamlit.testing.v1 import AppTest

    import semdedup_app as sa

    folder = copy_folder(text_results.path, tmp_path / "run")
    data = (folder / damage).read_bytes()
    (folder / damage).write_bytes(data[: len(data) // 2])  # truncated
    sys.argv[:] = ["app.py", "--results", str(folder)]
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.session_state["map_method"] = "pca"
        at.run()
        at.switch_page(sa.PAGES["map"]).run()
        for _ in range(40):
            if at.error or at.exception:
                break
            at.run()
    finally:
        sys.argv[:] = ["pytest"]
    assert not at.exception, [e.value for e in at.exception]
    shown = [e.value.replace("\\", "") for e in at.error]
    assert any(damage in e and "truncated" in e for e in shown), shown
    with pytest.raises(SemDedupError, match=f"{damage} .* cannot be used \\(is shorter than its header says"):
        res = Results.load(folder)
        _ = res.centroids if damage == "centroids.npy" else res.embeddings
