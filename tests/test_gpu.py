"""The CUDA paths. CI has no GPU: every test here skips with the reason."""

import numpy as np
import pytest

from semdedup_core import ClusterConfig, DedupConfig, dedup, scores_in_cluster
from semdedup_core.engine.vectors import normalize_rows

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none"),
]


def test_half_precision_kernel_within_2e3_of_float32():
    rng = np.random.default_rng(0)
    x = normalize_rows(rng.standard_normal((5000, 128)).astype(np.float32))
    ref, ref_arg = scores_in_cluster(x, 512, "cpu")
    ms, am = scores_in_cluster(x, 512, "cuda", dtype="float16")
    assert np.abs(ms - ref).max() < 2e-3
    # where the argmax differs, the two candidates are tied within half precision
    sims = x @ x.T
    diff = np.flatnonzero(am != ref_arg)
    assert np.all(np.abs(sims[diff, am[diff]] - sims[diff, ref_arg[diff]]) < 2e-3)


def test_full_run_on_cuda_matches_cpu(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20_000, 64)).astype(np.float32)
    cpu = dedup(x, cluster=ClusterConfig(16, device="cpu"), config=DedupConfig(device="cpu"), out=tmp_path / "c")
    gpu = dedup(x, cluster=ClusterConfig(16, device="cpu"), config=DedupConfig(device="cuda"), out=tmp_path / "g")
    assert gpu.run["device"]["score"] == "cuda"
    np.testing.assert_array_equal(cpu.items["rank"], gpu.items["rank"])
    assert np.abs(cpu.items["max_sim"].to_numpy() - gpu.items["max_sim"].to_numpy()).max() < 2e-3


def test_run_json_says_where_each_stage_ran(tmp_path):
    from semdedup_core.engine.device import faiss_gpu_available

    x = np.random.default_rng(2).standard_normal((2_000, 32)).astype(np.float32)
    res = dedup(x, cluster=ClusterConfig(8, device="cuda"), config=DedupConfig(device="cuda"), out=tmp_path / "r")
    faiss_dev = "cuda" if faiss_gpu_available() else "cpu"  # faiss-cpu runs k-means on the CPU
    assert res.run["device"] == {"kmeans": faiss_dev, "assign": faiss_dev, "score": "cuda"}
    assert res.run["stages"]["score"]["precision"] == "float16"
