"""The batched pairwise kernel: many small clusters packed into padded batches give exactly what the
one-cluster kernel gives (same scores, same tie rule), in tens of batches instead of one launch each."""

from __future__ import annotations

import numpy as np
from test_kernels import EXPECTED_ARG, EXPECTED_SIM, SIX

from semdedup_core import scores_in_cluster
from semdedup_core.kernels.order import keep_keys, order_cluster
from semdedup_core.kernels.pairwise import plan_batches, score_clusters
from semdedup_core.kernels.vectors import normalize_rows


def keys_of(dist, keep="hard", seed=0):
    return keep_keys(dist, keep, seed)


def per_cluster(emb, dist, offsets, keep="hard", seed=0, dtype="float32"):
    """The reference: each cluster ordered and scored on its own by scores_in_cluster."""
    n = len(emb)
    rank, max_sim, dup_row = np.empty(n, np.int64), np.empty(n, np.float32), np.empty(n, np.int64)
    for j in range(len(offsets) - 1):
        lo, hi = offsets[j], offsets[j + 1]
        if hi == lo:
            continue
        perm = order_cluster(dist[lo:hi], keep, seed, np.arange(lo, hi))
        ms, am = scores_in_cluster(emb[lo:hi][perm], None, "cpu", dtype=dtype)
        rows = lo + perm
        rank[rows], max_sim[rows] = np.arange(hi - lo), ms
        dup_row[rows] = np.where(am >= 0, lo + perm[np.maximum(am, 0)], -1)
    return rank, max_sim, dup_row


def shard(sizes, d=16, seed=0, copies=True):
    rng = np.random.default_rng(seed)
    offsets = np.r_[0, np.cumsum(sizes)]
    x = normalize_rows(rng.standard_normal((offsets[-1], d)).astype(np.float32))
    if copies:  # exact copies inside clusters: ties the kernels must break the same way
        for j in np.flatnonzero(np.asarray(sizes) >= 4)[::3]:
            lo = offsets[j]
            x[lo + 1] = x[lo + 3] = x[lo]
    dist = rng.random(offsets[-1]).astype(np.float32)
    return x, dist, offsets


def test_batched_equals_one_cluster_at_a_time(keep="random"):
    rng = np.random.default_rng(1)
    sizes = np.r_[rng.integers(0, 40, 600), [1, 2, 3, 300, 1_200]]  # hundreds of tiny ones, two large
    x, dist, offsets = shard(sizes)
    got = score_clusters(x, keys_of(dist, keep, 4), offsets, device="cpu", max_block_bytes=2**22)
    ref = per_cluster(x, dist, offsets, keep, 4)
    batches, single = plan_batches(sizes, 16, 2**22)
    assert len(single) >= 1 and len(batches) < 40  # the 1,200-item cluster alone; ~600 others in few batches
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[2], ref[2])  # the same earlier item, ties included
    np.testing.assert_array_equal(got[1], ref[1])  # the exact cosine of the same pair


def test_six_by_three_by_hand_inside_a_batch():
    """The hand-worked matrix of test_kernels, as several clusters of one shard (one batch)."""
    x = np.vstack([SIX, SIX[:4], SIX])
    offsets = np.array([0, 6, 10, 16])
    dist = np.r_[np.arange(6, 0, -1), np.arange(4, 0, -1), np.arange(6, 0, -1)].astype(np.float32)  # hard: input order
    assert len(plan_batches(np.diff(offsets), 3, 2**20)[0]) == 1
    rank, ms, dup = score_clusters(x, keys_of(dist), offsets, device="cpu")
    np.testing.assert_array_equal(rank, np.r_[np.arange(6), np.arange(4), np.arange(6)])
    np.testing.assert_allclose(ms, np.r_[EXPECTED_SIM, EXPECTED_SIM[:4], EXPECTED_SIM], atol=1e-6)
    expect = np.r_[EXPECTED_ARG, EXPECTED_ARG[:4], EXPECTED_ARG]
    starts = np.r_[[0] * 6, [6] * 4, [10] * 6]
    np.testing.assert_array_equal(dup, np.where(expect >= 0, starts + expect, -1))


def test_plan_groups_similar_sizes_within_the_memory_budget():
    rng = np.random.default_rng(2)
    sizes = np.r_[rng.integers(2, 60, 5_000), [0, 1, 1, 5_000]]
    budget = 2**20
    batches, single = plan_batches(sizes, 64, budget)
    assert single.tolist() == [5_003]  # 5,000 × 5,000 similarities do not fit: blockwise on its own
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(5_000))  # every cluster of 2+ items once; sizes 0 and 1 need nothing
    assert len(batches) <= 80
    for b in batches:
        m = sizes[b]
        assert m.max() <= max(m.min() + 8, m.min() * 5 // 4)  # padding stays small
        assert len(b) * m.max() * max(m.max(), 64) * 4 <= budget or len(b) == 1
    # a block size bounds the rows a batch holds (the memory a block of that many rows would take)
    batches, single = plan_batches(sizes, 64, budget, block_size=100)
    assert all(len(b) * sizes[b].max() <= 100 or len(b) == 1 for b in batches)
    assert set(single.tolist()) == {5_003} | set(np.flatnonzero(sizes > 100).tolist())


def test_results_do_not_depend_on_block_size_or_budget():
    sizes = np.r_[np.arange(2, 80), [300, 301]]
    x, dist, offsets = shard(sizes, d=8, seed=3)
    args = (x, keys_of(dist, "easy"), offsets)
    ref = score_clusters(*args, device="cpu")
    for kw in ({"block_size": 7}, {"block_size": 1}, {"max_block_bytes": 2**16}, {"block_size": 10_000}):
        got = score_clusters(*args, device="cpu", **kw)
        for a, b in zip(got, ref, strict=True):
            np.testing.assert_array_equal(a, b)  # bit for bit


def test_half_precision_gives_the_same_partners_and_scores():
    """float16 products only nominate candidates; the exact cosines decide: the same bytes as float32."""
    sizes = np.random.default_rng(4).integers(2, 50, 400)
    x, dist, offsets = shard(sizes, d=32, seed=4, copies=False)
    full = score_clusters(x, keys_of(dist), offsets, device="cpu")
    half = score_clusters(x, keys_of(dist), offsets, device="cpu", precision="float16")
    for a, b in zip(half, full, strict=True):
        np.testing.assert_array_equal(a, b)


def test_near_ties_are_decided_on_exact_cosines():
    """Two earlier items whose cosines to a later one differ by less than a float32 product can tell: the
    partner is the one with the higher exact cosine (or, on an exact tie, the earlier one), in a batch, in
    blocks and in float16 alike; and a cluster of many exact copies points every copy at the first."""
    rng = np.random.default_rng(9)
    d = 64
    base = rng.standard_normal(d)
    rows = []
    for _ in range(40):  # clusters of 3: two near-identical earlier items, then a query between them
        u = rng.standard_normal(d)
        a = base + 1e-3 * u
        b = base + 1e-3 * u + 1e-7 * rng.standard_normal(d)
        rows += [a, b, base + 1e-3 * u + 5e-8 * rng.standard_normal(d)]
    x = np.asarray(rows, dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    offsets = np.arange(0, len(x) + 1, 3)
    keys = np.arange(len(x), dtype=np.int64)  # input order is keep order
    exact = x.astype(np.float64)
    want = np.array([0 if exact[i + 2] @ exact[i] >= exact[i + 2] @ exact[i + 1] else 1 for i in range(0, len(x), 3)])
    for kw in ({}, {"block_size": 1}, {"precision": "float16"}, {"max_block_bytes": 2**16}):
        _, ms, dup = score_clusters(x, keys, offsets, device="cpu", **kw)
        np.testing.assert_array_equal(dup[2::3] - np.arange(0, len(x), 3), want)
        np.testing.assert_array_equal(
            ms[2::3], [np.float32(exact[i + 2] @ exact[i + w]) for i, w in zip(range(0, len(x), 3), want, strict=True)]
        )
    copies = np.repeat(x[:1], 3000, axis=0)
    _, ms, dup = score_clusters(copies, np.arange(3000), np.array([0, 3000]), device="cpu")
    assert (dup[1:] == 0).all() and (ms[1:] == np.float32(exact[0] @ exact[0])).all()
