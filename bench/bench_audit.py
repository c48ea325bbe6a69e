"""Audit benchmark: the precision report for 50 ε values, and a verdict click on the Review page.

    python bench/bench_audit.py                          # 1,000,000 items (bench_app's folder), 5,000 verdicts
    python bench/bench_audit.py --n 100000 --verdicts 2000   # a quicker look
    python bench/bench_audit.py --folder DIR             # an existing results folder

Goals (issue 8): with 1,000,000 items and 5,000 verdicts, the report for 50 ε values in under 1 s, and a
verdict click that reruns the Review page in under 0.3 s.

The results folder is the one ``bench/bench_app.py`` makes (seeded random embeddings with 5 % planted
near-duplicates, made once with ``dedup()`` and reused from ``--work``). A review sample of
``verdicts + 1000`` pairs is drawn into the folder (``audit/sample.parquet``, replacing one drawn
before: do not point ``--folder`` at a run whose review you care about) and its first ``verdicts``
pairs in queue order are answered by a synthetic ground truth (duplicate with a probability rising with
the similarity; 2 % unsure) into a store in ``--work``. Timed:

- ``report``: what ``audit report`` computes after the run is loaded — read the recorded sample, read
  and resolve the store, estimate 50 ε values (median and max over ``--repeat`` cold calls), and the
  estimate alone; and the whole ``python -m semdedup_core audit report --json`` command (Python start,
  ``Results.load`` included) for reference;
- ``click``: AppTest reruns of the Review page after clicking **Duplicate** (each click writes one
  verdict into the 5,000-verdict store, and the page rereads it, re-estimates and redraws the chart).
  AppTest adds its own overhead, so these are upper bounds of the server's script time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def answer(res, design, n_verdicts: int, store) -> None:
    """The synthetic ground truth's verdicts on the sample's first ``n_verdicts`` pairs, in one write."""
    from semdedup_core.audit.labels import make_rows
    from semdedup_core.audit.sample import pair_keys

    units = design.units.iloc[:n_verdicts]
    u = pair_keys(units["id_a"], units["id_b"], 99, "truth").astype(np.float64) / 2.0**64
    s = units["max_sim"].to_numpy(np.float64)
    dup = u < 1.0 / (1.0 + np.exp(-(s - 0.8) / 0.03))
    verdicts = np.where(dup, "duplicate", "not_duplicate").astype(object)
    verdicts[u > 0.98] = "unsure"
    store.add(make_rows(units["id"], units["dup_of"], list(verdicts), "bench", s))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--verdicts", type=int, default=5000)
    ap.add_argument("--eps", type=int, default=50, help="ε values in the report (default 50)")
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--folder", type=Path, help="an existing results folder (skips making one)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-app")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    from bench_app import make_folder

    from semdedup_core import Results
    from semdedup_core.audit import draw_sample, estimate, report, save_design
    from semdedup_core.audit.labels import LabelStore

    folder = args.folder or args.work / f"n{args.n}-d{args.d}-k{args.k}"
    if not (folder / "run.json").exists():
        make_folder(folder, args.n, args.d, args.k)
    load_s, res = timed(lambda: Results.load(folder))
    figures: dict[str, object] = {"folder": str(folder), "items": res.n_items, "results_load_s": round(load_s, 3)}
    print(f"Results.load: {load_s:.2f} s for {res.n_items:,} items", flush=True)

    draw_s, design = timed(lambda: draw_sample(res, args.verdicts + 1000, 0.3, seed=0))
    save_design(design, folder)
    figures.update(population=design.population, sample=design.n, draw_sample_s=round(draw_s, 3))
    print(f"draw_sample: {design.n:,} of {design.population:,} pairs removed at eps 0.3 in {draw_s:.2f} s")
    store_path = args.work / f"labels-bench-{res.n_items}.parquet"
    store_path.parent.mkdir(parents=True, exist_ok=True)
    for p in (store_path, store_path.with_name(store_path.name + ".lock")):
        p.unlink(missing_ok=True)
    store = LabelStore(store_path)
    answer(res, design, args.verdicts, store)
    figures["verdicts"] = len(store.read())
    grid = np.round(np.linspace(0.3 / args.eps, 0.3, args.eps), 6)

    # -- the report for 50 ε (cold: sample and store read each time) ------------------------------------
    first, _ = timed(lambda: report(res, store, grid))  # the first call also imports scipy.special
    figures["report_first_call_s"] = round(first, 3)
    times = []
    for _ in range(args.repeat):
        t, rep = timed(lambda: report(res, store, grid))
        times.append(t)
    resolved = store.resolved()
    est_times = [timed(lambda: estimate(design, resolved, grid))[0] for _ in range(args.repeat)]
    figures.update(
        report_median_s=round(statistics.median(times), 4),
        report_max_s=round(max(times), 4),
        estimate_only_median_s=round(statistics.median(est_times), 4),
        recommended_eps=rep.recommended_eps,
    )
    print(
        f"report ({len(grid)} eps, {figures['verdicts']:,} verdicts): median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s (estimate alone {statistics.median(est_times):.4f} s; first call, with imports, "
        f"{first:.2f} s) — goal < 1 s",
        flush=True,
    )
    cmd = [sys.executable, "-m", "semdedup_core", "audit", "report", str(folder), "--labels", str(store_path), "--json"]
    cmd += ["--eps", *map(str, grid)]
    t, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=dict(os.environ)))
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["rows"]) == len(grid)
    figures["cli_report_s"] = round(t, 3)
    print(f"`audit report --json` end to end (Python start and Results.load included): {t:.2f} s")

    # -- a verdict click on the Review page ------------------------------------------------------------
    os.environ["SEMDEDUP_RESULTS"] = str(folder)
    os.environ.setdefault("SEMDEDUP_CACHE", str(args.work / "cache"))
    from streamlit.testing.v1 import AppTest

    import semdedup_app as sa

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["sd_labels"] = str(store_path)
    at.session_state["rev_reviewer"] = "bench-clicker"
    at.run()
    at.switch_page(sa.PAGES["review"])
    first, _ = timed(at.run)
    assert not at.exception, [e.value for e in at.exception]
    figures["first_run_review_s"] = round(first, 3)
    print(f"review: first run {first:.2f} s (loads the sample and the store)", flush=True)
    clicks = []
    for _ in range(args.clicks):
        before = len(store.read())
        t, _ = timed(lambda: at.button(key="rev_dup").click().run())
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert len(store.read()) == before + 1  # the click stored a verdict
        clicks.append(t)
    figures.update(click_median_s=round(statistics.median(clicks), 4), click_max_s=round(max(clicks), 4))
    print(
        f"review: verdict click rerun median {statistics.median(clicks):.3f} s, max {max(clicks):.3f} s over "
        f"{len(clicks)} clicks — goal < 0.3 s"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
