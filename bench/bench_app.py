"""App benchmark: opening a results folder and slider-move reruns of every page, and the peak memory.

    python bench/bench_app.py                            # 1,000,000 × 32 random embeddings, k = 1000 (dedup)
    python bench/bench_app.py --n 100000                 # a quicker look
    python bench/bench_app.py --synthetic --n 20000000   # a synthetic 20,000,000-item folder (k = n / 1000)
    python bench/bench_app.py --folder DIR               # an existing results folder

Without ``--synthetic`` the results folder is made once with ``dedup()`` from seeded random embeddings
(5 % planted near-duplicates, a ``text`` column). ``--synthetic`` writes a structurally valid folder
directly through the engine's writer (``items.parquet`` with its Arrow copy, ``run.json``,
``centroids.npy``, ``embeddings.npy`` of ``--d`` dimensions, the map of its 50,000-item sample): skewed
cluster sizes, ranks, each ``dup_row`` an earlier item of its cluster, most scores between 0.3 and 0.8
and about 10 % near-duplicates near 1, string ids (never the row numbers) and a ``text`` column —
without computing anything a run computes, so that 20,000,000 items are made in minutes. Folders are
made in a child process and reused from ``--work`` afterwards.

Timings come from ``streamlit.testing`` (AppTest) in this process: ``open`` is the first run of Home (which
loads the folder: reads its Arrow copy into memory, checking it against its checksums, and checks its
numbers) plus the first run of Threshold (curve, histogram, cluster table). A folder above
``STRING_CHECK_ROWS`` items has its strings checked in a background thread started at load; the bench waits
for it (``string_check_s``) before the slider moves, so those are timed on a quiet process. Then every page
is opened and ε is moved ``--moves`` times — with the page's slider where it has one (Threshold's own, the
sidebar's), else by setting the shared ε (Home, Stakeholder) — and each rerun timed (median and max). The
peak resident memory of this process (``VmHWM``, counted from the app's start: the standalone load and
string checks before it are not; mapped file pages that were read count too) is reported at the end. AppTest
adds its own overhead, so the times are upper bounds of the server's script time; the browser adds drawing
on top.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
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


ADJECTIVES = ["red", "small", "old", "bright", "wooden", "quiet", "golden", "broken", "tiny", "modern", "wild", "calm"]
NOUNS = ["house", "dog", "river", "car", "mountain", "street", "garden", "bridge", "boat", "forest", "city", "cat"]


def make_synthetic(out: Path, n: int, d: int, k: int, seed: int = 0, map_method: str = "umap") -> None:
    """A results folder of ``n`` items in ``k`` clusters written through the engine's own writer (see the
    module's docstring); its map is computed and stored too."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from semdedup_core import ClusterConfig, DedupConfig, Results
    from semdedup_core.explore import maps
    from semdedup_core.results import io
    from semdedup_core.results.items import MIRROR_KEY, mirror_record, write_items
    from semdedup_core.results.names import CENTROIDS, EMBEDDINGS, FORMAT_VERSION, ITEMS, ITEMS_ARROW, RUN
    from semdedup_core.run.meta import engine_params, library_versions

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    # skewed cluster sizes (log-normal, as k-means on web data gives), every cluster at least one item
    weight = rng.lognormal(0.0, 1.0, k)
    sizes = np.floor(weight / weight.sum() * (n - k)).astype(np.int64) + 1
    sizes[np.argmax(sizes)] += n - int(sizes.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    # layout position p: cluster by cluster, each in rank order; row i of items.parquet is position perm[i]
    perm = rng.permutation(n)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    labels = np.repeat(np.arange(k, dtype=np.int64), sizes)[perm]
    rank = (perm - offsets[labels]).astype(np.int64)
    del perm
    dist = (0.6 - 0.5 * rank / sizes[labels]).astype(np.float32)  # keep "hard": the farthest item first
    max_sim = rng.uniform(0.3, 0.8, n).astype(np.float32)
    near = rng.random(n) < 0.10
    max_sim[near] = np.clip(1.0 - rng.exponential(0.015, int(near.sum())), 0.85, 1.0).astype(np.float32)
    first = rank == 0
    max_sim[first] = -1.0
    earlier = np.floor(rng.random(n) * rank).astype(np.int64)  # an earlier rank of the same cluster
    dup_idx = np.where(first, -1, inv[np.minimum(offsets[labels] + earlier, n - 1)])
    del inv, earlier, near
    numbers = pc.cast(pa.array(rng.permutation(n) + 10**9), pa.string())  # unique, never the row numbers
    ids = pc.binary_join_element_wise("doc-", numbers, "")
    adjective = pa.array(ADJECTIVES).take(pa.array(labels % len(ADJECTIVES)))
    noun = pa.array(NOUNS).take(pa.array((labels // len(ADJECTIVES)) % len(NOUNS)))
    text = pc.binary_join_element_wise("a photo of a", adjective, noun, "near the", noun, "number", numbers, " ")
    del numbers, adjective, noun
    has = dup_idx >= 0
    dup_of = pc.if_else(pa.array(has), pc.take(ids, pa.array(np.maximum(dup_idx, 0))), pa.scalar(None, pa.string()))
    table = pa.table(
        {
            "id": ids,
            "cluster": pa.array(labels),
            "dist_to_centroid": pa.array(dist),
            "rank": pa.array(rank),
            "max_sim": pa.array(max_sim),
            "dup_of": dup_of,
            "dup_row": pa.array(dup_idx.astype(np.int64)),
            "text": text,
        }
    )
    pair = write_items(table, out / ITEMS, out / ITEMS_ARROW)
    del table, dup_of
    del ids, text
    print(f"items written in {time.perf_counter() - t0:.1f} s", flush=True)

    centroids = rng.standard_normal((k, d)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    io.save_npy(out / CENTROIDS, centroids)
    with io.atomic_path(out / EMBEDDINGS) as tmp:
        emb = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
        step = 1_000_000
        for a in range(0, n, step):
            b = min(n, a + step)
            x = centroids[labels[a:b]] + 0.3 * rng.standard_normal((b - a, d)).astype(np.float32)
            emb[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
        emb.flush()
        del emb
    params = engine_params(ClusterConfig(k, seed=seed), DedupConfig())
    meta = {
        "format_version": FORMAT_VERSION,
        "status": "complete",
        "params": params,
        "input_fingerprint": f"synthetic:n={n}:k={k}:d={d}:seed={seed}",
        "counts": {
            "items": n,
            "dim": d,
            "input_rows": n,
            "clusters": k,
            "empty_clusters": 0,
            "largest_cluster": int(sizes.max()),
            "median_cluster": float(np.median(sizes)),
        },
        "stages": {},
        "versions": library_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "synthetic": "bench/bench_app.py --synthetic: structure and score distribution only, no embedding run",
        MIRROR_KEY: mirror_record(out, [pair]),
    }
    io.write_json(out / RUN, meta)  # last: the folder is a finished run from here on
    print(f"folder written in {time.perf_counter() - t0:.1f} s", flush=True)
    t1 = time.perf_counter()
    maps.compute_both(Results.load(out, strings=True), method=map_method)
    print(f"checked (all checks) and its {map_method} map stored in {time.perf_counter() - t1:.1f} s", flush=True)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def rss_gb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in GB (``VmRSS``, ``VmHWM``: mapped file pages that
    were read count too)."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(line.split()[1]) / 2**20  # KiB
    return got.get("VmRSS", 0.0), got.get("VmHWM", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)


def reset_peak() -> None:
    """Start the peak (``VmHWM``) again from the current memory (Linux), so that what this process did
    before the app (a second ``Results`` for the standalone timings) is not counted as the app's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        print("could not reset the peak memory (/proc/self/clear_refs): it includes the standalone timings")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=None, help="embedding size (default 32; 8 with --synthetic)")
    ap.add_argument("--k", type=int, default=None, help="clusters (default 1000; n / 1000 with --synthetic)")
    ap.add_argument("--synthetic", action="store_true", help="write a synthetic folder instead of running dedup()")
    ap.add_argument("--folder", type=Path, help="an existing results folder (skips making one)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-app")
    ap.add_argument("--moves", type=int, default=8, help="slider moves per page")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--map", action="store_true", help="also wait for the background UMAP, time it and slider moves on the map"
    )
    ap.add_argument("--make", type=Path, help=argparse.SUPPRESS)  # the child process that makes a folder
    args = ap.parse_args()
    d = args.d or (8 if args.synthetic else 32)
    k = args.k or (max(1, args.n // 1000) if args.synthetic else 1000)

    if args.make is not None:
        (make_synthetic if args.synthetic else make_folder)(args.make, args.n, d, k)
        return 0
    name = f"n{args.n}-d{d}-k{k}"  # bench_audit.py uses the dedup folder of this name
    folder = args.folder or args.work / (f"synthetic-{name}" if args.synthetic else name)
    if not (folder / "run.json").exists():  # made in a child process: its memory is not this one's
        cmd = [sys.executable, __file__, "--make", str(folder), "--n", str(args.n), "--d", str(d), "--k", str(k)]
        subprocess.run(cmd + (["--synthetic"] if args.synthetic else []), check=True)
    os.environ["SEMDEDUP_RESULTS"] = str(folder)
    os.environ.setdefault("SEMDEDUP_CACHE", str(args.work / "cache"))

    from streamlit.testing.v1 import AppTest

    from semdedup_core import Results

    figures: dict[str, object] = {"folder": str(folder)}
    load_s = timed(lambda: Results.load(folder))
    res = Results.load(folder)
    figures["items"] = res.n_items
    figures["clusters"] = res.n_clusters
    figures["items_source"] = res.source
    figures["results_load_s"] = round(load_s, 3)
    print(f"Results.load: {load_s:.2f} s for {res.n_items:,} items from {res.source} (the numbers checked)", flush=True)
    if not res.strings_checked:
        figures["string_check_standalone_s"] = round(timed(res.check_strings), 2)
        print(f"string checks alone: {figures['string_check_standalone_s']} s", flush=True)
    del res
    gc.collect()
    reset_peak()  # the app's peak from here on

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    first = timed(at.run)
    assert not at.exception, [e.value for e in at.exception]
    t_load = time.perf_counter() - first
    at.switch_page(sa.PAGES["threshold"])
    first_thr = timed(at.run)
    assert not at.exception, [e.value for e in at.exception]
    figures["first_run_home_s"] = round(first, 3)
    figures["first_run_threshold_s"] = round(first_thr, 3)
    figures["open_s"] = round(first + first_thr, 3)
    print(f"open: {first + first_thr:.2f} s — Home {first:.2f} s (loads the folder), Threshold {first_thr:.2f} s")
    app_res = sa.load(folder)  # the app's cached Results
    if not app_res.strings_checked:
        while not app_res.strings_checked:
            time.sleep(0.2)
        figures["string_check_s"] = round(time.perf_counter() - t_load, 1)
        print(f"the background string checks finished {figures['string_check_s']} s after the load began")
    assert app_res.strings_problem is None, app_res.strings_problem
    figures["rss_after_open_gb"] = round(rss_gb()[0], 2)

    rng = np.random.default_rng(0)
    values = [round(float(v), 4) for v in rng.uniform(0.01, 0.3, size=args.moves)]

    def moves(label: str, slider_key: str | None, sidebar: bool = True) -> list[float]:
        times = []
        for v in values:
            if slider_key is None:  # a page without a slider: ε changed elsewhere, this page reruns
                at.session_state["sd_eps"] = v
                times.append(timed(at.run))
            else:
                widget = (at.sidebar if sidebar else at).slider(key=slider_key)
                times.append(timed(lambda w=widget, v=v: w.set_value(v).run()))
            assert not at.exception, [e.value for e in at.exception]
            assert at.session_state["sd_eps"] == v
        med, worst = statistics.median(times), max(times)
        figures[f"{label}_slider_median_s"] = round(med, 3)
        figures[f"{label}_slider_max_s"] = round(worst, 3)
        print(f"{label}: slider move rerun median {med:.3f} s, max {worst:.3f} s over {len(times)} moves", flush=True)
        return times

    def open_page(name: str, label: str | None = None) -> None:
        at.switch_page(sa.PAGES[name])
        figures[f"first_run_{label or name}_s"] = round(timed(at.run), 3)
        assert not at.exception, [e.value for e in at.exception]
        print(f"{label or name}: first run {figures[f'first_run_{label or name}_s']:.2f} s", flush=True)

    moves("threshold", "thr_eps", sidebar=False)
    times = []
    for f in (90.0, 80.0, 70.0):
        times.append(timed(lambda f=f: at.number_input(key="thr_fraction").set_value(f).run()))
        assert abs(app_res.kept_fraction(at.session_state["sd_eps"]) - f / 100) < 0.01
    figures["threshold_fraction_max_s"] = round(max(times), 3)
    print(f"threshold: kept-fraction input rerun max {max(times):.3f} s")

    open_page("pairs")
    moves("pairs", "sb_eps")
    at.session_state["pairs_sort"] = "similarity"
    moves("pairs_similarity", "sb_eps")
    at.session_state["pairs_view"] = "Groups"
    from semdedup_core.explore.groups import group_index

    # the ε-independent group index is built in the background from the open on (> 1M items); the first
    # Groups view waits for it: that wait is reported on its own, and the slider moves are timed after it
    figures["groups_index_wait_s"] = round(timed(lambda: group_index(app_res)), 3)
    print(f"groups: the background index ready {figures['groups_index_wait_s']:.2f} s after the Pairs moves")
    figures["first_run_groups_s"] = round(timed(at.run), 3)
    moves("groups", "sb_eps")
    at.session_state["pairs_view"] = "Pairs"
    open_page("clusters")
    moves("clusters", "sb_eps")
    open_page("export")
    moves("export", "sb_eps")
    open_page("stakeholder")
    moves("stakeholder", None)
    open_page("review")
    moves("review", "sb_eps")
    open_page("compare")
    moves("compare", "sb_eps")
    open_page("leakage")
    moves("leakage", "sb_eps")
    open_page("home")
    moves("home", None)
    open_page("map")  # starts the UMAP job in the background unless the folder stores the map
    if args.map or at.get("plotly_chart"):
        t0 = time.perf_counter()
        while not at.get("plotly_chart"):
            time.sleep(2)
            at.run()
        figures["map_ready_s"] = round(time.perf_counter() - t0, 1)
        print(f"map: ready after {figures['map_ready_s']:.0f} s (0 when the folder stores it)")
        moves("map", "sb_eps")
    slider = [v for key, v in figures.items() if key.endswith("_slider_max_s")]
    figures["slowest_slider_rerun_s"] = max(slider)
    current, peak = rss_gb()
    figures["rss_end_gb"] = round(current, 2)
    figures["peak_rss_gb"] = round(peak, 2)
    print(f"memory: peak RSS {peak:.2f} GB (now {current:.2f} GB); slowest slider rerun {max(slider):.3f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
