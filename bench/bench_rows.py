"""Reading the embeddings with positioned reads (``NpyRows``) against memory-mapping them (``np.load(...,
mmap_mode="r")``), on the work the explorer does with them: the kept-only rule at three ε (it reads every
removed item's cluster block), and a map's random sample of 50,000 rows.

    python bench/bench_rows.py                 # 500,000 × 64, k = 500 (a results folder made once)
    python bench/bench_rows.py --n 1000000 --d 256

The folder is made once with ``dedup()`` from seeded embeddings with planted near-copies (so the rule has
work) under ``--root``. Each measure alternates the two readers, three rounds, and prints the median
seconds and the ratio positioned / mmap; the page cache is warm for both (the file is read once first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semdedup_core import ClusterConfig, Results, dedup  # noqa: E402
from semdedup_core.results.rules import mask  # noqa: E402


def make_folder(out: Path, n: int, d: int, k: int) -> Path:
    if (out / "run.json").is_file():
        return out
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    copies = rng.choice(n, n // 4, replace=False)
    x[copies] = x[rng.integers(0, n, len(copies))] + 0.15 * rng.standard_normal((len(copies), d)).astype(np.float32)
    dedup(x, None, cluster=ClusterConfig(k, seed=0), out=out)
    return out


def fresh(folder: Path, reader: str) -> Results:
    res = Results.load(folder)
    if reader == "mmap":
        res.__dict__["embeddings"] = np.load(folder / "embeddings.npy", mmap_mode="r")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--k", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--root", type=Path, default=Path("/tmp/semdedup-bench-rows"))
    args = ap.parse_args()
    folder = make_folder(args.root / f"n{args.n}-d{args.d}-k{args.k}", args.n, args.d, args.k)
    np.load(folder / "embeddings.npy").sum()  # warm the page cache for both readers
    sample = np.random.default_rng(1).choice(args.n, min(50_000, args.n), replace=False)
    work = {
        "kept-only rule, eps 0.05/0.15/0.3": lambda res: [mask(res, e, "kept-only") for e in (0.05, 0.15, 0.3)],
        "map sample (50k random rows)": lambda res: np.asarray(res.embeddings[sample]),
    }
    print(f"{args.n:,} x {args.d} float32 in {folder}")
    for name, fn in work.items():
        times: dict[str, list[float]] = {"positioned": [], "mmap": []}
        answers = {}
        for _ in range(args.rounds):
            for reader in times:
                res = fresh(folder, reader)
                t = time.perf_counter()
                answers[reader] = fn(res)
                times[reader].append(time.perf_counter() - t)
        a, b = answers["positioned"], answers["mmap"]
        same = (
            all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
            if isinstance(a, list)
            else np.array_equal(a, b)
        )
        pos, mm = statistics.median(times["positioned"]), statistics.median(times["mmap"])
        print(f"{name:40s} positioned {pos:7.3f} s   mmap {mm:7.3f} s   ratio {pos / mm:5.2f}   same answer: {same}")


if __name__ == "__main__":
    main()
