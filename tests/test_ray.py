"""The same engine on a Ray cluster (a local one of two nodes here): through the CLI, with several parts per
input and every option, the results folder equals the local run's item for item; a driver killed with
SIGKILL mid-run resumes with the same command."""

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
from conftest import assert_same_items, near_tie_data

pytest.importorskip("ray", reason="Ray is not installed (pip install ray==2.60.0)")
pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT), RAY_AUTH_MODE="disabled")


@pytest.fixture(scope="module")
def cluster():
    """A Ray cluster of two nodes (a head and a worker raylet, one CPU each) on this machine."""
    from ray.cluster_utils import Cluster

    os.environ["RAY_AUTH_MODE"] = "disabled"  # a local test cluster; the CLI's drivers join it plainly
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    yield c.address
    c.shutdown()


def _cli(out: Path, args: list[str], address: str | None) -> list[str]:
    where = ["--executor", "ray", "--ray-address", address] if address else []
    return [sys.executable, "-m", "semdedup_core", "run", *args, "--out", str(out), "--quiet", *where]


def _run(cmd: list[str]) -> None:
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]


def _items(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / "items.parquet")


OPTIONS = {
    "plain": [],
    "probe": ["--probe", "2", "--keep", "random", "--seed", "4"],
    "reference": ["--reference", "{ref}", "--reference-probe", "3", "--keep", "easy"],
}


@pytest.mark.parametrize("option", list(OPTIONS))
def test_ray_equals_local_with_every_option(tmp_path, cluster, option):
    """Planted near-ties, 4 parts on Ray against 1 part in this process: the same folder."""
    x = near_tie_data(200, 16, seed=11)
    rng = np.random.default_rng(1)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ref.npy", (x[rng.choice(len(x), 80, replace=False)] + 1e-6).astype(np.float32))
    args = ["--embeddings", str(tmp_path / "x.npy"), "--clusters", "7", "--seed", "2"]
    args += [a.replace("{ref}", str(tmp_path / "ref.npy")) for a in OPTIONS[option]]
    _run(_cli(tmp_path / "local", args, None))
    _run(_cli(tmp_path / "ray", [*args, "--part-rows", str(len(x) // 4 + 1)], cluster))
    assert_same_items(_items(tmp_path / "local"), _items(tmp_path / "ray"))
    run = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert run["executor"] == "ray" and run["counts"]["parts"] == 4
    assert (tmp_path / "local" / "centroids.npy").read_bytes() == (tmp_path / "ray" / "centroids.npy").read_bytes()


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


def test_ray_cli_over_embedding_shards_resumes_after_the_driver_is_killed(tmp_path, cluster):
    from test_embed import make_shards

    make_shards(tmp_path / "emb", sizes=(400, 300, 350, 250), d=16)
    args = ["--input", str(tmp_path / "emb"), "--clusters", "4"]
    _run(_cli(tmp_path / "local", args, None))
    out, progress = tmp_path / "ray", tmp_path / "progress.json"
    cmd = _cli(out, [*args, "--progress-file", str(progress)], cluster)
    _kill_when(cmd, lambda: _progress(progress).get("stage") in ("assign", "shuffle", "score"))
    assert json.loads((out / "run.json").read_text())["status"] == "running"
    _run(cmd)
    pd.testing.assert_frame_equal(_items(tmp_path / "local"), _items(out))
    run = json.loads((out / "run.json").read_text())
    assert run["executor"] == "ray" and run["counts"]["parts"] == 4 and run["counts"]["errors"] == 2


def test_ray_cli_over_webdataset_shards_resumes_after_the_driver_is_killed(tmp_path, cluster):
    from test_inputs_wds_hf import make_wds

    make_wds(tmp_path / "shards")
    args = ["--input", str(tmp_path / "shards"), "--clusters", "2"]
    _run(_cli(tmp_path / "local", [*args, "--workers", "0"], None))
    out = tmp_path / "ray"
    parts = out / ".work" / "parts"
    cmd = _cli(out, args, cluster)
    _kill_when(cmd, lambda: len(list(parts.glob("*/done.json"))) >= 1)  # during embedding
    assert len(list(parts.glob("*/done.json"))) < 3 or not (out / "run.json").exists()
    _run(cmd)
    # the model runs in Ray workers with one thread each: its vectors may differ in the last bits, nothing else
    assert_same_items(_items(tmp_path / "local"), _items(out))
    assert (
        len(pd.read_parquet(out / "errors.parquet")) == len(pd.read_parquet(tmp_path / "local" / "errors.parquet")) == 4
    )
