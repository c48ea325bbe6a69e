"""The engine's steps on a Ray cluster (a local one here) give the same results as in-process."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semdedup_core import ClusterConfig, DedupConfig, dedup
from semdedup_core.executors import LocalExecutor, RayExecutor, get_executor

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_matches_local(tmp_path, cluster, monkeypatch):
    from semdedup_core import pipeline

    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 500)  # several shards, several tasks
    monkeypatch.setattr(pipeline, "ASSIGN_ROWS", 1000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 16)).astype(np.float32)
    x[4000:] = x[:1000] + 0.01 * rng.standard_normal((1000, 16)).astype(np.float32)
    kw = dict(cluster=ClusterConfig(12), config=DedupConfig(keep="random", seed=3))
    local = dedup(x, out=tmp_path / "local", **kw)
    seen = []
    remote = dedup(
        x, out=tmp_path / "ray", executor=RayExecutor(max_in_flight=3), progress=lambda *a: seen.append(a), **kw
    )
    assert remote.run["executor"] == "ray"
    pd.testing.assert_frame_equal(local.items, remote.items)
    assert ("score", 12, 12) in seen and ("assign", 5000, 5000) in seen


def test_get_executor():
    assert isinstance(get_executor(None), LocalExecutor)
    assert isinstance(get_executor("local"), LocalExecutor)
    with pytest.raises(Exception, match="executor must be 'local', 'ray'"):
        get_executor("spark")
