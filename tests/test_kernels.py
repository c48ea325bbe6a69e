"""The pure kernels on inputs small enough to check by hand."""

import numpy as np
import pytest

from semdedup_core import scores_in_cluster
from semdedup_core.errors import SemDedupError
from semdedup_core.kernels.order import keep_keys, order_cluster
from semdedup_core.kernels.pairwise import block_rows
from semdedup_core.kernels.vectors import normalize_rows


def unit(*rows):
    x = np.array(rows, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# Six 3-d unit vectors, in keep order. Cosines worked out by hand:
#   r0 = e1
#   r1 = e2                 cos(r1, r0) = 0                      -> best r0 (lowest position on the tie-free max 0)
#   r2 = (e1 + e2)/√2       cos(r2, r0) = cos(r2, r1) = 1/√2      -> tie: lowest position, r0
#   r3 = e1 (exact copy)    cos(r3, r0) = 1                        -> r0
#   r4 = -e1                cos = -1 with r0, r3; 0 with r1; -1/√2 with r2 -> best 0 at r1
#   r5 = e3                 cos = 0 with everything                 -> tie at 0: lowest position r0
SIX = unit([1, 0, 0], [0, 1, 0], [1, 1, 0], [1, 0, 0], [-1, 0, 0], [0, 0, 1])
EXPECTED_SIM = np.array([-1.0, 0.0, 1 / np.sqrt(2), 1.0, 0.0, 0.0], dtype=np.float32)
EXPECTED_ARG = np.array([-1, 0, 0, 0, 1, 0])


@pytest.mark.parametrize("block", [1, 2, 4, 5, 6, None])
def test_six_by_three_by_hand(block):
    max_sim, argmax = scores_in_cluster(SIX, block, "cpu")
    np.testing.assert_allclose(max_sim, EXPECTED_SIM, atol=1e-6)
    np.testing.assert_array_equal(argmax, EXPECTED_ARG)


def test_single_item_and_pair():
    ms, am = scores_in_cluster(SIX[:1], None, "cpu")
    assert ms.tolist() == [-1.0] and am.tolist() == [-1]
    ms, am = scores_in_cluster(unit([1, 0, 0], [1, 1, 0]), None, "cpu")
    np.testing.assert_allclose(ms, [-1.0, 1 / np.sqrt(2)], atol=1e-6)
    assert am.tolist() == [-1, 0]


def test_identical_copies_point_to_the_first():
    x = np.repeat(unit([0.3, 0.4, 0.5]), 5, axis=0)
    ms, am = scores_in_cluster(x, 2, "cpu")
    np.testing.assert_allclose(ms[1:], 1.0, atol=1e-6)
    assert am.tolist() == [-1, 0, 0, 0, 0]


@pytest.mark.parametrize("m", [2, 3, 97, 500])
def test_block_size_invariance(m):
    rng = np.random.default_rng(m)
    x = normalize_rows(rng.standard_normal((m, 16)).astype(np.float32))
    ref_sim, ref_arg = scores_in_cluster(x, m, "cpu")
    for block in (1, 3, 7, 64, m + 10):
        ms, am = scores_in_cluster(x, block, "cpu")
        np.testing.assert_array_equal(am, ref_arg)
        np.testing.assert_allclose(ms, ref_sim, atol=1e-6)
    # and both agree with a float64 brute force
    sims = x.astype(np.float64) @ x.astype(np.float64).T
    for r in range(1, m):
        assert abs(sims[r, :r].max() - ref_sim[r]) < 1e-5
        assert sims[r, ref_arg[r]] >= sims[r, :r].max() - 1e-5


def test_block_rows_bounds_memory():
    assert block_rows(100_000, 256 * 2**20) == 671
    assert block_rows(10, 256 * 2**20) == 10
    assert block_rows(10**9, 2**16) == 1


def test_order_policies():
    d = np.array([0.2, 0.9, 0.5, 0.9, 0.1], dtype=np.float32)
    assert order_cluster(d, "hard").tolist() == [1, 3, 2, 0, 4]  # farthest first, ties in input order
    assert order_cluster(d, "easy").tolist() == [4, 0, 2, 1, 3]
    r1 = order_cluster(d, "random", seed=3)
    assert sorted(r1.tolist()) == [0, 1, 2, 3, 4]
    assert r1.tolist() == order_cluster(d, "random", seed=3).tolist()
    others = {tuple(order_cluster(d, "random", seed=s)) for s in range(20)}
    assert len(others) > 5  # the seed matters
    # an item's place depends on its own row, not on which others share its cluster or part
    rows = np.array([10, 500, 7, 3_000_000_000, 42])
    keys = keep_keys(d, "random", 3, rows)
    assert keys.tolist() == [keep_keys(d[i : i + 1], "random", 3, rows[i : i + 1])[0] for i in range(5)]
    assert order_cluster(d[[2, 0]], "random", 3, rows[[2, 0]]).tolist() == np.argsort(keys[[2, 0]]).tolist()
    with pytest.raises(SemDedupError, match="keep must be one of"):
        order_cluster(d, "medium")


def test_normalize_rows_errors_name_rows():
    x = np.ones((10, 4), dtype=np.float32)
    x[3, 1] = np.nan
    with pytest.raises(SemDedupError, match=r"rows 3 contain NaN or inf"):
        normalize_rows(x.copy())
    x = np.ones((10, 4), dtype=np.float32)
    x[[2, 7]] = 0
    with pytest.raises(SemDedupError, match=r"rows 2, 7 are all zeros"):
        normalize_rows(x)
    y = normalize_rows(np.array([[3, 4]], dtype=np.float16))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[0.6, 0.8]], atol=1e-3)


def test_assignment_tie_wider_than_the_nominees_goes_to_the_lowest_centroid():
    """Five centroids exactly as near to a row, of which the fast search nominated three (not the lowest):
    every centroid is weighed, and the tie goes to centroid 0."""
    from semdedup_core.kernels.kmeans import assign, exact_nearest

    d = 8
    centroids = np.eye(d, dtype=np.float32)[:6]
    x = np.zeros((1, d), np.float32)
    x[0, :5] = 1 / np.sqrt(5)
    fast = np.full((1, 3), float(x[0, 0]), np.float32)
    label, dist = exact_nearest(x, centroids, np.array([[3, 4, 2]]), fast, 2e-5)
    assert label.tolist() == [0] and dist[0] == pytest.approx(1 - 1 / np.sqrt(5), abs=1e-6)
    for shift in range(5):  # whatever the search nominates, in any numbering of the centroids
        perm = np.roll(np.arange(6), shift)
        label, _ = assign(x, centroids[perm], device="cpu", backend="faiss")
        assert label.tolist() == [int(np.flatnonzero(perm < 5)[0])]


def test_later_copies_match_a_byte_for_byte_reference():
    """The hashed screen finds exactly the rows that are bitwise copies of an earlier row of their group
    (and tells ``-0.0`` from ``0.0``, as bytes do)."""
    from semdedup_core.kernels.pairwise import later_copies

    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 16)).astype(np.float32)
    rows = base[rng.integers(0, 200, 1000)]
    rows[::7, 0] = -0.0
    rows[1::7, 0] = 0.0
    groups = rng.integers(0, 5, 1000)
    for g in (None, groups):
        seen, want = set(), []
        for r in range(len(rows)):
            key = (None if g is None else int(g[r]), rows[r].tobytes())
            want.append(key in seen)
            seen.add(key)
        assert later_copies(rows, g).tolist() == want
        assert 0 < sum(want) < len(rows)


def test_probing_ties_beyond_the_nominees_rank_every_centroid():
    """Six centroids exactly as near to a row, of which the search nominated four (not the two lowest):
    every centroid is ranked, and the first two are centroids 0 and 1."""
    from semdedup_core.kernels.probe import rank_nominees

    d = 8
    x = np.zeros((1, d), np.float32)
    x[0, :6] = 1 / np.sqrt(6)
    centroids = np.eye(d, dtype=np.float32)
    fast = np.full((1, 4), float(x[0, 0]), np.float32)
    ranked = rank_nominees(x, centroids, fast, np.array([[5, 2, 4, 3]]), keep=2)
    assert ranked.tolist() == [[0, 1, 2, 3]]
    clear = np.array([[0.9, 0.5, 0.4, 0.3]], np.float32)  # a clear gap: the nominees are ranked alone
    assert rank_nominees(x, centroids, clear, np.array([[5, 2, 4, 3]]), keep=2).tolist() == [[2, 3, 4, 5]]
