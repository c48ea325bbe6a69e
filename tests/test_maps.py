"""2-D maps: the stratified sample, the projections, caching in the results folder."""

from __future__ import annotations

import numpy as np
import pytest

from semdedup_core import SemDedupError
from semdedup_core.explore.maps import (
    CENTROID_MAP_FILE,
    MAP_FILE,
    centroid_map,
    compute_all,
    compute_map,
    embed_2d,
    load_centroid_map,
    load_map,
    sample_rows,
)


def test_small_runs_map_every_item():
    cluster = np.array([0, 0, 1, 1, 2])
    rows = sample_rows(cluster, np.zeros(5), np.full(5, -1), max_points=5)
    assert rows.tolist() == [0, 1, 2, 3, 4]


def test_sample_takes_whole_clusters_within_budget():
    rng = np.random.default_rng(1)
    cluster = rng.integers(0, 200, size=20_000)
    max_sim = rng.random(20_000)
    dup = np.full(20_000, -1)
    rows = sample_rows(cluster, max_sim, dup, max_points=2_000, seed=3)
    assert 1_500 <= len(rows) <= 2_000
    assert (np.diff(rows) > 0).all()
    sampled = np.unique(cluster[rows])
    for c in sampled:  # every sampled cluster is complete, so all its removed items are drawn
        assert (cluster[rows] == c).sum() == (cluster == c).sum()
    assert sample_rows(cluster, max_sim, dup, max_points=2_000, seed=3).tolist() == rows.tolist()


def test_giant_cluster_contributes_its_top_scores_and_their_targets():
    n = 10_000
    cluster = np.zeros(n, dtype=np.int64)
    max_sim = np.linspace(0, 1, n)
    dup = np.arange(n) - 5000  # the top items duplicate items far below them
    dup[dup < 0] = -1
    rows = sample_rows(cluster, max_sim, dup, max_points=1_000)
    assert len(rows) <= 1_000
    top = np.argsort(-max_sim)[:500]
    assert set(top) <= set(rows.tolist())
    assert set(dup[top]) <= set(rows.tolist())
    with pytest.raises(SemDedupError, match="max_points"):
        sample_rows(cluster, max_sim, dup, max_points=0)


def test_pca_projection_shapes_and_spread():
    x = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    xy = embed_2d(x, "pca")
    assert xy.shape == (50, 2) and xy.std(axis=0).min() > 0
    assert embed_2d(x[:1], "pca").shape == (1, 2)
    assert embed_2d(x[:0], "umap").shape == (0, 2)
    with pytest.raises(SemDedupError, match="map method"):
        embed_2d(x, "tsne")


def test_map_is_computed_once_and_cached_in_the_folder(text_results, tmp_path):
    import shutil

    from semdedup_core import Results

    shutil.copytree(text_results.path, tmp_path / "run")
    for f in (tmp_path / "run").glob("*map-*"):
        f.unlink()
    res = Results.load(tmp_path / "run")
    assert load_map(res, method="pca") is None and load_centroid_map(res, "pca") is None
    assert not (res.path / MAP_FILE.format(method="pca")).exists()
    m = compute_map(res, method="pca")
    assert len(m) == res.n_items and m["row"].tolist() == list(range(res.n_items))
    path = res.path / MAP_FILE.format(method="pca")
    mtime = path.stat().st_mtime_ns
    again = compute_map(res, method="pca")
    assert path.stat().st_mtime_ns == mtime  # read back, not recomputed
    assert np.allclose(again[["x", "y"]], m[["x", "y"]])
    assert load_map(res, max_points=10, method="pca") is None  # other settings: not this map
    cm = centroid_map(res, method="pca")
    assert len(cm) == res.n_clusters and cm["size"].sum() == res.n_items
    assert (res.path / CENTROID_MAP_FILE.format(method="pca")).exists()
    assert load_centroid_map(res, "pca") is not None


@pytest.mark.slow
def test_umap_map_of_a_small_run(tmp_path):
    from conftest import make_text_results

    res = make_text_results(tmp_path / "run", n_base=60)
    m = compute_all(res, method="umap")
    assert len(m) == res.n_items and np.isfinite(m[["x", "y"]].to_numpy()).all()
    assert load_map(res, method="umap") is not None and load_centroid_map(res, "umap") is not None
