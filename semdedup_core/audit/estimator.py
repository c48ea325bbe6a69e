"""The stratified estimator of a share and its interval, on arrays: pure functions, no files.

**Estimator.** Post-stratified by similarity band: in band ``h`` the domain (say, what ε removes) holds
``N_h`` items (known), and the judged sample pairs among them are a simple random sample of those items,
so their share of duplicates ``p̂_h`` estimates the band's; the share is ``Σ_h N_h p̂_h / N`` — each judged
pair weighted by ``N_h / n_h``, the inverse of its inclusion probability (Horvitz–Thompson within the
band) — with variance ``Σ_h (N_h/N)² (1 − n_h/N_h) p̃_h(1 − p̃_h) / n_h`` (finite-population correction;
``p̃_h = (y_h + ½)/(n_h + 1)``, so a band whose judged pairs all agree still has a variance).

**Gaps.** Items of the domain in a band with no judged pair (early in a review, or the few just above
the threshold) are counted with the nearest band that has one for the point estimate (``extrapolated``
says how many), but the interval does not pretend to know them: its lower end counts them all as not
duplicates and its upper end as duplicates, so a gap widens the interval by its share of the domain.

**Interval.** The normal approximation fails near 1, where precision lives, so the interval is
Clopper–Pearson on the effective sample size (Korn & Graubard 1998): ``n_eff = p̃(1 − p̃)/Var`` (``p̃`` the
weighted smoothed share, so ``n_eff`` stays finite at ``p̂ = 1``; for one band it is the number judged,
and the interval is the exact binomial one), times ``(t_{n−1}/t_df)²`` with the design's
``df = n − bands``, and the interval is Clopper–Pearson with ``p̂·n_eff`` successes in ``n_eff``
trials. When every item of the domain is judged the share is known exactly.
"""

from __future__ import annotations

import numpy as np


def _beta_ppf(q: np.ndarray | float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.special import betaincinv

    return betaincinv(a, b, q)


def _borrow(N: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N with gap bands merged into their nearest judged band, gap items per row, N of the judged
    bands only)``."""
    N = N.copy()
    G = N.shape[0]
    extrapolated = np.zeros(G)
    judged_only = np.where(n > 0, N, 0.0)
    empty = (N > 0) & (n == 0)
    for g in np.flatnonzero(empty.any(axis=1)):
        have = np.flatnonzero(n[g] > 0)
        if not len(have):
            continue
        for h in np.flatnonzero(empty[g]):
            dist = np.abs(have - h) * 2 + (have > h)  # nearest band; a tie goes to the more similar one
            target = have[np.argmin(dist)]
            N[g, target] += N[g, h]
            extrapolated[g] += N[g, h]
            N[g, h] = 0.0
    return N, extrapolated, judged_only


def _interval(N: np.ndarray, n: np.ndarray, y: np.ndarray, level: float) -> tuple[np.ndarray, ...]:
    """``(p, lo, hi, exact)`` over the bands with judged pairs (``N`` already without gaps)."""
    from scipy.special import stdtrit  # Student t quantiles (scipy.stats is slow to import)

    N_tot, n_tot = N.sum(axis=1), n.sum(axis=1)
    use = (N > 0) & (n > 0)
    alpha = 1 - level
    with np.errstate(invalid="ignore", divide="ignore"):
        W = np.where(use, N / np.where(N_tot > 0, N_tot, 1)[:, None], 0.0)
        p = np.where(n_tot > 0, (W * np.where(use, y / np.where(n > 0, n, 1), 0.0)).sum(axis=1), np.nan)
        # band variances from the smoothed share (y + ½)/(n + 1): a band whose judged pairs all agree
        # still has a variance (its true share may be 0.99), so the interval cannot collapse near 1
        smooth = np.where(use, (y + 0.5) / (n + 1.0), 0.5)
        fpc = np.clip(1.0 - n / np.where(N > 0, N, 1), 0.0, 1.0)
        var = np.where(use, W**2 * fpc * smooth * (1 - smooth) / np.where(n > 0, n, 1), 0.0).sum(axis=1)
        p_smooth = (W * smooth).sum(axis=1)
        n_eff = np.where(var > 0, p_smooth * (1 - p_smooth) / np.where(var > 0, var, 1), np.inf)
        df = np.maximum(n_tot - use.sum(axis=1), 1)  # the design's degrees of freedom: judged pairs − bands
        n_eff = n_eff * (stdtrit(np.maximum(n_tot - 1, 1), 1 - alpha / 2) / stdtrit(df, 1 - alpha / 2)) ** 2
        x = p * n_eff
        lo = np.where(x > 0, _beta_ppf(alpha / 2, np.maximum(x, 1e-300), n_eff - x + 1), 0.0)
        hi = np.where(x < n_eff, _beta_ppf(1 - alpha / 2, x + 1, np.maximum(n_eff - x, 1e-300)), 1.0)
    exact = (n_tot > 0) & (n_tot >= N_tot)  # every item of the domain judged: known exactly
    return p, np.where(exact, p, lo), np.where(exact, p, hi)


def stratified(
    N: np.ndarray, n: np.ndarray, y: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Post-stratified proportion per row of ``(G, H)`` arrays: ``N`` items of the domain per band
    (known), ``n`` judged sample units among them, ``y`` of those duplicates. Returns
    ``(p, ci_low, ci_high, extrapolated)`` (a two-sided interval at ``level``: each end is a one-sided
    bound at ``(1 + level) / 2``); ``p`` is NaN where nothing is judged or the domain is empty. Bands of
    the domain without a judged pair widen the interval (see the module's docstring)."""
    N = np.asarray(N, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    merged, extrapolated, judged_only = _borrow(N, n)
    p, _, _ = _interval(merged, n, y, level)  # the point estimate: gaps counted with their neighbour
    _, lo, hi = _interval(judged_only, n, y, level)  # the interval of the judged bands …
    total = N.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        known = np.where(total > 0, judged_only.sum(axis=1) / np.where(total > 0, total, 1), 0.0)
    lo, hi = lo * known, hi * known + (1.0 - known)  # … with the gaps' items as none / all duplicates
    lo = np.where(np.isnan(p), np.nan, np.minimum(lo, p))
    hi = np.where(np.isnan(p), np.nan, np.maximum(hi, p))
    return p, lo, hi, extrapolated


def point(N: np.ndarray, n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The point estimate of :func:`stratified` alone (gaps counted with their nearest judged band)."""
    merged, _, _ = _borrow(np.asarray(N, dtype=np.float64), np.asarray(n, dtype=np.float64))
    n = np.asarray(n, dtype=np.float64)
    N_tot, n_tot = merged.sum(axis=1), n.sum(axis=1)
    use = (merged > 0) & (n > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        W = np.where(use, merged / np.where(N_tot > 0, N_tot, 1)[:, None], 0.0)
        share = np.where(use, np.asarray(y, dtype=np.float64) / np.where(n > 0, n, 1), 0.0)
        return np.where(n_tot > 0, (W * share).sum(axis=1), np.nan)


def domain_counts(
    band: np.ndarray, score: np.ndarray, weight: np.ndarray, thresholds: np.ndarray, bands: int
) -> np.ndarray:
    """``(G, H)``: for each threshold ``g`` and band ``h``, the sum of ``weight`` over the units of band
    ``h`` whose score is above ``thresholds[g]`` (the units ε removes). Vectorised: one sort, one cumulative
    sum, one search."""
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")
    s = np.asarray(score, dtype=np.float64)[order]
    cells = np.zeros((len(s) + 1, bands))
    np.add.at(cells[1:], (np.arange(len(s)), np.asarray(band, dtype=np.int64)[order]), np.asarray(weight)[order])
    cum = np.cumsum(cells, axis=0)
    above = np.searchsorted(-s, -np.asarray(thresholds, dtype=np.float64), side="left")  # scores > threshold
    return cum[above]
