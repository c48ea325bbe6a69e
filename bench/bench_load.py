"""Loading a results folder: ``Results.load`` (which checks every row of items.parquet) against the bare
``pandas.read_parquet`` of the same file, in this process, best of ``--repeat``.

    python bench/bench_load.py                    # 1,000,000 items, k = 1000, both kinds of ids
    python bench/bench_load.py --n 100000         # a quicker look

Two folders are written once under ``--work`` (seeded, valid by construction, with a ``text`` column as
the app's benchmark has): one with the engine's default ids ``"0".."n-1"`` (checked without hashing) and
one with path-like string ids (``"img/000123.jpg"``: one hash pass over the ids and ``dup_of``). The
checks' cost is the difference between the two timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semdedup_core import Results  # noqa: E402
from semdedup_core.results import io  # noqa: E402
from semdedup_core.results.names import FORMAT_VERSION  # noqa: E402


def make_folder(out: Path, n: int, k: int, string_ids: bool, seed: int = 0) -> None:
    """A results folder as the engine writes it: random clusters, ranks, each dup_of the item just before
    in its cluster, scores in [0, 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, k, n)
    order = np.lexsort((rng.random(n), cluster))
    sizes = np.bincount(cluster, minlength=k)
    offsets = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(offsets[:-1], sizes)
    position = np.empty(n, np.int64)
    position[order] = np.arange(n)
    dup = np.where(rank > 0, order[np.maximum(position - 1, 0)], -1)
    numbers = np.arange(n).astype(str)
    ids = pa.array(np.char.add(np.char.add("img/", np.char.zfill(numbers, 7)), ".jpg") if string_ids else numbers)
    dup_of = pc.if_else(pa.array(dup >= 0), pc.take(ids, pa.array(np.maximum(dup, 0))), pa.scalar(None, pa.string()))
    table = pa.table(
        {
            "id": ids,
            "cluster": pa.array(cluster),
            "dist_to_centroid": pa.array(rng.random(n).astype(np.float32)),
            "rank": pa.array(rank),
            "max_sim": pa.array(np.where(rank > 0, rng.random(n), -1.0).astype(np.float32)),
            "dup_of": dup_of,
            "text": pa.array(np.char.add("item number ", numbers)),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "items.parquet")
    io.write_json(
        out / "run.json",
        {"format_version": FORMAT_VERSION, "status": "complete", "counts": {"items": n, "clusters": k}},
    )


def best(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-load")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    import pandas as pd

    figures: dict[str, object] = {"items": args.n, "clusters": args.k, "repeat": args.repeat}
    for kind, string_ids in (("row_number_ids", False), ("string_ids", True)):
        folder = args.work / f"n{args.n}-k{args.k}-{kind}"
        if not (folder / "run.json").exists():
            make_folder(folder, args.n, args.k, string_ids)
        bare_best, bare_med = best(lambda f=folder: pd.read_parquet(f / "items.parquet"), args.repeat)
        load_best, load_med = best(lambda f=folder: Results.load(f), args.repeat)
        figures[kind] = {
            "read_parquet_s": round(bare_best, 3),
            "results_load_s": round(load_best, 3),
            "checks_s": round(load_best - bare_best, 3),
            "ratio": round(load_best / bare_best, 2),
            "read_parquet_median_s": round(bare_med, 3),
            "results_load_median_s": round(load_med, 3),
        }
        print(
            f"{kind}: pandas.read_parquet {bare_best:.3f} s, Results.load {load_best:.3f} s "
            f"(checks {load_best - bare_best:.3f} s, ratio {load_best / bare_best:.2f}) for {args.n:,} items",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
