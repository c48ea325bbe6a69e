"""bench/bench_gpu.py runs end to end on a CPU at a tiny scale (the GPU figures come from a GPU run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_bench_runs_end_to_end_on_a_cpu(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "bench_gpu.py"), "--device", "cpu", "--scale", "0.0002"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a smoke test: one thread is quickest on a shared CPU
    p = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["n"] == 2000 and report["k"] == 4
    e2e = report["end_to_end"]
    assert set(e2e["stages"]) >= {"normalize", "kmeans", "assign", "score", "write"}
    assert e2e["backend"] == {"kmeans": "faiss-cpu", "assign": "faiss-cpu", "score": "torch-cpu"}
    assert report["baseline"]["scaled"]["score"] > 0 and report["kmeans_alone"]["faiss_seconds"] > 0
    models = [r["model"] for r in report["embedding"]]
    assert models[:2] == ["efficientnet_lite0", "open_clip:ViT-B-32"] and models[2].startswith("minilm")
    assert all(r["bare_per_s"] > 0 and r["pipeline_per_s"] > 0 for r in report["embedding"])
    assert report["projection"]["gpu_hours"] > 0
    small = report["pairwise_small_clusters"]
    assert small["clusters"] == 20 and small["batched"] > 0 and small["one_by_one"] > 0
    # one table: a header, a rule, and a row per measure
    lines = p.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("measure"))
    assert "baseline" in lines[head] and "ratio" in lines[head] and set(lines[head + 1]) == {"-"}
    assert any(line.startswith("dedup 2,000 × 512, k=4 (s)") for line in lines)
    assert any(line.startswith("Projection for LAION-440M") for line in lines)
