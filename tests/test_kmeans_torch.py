"""The torch k-means backend, run on the CPU: clustering quality against faiss on the same sample and
iterations, the empty-cluster split, chunking, assignment, and the whole SemDeDup run through it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import brute_force_scores

from semdedup_core import ClusterConfig, DedupConfig, dedup
from semdedup_core.errors import SemDedupError
from semdedup_core.kernels import kmeans
from semdedup_core.kernels.vectors import normalize_rows
from semdedup_core.run.meta import engine_params, params_match


def blobs(n: int, d: int, centres: int, spread: float, seed: int) -> np.ndarray:
    """Unit rows around ``centres`` random directions, of unequal sizes."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    p = 1 / np.arange(1, centres + 1) ** 0.5
    lab = rng.choice(centres, n, p=p / p.sum())
    return normalize_rows(c[lab] + spread * rng.standard_normal((n, d)).astype(np.float32))


def objective(x: np.ndarray, centroids: np.ndarray) -> float:
    """Mean cosine of every row to its nearest centroid (what spherical k-means maximises)."""
    return float((x @ centroids.T).max(axis=1).mean())


@pytest.mark.parametrize(
    "n, d, k, spread, seed",
    [(12_000, 32, 40, 0.8, 0), (12_000, 64, 100, 1.5, 1), (6_000, 16, 25, 0.3, 2)],
)
def test_objective_within_one_percent_of_faiss(n, d, k, spread, seed):
    x = blobs(n, d, centres=2 * k, spread=spread, seed=seed)
    kw = dict(niter=20, seed=seed, max_points_per_centroid=n, device="cpu")  # the whole sample, both sides
    ref = kmeans.fit_centroids(x, k, backend="faiss", **kw)
    got = kmeans.fit_centroids(x, k, backend="torch", **kw)
    assert got.shape == (k, d) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    o_ref, o_got = objective(x, ref), objective(x, got)
    assert o_got >= 0.99 * o_ref, (o_got, o_ref)  # never more than 1 % worse (another local optimum may be better)
    # and it really clustered: far better than its own starting point (k random rows)
    init = x[np.sort(np.random.default_rng(seed).choice(n, k, replace=False))]
    assert o_got > objective(x, init) + 0.02


def test_seeded_and_independent_of_chunking():
    x = blobs(5_000, 24, 30, 0.7, 3)
    a = kmeans.torch_kmeans(x, 20, niter=10, seed=5)
    b = kmeans.torch_kmeans(x, 20, niter=10, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, kmeans.torch_kmeans(x, 20, niter=10, seed=6))
    # similarities computed 256 rows at a time instead of all at once: the same centroids
    small = kmeans.torch_kmeans(x, 20, niter=10, seed=5, budget_bytes=1)
    assert kmeans.chunk_rows(20, 24, 1, 4, 5_000) == 256
    np.testing.assert_allclose(small, a, atol=1e-5)


def test_a_sample_larger_than_k_times_points_per_centroid_is_subsampled_with_the_seed():
    x = blobs(4_000, 8, 10, 0.5, 4)
    a = kmeans.fit_centroids(x, 5, niter=5, seed=1, max_points_per_centroid=100, device="cpu", backend="torch")
    sample = x[np.sort(np.random.default_rng(1).choice(4_000, 500, replace=False))]
    np.testing.assert_array_equal(a, kmeans.torch_kmeans(sample, 5, niter=5, seed=1))


def test_empty_clusters_are_split_like_faiss():
    sums = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], [5.0, 5.0, 5.0, 5.0], [0, 0, 0, 0]])
    counts = torch.tensor([6, 0, 5, 0])
    assert kmeans.split_empty_clusters(sums, counts) == 2
    e = kmeans.SPLIT_EPS
    # cluster 1 takes half of the largest (0: 6 → 3 + 3); cluster 3 then half of the largest left (2: 5 → 3 + 2)
    np.testing.assert_allclose(sums[1], [1 * (1 + e), 2 * (1 - e), 3 * (1 + e), 4 * (1 - e)], rtol=1e-6)
    np.testing.assert_allclose(sums[0], [1 * (1 - e), 2 * (1 + e), 3 * (1 - e), 4 * (1 + e)], rtol=1e-6)
    np.testing.assert_allclose(sums[3], [5 * (1 + e), 5 * (1 - e), 5 * (1 + e), 5 * (1 - e)], rtol=1e-6)
    np.testing.assert_allclose(sums[2], [5 * (1 - e), 5 * (1 + e), 5 * (1 - e), 5 * (1 + e)], rtol=1e-6)
    assert counts.tolist() == [3, 3, 3, 2]


def test_many_identical_rows_leave_no_empty_or_nan_centroid():
    """Most rows are one point: most of the k random starting rows coincide, all but one of those
    clusters empty out, and each empty one must be split off a populated one (as faiss does) — never
    left as NaN, nor as a dead copy of the crowded point."""
    rng = np.random.default_rng(0)
    x = normalize_rows(
        np.vstack([np.tile([[1.0, 2.0, 3.0]], (300, 1)), rng.standard_normal((60, 3))]).astype(np.float32)
    )
    c = kmeans.torch_kmeans(x, 12, niter=15, seed=0)
    assert np.isfinite(c).all()
    np.testing.assert_allclose(np.linalg.norm(c, axis=1), 1.0, atol=1e-5)
    # without the split, the ~10 starting rows on the crowded point would stay ~10 copies of it
    assert len(np.unique(np.round(c, 4), axis=0)) >= 10
    labels, _ = kmeans.assign(x, c, "cpu", "torch")
    assert len(np.unique(labels)) >= 8  # the 60 scattered rows are spread over the clusters


def test_torch_assignment_matches_faiss():
    x = blobs(20_000, 48, 80, 1.0, 5)
    c = kmeans.fit_centroids(x, 60, niter=5, device="cpu", backend="faiss")
    lab_f, dist_f = kmeans.assign(x, c, "cpu", "faiss")
    lab_t, dist_t = kmeans.torch_assign(x, c, device="cpu", budget_bytes=1 << 16)  # many chunks
    np.testing.assert_allclose(dist_t, dist_f, atol=2e-6)
    differ = lab_t != lab_f
    assert differ.mean() < 1e-3  # only exact float ties may go either way
    sims = x[differ] @ c.T
    np.testing.assert_allclose(sims[np.arange(differ.sum()), lab_t[differ]], sims.max(axis=1), atol=2e-6)


def test_backend_resolution_and_validation():
    assert kmeans.kmeans_backend("cpu", "auto") == "faiss-cpu"
    assert kmeans.kmeans_backend("cpu", "faiss") == "faiss-cpu"
    assert kmeans.kmeans_backend("cpu", "torch") == "torch-cpu"
    assert kmeans.kmeans_device("cpu", "torch") == "cpu"
    expected = "faiss-gpu" if kmeans.faiss_gpu_available() else "torch-cuda"
    if torch.cuda.is_available():
        assert kmeans.kmeans_backend("cuda", "auto") == expected
        assert kmeans.kmeans_backend("auto", "auto") == expected
    else:
        assert kmeans.kmeans_backend("auto", "auto") == "faiss-cpu"
        with pytest.raises(SemDedupError, match="no CUDA GPU is visible"):
            kmeans.kmeans_backend("cuda", "torch")
    with pytest.raises(SemDedupError, match="backend must be one of auto, faiss, torch, got 'sklearn'"):
        ClusterConfig(10, backend="sklearn")
    with pytest.raises(SemDedupError, match="backend must be one of"):
        kmeans.kmeans_backend("cpu", "gpu")


def planted(n_base: int, d: int, seed: int):
    """Random unit rows plus one near-copy (cosine > 0.99) of each of the first 100."""
    rng = np.random.default_rng(seed)
    base = normalize_rows(rng.standard_normal((n_base, d)).astype(np.float32))
    copies = normalize_rows(base[:100] + 0.05 * rng.standard_normal((100, d)).astype(np.float32) / np.sqrt(d))
    return np.vstack([base, copies]), [(i, n_base + i) for i in range(100)]


def test_dedup_through_the_torch_backend(tmp_path):
    x, pairs = planted(3_000, 32, 7)
    ids = [f"i{i}" for i in range(len(x))]
    res = dedup(x, ids, cluster=ClusterConfig(12, backend="torch", device="cpu"), out=tmp_path / "t")
    run = json.loads((tmp_path / "t" / "run.json").read_text())
    assert run["backend"] == {"kmeans": "torch-cpu", "assign": "torch-cpu", "score": "torch-cpu"}
    assert run["params"]["cluster"]["backend"] == "torch"
    items = res.items
    # the planted copies are removed at eps 0.01 as duplicates of their originals (or the other way round),
    # but for a pair that k-means put in two clusters (one of the 100, with either backend)
    removed = set(items["id"][items["max_sim"] > 0.99])
    dup_of = dict(zip(items["id"], items["dup_of"], strict=True))
    found = [(f"i{a}", f"i{b}") for a, b in pairs]
    recall = np.mean([(b in removed and dup_of[b] == a) or (a in removed and dup_of[a] == b) for a, b in found])
    assert recall >= 0.98
    max_sim, dup = brute_force_scores(np.load(tmp_path / "t" / "embeddings.npy"), items)
    np.testing.assert_allclose(items["max_sim"].to_numpy(), max_sim, atol=1e-5)
    assert [d if isinstance(d, str) else None for d in items["dup_of"]] == dup
    # labels are the nearest centroid of every item, distances 1 - cosine
    emb, cent = np.load(tmp_path / "t" / "embeddings.npy"), np.load(tmp_path / "t" / "centroids.npy")
    sims = emb @ cent.T
    np.testing.assert_allclose(items["dist_to_centroid"], 1 - sims.max(axis=1), atol=2e-6)
    # the faiss run of the same data finds the same duplicates (another clustering, the same pairs)
    ref = dedup(x, ids, cluster=ClusterConfig(12, device="cpu"), out=tmp_path / "f")
    assert ref.run["backend"]["kmeans"] == "faiss-cpu"

    def found_pairs(frame):  # which item of a pair goes depends on the centroids; the pair does not
        return {frozenset(p) for p in zip(frame["id"], frame["dup_of"], strict=True)}

    assert len(found_pairs(ref.removed(0.01)) ^ found_pairs(res.removed(0.01))) <= 2


def test_params_without_backend_match_the_default(tmp_path):
    """Results folders written before the backend option resume: a missing backend counts as auto."""
    new = engine_params(ClusterConfig(5), DedupConfig())
    old = json.loads(json.dumps(new))
    del old["cluster"]["backend"]
    assert params_match(old, new)
    assert not params_match(old, engine_params(ClusterConfig(5, backend="torch"), DedupConfig()))
    assert not params_match(None, new)
