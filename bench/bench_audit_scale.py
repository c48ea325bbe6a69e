"""The audit at scale: drawing, recording and reading a review sample of a 20,000,000-item run without its
items table, timed, with the peak memory.

    python bench/bench_audit_scale.py                       # 20,000,000 items (bench_app's synthetic folder)
    python bench/bench_audit_scale.py --n 2000000           # a quicker look
    python bench/bench_audit_scale.py --folder DIR          # an existing results folder

The folder is the one ``bench/bench_app.py --synthetic`` writes (made once and reused from ``--work``): about
10 % near-duplicates near 1, the rest spread over 0.3–0.8, so that some 28 % of the items are removed at
eps-max 0.3 — the population the sample is drawn from. Timed, each in this process after ``Results.load``
(memory-maps the folder and checks its numbers): drawing a fixed sample of 400 (``draw_sample``: the score
column, ``dup_row`` and the sorted scores, then the ids of the 800 rows of the sampled pairs), recording it,
reading it back (``load_design``, the Review page's first step: it checks the recorded pairs against the
run), the queue CSV's rows (``queue_frame``), the estimate at 30 ε, and a sequential sample's first draw and
next batch. ``items_built`` says whether anything built the whole items table (it must not). The peak
resident memory (``VmHWM``) is reported after the load and at the end: their difference is the audit's.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def peak_gb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return round(time.perf_counter() - t0, 3), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000_000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--folder", type=Path, help="an existing results folder (skips making one)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "semdedup-bench-app")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    folder = args.folder or args.work / f"synthetic-n{args.n}-d{args.d}"
    if not (folder / "run.json").exists():  # made in a child process, as bench_app does, not to count its memory
        code = (
            "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from bench_app import make_synthetic; "
            f"make_synthetic(Path({str(folder)!r}), {args.n}, {args.d}, max(1, {args.n} // 1000))"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

    from semdedup_core import Results
    from semdedup_core.audit import Plan, draw_sample, estimate, load_design, next_batch, queue_frame, save_design
    from semdedup_core.audit.labels import LabelStore, make_rows, resolve

    figures: dict[str, object] = {"folder": str(folder)}
    figures["load_s"], res = timed(lambda: Results.load(folder))
    figures["items"] = res.n_items
    figures["peak_after_load_gb"] = round(peak_gb(), 2)
    figures["draw_sample_400_s"], design = timed(lambda: draw_sample(res, 400, 0.3, seed=0))
    figures["population"] = design.population
    figures["save_s"], _ = timed(lambda: save_design(design, folder))
    figures["load_design_s"], loaded = timed(lambda: load_design(res))
    assert loaded.n == 400
    none = resolve(make_rows([], [], [], "x"))
    figures["queue_frame_s"], queue = timed(lambda: queue_frame(res, loaded, none))
    assert len(queue) == 400
    units = loaded.units.iloc[:300]
    verdicts = np.where(units["max_sim"].to_numpy() > 0.9, "duplicate", "not_duplicate")
    judged = resolve(make_rows(units["id"], units["dup_of"], list(verdicts), "bench"))
    figures["estimate_30_eps_s"], rep = timed(lambda: estimate(loaded, judged))
    figures["recommended_eps"] = rep.recommended_eps
    plan = Plan(sequential=True, target=0.95, budget=400)
    figures["draw_sequential_20_s"], seq = timed(lambda: draw_sample(res, 20, 0.3, seed=1, plan=plan))
    save_design(seq, folder)
    store = LabelStore(args.work / f"labels-scale-{res.n_items}.parquet")
    store.path.unlink(missing_ok=True)
    u = seq.units
    store.add(make_rows(u["id"], u["dup_of"], list(np.where(u["max_sim"] > 0.9, "duplicate", "not_duplicate")), "b"))
    figures["next_batch_s"], (grown, what) = timed(lambda: next_batch(res, store))
    figures["next_batch"] = what
    figures["sequential_size_after"] = grown.n
    figures["items_built"] = "items" in res.__dict__
    figures["peak_end_gb"] = round(peak_gb(), 2)
    figures["audit_peak_gb"] = round(figures["peak_end_gb"] - figures["peak_after_load_gb"], 2)
    (folder / "audit" / "sample.parquet").unlink(missing_ok=True)  # leave the folder as it was made
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
