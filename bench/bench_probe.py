"""Probe benchmark: dedup across cluster boundaries (``--probe P``), recall and cost against P.

    python bench/bench_probe.py                            # 1,000,000 × 256, P = 0, 1, 2, 4, 8
    python bench/bench_probe.py --n 100000 --k 300         # a quicker look
    python bench/bench_probe.py --strategies               # per-item vs per-cluster probing, by P

The data are topic-clustered and uneven (``tests/topics.py``: Zipf-sized topics, each a cloud around its
centre) with 10 % planted near-copies (cosine 0.90–0.995) of other items at random positions, so that
k-means often puts a copy and its source in different clusters. For each P the whole engine runs
(``dedup(..., DedupConfig(probe=P))``, the same k-means every time); the script prints the seconds of the
run and of its score stage, the similarities computed, and the recall of an exact search under the same
global keep order, measured on a random sample of items: of the sampled items whose best earlier item
(over *all* items) has cosine > 0.9, the share whose ``dup_of`` is that very item.

``--strategies`` measures, without running the engine, how often that exact partner lies in the clusters
a strategy compares: per-item probing (each item looks into the P clusters whose centroids are nearest
to it; what the engine does) and per-cluster probing (the P clusters whose centroids are nearest to its
cluster's centroid), for a range of P at (about) equal cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from topics import dedup_data  # noqa: E402


def exact_earlier(x: np.ndarray, pos: np.ndarray, rows: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For each row in ``rows``: the item earlier in the global order (``pos``) with the highest cosine,
    over all items (unit rows ``x``), by float32 matmuls; -1 where none is earlier."""
    best = np.full(len(rows), -1, dtype=np.int64)
    sim = np.full(len(rows), -np.inf, dtype=np.float32)
    for s in range(0, len(rows), block):
        r = rows[s : s + block]
        sims = x[r] @ x.T
        sims[pos[None, :] >= pos[r, None]] = -np.inf
        best[s : s + block] = sims.argmax(axis=1)
        sim[s : s + block] = sims.max(axis=1)
    best[~np.isfinite(sim)] = -1
    return best, sim


def run_engine(args: argparse.Namespace) -> None:
    from semdedup_core import ClusterConfig, DedupConfig, dedup
    from semdedup_core.kernels.order import global_order

    t = time.perf_counter()
    x, _ = dedup_data(args.n, args.d, args.topics, copy_share=0.1, seed=args.seed, spread=args.spread)
    print(
        f"data: {args.n:,} × {args.d} items in {args.topics} uneven topics, 10 % planted near-copies, "
        f"made in {time.perf_counter() - t:.1f} s; k = {args.k}, {os.cpu_count()} cores"
    )
    rows = np.sort(np.random.default_rng(1).choice(args.n, min(args.sample, args.n), replace=False))
    exact = None
    print("   P   run s   score s   similarities   × paper   recall (cos > 0.9, right partner)   across clusters")
    for p in args.probes:
        with tempfile.TemporaryDirectory(prefix="semdedup-bench-") as tmp:
            t = time.perf_counter()
            res = dedup(
                x,
                cluster=ClusterConfig(args.k, niter=args.niter),
                config=DedupConfig(probe=p, device=args.device),
                out=Path(tmp) / "out",
            )
            seconds = time.perf_counter() - t
            if exact is None:
                xu = np.load(Path(tmp) / "out" / "embeddings.npy")
                pos = global_order(res.items["dist_to_centroid"].to_numpy(), "hard")
                t = time.perf_counter()
                best, best_sim = exact_earlier(xu, pos, rows)
                exact_s = time.perf_counter() - t
                true = best_sim > 0.9
                labels = res.items["cluster"].to_numpy()
                crossing = (labels[rows][true] != labels[best[true]]).mean()
                exact = (best, true)
            stage = res.run["stages"]["score"]
            sizes = np.bincount(res.items["cluster"].to_numpy(), minlength=args.k).astype(np.int64)
            paper = int((sizes**2).sum())
            comparisons = stage.get("comparisons", paper)
            recall = (res.dup_rows[rows][true] == best[true]).mean()
            across = int(res.cross_cluster.sum())
            print(
                f"  {p:2d}  {seconds:6.1f}   {stage['seconds']:7.1f}   {comparisons:12,}   {comparisons / paper:6.2f}"
                f"    {recall:.4f}                              {across:,}"
            )
    print(
        f"exact search: {len(rows):,} sampled items against all {args.n:,} in {exact_s:.1f} s "
        f"(scaled to all items: {exact_s * args.n / len(rows):.0f} s); {true.sum():,} sampled items have a "
        f"partner with cosine > 0.9, {crossing:.1%} of them in another cluster"
    )


def strategies(args: argparse.Namespace) -> None:
    from semdedup_core.kernels.kmeans import assign, fit_centroids
    from semdedup_core.kernels.order import global_order
    from semdedup_core.kernels.probe import nearest_centroids, neighbour_clusters

    probes = [0, 1, 2, 4, 8, 12, 16]
    settings = [
        dict(d=64, topics=40, k=100, spread=1.2),
        dict(d=64, topics=40, k=500, spread=1.2),
        dict(d=256, topics=20, k=500, spread=0.8),
    ]
    print(f"{args.n:,} items; recall of pairs with cosine > 0.9 (exact search under the same global order)")
    for s in settings:
        x, _ = dedup_data(args.n, s["d"], s["topics"], copy_share=0.1, seed=args.seed, spread=s["spread"])
        cents = fit_centroids(x, s["k"], niter=20, seed=0)
        lab, dist = assign(x, cents, "cpu")
        pos = global_order(dist, "hard")
        best, best_sim = exact_earlier(x, pos, np.arange(args.n))
        true = best_sim > 0.9
        src, dst = np.flatnonzero(true), best[true]
        print(
            f"d={s['d']} topics={s['topics']} k={s['k']} spread={s['spread']}: {true.sum():,} pairs, "
            f"{(lab[src] != lab[dst]).mean():.1%} across clusters"
        )
        print("   P   per-item (engine)   per-cluster   similarities × paper (per-item, per-cluster)")
        top = max(probes)
        per_item = nearest_centroids(x, cents, top, own=lab)
        nbr = neighbour_clusters(cents, top)
        sizes = np.bincount(lab, minlength=s["k"]).astype(np.int64)
        paper = (sizes**2).sum()
        for p in probes:
            hit_item = (per_item[src, : p + 1] == lab[dst][:, None]).any(axis=1).mean()
            hit_cluster = (nbr[lab[src], : p + 1] == lab[dst][:, None]).any(axis=1).mean()
            cost_item = sizes[per_item[:, : p + 1]].sum() / paper
            cost_cluster = sizes[nbr[lab, : p + 1]].sum() / paper
            print(
                f"  {p:2d}   {hit_item:.4f}              {hit_cluster:.4f}        {cost_item:.2f}, {cost_cluster:.2f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--spread", type=float, default=1.2, help="topic width (cosine to its centre ~1/sqrt(1+s²))")
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--probes", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    ap.add_argument("--sample", type=int, default=5000, help="items searched exactly for recall")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", action="store_true", help="compare probing strategies (50,000 items default)")
    args = ap.parse_args()
    if args.strategies:
        if "--n" not in sys.argv:
            args.n = 50_000
        strategies(args)
        return
    run_engine(args)


if __name__ == "__main__":
    main()
