"""One engine whatever runs it: the same results folder item for item for any --part-rows and any executor,
with every option (--probe, --reference, every --keep), on data planted with near-ties where a kernel's
rounding would otherwise decide."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import assert_same_items, near_tie_data

from semdedup_core import ClusterConfig, DedupConfig, ReferenceConfig, SemDedupError, dedup


@pytest.fixture(scope="module")
def ties():
    x = near_tie_data(250, 24, seed=3)
    rng = np.random.default_rng(8)
    ref = x[rng.choice(len(x), 120, replace=False)] + 1e-6 * rng.standard_normal((120, 24)).astype(np.float32)
    return x, ref.astype(np.float32)


CASES = {
    "plain": dict(config=DedupConfig(keep="hard")),
    "probe": dict(config=DedupConfig(keep="easy", probe=2)),
    "random-probe": dict(config=DedupConfig(keep="random", seed=7, probe=3)),
    "reference": dict(config=DedupConfig(keep="random", seed=2), reference_config=ReferenceConfig(probe=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_part_rows_change_nothing(ties, tmp_path, case):
    x, ref = ties
    kw = dict(cluster=ClusterConfig(9, seed=1), **CASES[case])
    if "reference_config" in kw:
        kw["reference"] = ref
    one = dedup(x, out=tmp_path / "one", **kw)
    assert one.run["counts"]["parts"] == 1 and (tmp_path / "one" / "items.parquet").is_file()
    many = dedup(x, out=tmp_path / "many", part_rows=len(x) // 4 + 1, **kw)
    assert many.run["counts"]["parts"] == 4 and (tmp_path / "many" / "items.parquet").is_dir()
    assert_same_items(one.items, many.items)
    np.testing.assert_array_equal(np.asarray(one.embeddings[np.arange(len(x))]), many.embeddings[np.arange(len(x))])
    if one.probe:
        np.testing.assert_array_equal(np.asarray(one.probes), many.probes[np.arange(len(x))])
    assert (one.scores > 1.0).any()  # exact copies score a hair above 1, and are handled like the rest


def test_probing_only_adds_comparisons(ties, tmp_path):
    """--keep random --probe P compares each item with a superset of what the paper's rule compares: the
    same order inside each cluster, so every item's score is at least the plain run's."""
    x, _ = ties
    kw = dict(cluster=ClusterConfig(9, seed=1))
    plain = dedup(x, out=tmp_path / "plain", config=DedupConfig(keep="random", seed=5), **kw)
    probed = dedup(x, out=tmp_path / "probed", config=DedupConfig(keep="random", seed=5, probe=2), **kw)
    np.testing.assert_array_equal(plain.column("rank"), probed.column("rank"))
    np.testing.assert_array_equal(plain.column("cluster"), probed.column("cluster"))
    assert (probed.scores >= plain.scores).all()
    assert (probed.scores > plain.scores).sum() > 0  # and probing found more
    same = probed.dup_rows == plain.dup_rows
    assert (probed.scores[~same] > plain.scores[~same]).all()  # a partner changes only for a better one


def test_a_bad_row_of_an_npy_is_named_by_its_row_in_the_input(tmp_path, ties):
    x, _ = ties
    bad = x.copy()
    bad[len(x) // 2 + 5] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(SemDedupError, match=rf"embeddings rows {len(x) // 2 + 5} contain NaN or inf"):
        dedup(tmp_path / "bad.npy", cluster=ClusterConfig(3), out=tmp_path / "r", part_rows=len(x) // 3)
    assert not (tmp_path / "r" / "run.json").exists()  # nothing written before the input was checked


def test_repeated_ids_across_parts_are_error_rows(tmp_path):
    from test_embed import make_shards

    from semdedup_core import run_input

    make_shards(tmp_path / "emb", sizes=(30, 20, 25))
    meta = tmp_path / "emb" / "metadata" / "metadata_2.parquet"
    m = pd.read_parquet(meta)
    m.loc[4, "key"] = "000000007"  # an id of shard 0 again, in shard 2
    m.to_parquet(meta)
    res = run_input(tmp_path / "emb", tmp_path / "r", cluster=ClusterConfig(3))
    errors = pd.read_parquet(tmp_path / "r" / "errors.parquet")
    assert res.items["id"].is_unique and res.n_items == 75 - 3  # the repeat, a NaN row, a zero row
    assert errors["reason"].str.startswith("duplicate id (in part 2; first in part 0)").sum() == 1
    assert errors["reason"].str.contains("NaN, infinite or all zero").sum() == 2
