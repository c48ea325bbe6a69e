"""App benchmark: load time and slider-move rerun time on a 1,000,000-item results folder.

    python bench/bench_app.py                       # 1,000,000 × 32 random embeddings, k = 1000
    python bench/bench_app.py --n 100000            # a quicker look
    python bench/bench_app.py --folder DIR          # an existing results folder

The results folder is made once with ``dedup()`` from seeded random embeddings (5 % planted
near-duplicates, a ``text`` column) and reused from ``--work`` afterwards. Timings come from
``streamlit.testing`` (AppTest) in this process: the first page run (load + caches), then reruns after
moving the ε slider on the Threshold page and the sidebar slider on the Pairs and Clusters pages, and
after typing a kept fraction. AppTest adds its own overhead, so these are upper bounds of the server's
script time; the browser adds network and drawing on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import semdedup_app as sa  # noqa: E402


def make_folder(out: Path, n: int, d: int, k: int, seed: int = 0) -> None:
    import pandas as pd

    from semdedup_core import ClusterConfig, dedup

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    m = n // 20
    src = rng.choice(n - m, m, replace=False)
    x[n - m :] = x[src] + 0.05 * rng.standard_normal((m, d), dtype=np.float32)
    text = pd.Series(np.char.add("item number ", np.arange(n).astype(str)))
    t0 = time.perf_counter()
    dedup(x, None, cluster=ClusterConfig(k, seed=seed), out=out, columns=pd.DataFrame({"text": text}))
    print(f"made {out} ({n:,} × {d}, k = {k}) in {time.perf_counter() - t0:.1f} s", flush=True)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--folder", type=Path, help="an existing results folder (skips making one)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-app")
    ap.add_argument("--moves", type=int, default=8, help="slider moves per page")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--map", action="store_true", help="also wait for the background UMAP, time it and slider moves on the map"
    )
    args = ap.parse_args()

    folder = args.folder or args.work / f"n{args.n}-d{args.d}-k{args.k}"
    if not (folder / "run.json").exists():
        make_folder(folder, args.n, args.d, args.k)
    os.environ["SEMDEDUP_RESULTS"] = str(folder)
    os.environ.setdefault("SEMDEDUP_CACHE", str(args.work / "cache"))

    from streamlit.testing.v1 import AppTest

    from semdedup_core import Results

    figures: dict[str, object] = {"folder": str(folder)}
    load_s = timed(lambda: Results.load(folder))
    res = Results.load(folder)
    figures["items"] = res.n_items
    figures["results_load_s"] = round(load_s, 3)
    print(f"Results.load: {load_s:.2f} s for {res.n_items:,} items", flush=True)

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    first = timed(at.run)
    at.switch_page(sa.PAGES["threshold"])
    first_thr = timed(at.run)
    assert not at.exception, [e.value for e in at.exception]
    figures["first_run_home_s"] = round(first, 3)
    figures["first_run_threshold_s"] = round(first_thr, 3)
    print(f"first run: home {first:.2f} s (loads the folder), threshold {first_thr:.2f} s (curve, histogram)")

    rng = np.random.default_rng(0)
    values = [round(float(v), 4) for v in rng.uniform(0.01, 0.3, size=args.moves)]

    def moves(slider_key: str, sidebar: bool, label: str) -> list[float]:
        times = []
        for v in values:
            widget = (at.sidebar if sidebar else at).slider(key=slider_key)
            times.append(timed(lambda w=widget, v=v: w.set_value(v).run()))
            assert not at.exception, [e.value for e in at.exception]
            assert at.session_state["sd_eps"] == v
        med, worst = statistics.median(times), max(times)
        figures[f"{label}_slider_median_s"] = round(med, 3)
        figures[f"{label}_slider_max_s"] = round(worst, 3)
        print(f"{label}: slider move rerun median {med:.3f} s, max {worst:.3f} s over {len(times)} moves", flush=True)
        return times

    moves("thr_eps", False, "threshold")
    times = []
    for f in (90.0, 80.0, 70.0):
        times.append(timed(lambda f=f: at.number_input(key="thr_fraction").set_value(f).run()))
        assert abs(res.kept_fraction(at.session_state["sd_eps"]) - f / 100) < 0.01
    figures["threshold_fraction_max_s"] = round(max(times), 3)
    print(f"threshold: kept-fraction input rerun max {max(times):.3f} s")

    at.switch_page(sa.PAGES["pairs"])
    figures["first_run_pairs_s"] = round(timed(at.run), 3)
    print(f"pairs: first run {figures['first_run_pairs_s']:.2f} s (id → row index)")
    moves("sb_eps", True, "pairs")
    at.switch_page(sa.PAGES["clusters"])
    figures["first_run_clusters_s"] = round(timed(at.run), 3)
    moves("sb_eps", True, "clusters")
    at.switch_page(sa.PAGES["stakeholder"])
    figures["first_run_stakeholder_s"] = round(timed(at.run), 3)
    print(f"stakeholder: first run {figures['first_run_stakeholder_s']:.2f} s (six showcase pairs)")
    at.switch_page(sa.PAGES["map"])
    figures["first_run_map_s"] = round(timed(at.run), 3)  # starts the UMAP job in the background
    assert not at.exception, [e.value for e in at.exception]
    print(f"map: first run {figures['first_run_map_s']:.2f} s (the UMAP itself runs in the background)")
    if args.map:
        t0 = time.perf_counter()
        while not at.get("plotly_chart"):
            time.sleep(2)
            at.run()
        figures["map_ready_s"] = round(time.perf_counter() - t0, 1)
        print(f"map: ready after {figures['map_ready_s']:.0f} s (0 when an earlier run stored it in the folder)")
        moves("sb_eps", True, "map")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
