"""The verdict store and `audit import`: replace and coexist, majority with ties to the most recent,
real concurrent writers (threads and processes) that lose nothing, bad label files refused in one line
with nothing stored, and verdicts that survive a second run with another k and seed."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semdedup_core import ClusterConfig, Results, SemDedupError, dedup
from semdedup_core.audit import draw_sample, estimate, queue_frame, save_design
from semdedup_core.audit.labels import COLUMNS, LabelStore, make_rows, resolve
from semdedup_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


# -- the store ---------------------------------------------------------------------------------------
def test_same_reviewer_replaces_other_reviewers_coexist_majority_and_ties_to_the_latest(tmp_path):
    store = LabelStore(tmp_path / "labels.parquet")
    assert store.read().empty and list(store.read().columns) == list(COLUMNS)
    t = 1_700_000_000_000_000_000  # ns
    store.add(make_rows(["b"], ["a"], ["duplicate"], "ann", [0.91], run="r1", when=t))
    store.add(make_rows(["a"], ["b"], ["not_duplicate"], "ann", when=t + 10**9))  # same pair, either order
    rows = store.read()
    assert len(rows) == 1 and rows["verdict"].iat[0] == "not_duplicate"  # replaced, not added
    assert (rows["id_a"].iat[0], rows["id_b"].iat[0]) == ("a", "b")
    assert str(rows["time"].dtype) == "datetime64[us, UTC]"
    store.add(make_rows(["a"], ["b"], ["duplicate"], "bob", when=t + 2 * 10**9))
    assert len(store.read()) == 2  # another reviewer's verdict coexists
    res = store.resolved()
    assert res["verdict"].iat[0] == "duplicate" and res["reviewers"].iat[0] == 2  # a 1–1 tie: the latest
    store.add(make_rows(["a"], ["b"], ["not_duplicate"], "cy", when=t + 3 * 10**9))
    store.add(make_rows(["a"], ["b"], ["duplicate"], "bob", when=t + 4 * 10**9))
    assert store.resolved()["verdict"].iat[0] == "not_duplicate"  # 2 against 1, whatever came last


def test_make_rows_refuses_what_is_not_a_verdict(tmp_path):
    for args, word in (
        ((["a"], ["b"], ["yes"], "ann"), "must be one of duplicate, not_duplicate, unsure"),
        ((["a"], ["a"], ["duplicate"], "ann"), "two different items"),
        ((["a"], [""], ["duplicate"], "ann"), "two ids"),
        ((["a"], ["b"], ["duplicate"], " "), "reviewer"),
    ):
        with pytest.raises(SemDedupError, match=word):
            make_rows(*args)


def test_a_damaged_or_foreign_store_is_refused_and_left_alone(tmp_path):
    bad = tmp_path / "labels.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SemDedupError, match="not a readable parquet file"):
        LabelStore(bad).add(make_rows(["a"], ["b"], ["duplicate"], "ann"))
    assert bad.read_bytes() == b"not parquet at all"  # never overwritten
    other = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(other)
    with pytest.raises(SemDedupError, match="not a semdedup labels store"):
        LabelStore(other).read()
    with pytest.raises(SemDedupError, match="does not exist; create it"):
        LabelStore(tmp_path / "missing" / "labels.parquet").add(make_rows(["a"], ["b"], ["duplicate"], "ann"))


# -- concurrent writers --------------------------------------------------------------------------------
def _slow_reads(monkeypatch) -> None:
    """Widen the read → write window of every writer so that an unlocked store would lose verdicts."""
    read = LabelStore.read

    def slow(self):
        out = read(self)
        time.sleep(0.01)
        return out

    monkeypatch.setattr(LabelStore, "read", slow)


def _threads(path: Path, n_threads: int, per_thread: int) -> None:
    start = threading.Barrier(n_threads)

    def work(k: int) -> None:
        store = LabelStore(path)  # each browser session opens the store on its own
        start.wait()
        for i in range(per_thread):
            store.record(f"t{k}-{i}", f"u{k}-{i}", "duplicate" if i % 2 else "not_duplicate", f"rev{k}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_threads_lose_no_verdict(tmp_path, monkeypatch):
    _slow_reads(monkeypatch)
    path = tmp_path / "labels.parquet"
    _threads(path, 6, 12)
    rows = LabelStore(path).read()
    assert len(rows) == 72 and rows[["id_a", "id_b"]].drop_duplicates().shape[0] == 72
    assert not list(tmp_path.glob(".labels.parquet.*.tmp"))  # no temporary file left behind
    # the test can fail: the same writers without the lock lose verdicts
    monkeypatch.setattr(LabelStore, "locked", lambda self: contextlib.nullcontext())
    unlocked = tmp_path / "unlocked.parquet"
    _threads(unlocked, 6, 12)
    assert len(LabelStore(unlocked).read()) < 72


WRITER = """
import sys, time
from semdedup_core.audit.labels import LabelStore
path, k, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
store = LabelStore(path)
while time.time() < start:
    time.sleep(0.005)
for i in range(15):
    store.record(f"p{k}-{i}", f"q{k}-{i}", "duplicate", f"proc{k}")
store.record("shared-a", "shared-b", "duplicate" if k % 2 else "not_duplicate", f"proc{k}")
store.record("shared-b", "shared-a", "unsure", "proc0")  # every process rewrites proc0's verdict
"""


@pytest.mark.slow
def test_concurrent_processes_lose_no_verdict(tmp_path):
    path = tmp_path / "labels.parquet"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.time() + 3.0  # all start writing at once, after the imports
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(k), str(start)], env=env, cwd=ROOT)
        for k in range(3)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    rows = LabelStore(path).read()
    own = rows[rows["id_a"].str.startswith("p")]
    assert len(own) == 45  # 3 × 15: nothing lost
    shared = rows[rows["id_a"] == "shared-a"]
    assert sorted(shared["reviewer"]) == ["proc0", "proc1", "proc2"]  # reviewers coexist, one row each
    assert shared.set_index("reviewer").loc["proc0", "verdict"] == "unsure"  # proc0's was replaced


# -- audit import ------------------------------------------------------------------------------------
def _queue(res: Results, tmp_path: Path, n: int = 20) -> pd.DataFrame:
    design = draw_sample(res, n, 0.3, seed=0)
    save_design(design, res.path)
    return queue_frame(res, design, resolve(make_rows([], [], [], "x")))


def test_import_checks_every_row_and_stores_all_or_nothing(audit_copy, tmp_path, capsys):
    res = audit_copy
    q = _queue(res, tmp_path)
    good = q[["id", "dup_of"]].copy()
    good["verdict"] = ["duplicate", "not_duplicate", "unsure", ""] * 5
    good_csv = tmp_path / "good.csv"
    good.to_csv(good_csv, index=False)
    assert main(["audit", "import", str(res.path), str(good_csv), "--reviewer", "ann"]) == 0
    out = capsys.readouterr().out
    assert "imported 15 verdicts (5 duplicate, 5 not_duplicate, 5 unsure) by ann" in out
    assert "5 rows without a verdict were skipped" in out
    store = LabelStore(res.path / "labels.parquet")
    before = store.path.read_bytes()
    rows = store.read()
    assert len(rows) == 15 and set(rows["reviewer"]) == {"ann"}
    assert rows["run"].iat[0] == res.run["input_fingerprint"]

    def refused(frame: pd.DataFrame | str, *expected: str) -> None:
        path = tmp_path / "bad.csv"
        if isinstance(frame, str):
            path.write_text(frame)
        else:
            frame.to_csv(path, index=False)
        assert main(["audit", "import", str(res.path), str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "Traceback" not in err and "nothing was stored" in err, err
        for word in expected:
            assert word in err, (word, err)
        assert store.path.read_bytes() == before  # nothing stored

    bad = good.copy()
    bad.loc[7, "verdict"] = "maybe"
    refused(bad, "row 8", "'maybe'", "duplicate | not_duplicate | unsure")
    bad = good.copy()
    bad.loc[3, "dup_of"] = good.loc[9, "dup_of"] if good.loc[9, "dup_of"] != good.loc[3, "dup_of"] else "t0000"
    bad.loc[3, "verdict"] = "duplicate"
    refused(bad, "row 4", "is not an (item, dup_of) pair of this run", "fix or remove the row")
    bad = good.copy()
    bad.loc[2, "id"] = "no-such-item"
    refused(bad, "row 3", "there is no item 'no-such-item'")
    refused(good.drop(columns=["verdict"]), "lacks column verdict", "id, dup_of and verdict")
    refused(good.drop(columns=["id", "dup_of"]), "lacks columns id, dup_of")
    swapped = pd.DataFrame(
        {
            "id": [good["id"][0], good["dup_of"][0]],
            "dup_of": [good["dup_of"][0], good["id"][0]],
            "verdict": ["duplicate", "not_duplicate"],
        }
    )
    refused(swapped, "rows 1 and 2 both judge the pair", "disagree (duplicate vs not_duplicate)", "keep one of them")
    refused("", "is empty")
    missing = tmp_path / "nope.csv"
    assert main(["audit", "import", str(res.path), str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
    # rows that agree, and the pair written the other way round, are fine (keyed by the unordered pair)
    again = pd.DataFrame(
        {
            "id": [good["dup_of"][0], good["id"][0]],
            "dup_of": [good["id"][0], good["dup_of"][0]],
            "verdict": ["duplicate"] * 2,
        }
    )
    again.to_csv(tmp_path / "again.csv", index=False)
    assert main(["audit", "import", str(res.path), str(tmp_path / "again.csv"), "--reviewer", "ann"]) == 0
    assert "1 of them replaced an earlier verdict" in capsys.readouterr().out
    assert len(store.read()) == 15


def test_imported_similarity_and_reviewer_column(audit_copy, tmp_path, capsys):
    res = audit_copy
    q = _queue(res, tmp_path, 6)
    frame = pd.DataFrame(
        {"id": q["id"], "dup_of": q["dup_of"], "verdict": "duplicate", "reviewer": ["x", "", "y", "x", "y", "x"]}
    )
    frame.to_csv(tmp_path / "l.csv", index=False)
    store = tmp_path / "elsewhere.parquet"
    assert main(["audit", "import", str(res.path), str(tmp_path / "l.csv"), "--labels", str(store)]) == 0
    rows = LabelStore(store).read().set_index("id_b")
    assert not (res.path / "labels.parquet").exists()  # --labels chose another store
    assert set(rows["reviewer"]) >= {"x", "y"} and len(rows) == 6
    want = res.items.set_index("id").loc[q["id"], "max_sim"].to_numpy(np.float64)
    got = LabelStore(store).read()
    pairs = dict(zip(zip(got["id_a"], got["id_b"], strict=True), got["similarity"], strict=True))
    for i, d, w in zip(q["id"], q["dup_of"], want, strict=True):
        assert pairs[tuple(sorted((i, d)))] == pytest.approx(w)


# -- another run over the same data ------------------------------------------------------------------
def test_verdicts_survive_a_run_with_another_k_and_seed(tmp_path, capsys):
    from conftest import oracle_embeddings, oracle_truth, oracle_verdicts

    x = oracle_embeddings(1500, 1500, seed=3)
    ids = [f"item-{i}" for i in range(len(x))]
    a = dedup(x, ids, cluster=ClusterConfig(8, seed=0), out=tmp_path / "k8")
    b = dedup(x, ids, cluster=ClusterConfig(5, seed=1), out=tmp_path / "k5")
    store = tmp_path / "shared-labels.parquet"
    # judge run A's whole sample into a store shared by both runs
    assert (
        main(["audit", "sample", str(a.path), "--n", "300", "--out", str(tmp_path / "qa.csv"), "--labels", str(store)])
        == 0
    )
    qa = pd.read_csv(tmp_path / "qa.csv", dtype=str)
    qa["verdict"] = oracle_verdicts(a, oracle_truth(a), qa["id"], qa["dup_of"])
    qa.to_csv(tmp_path / "qa.csv", index=False)
    assert main(["audit", "import", str(a.path), str(tmp_path / "qa.csv"), "--labels", str(store)]) == 0
    capsys.readouterr()
    # run B: its sample (same seed) meets many of the same pairs; their verdicts count there and they are not asked again
    assert (
        main(["audit", "sample", str(b.path), "--n", "300", "--out", str(tmp_path / "qb.csv"), "--labels", str(store)])
        == 0
    )
    out = capsys.readouterr().out
    qb = pd.read_csv(tmp_path / "qb.csv", dtype=str)
    judged_pairs = {tuple(p) for p in LabelStore(store).read()[["id_a", "id_b"]].to_numpy()}
    design_b = draw_sample(b, 300, 0.3, 0)
    in_store = [tuple(p) in judged_pairs for p in design_b.units[["id_a", "id_b"]].to_numpy()]
    assert sum(in_store) > 100, sum(in_store)  # the same pairs meet again in the other run
    assert len(qb) == 300 - sum(in_store) and f"already judged in {store}: {sum(in_store)}" in out
    rep = estimate(design_b, LabelStore(store).resolved())
    assert rep.sample["judged"] == sum(in_store) and rep.sample["outside_sample"] > 0
    # and the audited rule of run B applies A's not-duplicate verdicts to B's pairs
    audited = b.audited(LabelStore(store))
    assert audited.excluded > 0 and audited.rescored > 0
    assert b.n_removed(0.3, "audited", LabelStore(store)) < b.n_removed(0.3)
