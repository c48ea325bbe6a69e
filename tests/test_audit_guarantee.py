"""The recommended ε and its guarantee, honest gaps and the sensitivity range, and the sequential design —
on hand-checked numbers and on populations with a known truth (array level, no run needed: a seed takes
milliseconds). The full comparison with today's design, 200 seeds on four truths, is bench/bench_audit_design.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from semdedup_core.audit.design import LOOKS, Plan, population, unit_keys
from semdedup_core.audit.estimator import stratified
from semdedup_core.audit.precision import estimate_units
from semdedup_core.audit.recommend import fewest, fixed_sequence, look_level
from semdedup_core.audit.sample import add_batch, draw_units
from semdedup_core.audit.sequential import plan_next_units

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_audit_design import realistic_scores  # noqa: E402

TARGET = 0.95


def truth_population(kind: str, n: int = 8000, seed: int = 1):
    """A population removed at eps-max 0.3 with a realistic band structure (15 % exact copies, 35 %
    near-copies, the rest spread over 0.70–0.95) and a truth drawn once: ``cliff``: precision 0.995 above
    similarity 0.92 and 0.35 below, so it falls steeply just past ε = 0.08; ``flat``: 0.99 for exact
    copies and then 0.945 everywhere — just under a target of 0.95 over most of the grid."""
    rng = np.random.default_rng(seed)
    s = realistic_scores(rng, n)  # the bench's truths have the same band structure
    rows = np.arange(n, dtype=np.int64)
    pop = population(s, (rows + 1) % n, 0.3, 10)
    if kind == "cliff":
        p = np.where(pop.scores > 0.92, 0.995, 0.35)
    else:
        p = np.where(pop.scores > 1.0, 0.99, 0.945)
    return pop, rng.random(len(pop.rows)) < p


def true_precision(pop, truth, eps) -> np.ndarray:
    return np.array([truth[pop.scores > 1.0 - e].mean() for e in np.atleast_1d(eps)])


def answers(design, pop, truth) -> np.ndarray:
    pos = np.searchsorted(pop.rows, design.units["row"].to_numpy(np.int64))
    return np.where(truth[pos], "duplicate", "not_duplicate").astype(object)


# -- the guarantee's parts, by hand -------------------------------------------------------------------
def test_the_per_look_level_makes_any_look_cross_with_5_percent():
    assert look_level((400,)) == pytest.approx(0.05)  # one look: the level itself
    looks = tuple(int(np.ceil(f * 400)) for f in LOOKS)
    a = look_level(looks)
    assert 0.012 < a < 0.025  # less than 5 % per look …
    # … so that a Brownian motion seen at the looks crosses the boundary with probability 5 % (simulated)
    from scipy.special import ndtri

    t = np.asarray(looks) / looks[-1]
    rng = np.random.default_rng(0)
    w = np.cumsum(rng.standard_normal((200_000, len(t))) * np.sqrt(np.diff(np.concatenate([[0], t]))), axis=1)
    crossed = ((w / np.sqrt(t)) >= ndtri(1 - a)).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=0.003)
    assert fewest(0.95, 0.025) == 72 and 0.025 ** (1 / 72) >= 0.95 > 0.025 ** (1 / 71)


def test_fixed_sequence_stops_at_the_first_failure_and_is_monotone():
    low = np.array([0.90, 0.96, 0.97, 0.94, 0.99, 0.99])
    tested = np.array([False, True, True, True, True, True])  # the first ε is not in the sequence
    holds = fixed_sequence(low, 0.95, tested)
    assert holds.tolist() == [False, True, True, False, False, False]  # 0.99 after a failure is not claimed
    assert not fixed_sequence(low, 0.95, np.zeros(6, dtype=bool)).any()
    assert fixed_sequence(np.full(3, np.nan), 0.95, np.ones(3, dtype=bool)).sum() == 0


def test_a_band_without_judged_pairs_widens_the_interval():
    # band 1 has 40 removed items and no judged pair: the estimate borrows band 0's share, the interval
    # does not: its ends count those 40 as none / all duplicates
    N, n, y = np.array([[100.0, 40.0]]), np.array([[20.0, 0.0]]), np.array([[19.0, 0.0]])
    p, lo, hi, extra = stratified(N, n, y)
    _, lo0, hi0, _ = stratified(N[:, :1], n[:, :1], y[:, :1])
    assert p[0] == pytest.approx(0.95) and extra[0] == 40
    assert lo[0] == pytest.approx(lo0[0] * 100 / 140) and hi[0] == pytest.approx(hi0[0] * 100 / 140 + 40 / 140)
    # with ten judged pairs there, all duplicates, the interval is the usual one, narrower than the gap's
    p2, lo2, hi2, extra2 = stratified(N, np.array([[20.0, 10.0]]), np.array([[19.0, 10.0]]))
    assert extra2[0] == 0 and lo2[0] > lo[0] and hi2[0] < hi[0]


def test_the_gap_just_above_the_threshold_blocks_the_recommendation():
    """Every judged pair of band 3 scores low in it: an ε that removes the top of band 3 has removed items
    there and no judged pair — the interval widens and that ε does not hold."""
    pop, truth = truth_population("cliff")
    design = draw_units(pop, 400, 0, Plan())
    verdict = np.full(design.n, "duplicate", dtype=object)
    units = design.units
    in3 = (units["band"] == 3).to_numpy()
    top3 = in3 & (units["max_sim"].to_numpy() > 1 - 0.0975)
    verdict[top3] = None  # not judged yet: the top of band 3
    rep = estimate_units(design, verdict, eps=[0.09, 0.095, 0.1], target=0.9)
    r = rep.rows
    assert r["extrapolated"].iat[1] > 0 and r["extrapolated"].iat[0] == 0
    share = r["extrapolated"].iat[1] / r["removed"].iat[1]
    assert r["ci_high"].iat[1] - r["ci_low"].iat[1] >= share - 1e-9  # at least the gap's share wide
    assert r["precision"].iat[1] == pytest.approx(1.0)  # the estimate still borrows band 3's judged pairs


def test_unsure_skipped_and_disputed_pairs_give_the_sensitivity_range():
    pop, truth = truth_population("cliff")
    design = draw_units(pop, 300, 1, Plan())
    verdict = answers(design, pop, truth)
    verdict[:10] = "unsure"
    verdict[10:20] = None  # skipped: later pairs of the queue have verdicts
    disputed = np.zeros(design.n, dtype=bool)
    disputed[20:25] = True
    rep = estimate_units(design, verdict, eps=[0.3], disputed=disputed)
    row = rep.rows.iloc[0]
    assert (row["unsure"], row["skipped"], row["disputed"]) == (10, 10, 5)
    assert rep.sample["skipped"] == 10 and rep.sample["disputed"] == 5
    assert row["sensitivity_low"] < row["precision"] < row["sensitivity_high"]
    # the ends are the estimates with those 25 pairs all duplicates / none
    as_dup, as_not = verdict.copy(), verdict.copy()
    as_dup[:25], as_not[:25] = "duplicate", "not_duplicate"
    high = estimate_units(design, as_dup, eps=[0.3]).rows["precision"].iat[0]
    low = estimate_units(design, as_not, eps=[0.3]).rows["precision"].iat[0]
    assert row["sensitivity_high"] == pytest.approx(high) and row["sensitivity_low"] == pytest.approx(low)


# -- over seeds ----------------------------------------------------------------------------------------
def test_the_recommendation_reaches_the_target_in_at_least_95_percent_of_200_seeds():
    """A fixed sample of 400 on a truth whose precision falls steeply past ε = 0.08, and on one that sits
    just under the target over most of the grid (where taking the largest ε whose bound clears the target
    spends the 95 % once per ε)."""
    for kind in ("cliff", "flat"):
        pop, truth = truth_population(kind)
        grid = np.round(np.arange(1, 31) * 0.01, 6)
        good = true_precision(pop, truth, grid) >= TARGET
        wrong, claims = 0, 0
        for seed in range(200):
            design = draw_units(pop, 400, seed, Plan())
            rep = estimate_units(design, answers(design, pop, truth), target=TARGET)
            holds = rep.rows["holds"].to_numpy(dtype=bool)
            assert not np.any(np.diff(holds[np.flatnonzero(holds)[0] :].astype(int)) > 0) if holds.any() else True
            claims += rep.recommended_eps is not None
            wrong += bool(np.any(holds & ~good))  # any ε claimed whose true precision misses the target
        assert wrong / 200 <= 0.05, (kind, wrong)
        if kind == "cliff":
            assert claims >= 180  # and it does recommend, nearly always


def test_a_batch_aims_at_the_first_epsilon_that_does_not_hold_yet():
    """Fixed-sequence testing claims an ε only once every tested ε below it holds: while the first tested
    ε (0.03, band 0 alone) does not hold, the next batches go to band 0 and its neighbour — not to the far
    bands a larger ε would need — and the first claim comes at the first look it can."""
    pop, truth = truth_population("cliff")
    plan = Plan(sequential=True, target=TARGET, budget=400)
    for seed in range(4):
        design = draw_units(pop, 20, seed, plan)
        first_claim = None
        while first_claim is None and design.n < 400:
            verdict = answers(design, pop, truth)
            rep = estimate_units(design, verdict)
            if rep.recommended_eps is not None or rep.enough:
                first_claim = design.n
                break
            alloc, why = plan_next_units(design, verdict, rep)
            if design.n >= 40:  # past the first draw's spread: the batch aims at ε = 0.03
                assert alloc[:2].sum() >= 0.8 * alloc.sum(), (seed, design.n, alloc.tolist(), why)
            design = add_batch(design, pop, alloc)
        assert first_claim is not None and first_claim <= 200, (seed, first_claim)
        assert first_claim in design.looks.tolist()


def test_a_batch_keeps_its_size_when_a_band_runs_out_of_pairs():
    """A small real run has bands of a few pairs: a batch asked of an exhausted band goes to the bands with
    pairs left (a batch that shrank to nothing left the sample short of its next look for good)."""
    rng = np.random.default_rng(3)
    s = np.concatenate([1.0 - rng.exponential(0.02, 300).clip(0, 0.2), rng.uniform(0.701, 0.729, 3)])
    rows = np.arange(len(s), dtype=np.int64)
    pop = population(s.astype(np.float32), (rows + 1) % len(s), 0.3, 10)
    assert pop.sizes[-1] == 3
    design = draw_units(pop, 20, 0, Plan(sequential=True, target=TARGET, budget=100))
    ask = np.zeros(pop.bands, dtype=np.int64)
    ask[-1] = 10  # 10 pairs asked of a band with 3 (some already drawn)
    grown = add_batch(design, pop, ask)
    assert grown.n == design.n + 10
    assert grown.band_samples[-1] == 3 and grown.units["row"].is_unique
    assert np.all(grown.band_samples <= pop.sizes)


@pytest.mark.slow
def test_the_sequential_design_keeps_the_guarantee_and_its_estimate_unbiased():
    """40 seeds of the sequential design on the steep truth: it stops with a recommendation that reaches
    the target, every band's sample is the first pairs of the band in key order (a simple random sample),
    the inclusion probabilities are n_h / N_h, and the estimate at its stop has no visible bias."""
    pop, truth = truth_population("cliff")
    plan = Plan(sequential=True, target=TARGET, budget=400)
    errors, stops = [], []
    for seed in range(40):
        design = draw_units(pop, 20, seed, plan)
        while True:
            verdict = answers(design, pop, truth)
            rep = estimate_units(design, verdict)
            if rep.enough:
                break
            alloc, _ = plan_next_units(design, verdict)
            design = add_batch(design, pop, alloc)
        stops.append(design.n)
        claimed = rep.rows["eps"].to_numpy()[rep.rows["holds"].to_numpy(dtype=bool)]
        assert np.all(true_precision(pop, truth, claimed) >= TARGET)
        errors.append(estimate_units(design, verdict, eps=[0.05, 0.08]).rows["precision"].to_numpy())
    units = design.units
    keys = unit_keys(pop.rows, pop.dup_rows, design.seed)
    for h in range(design.bands):
        mine = np.sort(units.loc[units["band"] == h, "key"].to_numpy(np.uint64))
        assert np.array_equal(mine, np.sort(keys[pop.band == h])[: len(mine)])
    assert np.allclose(units["inclusion"], units["n_h"] / units["N_h"])
    assert np.abs(np.mean(errors, axis=0) - true_precision(pop, truth, [0.05, 0.08])).max() < 0.006
    assert np.mean(stops) < 300 and min(stops) < 400  # it stops before its budget
