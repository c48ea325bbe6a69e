"""The explorer at scale (issue 13, part 4): ``items.arrow`` beside ``items.parquet`` (used only while it
mirrors the parquet), the ``dup_row`` column, the numbers checked on load and the strings of a big folder
checked later (in the app: in the background, a failure refused with st.error), and views that read
columns, pages of rows and the scores sorted once — each checked against the plain computation."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import kept_roots, results_from_frame
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.cli import main
from semdedup_core.explore import curve, pairs
from semdedup_core.explore.clusters import cluster_table, clusters_with_removals, n_cross_cluster, n_removed_per_cluster
from semdedup_core.explore.export import export_frame
from semdedup_core.explore.groups import removal_groups
from semdedup_core.kernels.rules import removed_by_score, threshold32
from semdedup_core.results import checks, io
from semdedup_core.results import results as results_module
from semdedup_core.results.items import MIRROR_KEY
from semdedup_core.results.names import DUP_ROW, REQUIRED_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def copy_folder(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst, ignore=shutil.ignore_patterns("exports", "*map-*")))


def rewrite_parquet(folder: Path, change) -> None:
    """Rewrite items.parquet through pyarrow (its schema metadata kept) after ``change(table) -> table``."""
    table = pq.read_table(folder / "items.parquet")
    pq.write_table(change(table), folder / "items.parquet")


# -- the Arrow copy ------------------------------------------------------------------------------------
def test_the_arrow_copy_equals_the_parquet_and_is_what_opens(text_results):
    folder = text_results.path
    parquet = pq.read_table(folder / "items.parquet")
    arrow = pa.ipc.open_file(pa.memory_map(str(folder / "items.arrow"))).read_all()
    assert arrow.equals(parquet)
    assert parquet.column_names[:7] == [*REQUIRED_COLUMNS, DUP_ROW]  # the first six exactly as before
    record = json.loads((folder / "run.json").read_text())[MIRROR_KEY]
    assert record["rows"] == parquet.num_rows and len(record["files"]) == 1
    assert {record["files"][0]["parquet"], record["files"][0]["arrow"]} == {"items.parquet", "items.arrow"}
    res = Results.load(folder)
    assert res.source == "arrow"
    pd.testing.assert_frame_equal(res.items, pd.read_parquet(folder / "items.parquet"))


def test_a_folder_of_parts_has_an_arrow_copy_per_part(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((900, 8)).astype(np.float32)
    x[600:] = x[:300] + 0.01 * rng.standard_normal((300, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"doc{i}\n" for i in range(len(x))))
    kw = dict(cluster=ClusterConfig(6), config=DedupConfig(keep="random", seed=3))
    ids = [f"doc{i}" for i in range(len(x))]
    res = dedup(str(tmp_path / "x.npy"), ids, out=tmp_path / "sh", part_rows=400, **kw)
    parts = sorted((tmp_path / "sh" / "items.arrow").iterdir())
    assert [p.name for p in parts] == ["part-00000.arrow", "part-00001.arrow", "part-00002.arrow"]
    for p in parts:
        twin = tmp_path / "sh" / "items.parquet" / p.with_suffix(".parquet").name
        assert pa.ipc.open_file(pa.memory_map(str(p))).read_all().equals(pq.read_table(twin))
    again = Results.load(tmp_path / "sh")
    assert again.source == "arrow"
    pd.testing.assert_frame_equal(again.items, pd.read_parquet(tmp_path / "sh" / "items.parquet"))
    assert_dup_row_is_the_row_of_dup_of(pd.read_parquet(tmp_path / "sh" / "items.parquet"))  # across parts
    local = dedup(x, [f"doc{i}" for i in range(len(x))], out=tmp_path / "local", **kw)
    pd.testing.assert_frame_equal(local.items, res.items)


def test_a_stale_or_damaged_copy_is_ignored(text_results, tmp_path):
    # items.parquet rewritten (its metadata kept): the copy no longer mirrors it
    a = copy_folder(text_results.path, tmp_path / "rewritten")
    scores = pq.read_table(a / "items.parquet")["max_sim"].to_numpy().copy()
    scores[scores > 0.99] = 0.5
    rewrite_parquet(a, lambda t: t.set_column(t.column_names.index("max_sim"), "max_sim", pa.array(scores)))
    res = Results.load(a)
    assert res.source == "parquet"
    np.testing.assert_array_equal(res.column("max_sim"), scores)
    assert res.n_removed(0.005) == int((scores > 0.995).sum())
    # a truncated copy, a missing copy, another table's copy
    b = copy_folder(text_results.path, tmp_path / "truncated")
    (b / "items.arrow").write_bytes((b / "items.arrow").read_bytes()[:-100])
    c = copy_folder(text_results.path, tmp_path / "missing")
    (c / "items.arrow").unlink()
    d = copy_folder(text_results.path, tmp_path / "other")
    with (
        pa.OSFile(str(d / "items.arrow"), "wb") as sink,
        pa.ipc.new_file(sink, pq.read_schema(d / "items.parquet")) as w,
    ):
        w.write_table(pq.read_table(d / "items.parquet").slice(0, 10))
    for folder in (b, c, d):
        res = Results.load(folder)
        assert res.source == "parquet", folder.name
        pd.testing.assert_frame_equal(res.items, text_results.items)
    # a folder written before the copy and dup_row existed reads as it always did
    e = copy_folder(text_results.path, tmp_path / "old")
    rewrite_parquet(e, lambda t: t.drop_columns([DUP_ROW]).replace_schema_metadata(None))
    (e / "items.arrow").unlink()
    run = json.loads((e / "run.json").read_text())
    del run[MIRROR_KEY]
    (e / "run.json").write_text(json.dumps(run))
    old = Results.load(e)
    assert old.source == "parquet" and old.strings_checked and DUP_ROW not in old.columns
    np.testing.assert_array_equal(old.dup_rows, text_results.dup_rows)
    assert old.n_removed(0.1) == text_results.n_removed(0.1)


def assert_dup_row_is_the_row_of_dup_of(items: pd.DataFrame) -> None:
    row_of = {v: i for i, v in enumerate(items["id"])}
    want = [row_of[d] if isinstance(d, str) else -1 for d in items["dup_of"]]
    assert items[DUP_ROW].dtype == np.int64 and items[DUP_ROW].tolist() == want


def test_dup_row_is_the_row_of_dup_of(text_results):
    assert_dup_row_is_the_row_of_dup_of(pd.read_parquet(text_results.path / "items.parquet"))
    np.testing.assert_array_equal(text_results.dup_rows, pd.read_parquet(text_results.path / "items.parquet")[DUP_ROW])


# -- the string checks of a big folder, later ----------------------------------------------------------
def damaged_big_folder(src: Path, dst: Path, problem: str) -> Path:
    """A copy with a defect only the string checks see (the numbers, dup_row included, stay sound)."""
    folder = copy_folder(src, dst)
    table = pq.read_table(folder / "items.parquet")
    ids = table["id"].to_pylist()
    dup = table["dup_of"].to_pylist()
    rows = table[DUP_ROW].to_numpy()
    b = int(np.flatnonzero(rows >= 0)[3])
    if problem == "duplicate-id":
        ids[b] = ids[int(rows[b])]
    else:  # dup_of names another (earlier, same-cluster) item than dup_row: "disagree"
        later = [
            r for r in np.flatnonzero(rows >= 0) if dup[r] != dup[b] and table["cluster"][int(r)] == table["cluster"][b]
        ]
        dup[b] = ids[int(rows[int(later[0])])] if later else "no-such-id"
    table = table.set_column(0, "id", pa.array(ids, pa.string()))
    table = table.set_column(table.column_names.index("dup_of"), "dup_of", pa.array(dup, pa.string()))
    pq.write_table(table, folder / "items.parquet")
    return folder


@pytest.mark.parametrize("problem,message", [("duplicate-id", "twice"), ("disagree", "dup_of")])
def test_the_string_checks_of_a_big_folder_wait_for_the_first_bulk_use(
    problem, message, text_results, tmp_path, monkeypatch, capsys
):
    folder = damaged_big_folder(text_results.path, tmp_path / problem, problem)
    with pytest.raises(SemDedupError, match=message):
        Results.load(folder)  # small: every check on load
    monkeypatch.setattr(results_module, "STRING_CHECK_ROWS", 10)
    res = Results.load(folder)  # "big": the numbers only
    assert not res.strings_checked and res.strings_problem is None
    assert res.n_removed(0.2) > 0 and len(export_frame(res, 0.2, limit=5)) == 5  # the views work meanwhile
    for _ in range(2):  # every bulk use refuses, not only the first
        with pytest.raises(SemDedupError, match=message):
            export_frame(res, 0.2)
    assert res.strings_checked and message in str(res.strings_problem)
    with pytest.raises(SemDedupError, match=message):
        Results.load(folder, strings=True)
    assert main(["export", str(folder), "--eps", "0.2"]) == 2  # the CLI checks everything first
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (folder / "exports").exists()


def test_string_hashes_depend_only_on_the_bytes():
    """The uniqueness screen's hash: the same strings hash the same whatever the chunks, offsets, string
    type or step size, and different strings differ here."""
    words = ["", "a", "ab", "ba", "é", "x" * 300, "doc-10", "doc-01", "", "a"]
    arr = pa.array(words)
    h = io.hash_strings(arr)
    assert h[0] == h[8] and h[1] == h[9]
    assert len(set(h.tolist())) == 8
    sliced = pa.chunked_array([arr.slice(0, 3), arr.slice(3, 4), arr.slice(7)])
    assert (io.hash_strings(sliced) == h).all()
    assert (io.hash_strings(arr.cast(pa.large_string())) == h).all()
    steps = io._HASH_BYTES
    try:
        io._HASH_BYTES = 5  # steps of a few bytes, and a string longer than a step alone
        assert (io.hash_strings(sliced) == h).all()
    finally:
        io._HASH_BYTES = steps


def test_ids_whose_hashes_meet_are_compared_as_strings(monkeypatch):
    """The hashes only screen: when they meet, the strings decide — distinct ids pass, a repeat is named with
    both rows."""
    ids = pa.chunked_array([pa.array(["p", "q", "r"]), pa.array(["s", "q"])])
    monkeypatch.setattr(io, "hash_strings", lambda values: np.zeros(len(values), dtype=np.uint64))
    checks._check_unique(pa.chunked_array([pa.array(["p", "q", "r", "s"])]), "here")  # all meet, all differ
    with pytest.raises(SemDedupError, match=r"has the id 'q' twice \(rows 1 and 4\)"):
        checks._check_unique(ids, "here")


def test_the_app_checks_a_big_folder_in_the_background_and_refuses_it(text_results, tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setattr(results_module, "STRING_CHECK_ROWS", 10)
    folder = damaged_big_folder(text_results.path, tmp_path / "big", "duplicate-id")
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(folder))
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["map_method"] = "pca"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    res = sa.load(folder)  # the app's cached Results: its check runs in a thread started at load
    deadline = time.monotonic() + 30
    while not res.strings_checked and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "twice" in str(res.strings_problem)
    for page in ("home", "threshold", "pairs", "clusters", "export", "stakeholder"):
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any("twice" in e.value for e in at.error), (page, [e.value for e in at.error])
        assert not at.metric, page  # refused: nothing of the folder is drawn


# -- views from columns and sorted scores, against the plain computation ------------------------------
def tied_results(chunked: bool, folder: Path) -> Results:
    """400 items in 5 clusters with many tied scores (and some a hair above 1), in a results folder read
    as one chunk or (``chunked``) in chunks of 90 rows."""
    rng = np.random.default_rng(7)
    n, k = 400, 5
    cluster = rng.integers(0, k, n)
    rank = np.zeros(n, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(cluster == c)
        rank[members] = rng.permutation(len(members))
    values = np.array([0.2, 0.5, 0.9, 0.95, 0.95000005, 0.97, 0.99, 1.0, 1.0000001], dtype=np.float32)
    max_sim = values[rng.integers(0, len(values), n)]
    max_sim[rank == 0] = -1.0
    ids = np.array([f"i{j:03d}" for j in rng.permutation(n)], dtype=object)
    row_at = {(int(c), int(r)): j for j, (c, r) in enumerate(zip(cluster, rank, strict=True))}
    dup = [
        None if r == 0 else ids[row_at[(int(c), int(rng.integers(0, r)))]] for c, r in zip(cluster, rank, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "id": ids,
            "cluster": cluster.astype(np.int64),
            "dist_to_centroid": rng.random(n).astype(np.float32),
            "rank": rank,
            "max_sim": max_sim,
            "dup_of": pd.array(dup, dtype="str"),
            "text": [f"text {j % 37}" for j in range(n)],
        }
    )
    run = {"counts": {"clusters": k, "items": n}}
    res = results_from_frame(frame, run, folder, row_group_size=90 if chunked else None)
    assert (res._table.column("id").num_chunks > 1) == chunked
    return res


def reference_pairs(res: Results, eps: float, sort: str, clusters=None, sim_range=None) -> np.ndarray:
    """The removed rows in the page's order, computed as the pages once did: a mask and a sort of it."""
    s = res.items["max_sim"].to_numpy().astype(np.float64)
    mask = s > 1.0 - eps
    cluster = res.items["cluster"].to_numpy()
    if clusters:
        mask &= np.isin(cluster, clusters)
    if sim_range is not None:
        lo, hi = sim_range
        mask &= ((s >= lo) | (lo <= -1.0)) & ((s <= hi) | (hi >= 1.0))
    rows = np.flatnonzero(mask)
    if sort == "similarity":
        return rows[np.lexsort((rows, -s[rows]))]
    if sort == "borderline":
        return rows[np.lexsort((rows, s[rows]))]
    return rows[np.lexsort((res.items["rank"].to_numpy()[rows], cluster[rows]))]


@pytest.mark.parametrize("chunked", [False, True])
def test_pairs_pages_read_from_the_sorted_order_equal_the_plain_sort(chunked, tmp_path):
    res = tied_results(chunked, tmp_path / "run")
    filters = [(None, None), ([1, 3], None), (None, (0.95, 0.99)), ([0, 4], (-1.0, 1.0)), (None, (0.95000005, 1.0))]
    for eps in (0.0, 0.05, 0.049999952, 0.3):
        for sort in pairs.SORTS:
            for clusters, sim_range in filters:
                want = reference_pairs(res, eps, sort, clusters, sim_range)
                full = pairs.pairs_frame(res, eps, sort=sort, clusters=clusters, sim_range=sim_range)
                np.testing.assert_array_equal(full["row"], want)
                got = []
                for number in range(-(-len(want) // 23) + 1):  # one past the end: clipped to the last page
                    page = pairs.pairs_page(res, eps, number, 23, sort=sort, clusters=clusters, sim_range=sim_range)
                    assert page.total == len(want) and page.n_pages == max(1, -(-len(want) // 23))
                    expect = full.iloc[page.number * 23 : page.number * 23 + 23].reset_index(drop=True)
                    pd.testing.assert_frame_equal(page.frame, expect)
                    if number == page.number:
                        got.extend(page.frame["row"])
                assert got == want.tolist()
    frame = pairs.pairs_frame(res, 0.1)
    ids = res.items["id"].to_numpy()
    assert (ids[frame["dup_row"]] == frame["dup_of"].to_numpy()).all() and (ids[frame["row"]] == frame["id"]).all()


def test_pairs_pages_of_a_folder_on_disk(text_results):
    res = text_results
    for eps in (0.02, 0.2):
        for sort in pairs.SORTS:
            want = reference_pairs(res, eps, sort)
            page = pairs.pairs_page(res, eps, 1, 5, sort=sort)
            assert page.frame["row"].tolist() == want[5:10].tolist() and page.total == len(want)


@pytest.mark.parametrize("chunked", [False, True])
def test_counts_orders_and_tables_equal_the_plain_computation(chunked, tmp_path):
    res = tied_results(chunked, tmp_path / "run")
    s = res.items["max_sim"].to_numpy()
    cluster = res.items["cluster"].to_numpy()
    np.testing.assert_array_equal(res.score_order(), np.argsort(s, kind="stable"))
    np.testing.assert_array_equal(res.score_order(descending=True), np.argsort(-s, kind="stable"))
    # every ε, the ones at which a stored score sits exactly on the threshold included
    for eps in [*np.linspace(0.0, 1.3, 27), *np.clip(1.0 - s[s > -1.0].astype(np.float64), 0.0, 2.0)]:
        mask = s.astype(np.float64) > 1.0 - eps
        assert res.n_removed(eps) == mask.sum()
        np.testing.assert_array_equal(res.removed_mask(eps), mask)
        np.testing.assert_array_equal(n_removed_per_cluster(res, eps), np.bincount(cluster[mask], minlength=5))
        np.testing.assert_array_equal(clusters_with_removals(res, eps), np.unique(cluster[mask]))
        rows = np.arange(0, len(s), 3)
        np.testing.assert_array_equal(res.removed_mask(eps, rows=rows), mask[rows])
    table = cluster_table(res, 0.05)
    mask = s.astype(np.float64) > 0.95
    scored = s > -1.0
    assert table["removed"].tolist() == np.bincount(cluster[mask], minlength=5).tolist()
    assert table["size"].tolist() == np.bincount(cluster, minlength=5).tolist()
    for c in range(5):
        mine = s[(cluster == c) & scored].astype(np.float64)
        assert table["max_score"][c] == mine.max()
        assert table["mean_score"][c] == pytest.approx(mine.mean(), abs=1e-12)
    counts, edges = curve.score_histogram(res)
    want_counts, want_edges = np.histogram(np.clip(s[s > -1.0], -1.0, 1.0), bins=100, range=(-1.0, 1.0))
    np.testing.assert_array_equal(counts, want_counts)
    np.testing.assert_array_equal(edges, want_edges)
    assert curve.eps_max(res) == float(min(2.0, max(0.5, np.ceil((1.0 - float(s[s > -1.0].min())) * 20) / 20)))
    # rows and columns read without the DataFrame are the DataFrame's
    pick = np.array([399, 0, 17, 17, 250, 91, 89, 90])
    pd.testing.assert_frame_equal(
        res.rows(pick, ["id", "max_sim", "dup_of"]), res.items.iloc[pick][["id", "max_sim", "dup_of"]]
    )
    np.testing.assert_array_equal(res.column("rank"), res.items["rank"].to_numpy())
    # groups from the index equal the groups of following every chain link by link (ties and scores above 1)
    for eps in (0.0, 0.03, 0.1, 0.5):
        removed = res.removed_mask(eps)
        root = kept_roots(res, removed)
        found = removal_groups(res, eps)
        assert sorted(found.rows.tolist()) == np.flatnonzero(removed).tolist()
        kept, counts = np.unique(root[removed], return_counts=True)
        assert found.n_groups == len(kept)
        assert dict(zip(found.table["row"], found.table["removed"], strict=True)) == dict(
            zip(kept, counts, strict=True)
        )
        for r in kept[:10]:
            np.testing.assert_array_equal(found.members(int(r)), np.flatnonzero(removed & (root == r)))


def test_threshold32_gives_the_float64_comparison():
    rng = np.random.default_rng(3)
    s = rng.uniform(-1.0, 1.01, 20000).astype(np.float32)
    near = s[:200].astype(np.float64)
    thresholds = np.concatenate(
        [rng.uniform(-1.0, 1.0, 200), near, near - 1e-10, near + 1e-10, 1.0 - rng.random(100) * 1e-7]
    )
    for thr in thresholds:
        np.testing.assert_array_equal(s > threshold32(thr), s.astype(np.float64) > thr)
        assert np.array_equal(removed_by_score(s, 1.0 - thr), s.astype(np.float64) > 1.0 - (1.0 - thr))


def test_the_showcase_read_from_the_top_equals_the_whole_computation(text_results, monkeypatch):
    res = text_results

    def whole(eps: float, n: int = 6) -> pd.DataFrame:  # the definition: every removed pair, then the choice
        frame = pairs.pairs_frame(res, eps, sort="similarity")
        text = res.items["text"].to_numpy()
        same = np.array(
            [str(text[a]).split() == str(text[b]).split() for a, b in zip(frame["row"], frame["dup_row"], strict=True)],
            dtype=bool,
        )
        order = np.lexsort((-frame["max_sim"].to_numpy(), frame["dup_removed"].to_numpy(), same))
        return frame.iloc[order].drop_duplicates("cluster").head(n).reset_index(drop=True)

    monkeypatch.setattr(pairs, "SHOWCASE_FIRST", 3)  # several steps down the order
    for eps in (0.01, 0.05, 0.2, 0.5):
        for n in (1, 3, 6):
            pd.testing.assert_frame_equal(pairs.showcase_pairs(res, eps, n), whole(eps, n))


def test_cross_cluster_counts_of_a_probing_run(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((600, 8)).astype(np.float32)
    x[400:] = x[:200] + 0.05 * rng.standard_normal((200, 8)).astype(np.float32)
    res = dedup(x, cluster=ClusterConfig(12, niter=5), config=DedupConfig(probe=2), out=tmp_path / "p")
    assert res.cross_cluster.any()
    for eps in (0.01, 0.05, 0.2):
        assert n_cross_cluster(res, eps) == int((res.removed_mask(eps) & res.cross_cluster).sum())
        page = pairs.pairs_page(res, eps, 0, 10)
        assert page.cross_cluster == int(pairs.pairs_frame(res, eps)["cross_cluster"].sum())


# -- the benchmark's synthetic folder --------------------------------------------------------------------
def test_the_synthetic_bench_folder_passes_every_check(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from bench_app import make_synthetic
    finally:
        sys.path.remove(str(ROOT / "bench"))
    make_synthetic(tmp_path / "syn", n=3000, d=4, k=30, map_method="pca")
    res = Results.load(tmp_path / "syn", strings=True)
    assert res.source == "arrow" and res.n_items == 3000 and res.n_clusters == 30
    s = res.column("max_sim")
    assert 0.05 < (s > 0.85).mean() < 0.15 and (s[s > -1.0] >= 0.3).all()
    assert not res.rows(np.arange(3000), ["id"])["id"].str.fullmatch(r"\d+").any()  # never the row numbers
    assert (tmp_path / "syn" / "map-pca.parquet").exists() and res.embeddings.shape == (3000, 4)
