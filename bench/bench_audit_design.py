"""The audit's design measured against hidden truths: the recommendation's coverage over seeds, and the
verdicts needed until it settles — today's fixed sample against the sequential design, on the same truths.

    python bench/bench_audit_design.py                   # 200 seeds × 4 truths (a few minutes)
    python bench/bench_audit_design.py --seeds 50        # a quicker look
    python bench/bench_audit_design.py --json out.json   # also write the figures
    python bench/bench_audit_design.py --bias --seeds 100  # the sequential estimate's bias at its full budget

Each truth is a finite population of 20,000 pairs removed at eps-max 0.3 with a realistic band structure
— 15 % exact copies (score 1.0000004 in float32, band 0), 35 % near-copies (1 − Exp(0.02)), the rest
spread over 0.70–0.95 — and a probability of being a true duplicate that depends on the score:

- ``logistic``: falls gently through 0.95 around ε ≈ 0.11 (a logistic centred at 0.86, as the test oracle);
- ``cliff``: 0.995 above 0.92, then 0.35 — precision falls steeply just past ε = 0.08;
- ``early-cliff``: 0.997 above 0.965, then 0.5 — the cliff inside the small ε;
- ``gentle``: falls linearly from 1 at score 1 to 0.8 at 0.7 — precision hovers near the target a long way.

The truth of every pair is drawn once per population (seeded); the seeds vary the sample. For each seed:

- **today's design**: a fixed sample of 400 (√N allocation, random queue), judged in queue order; the
  recommendation is read every 10 verdicts, under today's rule (the largest ε whose 95 % lower bound
  reaches the target) and under the new guaranteed rule (fixed-sequence testing). *Verdicts to settle*:
  the first count after which the recommendation never changes again up to 400 — what a reviewer who
  knew the future could have stopped at (generous to today's design).
- **the sequential design**: a first draw of 20 (√N, two per band), then batches of 20 sent where they
  decide the recommended ε, looks at 30, 35, 40, 45, 50, 60, …, 100 % of a budget of 400; the reviewer stops at the first
  look where the stopping rule says *enough*. *Verdicts to settle*: the sample size then (and, as for
  today's design, the last change of its recommendation along the way).

*Coverage*: the share of seeds whose recommendation truly reaches the target (no recommendation counts
as covered: it claims nothing; the no-recommendation rate is reported too), and for the guaranteed
rule the share where *every* ε it claims does. *Bias*: the mean error of the sequential design's estimate
at its stop, at fixed ε, over the seeds — the weights ``N_h / n_h`` keep it near zero.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semdedup_core.audit.design import Plan, population  # noqa: E402
from semdedup_core.audit.precision import estimate_units  # noqa: E402
from semdedup_core.audit.sample import add_batch, draw_units  # noqa: E402
from semdedup_core.audit.sequential import plan_next_units  # noqa: E402

EPS_MAX = 0.3
TARGET = 0.95
BIAS_EPS = (0.03, 0.05, 0.08, 0.1, 0.15, 0.3)


def truth_probability(kind: str, s: np.ndarray) -> np.ndarray:
    """The chance that a pair of score ``s`` is a true duplicate; exact copies (``s`` > 1) are, but one in
    a thousand (two different items that embed identically: an empty caption, a boilerplate text)."""
    exact = s > 1.0
    s = np.minimum(s, 1.0)
    if kind == "logistic":
        p = 1.0 / (1.0 + np.exp(-(s - 0.86) / 0.025))
    elif kind == "cliff":
        p = np.where(s > 0.92, 0.995, 0.35)
    elif kind == "early-cliff":
        p = np.where(s > 0.965, 0.997, 0.5)
    elif kind == "gentle":
        p = 0.8 + 0.2 * (s - 0.7) / 0.3
    else:
        raise ValueError(kind)
    return np.where(exact, 0.999, p)


def realistic_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` scores of removed pairs with a realistic band structure: 15 % exact copies (1.0000004 in
    float32), 35 % near-copies (1 − Exp(0.02)), the rest spread over 0.70–0.95."""
    kinds = rng.choice(3, size=n, p=[0.15, 0.35, 0.50])
    return np.where(
        kinds == 0,
        np.float32(1.0000004),
        np.where(kinds == 1, 1.0 - np.minimum(rng.exponential(0.02, n), 0.299), rng.uniform(0.7005, 0.95, n)),
    ).astype(np.float32)


def make_truth(kind: str, n: int = 20_000, seed: int = 0):
    """``(population, truth per population pair, true precision at each ε of a grid)``."""
    rng = np.random.default_rng(seed)
    s = realistic_scores(rng, n)
    rows = np.arange(n, dtype=np.int64)
    pop = population(s, (rows + 1) % n, EPS_MAX, 10)
    truth = rng.random(len(pop.rows)) < truth_probability(kind, pop.scores)
    return pop, truth


def true_precision(pop, truth, eps: np.ndarray) -> np.ndarray:
    return np.array([truth[pop.scores > 1.0 - e].mean() for e in eps])


def verdicts_of(design, truth, pop) -> np.ndarray:
    pos = np.searchsorted(pop.rows, design.units["row"].to_numpy(np.int64))
    return np.where(truth[pos], "duplicate", "not_duplicate").astype(object)


def settle(path: list) -> int:
    """The index from which ``path`` never changes again — its end when it ends without a recommendation
    (a reviewer learns that nothing can be recommended only by judging everything)."""
    if path[-1] is None:
        return len(path) - 1
    i = len(path) - 1
    while i > 0 and path[i - 1] == path[-1]:
        i -= 1
    return i


def fixed_run(pop, truth, seed: int, n: int, step: int):
    design = draw_units(pop, n, seed, Plan())
    answers = verdicts_of(design, truth, pop)
    ks = list(range(step, n + 1, step))
    old, new = [], []
    for k in ks:
        verdict = answers.copy()
        verdict[k:] = None
        rep = estimate_units(design, verdict, target=TARGET)
        ok = np.flatnonzero(rep.rows["ci_low"].to_numpy() >= TARGET)
        old.append(float(rep.rows["eps"].iat[ok[-1]]) if len(ok) else None)
        new.append(rep.recommended_eps)
        claimed = rep.rows["eps"].to_numpy()[rep.rows["holds"].to_numpy(dtype=bool)]
    return (ks[settle(old)], old[-1]), (ks[settle(new)], new[-1], claimed)


def sequential_run(pop, truth, seed: int, pilot: int, budget: int):
    design = draw_units(pop, pilot, seed, Plan(sequential=True, target=TARGET, budget=budget))
    path = []
    while True:
        verdict = verdicts_of(design, truth, pop)
        rep = estimate_units(design, verdict)
        path.append((design.n, rep.recommended_eps))
        if rep.enough:
            break
        alloc, _ = plan_next_units(design, verdict, rep)
        if alloc is None or alloc.sum() == 0:
            break
        design = add_batch(design, pop, alloc)
    claimed = rep.rows["eps"].to_numpy()[rep.rows["holds"].to_numpy(dtype=bool)]
    at = estimate_units(design, verdict, eps=list(BIAS_EPS)).rows["precision"].to_numpy()
    settled = path[settle([r for _, r in path])][0]
    return design.n, rep.recommended_eps, claimed, at, settled


def full_run(pop, truth, seed: int, pilot: int, budget: int) -> np.ndarray:
    """The sequential design's estimate at ``BIAS_EPS`` once it has judged its whole budget — batches sent
    where they decide ε while it goes on, then as the first draw was once it has done enough: the bias of
    its weights without the stopping time's (an estimate read when a rule says stop leans the way that
    made it stop)."""
    from semdedup_core.audit.sample import allocate

    design = draw_units(pop, pilot, seed, Plan(sequential=True, target=TARGET, budget=budget))
    while design.n < budget:
        verdict = verdicts_of(design, truth, pop)
        rep = estimate_units(design, verdict)
        alloc = None if rep.enough else plan_next_units(design, verdict, rep)[0]
        if alloc is None or alloc.sum() == 0:
            size = min(20, budget - design.n)
            alloc = allocate(design.band_sizes, design.n + size) - allocate(design.band_sizes, design.n)
        design = add_batch(design, pop, np.maximum(alloc, 0))
    verdict = verdicts_of(design, truth, pop)
    return estimate_units(design, verdict, eps=list(BIAS_EPS)).rows["precision"].to_numpy()


def bias_only(kind: str, seeds: int, args) -> dict:
    pop, truth = make_truth(kind, seed=1)
    err = np.asarray([full_run(pop, truth, s, args.pilot, args.budget) for s in range(seeds)])
    err = err - true_precision(pop, truth, np.asarray(BIAS_EPS))
    se = err.std(axis=0) / np.sqrt(seeds)
    return {
        "truth": kind,
        "seeds": seeds,
        "bias_at_budget": {f"{e:g}": round(float(err[:, i].mean()), 4) for i, e in enumerate(BIAS_EPS)},
        "bias_standard_error": {f"{e:g}": round(float(se[i]), 4) for i, e in enumerate(BIAS_EPS)},
    }


def covered(pop, truth, rec, claimed=()) -> tuple[bool, bool]:
    if rec is None:
        return True, True
    one = true_precision(pop, truth, np.asarray([rec]))[0] >= TARGET
    every = bool(np.all(true_precision(pop, truth, np.asarray(claimed)) >= TARGET)) if len(claimed) else one
    return bool(one), every


def run_truth(kind: str, seeds: int, args) -> dict:
    pop, truth = make_truth(kind, seed=1)
    grid = np.round(np.arange(1, 31) * 0.01, 6)
    tp = true_precision(pop, truth, grid)
    best = float(grid[np.flatnonzero(tp >= TARGET)[-1]]) if (tp >= TARGET).any() else None
    rows = {"old": [], "fixed_new": [], "seq": []}
    errors = []
    t0 = time.perf_counter()
    for seed in range(seeds):
        (k_old, r_old), (k_new, r_new, c_new) = fixed_run(pop, truth, seed, args.n, args.step)
        n_seq, r_seq, c_seq, at, settled = sequential_run(pop, truth, seed, args.pilot, args.budget)
        rows["old"].append((k_old, r_old, *covered(pop, truth, r_old)))
        rows["fixed_new"].append((k_new, r_new, *covered(pop, truth, r_new, c_new)))
        rows["seq"].append((n_seq, r_seq, *covered(pop, truth, r_seq, c_seq), settled))
        errors.append(at - true_precision(pop, truth, np.asarray(BIAS_EPS)))
    out = {
        "truth": kind,
        "population": int(len(pop.rows)),
        "exact_copies": int((pop.scores > 1.0).sum()),
        "largest_eps_reaching_target": best,
        "true_precision": {f"{e:g}": round(float(p), 4) for e, p in zip(grid, tp, strict=True) if e in BIAS_EPS},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for name, got in rows.items():
        k = np.array([g[0] for g in got], dtype=float)
        recs = [g[1] for g in got]
        out[name] = {
            "verdicts_to_settle_mean": round(float(k.mean()), 1),
            "verdicts_to_settle_median": float(np.median(k)),
            "coverage": round(float(np.mean([g[2] for g in got])), 4),
            "coverage_every_claimed": round(float(np.mean([g[3] for g in got])), 4),
            "no_recommendation": round(float(np.mean([r is None for r in recs])), 4),
            "last_change_mean": round(float(np.mean([g[4] if len(g) > 4 else g[0] for g in got])), 1),
            "recommended_mean": round(float(np.mean([r for r in recs if r is not None])), 4)
            if any(r is not None for r in recs)
            else None,
        }
    err = np.asarray(errors, dtype=float)
    out["seq_bias"] = {f"{e:g}": round(float(np.nanmean(err[:, i])), 4) for i, e in enumerate(BIAS_EPS)}
    out["ratio_seq_to_old"] = round(out["seq"]["verdicts_to_settle_mean"] / out["old"]["verdicts_to_settle_mean"], 3)
    out["ratio_seq_to_fixed_new"] = round(
        out["seq"]["verdicts_to_settle_mean"] / out["fixed_new"]["verdicts_to_settle_mean"], 3
    )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--truths", nargs="+", default=["logistic", "cliff", "early-cliff", "gentle"])
    ap.add_argument("--n", type=int, default=400, help="today's fixed sample size (default 400)")
    ap.add_argument("--step", type=int, default=10, help="read today's recommendation every STEP verdicts")
    ap.add_argument("--pilot", type=int, default=20, help="the sequential design's first draw")
    ap.add_argument("--budget", type=int, default=400, help="the sequential design's budget")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--bias", action="store_true", help="only the sequential design's bias at its full budget (no stopping)"
    )
    args = ap.parse_args()
    if args.bias:
        out = [bias_only(kind, args.seeds, args) for kind in args.truths]
        print(json.dumps(out, indent=2))
        if args.json:
            args.json.write_text(json.dumps(out, indent=2) + "\n")
        return 0
    results = []
    for kind in args.truths:
        r = run_truth(kind, args.seeds, args)
        results.append(r)
        print(json.dumps(r), flush=True)
    summary = {
        "seeds": args.seeds,
        "truths": results,
        "mean_ratio_seq_to_old": round(float(np.mean([r["ratio_seq_to_old"] for r in results])), 3),
        "min_coverage_seq": min(r["seq"]["coverage_every_claimed"] for r in results),
        "min_coverage_old": min(r["old"]["coverage"] for r in results),
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "truths"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
