"""Leakage benchmark: the reference search against exact brute-force nearest-reference search.

    python bench/bench_leakage.py                          # 1,000,000 × 256 items vs 100,000 reference items
    python bench/bench_leakage.py --n 100000 --m 10000     # a quicker look
    python bench/bench_leakage.py --strategies             # per-item vs per-cluster probing, recall by probe count

The data are topic-clustered and uneven (``tests/topics.py``: Zipf-sized topics, each a cloud around
its centre) and 30 % of the reference items are planted near-copies (cosine 0.90–0.995) of training
items, so that k-means often puts a copy and its source in different clusters. The main run times the
whole engine (``dedup`` with ``reference=``) and its ``leakage`` stage, then measures exact search on a
random sample of training items against every reference item (numpy float32 matmuls, the bare way),
reports the recall of true leaks (exact nearest cosine > 0.9, found with the right reference item)
and scales the exact time to all items.

``--strategies`` measures, without running the engine, how often the exact nearest reference item of
a true leak lies in the clusters a strategy compares, for a range of probe counts and equal cost:
per-item probing (each item looks into its P nearest clusters besides its own), per-cluster
multi-assignment (each reference item filed under its P+1 nearest centroids; what the engine does)
and per-cluster probing (each cluster looks into the P clusters whose centroids are nearest its own).
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

from topics import leak_data  # noqa: E402


def exact_nearest(
    train: np.ndarray, ref: np.ndarray, rows: np.ndarray, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest reference item of each training row in ``rows`` (unit rows), by float32 matmuls."""
    best = np.empty(len(rows), dtype=np.int64)
    sim = np.empty(len(rows), dtype=np.float32)
    for s in range(0, len(rows), block):
        q = np.asarray(train[rows[s : s + block]], dtype=np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        sims = q @ ref.T
        best[s : s + block] = sims.argmax(axis=1)
        sim[s : s + block] = sims.max(axis=1)
    return best, sim


def run_engine(args: argparse.Namespace) -> None:
    from semdedup_core import ClusterConfig, DedupConfig, dedup
    from semdedup_core.run.config import ReferenceConfig

    t = time.perf_counter()
    train, ref, _ = leak_data(args.n, args.m, args.d, args.topics, seed=args.seed, spread=args.spread)
    print(
        f"data: {args.n:,} × {args.d} training items in {args.topics} uneven topics, {args.m:,} reference items "
        f"(30 % planted copies), made in {time.perf_counter() - t:.1f} s; k = {args.k}, {os.cpu_count()} cores"
    )
    probe = None if args.probe < 0 else args.probe
    with tempfile.TemporaryDirectory(prefix="semdedup-bench-") as tmp:
        t = time.perf_counter()
        res = dedup(
            train,
            cluster=ClusterConfig(args.k, niter=args.niter),
            config=DedupConfig(device=args.device),
            out=Path(tmp) / "out",
            reference=ref,
            reference_config=ReferenceConfig(probe),
        )
        total = time.perf_counter() - t
        stage = res.run["stages"]["leakage"]
        ref_row = res.ref_rows.copy()
        ref_sim = res.items["ref_sim"].to_numpy()
        labels = res.items["cluster"].to_numpy()
        ref_cluster = res.reference["cluster"].to_numpy()
    stages = ", ".join(f"{name} {v['seconds']:.1f}s" for name, v in res.run["stages"].items())
    print(f"engine: {total:.1f} s in all ({stages})")
    print(
        f"  leakage stage: {stage['seconds']:.1f} s, probe {stage['probe']}, "
        f"{stage['comparisons']:,} comparisons = {stage['compared_share']:.2%} of all pairs"
    )
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(args.n, min(args.sample, args.n), replace=False))
    t = time.perf_counter()
    best, best_sim = exact_nearest(train, ref, rows)
    exact_s = time.perf_counter() - t
    true = best_sim > 0.9
    found = ref_row[rows][true] == best[true]
    crossing = (labels[rows][true] != ref_cluster[best[true]]).mean()
    print(
        f"exact search on {len(rows):,} sampled items: {exact_s:.1f} s, scaled to {args.n:,}: "
        f"{exact_s * args.n / len(rows):.0f} s"
    )
    print(
        f"  true leaks in the sample (exact nearest cosine > 0.9): {true.sum():,}, "
        f"{crossing:.1%} of them in another cluster than their reference item"
    )
    print(f"  RECALL of true leaks with the right ref_id = {found.mean():.4f}   (goal >= 0.99)")
    print(f"  largest ref_sim above the exact best: {float((ref_sim[rows] - best_sim).max()):+.2e} (goal <= ~1e-6)")
    print(f"  RATIO leakage stage / exact search (scaled) = {stage['seconds'] / (exact_s * args.n / len(rows)):.3f}")


def strategies(args: argparse.Namespace) -> None:
    from semdedup_core.kernels.kmeans import assign, fit_centroids
    from semdedup_core.kernels.probe import nearest_centroids, neighbour_clusters

    probes = [0, 1, 2, 4, 6, 8, 12, 16]
    settings = [
        dict(d=64, topics=40, k=200, spread=1.2),
        dict(d=64, topics=40, k=1000, spread=1.2),
        dict(d=256, topics=100, k=300, spread=1.2),
        dict(d=256, topics=20, k=1000, spread=0.8),
    ]
    print(f"{args.n:,} training items, {args.m:,} reference items; recall of true leaks (nearest cosine > 0.9)")
    for s in settings:
        train, ref, _ = leak_data(args.n, args.m, s["d"], s["topics"], seed=args.seed, spread=s["spread"])
        cents = fit_centroids(train, s["k"], niter=20, seed=0)
        lab, _ = assign(train, cents, "cpu")
        rlab, _ = assign(ref, cents, "cpu")
        best, best_sim = exact_nearest(train, ref, np.arange(args.n))
        true = best_sim > 0.9
        src, dst = lab[true], best[true]
        print(
            f"d={s['d']} topics={s['topics']} k={s['k']} spread={s['spread']}: {true.sum():,} true leaks, "
            f"{(src != rlab[dst]).mean():.1%} across clusters"
        )
        print("   P   per-item   multi-assign (engine)   per-cluster   compared share")
        top = max(probes)
        q_probe = nearest_centroids(train, cents, top, own=lab)
        r_file = nearest_centroids(ref, cents, top, own=rlab)
        nbr = neighbour_clusters(cents, top)
        sizes = np.bincount(lab, minlength=s["k"])
        for p in probes:
            per_item = (q_probe[true, : p + 1] == rlab[dst][:, None]).any(axis=1).mean()
            multi = (r_file[dst, : p + 1] == src[:, None]).any(axis=1).mean()
            per_cluster = (nbr[src, : p + 1] == rlab[dst][:, None]).any(axis=1).mean()
            filed = np.bincount(r_file[:, : p + 1].ravel(), minlength=s["k"])
            share = (sizes * filed).sum() / (args.n * args.m)  # the engine's cost; per-item's is within a few %
            print(f"  {p:2d}   {per_item:.4f}     {multi:.4f}                  {per_cluster:.4f}        {share:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="training items")
    ap.add_argument("--m", type=int, default=100_000, help="reference items")
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--topics", type=int, default=200)
    ap.add_argument("--spread", type=float, default=1.2, help="topic width (cosine to its centre ~1/sqrt(1+s²))")
    ap.add_argument("--niter", type=int, default=20)
    ap.add_argument("--probe", type=int, default=None, help="reference probe (default: the engine's; -1: exact)")
    ap.add_argument("--sample", type=int, default=20_000, help="training items searched exactly for recall")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", action="store_true", help="compare probing strategies (100,000 × 10,000 default)")
    args = ap.parse_args()
    if args.strategies:
        if "--n" not in sys.argv:
            args.n, args.m = 100_000, 10_000
        strategies(args)
        return
    if args.probe is None:
        from semdedup_core.run.config import DEFAULT_REFERENCE_PROBE

        args.probe = DEFAULT_REFERENCE_PROBE
    run_engine(args)


if __name__ == "__main__":
    main()
