"""The CUDA paths. CI has no GPU: every test here skips with the reason.

On a GPU machine: ``python -m pytest -m gpu`` (faiss-cpu is needed for the comparisons with faiss; the
tests that need it skip without it)."""

import numpy as np
import pytest

from semdedup_core import ClusterConfig, DedupConfig, dedup, scores_in_cluster
from semdedup_core.kernels.vectors import normalize_rows

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none"),
]


def faiss_or_skip():
    return pytest.importorskip("faiss", reason="compares with faiss (pip install faiss-cpu==1.15.1)")


def blobs(n, d, centres, spread, seed):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d)).astype(np.float32)
    return normalize_rows(c[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, d)).astype(np.float32))


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
    from semdedup_core.kernels.device import faiss_gpu_available

    x = np.random.default_rng(2).standard_normal((2_000, 32)).astype(np.float32)
    res = dedup(x, cluster=ClusterConfig(8, device="cuda"), config=DedupConfig(device="cuda"), out=tmp_path / "r")
    km = "faiss-gpu" if faiss_gpu_available() else "torch-cuda"  # faiss-cpu would run k-means on the CPU
    assert res.run["backend"] == {"kmeans": km, "assign": km, "score": "torch-cuda"}
    assert res.run["device"] == {"kmeans": "cuda", "assign": "cuda", "score": "cuda"}
    assert res.run["stages"]["score"]["precision"] == "float16"


def test_torch_kmeans_on_cuda_within_one_percent_of_faiss():
    faiss_or_skip()
    from semdedup_core.kernels import kmeans

    x = blobs(40_000, 64, 400, 1.0, 3)
    ref = kmeans.fit_centroids(x, 200, niter=20, max_points_per_centroid=10**6, device="cpu", backend="faiss")
    got = kmeans.fit_centroids(x, 200, niter=20, max_points_per_centroid=10**6, device="cuda", backend="torch")

    def objective(c):
        return float((x @ c.T).max(axis=1).mean())

    assert objective(got) >= 0.99 * objective(ref)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_streamed_points_give_the_resident_result():
    """Points that do not fit the device budget are streamed from pinned memory each iteration: the same
    centroids as when they sit on the device."""
    from semdedup_core.kernels.kmeans import torch_kmeans

    x = blobs(30_000, 32, 100, 0.8, 4)
    resident = torch_kmeans(x, 50, niter=8, device="cuda")
    streamed = torch_kmeans(x, 50, niter=8, device="cuda", resident_bytes=0, budget_bytes=1 << 20)
    np.testing.assert_allclose(streamed, resident, atol=1e-4)


def test_cuda_assignment_refined_to_float32():
    faiss_or_skip()
    from semdedup_core.kernels import kmeans

    x = blobs(50_000, 96, 300, 1.2, 5)
    c = kmeans.fit_centroids(x, 256, niter=5, device="cpu", backend="faiss")
    lab_f, dist_f = kmeans.assign(x, c, "cpu", "faiss")
    lab_t, dist_t = kmeans.assign(x, c, "cuda", "torch")
    np.testing.assert_allclose(dist_t, dist_f, atol=1e-5)  # the float32 cosine of the chosen centroid
    assert (lab_t != lab_f).mean() < 1e-3  # float16 candidates, re-scored in float32


def test_batched_pairwise_on_cuda_matches_the_cpu():
    from semdedup_core.kernels.pairwise import score_clusters

    rng = np.random.default_rng(6)
    sizes = np.r_[rng.integers(0, 50, 4_000), [3_000]]
    offsets = np.r_[0, np.cumsum(sizes)]
    x = normalize_rows(rng.standard_normal((offsets[-1], 64)).astype(np.float32))
    dist = rng.random(offsets[-1]).astype(np.float32)
    args = (x, dist, offsets, np.arange(len(sizes)), "hard", 0)
    cpu = score_clusters(*args, device="cpu")
    gpu32 = score_clusters(*args, device="cuda", precision="float32")
    gpu16 = score_clusters(*args, device="cuda", precision="float16")
    np.testing.assert_array_equal(gpu32[0], cpu[0])
    np.testing.assert_allclose(gpu32[1], cpu[1], atol=1e-5)
    assert (gpu32[2] != cpu[2]).mean() < 1e-3  # TF32 off by default: only float ties may differ
    assert np.abs(gpu16[1] - cpu[1]).max() < 2e-3


def test_image_encoder_runs_channels_last_under_autocast():
    timm = pytest.importorskip("timm")
    from semdedup_core.ingest.encoders import EfficientNetLite0

    enc = EfficientNetLite0("cuda")
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.reset_classifier(0)
    enc._model = enc._prepare(model)
    assert enc.runtime() == {"backend": "torch-cuda", "autocast": "float16", "channels_last": True}
    batch = torch.randn(8, 3, 224, 224).pin_memory()
    out = enc.encode(batch)
    assert out.shape == (8, 1280) and out.dtype == np.float32 and np.isfinite(out).all()
    ref = model.float().to(memory_format=torch.contiguous_format)(batch.cuda()).float().cpu().numpy()
    cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.999  # float16 autocast in channels_last gives the float32 features
