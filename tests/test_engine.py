"""The whole engine against a brute-force SemDeDup, plus resume, ids, dtypes and the Results API."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import finished_buckets

from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.explore.clusters import cluster_table
from semdedup_core.kernels.order import keep_keys
from semdedup_core.run import pipeline


def planted(n=3000, d=24, n_dups=300, seed=0):
    """Random directions, the last ``n_dups`` of them copies of earlier ones moved by 0.1 % to 5 % of their
    length (cosine to the source >= ~0.9987)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    src = rng.choice(n - n_dups, n_dups, replace=False)
    noise = rng.uniform(1e-3, 5e-2, n_dups)[:, None]
    step = rng.standard_normal((n_dups, d)).astype(np.float32) / np.sqrt(d)  # about unit length
    x[n - n_dups :] = x[src] + noise * step * np.linalg.norm(x[src], axis=1, keepdims=True)
    return x, src


def brute_force(emb, items, keep, seed):
    """SemDeDup written the slow, obvious way from the engine's clusters and distances."""
    n = len(items)
    max_sim = np.full(n, -1.0)
    dup_pos = np.full(n, -1)
    rank = np.zeros(n, dtype=int)
    for _cluster, members in items.groupby("cluster").indices.items():
        d = items["dist_to_centroid"].to_numpy()[members]
        if keep == "hard":
            order = members[sorted(range(len(members)), key=lambda i: (-d[i], i))]
        elif keep == "easy":
            order = members[sorted(range(len(members)), key=lambda i: (d[i], i))]
        else:  # a seeded hash of (seed, row) per item, ties by row: the one definition of the random order
            order = members[np.argsort(keep_keys(d, "random", seed, members), kind="stable")]
        e = emb[order].astype(np.float64)
        sims = e @ e.T
        for r in range(len(order)):
            rank[order[r]] = r
            if r:
                max_sim[order[r]] = sims[r, :r].max()
                dup_pos[order[r]] = order[int(np.argmax(sims[r, :r]))]
    return rank, max_sim, dup_pos


@pytest.mark.parametrize("keep", ["hard", "easy", "random"])
def test_matches_brute_force(tmp_path, keep):
    x, src = planted()
    res = dedup(
        x, cluster=ClusterConfig(12, seed=1), config=DedupConfig(keep=keep, seed=5, block_size=37), out=tmp_path / "r"
    )
    items = res.items
    emb = np.load(tmp_path / "r" / "embeddings.npy")
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb, x / np.linalg.norm(x, axis=1, keepdims=True), atol=1e-6)

    # every item sits in its highest-cosine cluster, with dist = 1 - cosine
    cent = np.load(tmp_path / "r" / "centroids.npy")
    assert cent.shape == (12, 24)
    np.testing.assert_allclose(np.linalg.norm(cent, axis=1), 1.0, atol=1e-5)
    cos = emb @ cent.T
    assert (cos.max(axis=1) - cos[np.arange(len(x)), items["cluster"]] < 1e-5).all()
    np.testing.assert_allclose(items["dist_to_centroid"], 1 - cos.max(axis=1), atol=1e-5)

    rank, max_sim, dup_pos = brute_force(emb, items, keep, 5)
    np.testing.assert_array_equal(items["rank"], rank)
    np.testing.assert_allclose(items["max_sim"], max_sim, atol=2e-3)
    # dup_of names an earlier item of the same cluster at the maximum similarity
    has = items["dup_of"].notna().to_numpy()
    assert (has == (rank > 0)).all()
    dup = items.loc[has, "dup_of"].astype(int).to_numpy()
    me = np.flatnonzero(has)
    assert (items["cluster"].to_numpy()[dup] == items["cluster"].to_numpy()[me]).all()
    assert (rank[dup] < rank[me]).all()
    np.testing.assert_allclose(np.einsum("ij,ij->i", emb[me], emb[dup]), max_sim[me], atol=2e-3)
    assert items.loc[~has, "max_sim"].eq(-1.0).all()

    # the planted copies are found: each pair lands in one cluster and one of the two is removed
    same = items["cluster"].to_numpy()[src] == items["cluster"].to_numpy()[len(x) - len(src) :]
    assert same.mean() > 0.95
    removed = res.removed_mask(0.02)
    pair_removed = removed[src] | removed[len(x) - len(src) :]
    assert pair_removed[same].mean() > 0.97
    assert removed.sum() < 400  # random directions in 24-d are far apart: few false positives


def test_hard_keeps_the_farthest(tmp_path):
    x, _ = planted(1000, 8, 100)
    items = dedup(x, cluster=ClusterConfig(5), out=tmp_path / "r").items
    first = items[items["rank"] == 0].set_index("cluster")["dist_to_centroid"].sort_index()
    assert (first == items.groupby("cluster")["dist_to_centroid"].max()).all()
    items = dedup(x, cluster=ClusterConfig(5), config=DedupConfig(keep="easy"), out=tmp_path / "e").items
    first = items[items["rank"] == 0].set_index("cluster")["dist_to_centroid"].sort_index()
    assert (first == items.groupby("cluster")["dist_to_centroid"].min()).all()


def test_cluster_larger_than_block_and_block_invariance(tmp_path):
    x, _ = planted(2000, 16, 200, seed=3)
    a = dedup(x, cluster=ClusterConfig(3), config=DedupConfig(block_size=5), out=tmp_path / "a").items
    b = dedup(x, cluster=ClusterConfig(3), config=DedupConfig(block_size=4096), out=tmp_path / "b").items
    assert a["cluster"].value_counts().min() > 5
    pd.testing.assert_frame_equal(a, b)


def test_string_ids_float16_and_columns(tmp_path):
    x, src = planted(800, 16, 50, seed=2)
    ids = [f"doc-{i:05d}" for i in range(len(x))]
    cols = pd.DataFrame({"text": [f"text {i}" for i in range(len(x))]})
    r16 = dedup(x.astype(np.float16), ids, cluster=ClusterConfig(4), out=tmp_path / "h", columns=cols)
    r32 = dedup(x, ids, cluster=ClusterConfig(4), out=tmp_path / "f")
    items = r16.items
    assert items["id"].tolist() == ids
    assert items["text"].tolist() == cols["text"].tolist()
    dups = items["dup_of"].dropna()
    assert dups.str.startswith("doc-").all() and set(dups) <= set(ids)
    assert r16.embeddings.dtype == np.float32
    # float16 input only rounds the vectors: where an item lands in the same cluster with the same dup_of,
    # its score agrees with the float32 run to 2e-3, and every planted copy finds the same source
    same = items["cluster"].to_numpy() == r32.items["cluster"].to_numpy()
    same &= items["dup_of"].fillna("").to_numpy() == r32.items["dup_of"].fillna("").to_numpy()
    assert same.mean() > 0.95
    np.testing.assert_allclose(items["max_sim"][same], r32.items["max_sim"][same], atol=2e-3)
    copies = np.arange(len(x) - 50, len(x))
    assert same[copies].all()


def test_results_folder_contract(tmp_path):
    x, _ = planted(500, 8, 20)
    dedup(x, cluster=ClusterConfig(4, niter=7), config=DedupConfig(keep="random", seed=9), out=tmp_path / "r")
    files = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert files == ["centroids.npy", "embeddings.npy", "items.arrow", "items.parquet", "run.json"]  # no scratch
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["params"]["cluster"]["niter"] == 7 and run["params"]["dedup"]["keep"] == "random"
    assert run["counts"]["items"] == 500 and run["counts"]["clusters"] == 4
    assert {"normalize", "kmeans", "assign", "score", "write"} <= set(run["stages"])
    assert all("seconds" in s for s in run["stages"].values())
    assert {"numpy", "faiss", "torch", "semdedup"} <= set(run["versions"])
    assert len(run["input_fingerprint"]) == 32
    items = pd.read_parquet(tmp_path / "r" / "items.parquet")
    assert list(items.columns[:6]) == ["id", "cluster", "dist_to_centroid", "rank", "max_sim", "dup_of"]
    assert np.load(tmp_path / "r" / "embeddings.npy", mmap_mode="r").shape == (500, 8)


def test_reproducible(tmp_path):
    x, _ = planted(1500, 16, 100)
    a = dedup(x, cluster=ClusterConfig(6, seed=4), out=tmp_path / "a").items
    b = dedup(x, cluster=ClusterConfig(6, seed=4), out=tmp_path / "b").items
    pd.testing.assert_frame_equal(a, b)


class Stop(Exception):
    pass


def stop_after(stage, count):
    def cb(s, done, total):
        if s == stage and done >= count:
            raise Stop

    return cb


@pytest.mark.parametrize("where", [("kmeans", 1), ("assign", 1), ("score", 7)])
def test_resume_after_interruption(tmp_path, monkeypatch, where):
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 100)  # many small checkpoints
    x, _ = planted(3000, 16, 200, seed=7)
    ids = [f"i{i}" for i in range(len(x))]
    kw = dict(cluster=ClusterConfig(20, seed=2), config=DedupConfig(keep="random", seed=1))
    ref = dedup(x, ids, out=tmp_path / "ref", **kw)

    with pytest.raises(Stop):
        dedup(x, ids, out=tmp_path / "r", progress=stop_after(*where), **kw)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["status"] == "running"
    with pytest.raises(SemDedupError, match="has not finished"):
        Results.load(tmp_path / "r")

    seen = []
    res = dedup(x, ids, out=tmp_path / "r", progress=lambda s, d, t: seen.append((s, d, t)), **kw)
    pd.testing.assert_frame_equal(res.items, ref.items)
    np.testing.assert_array_equal(
        np.load(tmp_path / "r" / "centroids.npy"), np.load(tmp_path / "ref" / "centroids.npy")
    )
    stages = {s for s, _, _ in seen}
    assert "normalize" not in stages  # finished work is not redone
    if where[0] == "score":
        assert "kmeans" not in stages and "assign" not in stages
        assert res.run["stages"]["score"]["resumed_clusters"] >= 5
    # a third call on the finished folder does nothing and returns the same results
    again = dedup(x, ids, out=tmp_path / "r", progress=lambda *a: pytest.fail("recomputed"), **kw)
    pd.testing.assert_frame_equal(again.items, ref.items)


def test_other_parameters_refuse_to_mix(tmp_path):
    x, _ = planted(300, 8, 10)
    dedup(x, cluster=ClusterConfig(3), out=tmp_path / "r")
    with pytest.raises(SemDedupError, match="other parameters or input"):
        dedup(x, cluster=ClusterConfig(4), out=tmp_path / "r")
    with pytest.raises(SemDedupError, match=r"made from 300 × 8 embeddings, these are 300 × 4"):
        dedup(x[:, :4], cluster=ClusterConfig(3), out=tmp_path / "r")
    y = x.copy()
    y[5] += 1
    with pytest.raises(SemDedupError, match="other parameters or input"):
        dedup(y, cluster=ClusterConfig(3), out=tmp_path / "r")
    (tmp_path / "stranger").mkdir()
    (tmp_path / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(SemDedupError, match="not a semdedup results folder"):
        dedup(x, cluster=ClusterConfig(3), out=tmp_path / "stranger")
    assert (tmp_path / "stranger" / "notes.txt").read_text() == "mine"


def test_block_and_device_may_change_on_resume(tmp_path, monkeypatch):
    """Block size and device change speed only: a run stopped halfway through scoring and resumed with
    others ends equal to an uninterrupted run."""
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 50)
    x, _ = planted(400, 8, 10)
    ref = dedup(x, cluster=ClusterConfig(6), config=DedupConfig(block_size=7), out=tmp_path / "ref")
    with pytest.raises(Stop):
        dedup(
            x,
            cluster=ClusterConfig(6),
            config=DedupConfig(block_size=3),
            out=tmp_path / "r",
            progress=stop_after("score", 3),
        )
    assert len(finished_buckets(tmp_path / "r")) >= 2
    res = dedup(x, cluster=ClusterConfig(6), config=DedupConfig(block_size=50, device="cpu"), out=tmp_path / "r")
    assert res.run["stages"]["score"]["resumed_clusters"] >= 2
    pd.testing.assert_frame_equal(res.items, ref.items)


def test_resume_keeps_the_precision_scoring_started_with(tmp_path, monkeypatch):
    """precision="auto" means float16 on CUDA and float32 on CPU. A run whose scoring started in float16
    (on a GPU) and resumes on a CPU keeps float16 for the remaining buckets, and run.json says which
    precision scored it. The precision only nominates candidates: every partner is decided on exact
    cosines, so the float16 run and the float32 run are the same, bit for bit."""
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 50)
    x, _ = planted(400, 8, 10)
    kw = dict(cluster=ClusterConfig(6), out=tmp_path / "r")
    with pytest.raises(Stop):
        dedup(x, progress=stop_after("score", 3), **kw)
    run_path = tmp_path / "r" / "run.json"
    run = json.loads(run_path.read_text())
    assert run["stages"]["score"]["precision"] == "float32"  # auto on this CPU
    # what a GPU machine would have recorded, with its first shards scored in float16
    run["stages"]["score"]["precision"] = "float16"
    run_path.write_text(json.dumps(run))
    for f in finished_buckets(tmp_path / "r"):
        f.unlink()  # (those buckets are rescored below in float16 too)
    res = dedup(x, **kw)
    assert res.run["stages"]["score"]["precision"] == "float16"
    half = dedup(x, cluster=ClusterConfig(6), config=DedupConfig(precision="float16"), out=tmp_path / "h")
    single = dedup(x, cluster=ClusterConfig(6), out=tmp_path / "s")
    assert half.run["stages"]["score"]["precision"] == "float16"
    assert single.run["stages"]["score"]["precision"] == "float32"
    pd.testing.assert_frame_equal(res.items, half.items)
    pd.testing.assert_frame_equal(res.items, single.items)
    assert single.run["device"] == {"kmeans": "cpu", "assign": "cpu", "score": "cpu"}


def test_run_json_records_where_kmeans_really_ran():
    """With faiss-cpu and CUDA asked for, k-means runs on torch's CUDA backend (not on faiss's CPU);
    run.json records where it really ran, not the device that was asked for."""
    from semdedup_core.kernels import kmeans
    from semdedup_core.kernels.device import cuda_available

    assert kmeans.faiss_device("cuda", faiss_has_gpu=False) == "cpu"  # faiss-cpu on a GPU machine
    assert kmeans.faiss_device("cuda", faiss_has_gpu=True) == "cuda"
    assert kmeans.faiss_device("cpu", faiss_has_gpu=True) == "cpu"
    assert kmeans.kmeans_device("cpu") == "cpu"
    assert kmeans.kmeans_device("auto") == ("cuda" if cuda_available() else "cpu")
    assert kmeans.kmeans_device("auto", backend="faiss") == ("cuda" if kmeans.faiss_gpu_available() else "cpu")


# -- the threshold API ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    x, _ = planted(4000, 16, 600, seed=11)
    return dedup(x, cluster=ClusterConfig(10), out=tmp_path_factory.mktemp("res") / "r")


def test_removed_kept_and_counts_agree(results):
    scores = results.items["max_sim"].to_numpy()
    for eps in (0.0, 0.001, 0.01, 0.05, 0.3, 1.0, 2.0):
        mask = results.removed_mask(eps)
        assert mask.sum() == (scores > 1 - eps).sum() == results.n_removed(eps) == len(results.removed(eps))
        assert len(results.kept(eps)) + len(results.removed(eps)) == results.n_items
        assert results.kept_fraction(eps) == pytest.approx(1 - mask.mean())
    grid = np.linspace(0, 1, 101)
    np.testing.assert_array_equal(results.n_removed(grid), [results.n_removed(e) for e in grid])
    assert results.n_removed(2.0) == results.n_items - results.n_clusters  # only first items survive
    with pytest.raises(SemDedupError, match="eps must be between 0 and 2"):
        results.removed_mask(-0.1)


@pytest.mark.parametrize("fraction", [1.0, 0.99, 0.95, 0.9, 0.8, 0.5, 0.2, 0.0025])
def test_eps_for_kept_fraction_is_exact(results, fraction):
    eps = results.eps_for_kept_fraction(fraction)
    kept = results.kept_fraction(eps)
    assert kept >= fraction - 1e-12
    floor = results.n_clusters / results.n_items
    if fraction > floor:
        # a hair more eps already drops below the target: eps is the largest that keeps the fraction
        bigger = float(
            np.nextafter(
                1
                - np.sort(results.items["max_sim"].to_numpy(np.float64))[int(np.ceil(fraction * results.n_items)) - 1],
                -np.inf,
            )
        )
        assert results.kept_fraction(1 - bigger) < fraction or kept == 1.0
        assert kept - fraction < 2 / results.n_items


def test_cluster_table(results):
    eps = 0.05
    table = cluster_table(results, eps)
    assert table["size"].sum() == results.n_items
    assert table["removed"].sum() == results.n_removed(eps)
    items = results.items
    for _, row in table.head(3).iterrows():
        sub = items[items["cluster"] == row["cluster"]]
        scored = sub[sub["rank"] > 0]["max_sim"]
        assert row["max_score"] == pytest.approx(scored.max())
        assert row["mean_score"] == pytest.approx(scored.mean(), rel=1e-5)


def test_load_errors(tmp_path, results):
    with pytest.raises(SemDedupError, match="does not exist"):
        Results.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SemDedupError, match="not a semdedup results folder"):
        Results.load(tmp_path / "empty")
    import shutil

    shutil.copytree(results.path, tmp_path / "old")
    run = json.loads((tmp_path / "old" / "run.json").read_text())
    run["format_version"] = 0
    (tmp_path / "old" / "run.json").write_text(json.dumps(run))
    with pytest.raises(SemDedupError, match="format version 0"):
        Results.load(tmp_path / "old")
    (tmp_path / "old" / "run.json").write_text("{not json")
    with pytest.raises(SemDedupError, match="not valid JSON"):
        Results.load(tmp_path / "old")
    assert Results.load(results.path).n_items == results.n_items


# -- the conservative rule ---------------------------------------------------------------------------


def test_kept_only_rule_by_hand(tmp_path):
    """A, B, C in one cluster, in that order, with cos(A,B) = cos(B,C) = 0.95 and cos(A,C) = 0.805.

    At eps = 0.1 (threshold 0.9) the paper's rule removes B (≈A) and C (≈B); the kept-only rule removes
    B only, since C resembles nothing that is kept.
    """
    theta = np.arccos(0.95)
    x = np.array([[np.cos(t), np.sin(t), 0.0] for t in (0.0, theta, 2 * theta)], dtype=np.float32)
    seed = next(s for s in range(100) if np.argsort(keep_keys(np.zeros(3), "random", s)).tolist() == [0, 1, 2])
    res = dedup(
        x, ["A", "B", "C"], cluster=ClusterConfig(1), config=DedupConfig(keep="random", seed=seed), out=tmp_path / "r"
    )
    assert res.items.sort_values("rank")["id"].tolist() == ["A", "B", "C"]
    assert res.items["dup_of"].isna().tolist() == [True, False, False]
    assert res.items["dup_of"].tolist()[1:] == ["A", "B"]
    assert sorted(res.removed(0.1)["id"]) == ["B", "C"]
    assert sorted(res.removed(0.1, rule="kept-only")["id"]) == ["B"]
    assert res.kept_fraction(0.1, rule="kept-only") == pytest.approx(2 / 3)
    assert sorted(res.removed(0.3, rule="kept-only")["id"]) == ["B", "C"]  # 0.805 > 0.7: C ≈ kept A


def greedy_kept_only(res, eps):
    """The conservative rule the slow way: walk each cluster in rank order, compare with kept items."""
    emb = np.asarray(res.embeddings)
    items = res.items
    removed = np.zeros(len(items), dtype=bool)
    for _, members in items.groupby("cluster").indices.items():
        members = members[np.argsort(items["rank"].to_numpy()[members])]
        kept = []
        for i in members:
            if kept and (emb[kept] @ emb[i]).max() > 1 - eps:
                removed[i] = True
            else:
                kept.append(i)
    return removed


def test_kept_only_rule_matches_greedy(tmp_path):
    rng = np.random.default_rng(4)
    base = rng.standard_normal((300, 12)).astype(np.float32)
    # chains: each base vector drifts in 4 small steps, so neighbours are close and ends are farther
    steps = [base]
    for _ in range(4):
        steps.append(steps[-1] + 0.12 * rng.standard_normal(base.shape).astype(np.float32))
    x = np.vstack(steps)
    res = dedup(x, cluster=ClusterConfig(6), out=tmp_path / "r")
    for eps in (0.005, 0.02, 0.05, 0.1, 0.3):
        mask = res.removed_mask(eps, rule="kept-only")
        np.testing.assert_array_equal(mask, greedy_kept_only(res, eps))
        paper = res.removed_mask(eps)
        assert not (mask & ~paper).any()  # it only ever removes less
    eps = 0.05
    assert res.n_removed(eps, rule="kept-only") < res.n_removed(eps)  # this data has real chains
    assert res.n_removed([eps, 0.1], rule="kept-only").tolist() == [
        res.n_removed(eps, rule="kept-only"),
        res.n_removed(0.1, rule="kept-only"),
    ]
    with pytest.raises(SemDedupError, match="rule must be one of paper, kept-only"):
        res.removed_mask(0.1, rule="strict")


def test_get_executor_without_ray():
    from semdedup_core.run.executors import LocalExecutor, get_executor

    assert isinstance(get_executor(None), LocalExecutor)
    assert isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(SemDedupError, match="executor must be 'local', 'ray'"):
        get_executor("spark")
