"""Results folders are checked on load: a folder the engine could not have written is refused in one line
naming the problem — by Results.load, the CLI and the app — never a traceback, a hang or a wrong partner."""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import Results, SemDedupError
from semdedup_core.cli import main
from semdedup_core.explore.groups import build_index

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _later_pair(items: pd.DataFrame) -> tuple[int, int]:
    """Rows (a, b) of one cluster with rank(a) < rank(b), both after the cluster's first item."""
    for _, grp in items.groupby("cluster"):
        grp = grp.sort_values("rank")
        if len(grp) >= 3:
            return int(grp.index[1]), int(grp.index[2])
    raise AssertionError("no cluster of three items")


def corrupt(src: Path, dst: Path, problem: str) -> Path:
    """A copy of the results folder ``src`` with one defect planted in items.parquet or run.json."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("exports", "*map-*"))  # what other tests wrote
    items = pd.read_parquet(dst / "items.parquet")
    run = json.loads((dst / "run.json").read_text())
    a, b = _later_pair(items)
    ids = items["id"]
    if problem == "cycle":  # a → b → a: each other's dup_of
        items.loc[a, "dup_of"], items.loc[b, "dup_of"] = ids[b], ids[a]
    elif problem == "later":  # dup_of an item of higher rank
        items.loc[a, "dup_of"] = ids[b]
    elif problem == "missing":
        items.loc[b, "dup_of"] = "no-such-id"
    elif problem == "other-cluster":
        other = int(np.flatnonzero(items["cluster"].to_numpy() != items.loc[b, "cluster"])[0])
        items.loc[b, "dup_of"] = ids[other]
    elif problem == "nan":
        items.loc[b, "max_sim"] = np.nan
    elif problem == "negative-cluster":
        items.loc[b, "cluster"] = -1
    elif problem == "huge-cluster":
        items.loc[b, "cluster"] = 10**12
    elif problem == "huge-k":
        run["counts"]["clusters"] = 10**12
    elif problem == "duplicate-id":
        items.loc[b, "id"] = ids[a]
    elif problem == "newline-id":
        items.loc[b, "id"] = "kept\nremoved"
    elif problem == "rank":
        items.loc[b, "rank"] = items.loc[a, "rank"]
    elif problem == "type":
        items["max_sim"] = items["max_sim"].astype(str)
    else:
        raise AssertionError(problem)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), dst / "items.parquet")
    (dst / "run.json").write_text(json.dumps(run))
    return dst


PROBLEMS = {
    "cycle": "dup_of must be an earlier item of the same cluster",
    "later": "dup_of must be an earlier item of the same cluster",
    "missing": "dup_of 'no-such-id'",
    "other-cluster": "dup_of must be an earlier item of the same cluster",
    "nan": "scores must be finite",
    "negative-cluster": "has cluster -1 in row",
    "huge-cluster": "has cluster 1000000000000 in row",
    "huge-k": "cluster count of 1000000000000",
    "duplicate-id": "twice",
    "newline-id": "line break or NUL",
    "rank": "the ranks of a cluster must be 0, 1, 2",
    "type": "column 'max_sim' of type",
}


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_a_damaged_folder_is_refused_in_one_line(problem, text_results, tmp_path):
    folder = corrupt(text_results.path, tmp_path / problem, problem)
    with pytest.raises(SemDedupError) as info:
        Results.load(folder)
    message = str(info.value)
    assert PROBLEMS[problem] in message, message
    assert "\n" not in message and str(folder) in message


def test_a_null_id_is_refused(text_results, tmp_path):
    folder = shutil.copytree(text_results.path, tmp_path / "null")
    table = pq.read_table(folder / "items.parquet")
    ids = table["id"].to_pylist()
    ids[7] = None
    pq.write_table(table.set_column(0, "id", pa.array(ids, pa.string())), folder / "items.parquet")
    with pytest.raises(SemDedupError, match="missing \\(null\\) id in row 7"):
        Results.load(folder)


def test_a_sound_folder_loads_with_its_structure(text_results):
    """The checks hand what they computed to the Results: dup_rows and the cluster grouping agree with a
    from-scratch computation."""
    res = Results.load(text_results.path)
    items = res.items
    index = {v: i for i, v in enumerate(items["id"])}
    want = np.array([index[d] if isinstance(d, str) else -1 for d in items["dup_of"]])
    np.testing.assert_array_equal(res.dup_rows, want)
    for c in range(res.n_clusters):
        members = res.clusters.members(c)
        assert (items["cluster"].to_numpy()[members] == c).all()
        np.testing.assert_array_equal(items["rank"].to_numpy()[members], np.arange(len(members)))


def test_row_number_ids_and_string_ids_are_checked_alike(tmp_path):
    """The engine's default ids ("0".."n-1") take a path without hashing; a near-miss ("007") and a missing
    target are still caught."""
    from semdedup_core import ClusterConfig, dedup

    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    res = dedup(x, cluster=ClusterConfig(3), out=tmp_path / "r")
    assert res.items["id"].tolist() == [str(i) for i in range(300)]
    np.testing.assert_array_equal(Results.load(res.path).dup_rows, res.dup_rows)
    items = res.items.copy()
    row = int(np.flatnonzero(items["rank"].to_numpy() == 2)[0])
    target = items.loc[row, "dup_of"]
    for bad in (f"00{target}", "300", "-1", "x"):
        items.loc[row, "dup_of"] = bad
        items.to_parquet(tmp_path / "r" / "items.parquet", index=False)
        with pytest.raises(SemDedupError, match=f"dup_of '{bad}'"):
            Results.load(tmp_path / "r")


@pytest.mark.parametrize("loop", [[-1, 2, 3, 1, 0], [-1, 2, 1, 0, 3]], ids=["three", "two"])
def test_the_groups_index_refuses_a_loop_instead_of_hanging(loop):
    """Before: pointer jumping over a dup_of loop of three never settled and held a server thread forever
    (a loop of two settled on a removed item as its own cause)."""
    dup_row = np.array(loop, dtype=np.int64)
    scores = np.array([-1.0, 0.9, 0.9, 0.9, 0.9], dtype=np.float32)
    done: list[BaseException] = []

    def run() -> None:
        try:
            build_index(scores, dup_row)
        except BaseException as exc:
            done.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the groups index hangs on a loop"
    assert done and isinstance(done[0], SemDedupError) and "loop" in str(done[0])


@pytest.mark.parametrize("problem", ["cycle", "nan", "missing"])
def test_cli_export_refuses_a_damaged_folder(problem, text_results, tmp_path, capsys):
    folder = corrupt(text_results.path, tmp_path / problem, problem)
    assert main(["export", str(folder), "--eps", "0.2"]) == 2
    err = capsys.readouterr().err
    assert PROBLEMS[problem] in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (folder / "exports").exists()


@pytest.mark.parametrize("problem", ["cycle", "nan", "huge-k"])
def test_the_app_refuses_a_damaged_folder_on_every_page(problem, text_results, tmp_path, monkeypatch):
    """Before: a cycle hung the Groups view, NaN scores made the sidebar and Pairs disagree, a huge k tried
    to allocate terabytes. Now every page shows the one-line reason."""
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    folder = corrupt(text_results.path, tmp_path / problem, problem)
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(folder))
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["pairs_view"] = "Groups"
    at.run()
    for page in ("home", "pairs", "threshold", "clusters", "map", "export", "stakeholder"):
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert any(PROBLEMS[problem] in plain(e.value) for e in at.error), (page, [e.value for e in at.error])


def plain(md: str) -> str:
    """The text a reader sees in escaped Markdown (backslash escapes and word joiners removed)."""
    return re.sub(r"\\(.)", r"\1", md).replace("\u2060", "")


def test_items_written_as_a_folder_of_parts_are_checked_alike(text_results, tmp_path):
    """SPEC: items.parquet may be a folder of parquet parts; the checks see one dataset (chunked columns)."""
    folder = shutil.copytree(text_results.path, tmp_path / "parts", ignore=shutil.ignore_patterns("exports", "*map-*"))
    items = pd.read_parquet(folder / "items.parquet")
    (folder / "items.parquet").unlink()
    (folder / "items.parquet").mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(items)), 3)):
        items.iloc[part].to_parquet(folder / "items.parquet" / f"part-{i}.parquet", index=False)
    res = Results.load(folder)
    np.testing.assert_array_equal(res.dup_rows, text_results.dup_rows)
    items.loc[len(items) - 1, "dup_of"] = "no-such-id"  # a damaged last part
    items.iloc[part].to_parquet(folder / "items.parquet" / "part-2.parquet", index=False)
    with pytest.raises(SemDedupError, match="dup_of 'no-such-id'"):
        Results.load(folder)
    items.loc[len(items) - 1, "id"] = "a\nb"
    items.iloc[part].to_parquet(folder / "items.parquet" / "part-2.parquet", index=False)
    with pytest.raises(SemDedupError, match=f"line break or NUL in row {len(items) - 1}"):
        Results.load(folder)
