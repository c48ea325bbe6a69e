"""Dedup across cluster boundaries (``probe = P > 0``): the global keep order by hand, the engine against a
brute force of the definition and against exact search under the same order on topic-clustered data,
``probe = 0`` bit for bit, resume, the kept-only rule, and the explorer's marks."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import finished_buckets, kept_roots
from topics import dedup_data

import semdedup_app as sa
from semdedup_core import ClusterConfig, DedupConfig, SemDedupError, dedup
from semdedup_core.cli import main
from semdedup_core.explore.pairs import pairs_frame
from semdedup_core.kernels.order import global_order, order_cluster
from semdedup_core.run import pipeline


def test_global_order_by_hand():
    d = np.array([0.2, 0.9, 0.5, 0.9, 0.1], dtype=np.float32)
    # hard: farthest first, the tie 0.9/0.9 by input order → items 1, 3, 2, 0, 4
    assert global_order(d, "hard").tolist() == [3, 0, 2, 1, 4]
    # easy: nearest first → items 4, 0, 2, 1, 3
    assert global_order(d, "easy").tolist() == [1, 3, 2, 4, 0]
    r = global_order(d, "random", seed=3)
    assert sorted(r.tolist()) == [0, 1, 2, 3, 4] and r.tolist() == global_order(d, "random", seed=3).tolist()
    assert len({tuple(global_order(d, "random", seed=s)) for s in range(20)}) > 5
    with pytest.raises(SemDedupError, match="keep must be one of"):
        global_order(d, "medium")


def test_global_order_restricted_to_a_cluster_is_the_paper_order():
    rng = np.random.default_rng(0)
    d = rng.choice(np.linspace(0, 1, 7), 300).astype(np.float32)  # many ties
    labels = rng.integers(0, 5, 300)
    for keep in ("hard", "easy"):
        pos = global_order(d, keep)
        for c in range(5):
            members = np.flatnonzero(labels == c)
            assert members[np.argsort(pos[members])].tolist() == members[order_cluster(d[members], keep)].tolist()


def definition(emb: np.ndarray, items: pd.DataFrame, probes: np.ndarray, keep: str, seed: int):
    """max_sim / dup_of / rank written the slow, obvious way from the definition."""
    pos = global_order(items["dist_to_centroid"].to_numpy(), keep, seed)
    labels = items["cluster"].to_numpy()
    n = len(items)
    sims = emb.astype(np.float64) @ emb.astype(np.float64).T
    max_sim, dup = np.full(n, -1.0), np.full(n, -1)
    rank = np.empty(n, dtype=int)
    for i in range(n):
        cand = np.flatnonzero(np.isin(labels, probes[i]) & (pos < pos[i]))
        rank[i] = int(((labels == labels[i]) & (pos < pos[i])).sum())
        if len(cand):
            best = sims[i, cand].max()
            ties = cand[sims[i, cand] >= best - 1e-6]
            max_sim[i], dup[i] = best, ties[np.argmin(pos[ties])]
    return max_sim, dup, rank, pos, sims


@pytest.mark.parametrize("keep", ["hard", "easy", "random"])
def test_engine_equals_the_definition(tmp_path, keep):
    x, _ = dedup_data(900, 16, 6, copy_share=0.2, seed=2)
    res = dedup(x, cluster=ClusterConfig(9, seed=1), config=DedupConfig(keep=keep, seed=4, probe=2), out=tmp_path / "r")
    emb = np.load(tmp_path / "r" / "embeddings.npy")
    probes = np.load(tmp_path / "r" / "probes.npy")
    assert probes.shape == (900, 3) and (probes[:, 0] == res.items["cluster"]).all()
    max_sim, dup, rank, pos, sims = definition(emb, res.items, probes, keep, 4)
    np.testing.assert_array_equal(res.items["rank"], rank)
    np.testing.assert_allclose(res.items["max_sim"], max_sim, atol=1e-6)
    np.testing.assert_array_equal(res.dup_rows, dup)
    has = dup >= 0
    assert (pos[res.dup_rows[has]] < pos[has]).all()  # dup_of is always earlier in the global order
    # each score is the true cosine of the pair it names
    np.testing.assert_allclose(res.items["max_sim"][has], sims[np.flatnonzero(has), res.dup_rows[has]], atol=1e-6)
    assert res.cross_cluster.any()


# -- recall against exact search under the same global order -----------------------------------------
N, K = 6000, 40


@pytest.fixture(scope="module")
def probe_runs(tmp_path_factory):
    """6,000 items in 12 uneven topics, 15 % of them planted near-copies (cosine 0.90–0.995), without and
    with a probe; and the exact best earlier item of each item under the same global order."""
    x, _ = dedup_data(N, 32, 12, copy_share=0.15, seed=1, spread=1.0)
    out = tmp_path_factory.mktemp("probe")
    runs = {
        p: dedup(x, cluster=ClusterConfig(K, seed=0, niter=10), config=DedupConfig(probe=p), out=out / f"p{p}")
        for p in (0, 4)
    }
    emb = np.load(out / "p4" / "embeddings.npy").astype(np.float64)
    pos = global_order(runs[4].items["dist_to_centroid"].to_numpy(), "hard")
    sims = emb @ emb.T
    sims[pos[None, :] >= pos[:, None]] = -np.inf
    return runs, sims.argmax(axis=1), sims.max(axis=1), emb


def test_probe_recall_against_exact_search(probe_runs):
    runs, best, best_sim, emb = probe_runs
    true = best_sim > 0.9
    assert true.sum() >= 800
    labels = runs[4].items["cluster"].to_numpy()
    crossing = (labels[true] != labels[best[true]]).mean()
    assert crossing > 0.1, crossing  # copies often land in another cluster than the item they copy
    recall = {p: float((r.dup_rows[true] == best[true]).mean()) for p, r in runs.items()}
    assert recall[4] >= 0.99, recall
    assert recall[0] < 0.95, recall  # the paper's rule misses the copies split by a boundary
    assert recall[0] <= 1 - crossing + 0.01
    for res in runs.values():
        dup, ms = res.dup_rows, res.items["max_sim"].to_numpy()
        has = dup >= 0
        true_cos = np.einsum("ij,ij->i", emb[has], emb[dup[has]])
        np.testing.assert_allclose(ms[has], true_cos, atol=2e-6)  # every score is the pair's cosine
        assert (ms[has] <= best_sim[has] + 2e-6).all()  # and never above the exact best
    # the same items are first in their clusters: probing only adds candidates
    pd.testing.assert_series_equal(runs[0].items["rank"], runs[4].items["rank"])
    assert (runs[4].items["max_sim"].to_numpy() >= runs[0].items["max_sim"].to_numpy() - 1e-6).all()


def test_run_json_records_the_rule_and_its_cost(probe_runs):
    runs, *_ = probe_runs
    paper, probed = runs[0].run, runs[4].run
    assert "probe" not in paper["params"]["dedup"] and paper["comparison"]["rule"] == "paper"
    assert probed["params"]["dedup"]["probe"] == 4 and probed["comparison"]["rule"] == "paper+probe"
    assert "4 clusters whose centroids are nearest" in probed["comparison"]["description"]
    score = probed["stages"]["score"]
    assert (
        score["probe"] == 4 and 3 * score["paper_comparisons"] < score["comparisons"] < 6 * score["paper_comparisons"]
    )
    assert probed["stages"]["probe"]["done"] and "probe" not in paper["stages"]
    assert (runs[4].path / "probes.npy").is_file() and not (runs[0].path / "probes.npy").exists()


def test_probe_zero_is_todays_run_bit_for_bit(tmp_path, capsys):
    from conftest import brute_force_scores

    x, _ = dedup_data(2000, 16, 8, seed=3)
    np.save(tmp_path / "x.npy", x)
    base = ["run", "--embeddings", str(tmp_path / "x.npy"), "--clusters", "10", "--quiet", "--block-size", "33"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--out", str(tmp_path / "b"), "--probe", "0"]) == 0
    for name in ("items.parquet", "centroids.npy", "embeddings.npy"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    a, b = (json.loads((tmp_path / f / "run.json").read_text()) for f in "ab")
    assert a["params"] == b["params"] and a["input_fingerprint"] == b["input_fingerprint"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "centroids.npy",
        "embeddings.npy",
        "items.arrow",
        "items.parquet",
        "run.json",
    ]
    items = pd.read_parquet(tmp_path / "b" / "items.parquet")
    max_sim, dup_of = brute_force_scores(np.load(tmp_path / "b" / "embeddings.npy"), items)
    np.testing.assert_allclose(items["max_sim"], max_sim, atol=1e-5)  # the paper's rule
    assert [d if isinstance(d, str) else None for d in items["dup_of"]] == dup_of
    # the same folder resumed with --probe 0 is the same run; another probe is another run
    assert main([*base, "--out", str(tmp_path / "a"), "--probe", "0"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "a"), "--probe", "2"]) == 2
    assert "other parameters or input" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--probe", "-1"]) == 2
    assert "probe must be at least 0, got -1" in capsys.readouterr().err


class Stop(Exception):
    pass


def test_probed_score_resumes_and_block_size_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 600)  # many small checkpoints (600 / (1 + probe) items)
    x, _ = dedup_data(2500, 16, 8, seed=5)
    kw = dict(cluster=ClusterConfig(20, seed=2), config=DedupConfig(keep="random", seed=3, probe=3))
    want = dedup(x, out=tmp_path / "ref", **kw)

    def stop(stage, done, total):
        if stage == "score" and done >= 6:
            raise Stop

    with pytest.raises(Stop):
        dedup(x, out=tmp_path / "r", progress=stop, **kw)
    assert len(finished_buckets(tmp_path / "r", "score")) >= 2
    seen = []
    res = dedup(x, out=tmp_path / "r", progress=lambda s, d, t: seen.append(s), **kw)
    pd.testing.assert_frame_equal(res.items, want.items)
    assert "probe" not in seen and res.run["stages"]["score"]["resumed_clusters"] >= 6
    blocky = dedup(
        x,
        out=tmp_path / "b",
        cluster=kw["cluster"],
        config=DedupConfig(keep="random", seed=3, probe=3, block_size=19, device="cpu"),
    )
    pd.testing.assert_frame_equal(blocky.items, want.items)


def test_kept_only_rule_with_probing_matches_a_greedy_pass(tmp_path):
    x, _ = dedup_data(1200, 16, 6, copy_share=0.3, seed=6)
    res = dedup(x, cluster=ClusterConfig(12, seed=0), config=DedupConfig(probe=2), out=tmp_path / "r")
    emb = np.load(tmp_path / "r" / "embeddings.npy").astype(np.float64)
    probes = np.load(tmp_path / "r" / "probes.npy")
    labels = res.items["cluster"].to_numpy()
    pos = global_order(res.items["dist_to_centroid"].to_numpy(), "hard")
    for eps in (0.05, 0.15, 0.3):
        kept = np.zeros(len(x), dtype=bool)
        removed = np.zeros(len(x), dtype=bool)
        for i in np.argsort(pos):  # greedy, in global order
            cand = np.flatnonzero(np.isin(labels, probes[i]) & (pos < pos[i]) & kept)
            removed[i] = bool(len(cand)) and bool((emb[cand] @ emb[i] > 1 - eps).any())
            kept[i] = not removed[i]
        got = res.removed_mask(eps, rule="kept-only")
        np.testing.assert_array_equal(got, removed)
        assert got.sum() <= res.n_removed(eps)


# -- the explorer -------------------------------------------------------------------------------------
def test_explorer_marks_pairs_across_clusters(probe_runs, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    runs, *_ = probe_runs
    res = runs[4]
    e = 0.1
    frame = pairs_frame(res, e)
    n_cross = int(frame["cross_cluster"].sum())
    assert n_cross == int((res.removed_mask(e) & res.cross_cluster).sum()) > 0
    assert not pairs_frame(runs[0], e)["cross_cluster"].any()

    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(res.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.session_state["map_method"] = "pca"
    at.run()
    at.switch_page(sa.PAGES["threshold"]).run()
    at.slider(key="thr_eps").set_value(e).run()
    assert not at.exception
    assert any(f"{n_cross:,} of the {res.n_removed(e):,} removals" in c.value for c in at.caption)
    assert any("probe of 4 clusters" in m.value for m in at.markdown)
    at.switch_page(sa.PAGES["pairs"]).run()
    assert any(f"match · {n_cross:,} of them across clusters" in c.value for c in at.caption)
    at.selectbox(key="pairs_per_page").set_value(50).run()
    marks = [c.value for c in at.caption if c.value.startswith("↔ across clusters")]
    shown = pairs_frame(res, e, sort="borderline")[:50]  # the page's default order
    assert len(marks) == int(shown["cross_cluster"].sum()) > 0
    at.switch_page(sa.PAGES["stakeholder"]).run()
    assert any("the 4 nearest ones" in m.value for m in at.markdown)
    at.switch_page(sa.PAGES["map"]).run()
    for _ in range(100):  # the PCA map is computed in the background
        if len(at.get("plotly_chart")) >= 2:
            break
        time.sleep(0.2)
        at.run()
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    lines = {t["name"]: t for t in fig["data"] if t.get("mode") == "lines"}
    assert set(lines) == {"→ dup_of", "→ dup_of in another cluster"}
    xs = lines["→ dup_of in another cluster"]["x"]  # from, to, gap per removal across clusters
    if isinstance(xs, dict):  # plotly's binary encoding
        xs = np.frombuffer(base64.b64decode(xs["bdata"]), dtype=xs["dtype"])
    assert len(xs) == 3 * n_cross


@pytest.mark.gpu
def test_probe_kernel_on_cuda_in_half_precision():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; this machine has none")
    from semdedup_core.kernels.pairwise import best_matches

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pos = rng.permutation(3000)
    order = np.argsort(pos)
    cpu_sim, cpu_arg = best_matches(x, x[order], query_pos=pos, target_pos=pos[order], device="cpu")
    gpu_sim, gpu_arg = best_matches(x, x[order], query_pos=pos, target_pos=pos[order], device="cuda", dtype="float16")
    sims = x @ x[order].T
    differ = np.flatnonzero(gpu_arg != cpu_arg)
    assert len(differ) < 30  # only where two earlier items tie within half precision
    assert np.all(np.abs(sims[differ, gpu_arg[differ]] - sims[differ, cpu_arg[differ]]) < 2e-3)
    same = gpu_arg == cpu_arg
    np.testing.assert_array_equal(gpu_sim[same], cpu_sim[same])  # reported cosines are recomputed in float32


def test_groups_of_a_probing_run_follow_dup_of_across_clusters(probe_runs):
    """With probing an item's dup_of may sit in another cluster: a group's members are still every removed
    item whose chain ends at the kept item, wherever its cluster (the Groups view's scan is not confined
    to the root's cluster there)."""
    from semdedup_core.explore.groups import removal_groups

    res = probe_runs[0][4]
    clusters = res.column("cluster")
    crossing = (res.dup_rows >= 0) & (clusters != clusters[np.maximum(res.dup_rows, 0)])
    assert crossing.sum() > 0  # the case this test is about
    for eps in (0.02, 0.1):
        removed = res.removed_mask(eps)
        root = kept_roots(res, removed)
        found = removal_groups(res, eps)
        kept = np.unique(root[removed & crossing])
        assert len(kept)
        for r in kept[:20]:
            np.testing.assert_array_equal(found.members(int(r)), np.flatnonzero(removed & (root == r)))
