"""Leakage: the reference-search kernels by hand, the engine against exact brute-force nearest-reference
search on topic-clustered data, bad input, resume, the results API and the export."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import finished_buckets
from topics import leak_data

from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.cli import main
from semdedup_core.explore.export import export_frame, write_export
from semdedup_core.explore.leakage import leak_clusters, leak_pairs, ref_sim_histogram
from semdedup_core.kernels.pairwise import best_matches, match_in_clusters
from semdedup_core.kernels.probe import nearest_centroids
from semdedup_core.kernels.rules import leaked_by_score, threshold
from semdedup_core.run import pipeline
from semdedup_core.run.config import DEFAULT_REFERENCE_PROBE, ReferenceConfig


def unit(*rows):
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- the kernels, by hand ------------------------------------------------------------------------------
# targets: t0 = e1, t1 = (e1+e2)/√2, t2 = e3, t3 = e1 (a copy of t0)
T = unit([1, 0, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0])
# queries and their best target, worked out by hand:
#   q0 = e1            cos 1 with t0 and t3 (tie: the lower row, t0)
#   q1 = e2            cos 1/√2 with t1
#   q2 = (e1 + e3)/√2  cos 1/√2 with t0, t2, t3 (tie: t0); 1/2 with t1
#   q3 = -e1           cos 0 with t2 (every other target is negative)
Q = unit([1, 0, 0], [0, 1, 0], [1, 0, 1], [-1, 0, 0])
H = 1 / np.sqrt(2)


@pytest.mark.parametrize("block", [1, 2, 3, 4, None])
def test_best_matches_by_hand(block):
    sim, arg = best_matches(Q, T, block=block)
    assert arg.tolist() == [0, 1, 0, 2]
    np.testing.assert_allclose(sim, [1.0, H, H, 0.0], atol=1e-6)


def test_best_matches_with_positions_is_the_paper_score():
    """Targets earlier in a global order only: a set against itself in order is scores_in_cluster."""
    from semdedup_core import scores_in_cluster

    six = unit([1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1])
    pos = np.arange(6)
    for block in (1, 2, 5, None):
        sim, arg = best_matches(six, six, query_pos=pos, target_pos=pos, block=block)
        want_sim, want_arg = scores_in_cluster(six, None, "cpu")
        assert arg.tolist() == want_arg.tolist() == [-1, 0, 0, 0, 1, 0]
        np.testing.assert_allclose(sim, want_sim, atol=1e-6)
    # positions need not be ranks: query at position 2 sees the targets at positions 0 and 1 only
    sim, arg = best_matches(unit([1, 0, 0]), T, query_pos=np.array([2]), target_pos=np.array([0, 1, 5, 9]))
    assert arg.tolist() == [0] and sim[0] == pytest.approx(1.0)
    sim, arg = best_matches(unit([1, 0, 0]), T, query_pos=np.array([0]), target_pos=np.array([0, 1, 5, 9]))
    assert arg.tolist() == [-1] and sim.tolist() == [-1.0]


def test_best_matches_empty_and_errors():
    sim, arg = best_matches(Q, T[:0])
    assert arg.tolist() == [-1] * 4 and sim.tolist() == [-1.0] * 4
    with pytest.raises(SemDedupError, match="both query_pos and target_pos"):
        best_matches(Q, T, query_pos=np.arange(4))


@pytest.mark.parametrize("mq,mt", [(1, 1), (37, 5), (200, 301)])
def test_best_matches_block_invariance_and_true_cosines(mq, mt):
    rng = np.random.default_rng(mq + mt)
    q = unit(*rng.standard_normal((mq, 12)))
    t = unit(*rng.standard_normal((mt, 12)))
    ref_sim, ref_arg = best_matches(q, t, block=mq)
    exact = q.astype(np.float64) @ t.astype(np.float64).T
    for block in (1, 3, 64, None):
        sim, arg = best_matches(q, t, block=block, max_block_bytes=2**16)
        np.testing.assert_array_equal(arg, ref_arg)
        np.testing.assert_array_equal(sim, ref_sim)  # the reported cosine is recomputed: bit-identical
    np.testing.assert_allclose(ref_sim, exact[np.arange(mq), ref_arg], atol=1e-6)  # the pair's own cosine
    assert (ref_sim <= exact.max(axis=1) + 1e-6).all()
    assert (exact[np.arange(mq), ref_arg] >= exact.max(axis=1) - 1e-6).all()  # the best one


def test_match_in_clusters_by_hand():
    """Groups [t1, t3] and [t0, t2] (each in key order). q0 = e1 probes both: t3 (group 0) and t0 (group 1)
    tie at 1 and the lower key, t0, wins although group 0 is searched first; q2 ties t3 and t0 likewise."""
    targets = T[[1, 3, 0, 2]]
    offsets = np.array([0, 2, 4])
    keys = np.array([1, 3, 0, 2])  # the targets' own rows: the tie-break
    probes = np.array([[0, 1], [0, -1], [1, 0], [1, -1]])
    for block in (1, None):
        sim, row = match_in_clusters(Q, probes, targets, offsets, target_key=keys, device="cpu", block_size=block)
        assert keys[row].tolist() == [0, 1, 0, 2]
        np.testing.assert_allclose(sim, [1.0, H, H, 0.0], atol=1e-6)
    # t0 filed under both groups (multi-assignment) and found twice: the same answer
    targets, offsets, keys = T[[0, 1, 0, 2, 3]], np.array([0, 2, 5]), np.array([0, 1, 0, 2, 3])
    sim, row = match_in_clusters(Q, np.array([[0, 1]] * 4), targets, offsets, target_key=keys, device="cpu")
    assert keys[row].tolist() == [0, 1, 0, 2]
    # a query that probes nothing, and one that probes only an empty group
    sim, row = match_in_clusters(Q[:2], np.array([[-1], [1]]), T[:2], np.array([0, 2, 2]), target_key=np.arange(2))
    assert row.tolist() == [-1, -1] and sim.tolist() == [-1.0, -1.0]


def test_nearest_centroids_own_cluster_first():
    cents = unit([1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 0, 0])
    x = unit([1, 0.5, 0.2], [0.1, 0.2, 1])
    assert nearest_centroids(x, cents, 2).tolist() == [[0, 1, 2], [2, 1, 0]]
    # the own cluster comes first even when the search ranks it elsewhere; the rest keep their order
    assert nearest_centroids(x, cents, 2, own=np.array([1, 0])).tolist() == [[1, 0, 2], [0, 2, 1]]
    assert nearest_centroids(x, cents, 2, own=np.array([3, 2])).tolist() == [[3, 0, 1], [2, 1, 0]]
    assert nearest_centroids(x, cents, 99).shape == (2, 4)  # capped at k - 1 probes


def test_leaked_is_the_removal_filter_at_the_boundary():
    eps = 0.1
    at = np.float32(threshold(eps))
    s = np.array([-1.0, at, np.nextafter(at, np.float32(2)), 0.99], dtype=np.float32)
    expected = s.astype(np.float64) > 1.0 - eps
    assert leaked_by_score(s, eps).tolist() == expected.tolist()
    assert leaked_by_score(0.95, 0.1) is True and leaked_by_score(-1.0, 2.0) is False


# -- the engine against exact search ------------------------------------------------------------------
N, M, D, K = 8000, 1500, 32, 60


@pytest.fixture(scope="module")
def topic_leaks():
    """8,000 training items in 16 uneven topics and 1,500 held-out items, 30 % of them near-copies
    (cosine 0.90–0.995) of training items, with the exact nearest reference item of each training item."""
    train, ref, _source = leak_data(N, M, D, 16, seed=3, spread=1.0)
    train = train * np.random.default_rng(1).uniform(0.5, 3, (N, 1)).astype(np.float32)  # any scale
    exact = (train / np.linalg.norm(train, axis=1, keepdims=True)).astype(np.float64) @ ref.astype(np.float64).T
    return train, ref, exact.argmax(axis=1), exact.max(axis=1), exact


@pytest.fixture(scope="module")
def probe_runs(topic_leaks, tmp_path_factory):
    train, ref, *_ = topic_leaks
    ids = [f"i{i:05d}" for i in range(N)]
    ref_ids = [f"h{j:04d}" for j in range(M)]
    out = tmp_path_factory.mktemp("leak")
    runs = {}
    for name, probe in (("default", DEFAULT_REFERENCE_PROBE), ("none", 0), ("exact", None)):
        runs[name] = dedup(
            train,
            ids,
            cluster=ClusterConfig(K, seed=0, niter=10),
            config=DedupConfig(block_size=97),
            out=out / name,
            reference=ref,
            reference_ids=ref_ids,
            reference_config=ReferenceConfig(probe),
        )
    return runs


def recall(res, best, best_sim) -> float:
    true = best_sim > 0.9
    return float(
        (res.items["ref_id"].to_numpy()[true] == np.char.add("h", np.char.zfill(best[true].astype(str), 4))).mean()
    )


def test_default_probe_recall_against_exact_search(probe_runs, topic_leaks):
    _train, _ref, best, best_sim, exact = topic_leaks
    res = probe_runs["default"]
    true = best_sim > 0.9
    assert true.sum() >= 400
    # the data is what the issue asks for: a copy often lands in another cluster than its source
    crossing = (res.items["cluster"].to_numpy()[true] != res.reference["cluster"].to_numpy()[best[true]]).mean()
    assert crossing > 0.1, crossing
    assert recall(res, best, best_sim) >= 0.99
    assert recall(probe_runs["exact"], best, best_sim) == 1.0
    assert recall(probe_runs["none"], best, best_sim) < 0.9  # own cluster only misses the crossing copies
    for run in probe_runs.values():
        rows = run.ref_rows
        sim = run.items["ref_sim"].to_numpy()
        assert (rows >= 0).all() or run is probe_runs["none"]
        has = rows >= 0
        # every ref_sim is the true cosine of the pair it names, and never above the exact best
        np.testing.assert_allclose(sim[has], exact[np.flatnonzero(has), rows[has]], atol=2e-6)
        assert (sim[has] <= best_sim[has] + 2e-6).all()
        assert (sim[~has] == -1.0).all() and run.items["ref_id"][~has].isna().all()
    np.testing.assert_allclose(probe_runs["exact"].items["ref_sim"].to_numpy(), best_sim, atol=2e-6)


def test_results_folder_contract(probe_runs):
    res = probe_runs["default"]
    out = res.path
    items = pd.read_parquet(out / "items.parquet")
    assert list(items.columns) == [
        "id",
        "cluster",
        "dist_to_centroid",
        "rank",
        "max_sim",
        "dup_of",
        "dup_row",
        "ref_sim",
        "ref_id",
    ]
    assert items["ref_sim"].dtype == np.float32 and pd.api.types.is_string_dtype(items["ref_id"])
    ref = pd.read_parquet(out / "reference.parquet")
    assert list(ref.columns) == ["id", "cluster"] and ref["id"].tolist() == [f"h{j:04d}" for j in range(M)]
    emb = np.load(out / "reference_embeddings.npy")
    assert emb.shape == (M, D) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # each reference item's cluster is its nearest centroid
    assert (ref["cluster"].to_numpy() == nearest_centroids(emb, res.centroids, 0)[:, 0]).all()
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["reference"] == {"probe": DEFAULT_REFERENCE_PROBE}
    assert run["counts"]["reference_items"] == M and run["reference"]["probe"] == DEFAULT_REFERENCE_PROBE
    stage = run["stages"]["leakage"]
    assert stage["done"] and stage["comparisons"] < N * M * (DEFAULT_REFERENCE_PROBE + 1) / K * 2
    assert probe_runs["exact"].run["stages"]["leakage"]["comparisons"] == N * M
    assert not (out / ".work").exists()
    # the dedup scores are those of a run without a reference
    plain = dedup(res.embeddings, list(items["id"]), cluster=ClusterConfig(K, seed=0, niter=10))
    pd.testing.assert_frame_equal(plain.items, items[plain.items.columns])


def test_counts_masks_pairs_and_export_agree(probe_runs, tmp_path):
    res = probe_runs["default"]
    grid = np.linspace(0, 0.3, 31)
    counts = res.n_leaked(grid)
    for e, c in zip(grid, counts, strict=True):
        mask = res.leaked_mask(e)
        assert mask.sum() == c == res.n_leaked(float(e))
        assert (res.items["ref_sim"].to_numpy()[mask].astype(np.float64) > 1 - e).all()
    e = 0.08
    pairs = leak_pairs(res, e)  # borderline first
    assert len(pairs) == res.n_leaked(e) and (np.diff(pairs["ref_sim"].to_numpy()) >= 0).all()
    assert (pairs["margin"] > 0).all()
    assert (res.reference["id"].to_numpy()[pairs["ref_row"]] == pairs["ref_id"].to_numpy()).all()
    assert (np.diff(leak_pairs(res, e, sort="similarity")["ref_sim"].to_numpy()) <= 0).all()
    table = leak_clusters(res, e)
    assert table["leaked"].sum() == res.n_leaked(e) and (np.diff(table["leaked"].to_numpy()) <= 0).all()
    counts, _ = ref_sim_histogram(res)
    assert counts.sum() == N
    frame = export_frame(res, e, "leaked")
    assert list(frame.columns) == ["id", "cluster", "ref_sim", "ref_id"]
    assert frame["id"].tolist() == res.leaked(e)["id"].tolist()
    path = write_export(res, e, "leaked")
    assert path.name == "leaked-eps0.0800.csv"
    csv = pd.read_csv(path, dtype={"id": str, "ref_id": str})
    assert csv["ref_id"].tolist() == frame["ref_id"].tolist()


def test_without_a_reference_says_how_to_make_one(tmp_path):
    x, _ref, _ = leak_data(300, 10, 8, 3, seed=0)
    res = dedup(x, cluster=ClusterConfig(3), out=tmp_path / "r")
    assert not res.has_reference and "ref_sim" not in res.items.columns
    assert not (tmp_path / "r" / "reference.parquet").exists()
    with pytest.raises(SemDedupError, match="has no reference set; run it with --reference"):
        res.leaked_mask(0.1)
    with pytest.raises(SemDedupError, match="has no reference set"):
        export_frame(res, 0.1, "leaked")


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_reference_input_is_refused_before_anything_is_written(tmp_path):
    x, ref, _ = leak_data(300, 40, 8, 3, seed=0)
    out = tmp_path / "r"
    cases = [
        (dict(reference=ref[:, :6]), r"reference embeddings have dimension 6 but the run's embeddings have 8"),
        (dict(reference=ref, reference_ids=["a"] * 40), r"reference ids has duplicate ids, e\.g\. 'a' \(40 times"),
        (dict(reference=ref, reference_ids=["a", "b"]), r"reference ids holds 2 ids but the embeddings have 40 rows"),
        (
            dict(reference=np.where(np.arange(40)[:, None] == 3, np.nan, ref)),
            r"reference embeddings rows 3 contain NaN",
        ),
        (dict(reference=ref[:0]), r"reference embeddings is empty"),
        (dict(reference_ids=["a"]), r"need a reference set"),
        (dict(reference=ref, reference_columns=pd.DataFrame({"text": ["x"]})), r"reference columns have 1 rows"),
    ]
    for kwargs, message in cases:
        with pytest.raises(SemDedupError, match=message):
            dedup(x, cluster=ClusterConfig(3), out=out, **kwargs)
        assert not out.exists()
    with pytest.raises(SemDedupError, match="reference probe must be at least 0"):
        ReferenceConfig(probe=-1)


def test_cli_reference_errors_are_one_line(tmp_path, capsys):
    x, ref, _ = leak_data(300, 40, 8, 3, seed=0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "ref6.npy", ref[:, :6])
    (tmp_path / "dup.txt").write_text("a\nb\na\n" + "".join(f"r{i}\n" for i in range(37)))
    (tmp_path / "held.jsonl").write_text('{"text": "hello"}\n')
    base = ["run", "--embeddings", str(tmp_path / "x.npy"), "--clusters", "3", "--quiet", "--out", str(tmp_path / "o")]
    cases = [
        (
            ["--reference", str(tmp_path / "ref6.npy")],
            "reference embeddings have dimension 6 but the run's embeddings have 8",
        ),
        (["--reference", str(tmp_path / "ref.npy"), "--reference-ids", str(tmp_path / "dup.txt")], "has duplicate ids"),
        (["--reference", str(tmp_path / "held.jsonl")], "has no encoder to embed raw data with"),
        (["--reference", str(tmp_path / "nope.npy")], "does not exist"),
        (["--reference-probe", "3"], "--reference-probe needs --reference HELD_OUT"),
        (["--reference", str(tmp_path / "ref.npy"), "--reference-probe", "2", "--exact-reference"], "not both"),
        (["--reference", str(tmp_path / "ref.npy"), "--reference-probe", "-2"], "reference probe must be at least 0"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()
    assert main(base + ["--reference", str(tmp_path / "ref.npy"), "--exact-reference"]) == 0
    out = capsys.readouterr().out
    assert "leaked (similarity to one of 40 reference items > 1 - eps)" in out
    assert main(["export", str(tmp_path / "o"), "--eps", "0.5", "--which", "leaked", "--format", "txt"]) == 0
    res = Results.load(tmp_path / "o")
    assert f"leaked: {res.n_leaked(0.5):,} of 300 items at eps 0.5" in capsys.readouterr().out
    assert (tmp_path / "o" / "exports" / "leaked-eps0.5000.txt").read_text().split() == res.leaked(0.5)["id"].tolist()
    assert main(["export", str(tmp_path / "o"), "--eps", "0.5", "--which", "leaked", "--rule", "kept-only"]) == 2
    assert "applies to removed and kept items" in capsys.readouterr().err


# -- resume -------------------------------------------------------------------------------------------
class Stop(Exception):
    pass


def test_leakage_stage_resumes_from_its_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 200)  # many small checkpoints
    x, ref, _ = leak_data(3000, 400, 16, 8, seed=5)
    kw = dict(cluster=ClusterConfig(20, seed=2), reference=ref, reference_config=ReferenceConfig(3))
    want = dedup(x, out=tmp_path / "ref", **kw)

    def stop(stage, done, total):
        if stage == "leakage" and done >= 6:
            raise Stop

    with pytest.raises(Stop):
        dedup(x, out=tmp_path / "r", progress=stop, **kw)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "running"
    assert len(finished_buckets(tmp_path / "r", "leakage")) >= 2
    seen = []
    res = dedup(x, out=tmp_path / "r", progress=lambda s, d, t: seen.append(s), **kw)
    pd.testing.assert_frame_equal(res.items, want.items)
    assert (tmp_path / "r" / "reference.parquet").read_bytes() == (tmp_path / "ref" / "reference.parquet").read_bytes()
    assert res.run["stages"]["leakage"]["resumed_clusters"] >= 6
    assert "kmeans" not in seen and "score" not in seen  # finished stages are not run again
    # another reference set, or other reference settings, never mix into this folder
    with pytest.raises(SemDedupError, match="other parameters or input"):
        dedup(x, out=tmp_path / "r", **{**kw, "reference": ref[::-1].copy()})
    with pytest.raises(SemDedupError, match="other parameters or input"):
        dedup(x, out=tmp_path / "r", **{**kw, "reference_config": ReferenceConfig(None)})
