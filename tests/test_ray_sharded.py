"""The sharded pipeline: every stage as per-shard tasks, equal to the local pipeline over the same items;
on a local Ray cluster of two nodes through the CLI (embedding shards and webdataset shards), with the
driver killed mid-run and the same command resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.ingest.sharded import run_sharded
from semdedup_core.run import sharded

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def planted(n=5000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x[4000:] = x[:1000] + 0.01 * rng.standard_normal((1000, d)).astype(np.float32)
    return x


def test_sharded_npy_equals_the_local_pipeline(tmp_path, monkeypatch):
    monkeypatch.setattr(sharded, "SHARD_ITEMS", 500)  # several buckets
    x = planted()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"doc{i}\n" for i in range(len(x))))
    kw = dict(cluster=ClusterConfig(12), config=DedupConfig(keep="random", seed=3))
    local = dedup(x, [f"doc{i}" for i in range(len(x))], out=tmp_path / "local", **kw)
    res = run_sharded(
        None, tmp_path / "sh", embeddings=str(tmp_path / "x.npy"), ids=str(tmp_path / "ids.txt"),
        executor="local", part_rows=1300, **kw,
    )  # fmt: skip
    pd.testing.assert_frame_equal(local.items, res.items)
    assert (tmp_path / "sh" / "items.parquet").is_dir() and len(
        list((tmp_path / "sh" / "items.parquet").iterdir())
    ) == 4
    assert res.run["embeddings"]["rows"] == [1300, 1300, 1300, 1100]
    rows = np.array([0, 1299, 1300, 4999, 2600])
    np.testing.assert_array_equal(res.embeddings[rows], np.load(tmp_path / "local" / "embeddings.npy")[rows])
    assert res.embeddings.shape == (5000, 16)
    # the folder reads as one dataset in pandas and pyarrow, and reopens as Results
    import pyarrow.dataset as ds

    assert ds.dataset(tmp_path / "sh" / "items.parquet").count_rows() == 5000
    duckdb = pytest.importorskip("duckdb")
    q = f"select count(*), count(dup_of) from '{tmp_path / 'sh' / 'items.parquet'}/*.parquet'"
    assert duckdb.sql(q).fetchall()[0] == (5000, int(local.items["dup_of"].notna().sum()))
    assert Results.load(tmp_path / "sh").n_removed(0.01) == local.n_removed(0.01)
    # the kept-only rule reads the sharded embeddings like a single array
    assert res.n_removed(0.05, rule="kept-only") == local.n_removed(0.05, rule="kept-only")
    # a NaN row in an .npy input is an error of the run, named in one line
    bad = x.copy()
    bad[2700] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(SemDedupError, match=r"rows 100 of part 2 contain NaN"):
        run_sharded(
            None, tmp_path / "bad", embeddings=str(tmp_path / "bad.npy"), executor="local", part_rows=1300, **kw
        )


def test_repeated_ids_across_parts_are_error_rows(tmp_path):
    from test_embed import make_shards

    make_shards(tmp_path / "emb", sizes=(30, 20, 25))
    meta = tmp_path / "emb" / "metadata" / "metadata_2.parquet"
    m = pd.read_parquet(meta)
    m.loc[4, "key"] = "000000007"  # an id of shard 0 again, in shard 2
    m.to_parquet(meta)
    res = run_sharded(tmp_path / "emb", tmp_path / "r", cluster=ClusterConfig(3), executor="local")
    errors = pd.read_parquet(tmp_path / "r" / "errors.parquet")
    assert res.items["id"].is_unique and res.n_items == 75 - 3  # the repeat, a NaN row, a zero row
    assert errors["reason"].str.startswith("duplicate id (in part 2; first in part 0)").sum() == 1
    assert errors["reason"].str.contains("NaN, infinite or all zero").sum() == 2


# -- on a Ray cluster -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of two nodes (a head and a worker raylet, one CPU each) on this machine."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"  # a local test cluster; the CLI's drivers join it plainly
    ENV["RAY_AUTH_MODE"] = "disabled"

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    yield c.address
    c.shutdown()


def _cli(out: Path, args: list[str], address: str | None) -> list[str]:
    where = ["--executor", "ray", "--ray-address", address] if address else []
    return [sys.executable, "-m", "semdedup_core", "run", *args, "--out", str(out), "--quiet", *where]


def _kill_when(cmd: list[str], ready, timeout: float = 240) -> None:
    """Start ``cmd``; SIGKILL it once ``ready()`` holds (it must not finish first)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the point to be killed"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def _progress(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _same(local: Path, remote: Path, exact: bool) -> None:
    a, b = pd.read_parquet(local / "items.parquet"), pd.read_parquet(remote / "items.parquet")
    assert a["id"].tolist() == b["id"].tolist()
    np.testing.assert_array_equal(a["cluster"], b["cluster"])
    np.testing.assert_array_equal(a["rank"], b["rank"])
    assert a["dup_of"].fillna("").tolist() == b["dup_of"].fillna("").tolist()
    if exact:
        pd.testing.assert_frame_equal(a, b)
    else:
        np.testing.assert_allclose(a["max_sim"], b["max_sim"], atol=2e-3)


@pytest.mark.slow
def test_ray_cli_over_embedding_shards_resumes_after_the_driver_is_killed(tmp_path, cluster):
    from test_embed import make_shards

    make_shards(tmp_path / "emb", sizes=(400, 300, 350, 250), d=16)
    args = ["--input", str(tmp_path / "emb"), "--clusters", "4"]
    local = subprocess.run(_cli(tmp_path / "local", args, None), env=ENV, capture_output=True, text=True)
    assert local.returncode == 0, local.stderr
    out, progress = tmp_path / "ray", tmp_path / "progress.json"
    cmd = _cli(out, [*args, "--progress-file", str(progress)], cluster)
    _kill_when(cmd, lambda: _progress(progress).get("stage") in ("assign", "shuffle", "score"))
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    _same(tmp_path / "local", out, exact=True)
    run = json.loads((out / "run.json").read_text())
    assert run["executor"] == "ray" and run["counts"]["parts"] == 4 and run["counts"]["errors"] == 2


@pytest.mark.slow
def test_ray_cli_over_webdataset_shards_resumes_after_the_driver_is_killed(tmp_path, cluster):
    from test_inputs_wds_hf import make_wds

    make_wds(tmp_path / "shards")
    args = ["--input", str(tmp_path / "shards"), "--clusters", "2"]
    local = subprocess.run(
        _cli(tmp_path / "local", [*args, "--workers", "0"], None), env=ENV, capture_output=True, text=True
    )
    assert local.returncode == 0, local.stderr
    out = tmp_path / "ray"
    parts = out / ".work" / "parts"
    cmd = _cli(out, args, cluster)
    _kill_when(cmd, lambda: len(list(parts.glob("*/done.json"))) >= 1)  # during embedding
    assert len(list(parts.glob("*/done.json"))) < 3 or not (out / "run.json").exists()
    again = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    _same(tmp_path / "local", out, exact=False)
    errors = pd.read_parquet(out / "errors.parquet")
    assert len(errors) == len(pd.read_parquet(tmp_path / "local" / "errors.parquet")) == 4
