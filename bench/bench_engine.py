"""Engine benchmark: the full SemDeDup run against the same work done with bare faiss + torch calls.

    python bench/bench_engine.py                 # 1,000,000 × 256, k = 1000, plus the skewed case
    python bench/bench_engine.py --n 200000      # a quicker look
    python bench/bench_engine.py --ray           # also the sharded pipeline on a local Ray cluster

Each side runs in its own fresh process (so peak RSS is its own), on the same .npy file, in the same
invocation; the script prints seconds and peak memory of both and their ratios. The engine's run also
writes the whole results folder (embeddings.npy, items.parquet…); the bare side only computes. Both
sides import faiss and torch before their clock starts (the libraries' load time is not the work).
The skewed case puts 100,000 items into one cluster and reports the engine's peak memory for it.
With ``--ray``, the same file also goes through the Ray executor (every stage's units as Ray tasks on a
cluster of this machine's cores, parts of ``--part-rows`` rows): on one machine that shows the overhead of
running the same pipeline as tasks, not a speed-up (goal: within 1.2× of the local run), and the two folders
are compared item for item (ids, clusters, ranks, dup_of identical; scores within 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_data(path: Path, n: int, d: int, seed: int = 0, skewed: bool = False) -> None:
    rng = np.random.default_rng(seed)
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    step = 1 << 18
    for s in range(0, n, step):
        e = min(n, s + step)
        x[s:e] = rng.standard_normal((e - s, d), dtype=np.float32)
    if skewed:  # every item around one direction (cosine ~0.7 to it): one cluster, no matter the seed
        centre = rng.standard_normal(d).astype(np.float32)
        x[:] += centre * 1.0
    # 5 % near-duplicates of earlier rows, as real data has
    m = n // 20
    src = rng.choice(n - m, m, replace=False)
    x[n - m :] = x[src] + 0.02 * rng.standard_normal((m, d), dtype=np.float32)
    x.flush()


def engine(path: str, k: int, niter: int, out: str) -> dict:
    import faiss  # noqa: F401  -- the libraries loaded before the clock starts, as on the bare side
    import torch  # noqa: F401

    from semdedup_core import ClusterConfig, DedupConfig, dedup

    t = time.perf_counter()
    res = dedup(path, cluster=ClusterConfig(k, niter=niter), config=DedupConfig(device="cpu"), out=out)
    return {
        "seconds": time.perf_counter() - t,
        "removed@0.01": int(res.n_removed(0.01)),
        "largest": res.run["counts"]["largest_cluster"],
        "stages": {s: v["seconds"] for s, v in res.run["stages"].items()},
    }


def ray_engine(path: str, k: int, niter: int, out: str, part_rows: str = "125000") -> dict:
    """The same pipeline, every stage's units as Ray tasks on a local cluster of this machine's cores."""
    import faiss  # noqa: F401
    import ray
    import torch  # noqa: F401

    from semdedup_core import ClusterConfig, DedupConfig, dedup

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    t = time.perf_counter()
    res = dedup(
        path,
        cluster=ClusterConfig(k, niter=niter),
        config=DedupConfig(device="cpu"),
        out=out,
        executor="ray",
        part_rows=int(part_rows),
    )
    return {
        "seconds": time.perf_counter() - t,
        "removed@0.01": int(res.n_removed(0.01)),
        "largest": res.run["counts"]["largest_cluster"],
        "stages": {s: v["seconds"] for s, v in res.run["stages"].items()},
    }


def bare(path: str, k: int, niter: int) -> dict:
    """SemDeDup with nothing but numpy, faiss and torch, the way a notebook would write it."""
    import faiss
    import torch

    t = time.perf_counter()
    x = np.load(path)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=0, spherical=True, max_points_per_centroid=256)
    km.train(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(km.centroids)
    sims, labels = index.search(x, 1)
    dist, labels = 1 - sims[:, 0], labels[:, 0]
    max_sim = np.full(len(x), -1.0, dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    with torch.inference_mode():
        for c in range(k):
            members = order[bounds[c] : bounds[c + 1]]
            members = members[np.argsort(-dist[members], kind="stable")]
            e = torch.from_numpy(x[members])
            s = e @ e.T  # the whole cluster at once, as the original SemDeDup code does
            s.masked_fill_(torch.ones_like(s, dtype=torch.bool).tril_(), -2.0)  # keep i < j only
            if len(members) > 1:
                max_sim[members[1:]] = s.max(dim=0).values[1:].numpy()  # item j vs the earlier items
    return {"seconds": time.perf_counter() - t, "removed@0.01": int((max_sim > 0.99).sum())}


def same_items(a: Path, b: Path) -> str:
    """Whether two results folders agree item for item (the executors' contract), in words."""
    import pandas as pd

    x, y = pd.read_parquet(a / "items.parquet"), pd.read_parquet(b / "items.parquet")
    same = all(x[c].fillna("").tolist() == y[c].fillna("").tolist() for c in ("id", "cluster", "rank", "dup_of"))
    gap = float(np.abs(x["max_sim"].to_numpy() - y["max_sim"].to_numpy()).max())
    return f"{'yes' if same else 'NO'} (ids, clusters, ranks, dup_of), max |Δ max_sim| = {gap:.1e}"


def child(argv: list[str]) -> dict:
    """Run one side in a fresh process; return its result and peak RSS."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(Path(__file__).parent)]))
    code = (
        "import json, resource, sys; import bench_engine as b; "
        "r = getattr(b, sys.argv[1])(*sys.argv[2:3], *map(int, sys.argv[3:5]), *sys.argv[5:]); "
        "r['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20; print(json.dumps(r))"
    )
    p = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    if p.returncode:
        raise SystemExit(p.stderr)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--skip-skewed", action="store_true")
    ap.add_argument("--ray", action="store_true", help="also run the sharded pipeline on a local Ray cluster")
    ap.add_argument("--part-rows", type=int, default=125_000, help="rows per part for --ray (default 125,000)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="semdedup-bench-") as tmp:
        data = Path(tmp) / "x.npy"
        make_data(data, args.n, args.d)
        print(f"uniform: {args.n:,} × {args.d}, k = {args.k}, niter = {args.niter}, {os.cpu_count()} cores")
        b = child(["bare", str(data), str(args.k), str(args.niter)])
        e = child(["engine", str(data), str(args.k), str(args.niter), str(Path(tmp) / "out")])
        print(
            f"  bare faiss+torch : {b['seconds']:8.1f} s   peak {b['peak_rss_gb']:.2f} GB   removed@0.01 {b['removed@0.01']:,}"
        )
        print(
            f"  semdedup engine  : {e['seconds']:8.1f} s   peak {e['peak_rss_gb']:.2f} GB   removed@0.01 {e['removed@0.01']:,}"
        )
        print("  engine stages    : " + ", ".join(f"{s} {v:.1f}s" for s, v in e["stages"].items()))
        print(f"  RATIO time engine/bare = {e['seconds'] / b['seconds']:.2f}   (goal <= 1.15)")
        print(f"  RATIO peak memory engine/bare = {e['peak_rss_gb'] / b['peak_rss_gb']:.2f}   (goal <= 2)")
        if args.ray:
            r = child(
                ["ray_engine", str(data), str(args.k), str(args.niter), str(Path(tmp) / "ray"), str(args.part_rows)]
            )
            print(
                f"  sharded on Ray   : {r['seconds']:8.1f} s   driver peak {r['peak_rss_gb']:.2f} GB   "
                f"removed@0.01 {r['removed@0.01']:,}   ({-(-args.n // args.part_rows)} parts)"
            )
            print("  ray stages       : " + ", ".join(f"{s} {v:.1f}s" for s, v in r["stages"].items()))
            print(f"  RATIO time ray/local engine = {r['seconds'] / e['seconds']:.2f}   (goal <= 1.2 on one machine)")
            print("  same folder item for item: " + same_items(Path(tmp) / "out", Path(tmp) / "ray"))
        if args.skip_skewed:
            return
        n_skew = 100_000
        sk = Path(tmp) / "skew.npy"
        make_data(sk, n_skew, args.d, seed=1, skewed=True)
        e = child(["engine", str(sk), "1", str(args.niter), str(Path(tmp) / "skew-out")])
        naive = n_skew**2 * 4 / 2**30
        print(
            f"one huge cluster: {n_skew:,} × {args.d}, k = 1, largest cluster {e['largest']:,} items "
            f"(a whole-cluster similarity matrix would need {naive:.0f} GB)"
        )
        print(f"  semdedup engine  : {e['seconds']:8.1f} s   peak {e['peak_rss_gb']:.2f} GB   (goal < 8 GB)")
        print("  engine stages    : " + ", ".join(f"{s} {v:.1f}s" for s, v in e["stages"].items()))


if __name__ == "__main__":
    main()
