"""Report and compare benchmark on a large results folder.

    python bench/bench_report.py                    # 1,000,000 × 32 random embeddings, k = 1000 and 300
    python bench/bench_report.py --n 100000         # a quicker look

Two results folders are made once with ``dedup()`` over the same seeded random embeddings (5 % planted
near-duplicates, a ``text`` column): A with k = ``--k`` and keep ``hard``, B with k = ``--k-b`` and keep
``easy``; they are reused from ``--work`` afterwards. Timed, each the median of ``--repeat`` runs:

- ``report``: ``build_report(A, eps)`` — the whole HTML file (what the CLI writes and the Stakeholder
  button downloads), and its size;
- ``compare``: ``compare(A, B, eps)`` with its counts and the matching ε, against the same counts done
  with bare pandas/numpy in the same process (align B to A by id with ``merge``, then boolean masks):
  the ratio is what the library's bookkeeping costs;
- ``compare items``: the A-only items with their partners and reasons (the Compare page's list).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_folder(out: Path, n: int, d: int, k: int, keep: str, seed: int = 0) -> None:
    import pandas as pd

    from semdedup_core import ClusterConfig, DedupConfig, dedup

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    m = n // 20
    src = rng.choice(n - m, m, replace=False)
    x[n - m :] = x[src] + 0.05 * rng.standard_normal((m, d), dtype=np.float32)
    text = pd.Series(np.char.add("item number ", np.arange(n).astype(str)))
    t0 = time.perf_counter()
    dedup(
        x,
        None,
        cluster=ClusterConfig(k, seed=seed),
        config=DedupConfig(keep=keep),
        out=out,
        columns=pd.DataFrame({"text": text}),
    )
    print(f"made {out} ({n:,} × {d}, k = {k}, keep {keep}) in {time.perf_counter() - t0:.1f} s", flush=True)


def median_time(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), value


def bare_compare(a, b, eps: float) -> tuple[int, int, int]:
    """The counts with bare pandas/numpy: align by id, threshold both score columns, count."""
    left = a.items[["id", "max_sim"]]
    right = b.items[["id", "max_sim"]]
    both = left.merge(right, on="id", how="inner", suffixes=("_a", "_b"))
    ra = both["max_sim_a"].to_numpy(np.float64) > 1.0 - eps
    rb = both["max_sim_b"].to_numpy(np.float64) > 1.0 - eps
    return int((ra & rb).sum()), int((ra & ~rb).sum()), int((~ra & rb).sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--k-b", type=int, default=300)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-report")
    args = ap.parse_args()

    from semdedup_core import Results
    from semdedup_core.explore.compare import compare
    from semdedup_core.explore.report import build_report

    folders = {}
    for name, k, keep in (("a", args.k, "hard"), ("b", args.k_b, "easy")):
        folder = args.work / f"n{args.n}-d{args.d}-k{k}-{keep}"
        if not (folder / "run.json").exists():
            make_folder(folder, args.n, args.d, k, keep)
        folders[name] = folder

    def load_both():
        return Results.load(folders["a"]), Results.load(folders["b"])

    t_load, (a, b) = median_time(load_both, 1)
    print(f"loaded both folders in {t_load:.2f} s", flush=True)
    eps = args.eps
    t_report, html = median_time(lambda: build_report(a, eps), args.repeat)
    print(
        f"report: {t_report:.2f} s for {a.n_items:,} items ({a.n_removed(eps):,} removed at eps {eps}); "
        f"{len(html.encode()) / 1024:,.0f} KB",
        flush=True,
    )

    def lib():
        cmp = compare(a, b, eps)
        return (cmp.both, cmp.only_a, cmp.only_b), cmp.eps_b_matching

    t_bare, bare = median_time(lambda: bare_compare(a, b, eps), args.repeat)
    cold = []  # the library on freshly opened folders: its id index built inside the timing, as the bare merge does
    for _ in range(args.repeat):
        a, b = load_both()
        t0 = time.perf_counter()
        counts, match = lib()
        cold.append(time.perf_counter() - t0)
    t_lib = statistics.median(cold)
    t_warm, _ = median_time(lib, args.repeat)  # the same folders again (the app: another ε, the index kept)
    assert counts == bare, (counts, bare)
    print(
        f"compare: library {t_lib:.3f} s (on freshly opened folders; {t_warm:.3f} s once their id index exists) vs "
        f"bare pandas/numpy {t_bare:.3f} s — ratio {t_lib / t_bare:.2f} "
        f"(both {counts[0]:,}, A only {counts[1]:,}, B only {counts[2]:,}; B matches A's count at eps {match:.4f})",
        flush=True,
    )
    cmp = compare(a, b, eps)
    t_items, frame = median_time(lambda: cmp.items("only_a"), args.repeat)
    print(f"compare items: {len(frame):,} A-only items with partners and reasons in {t_items:.3f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
