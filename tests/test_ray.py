"""The engine's steps on a Ray cluster (a local one here) give the same results as in-process, and a
Ray run whose driver is killed resumes like a local one."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from semdedup_core import ClusterConfig, DedupConfig, dedup
from semdedup_core.run.executors import RayExecutor

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a local test cluster; its drivers in subprocesses join it plainly
    ctx = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ctx.address_info["address"]
    ray.shutdown()


def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 16)).astype(np.float32)
    x[4000:] = x[:1000] + 0.01 * rng.standard_normal((1000, 16)).astype(np.float32)
    return x


KW = dict(cluster=ClusterConfig(12), config=DedupConfig(keep="random", seed=3))


def test_ray_matches_local(tmp_path, cluster, monkeypatch):
    from semdedup_core.run import pipeline

    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 500)  # several shards, several tasks
    monkeypatch.setattr(pipeline, "ASSIGN_ROWS", 1000)
    x = data()
    local = dedup(x, out=tmp_path / "local", **KW)
    seen = []
    remote = dedup(
        x, out=tmp_path / "ray", executor=RayExecutor(max_in_flight=3), progress=lambda *a: seen.append(a), **KW
    )
    assert remote.run["executor"] == "ray"
    pd.testing.assert_frame_equal(local.items, remote.items)
    assert ("score", 12, 12) in seen and ("assign", 5000, 5000) in seen


DRIVER = """
import sys, time
from pathlib import Path
import numpy as np
from semdedup_core import ClusterConfig, DedupConfig, dedup
from semdedup_core.engine import pipeline
from semdedup_core.run.executors import RayExecutor

pipeline.SHARD_ITEMS = 500
out, address, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
x = np.load(out.parent / "x.npy")

def progress(stage, done, total):
    if stage == "score" and done >= 4:  # some shards are checkpointed: wait here to be killed
        marker.write_text("ready")
        time.sleep(600)

dedup(x, out=out, executor=RayExecutor(address, max_in_flight=1), progress=progress,
      cluster=ClusterConfig(12), config=DedupConfig(keep="random", seed=3))
"""


def test_a_killed_ray_driver_resumes(tmp_path, cluster, monkeypatch):
    """kill -9 of the driver mid-scoring (the cluster lives on); the same call again resumes from the
    checkpointed shards and ends equal to an uninterrupted local run."""
    from semdedup_core.run import pipeline

    x = data()
    np.save(tmp_path / "x.npy", x)
    out, marker = tmp_path / "ray", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(out), cluster, str(marker)],
        env=dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the driver never reached scoring"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    shards = list((out / ".work" / "scores").glob("shard-*.npz"))
    assert len(shards) >= 2

    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 500)
    resumed = dedup(x, out=out, executor=RayExecutor(max_in_flight=2), **KW)
    assert resumed.run["stages"]["score"]["resumed_clusters"] >= 2
    local = dedup(x, out=tmp_path / "local", **KW)
    pd.testing.assert_frame_equal(local.items, resumed.items)
