"""Precision per ε from the judged part of the review sample, with a 95 % interval, the true duplicates
an ε keeps, and the recommended ε.

**What is estimated.** At ε the paper's rule removes ``N(ε)`` items (known exactly from the scores).
Precision at ε is the share of them whose pair (item, ``dup_of``) is a true duplicate.

**Estimator.** Post-stratified by similarity band: in band ``h`` the rule removes ``N_h(ε)`` items
(known), and the judged sample pairs among them are a simple random sample of those items (the band's
sample is one, and the queue's random order keeps any judged part of it one), so their share of
duplicates ``p̂_h(ε)`` estimates the band's; precision = ``Σ_h N_h(ε) p̂_h(ε) / N(ε)``, with variance
``Σ_h (N_h(ε)/N(ε))² (1 − n_h(ε)/N_h(ε)) p̃_h(1 − p̃_h) / n_h(ε)`` (finite-population correction;
``p̃_h = (y_h + ½)/(n_h + 1)``, so a band whose judged pairs all agree still has a variance).
Removed items in a band with no judged pair at that ε (early in a review, or the few just above the
threshold) are counted with the nearest band that has one (``extrapolated`` says how many).

**Interval.** The normal approximation fails near 1, where precision lives, so the interval is
Clopper–Pearson on the effective sample size (Korn & Graubard 1998): ``n_eff = p̃(1 − p̃)/Var`` (``p̃`` the
weighted smoothed share, so ``n_eff`` stays finite at ``p̂ = 1``; for one band it is the number judged,
and the interval is the exact binomial one), times ``(t_{n−1}/t_df)²`` with the design's
``df = n − bands``, and the interval is Clopper–Pearson with ``p̂·n_eff`` successes in ``n_eff``
trials. When every removed item is judged the precision is known exactly.

**Kept duplicates.** The same estimator on the complement — items removed at ``eps_max`` but kept at ε —
estimates how many true duplicates ε keeps (among those ``eps_max`` would remove).

``unsure`` verdicts count as neither duplicate nor not (they are reported); verdicts on pairs outside
the sample never enter the estimate (they are reported too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import threshold
from ..results.rules import check_eps
from .labels import LabelStore
from .sample import Design, unit_verdicts

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

DEFAULT_TARGET = 0.95
LEVEL = 0.95
ROW_COLUMNS = (
    "eps",
    "threshold",
    "removed",
    "labelled",
    "duplicates",
    "not_duplicates",
    "unsure",
    "precision",
    "ci_low",
    "ci_high",
    "extrapolated",
    "kept",
    "kept_labelled",
    "kept_duplicates",
    "kept_duplicates_low",
    "kept_duplicates_high",
    "recall_vs_eps_max",
)
"""One row per ε: ``eps``, ``threshold`` (1 − ε), ``removed`` (N(ε), exact), ``labelled`` (judged sample
pairs removed at ε, unsure ones not counted), ``duplicates`` / ``not_duplicates`` / ``unsure`` (their
verdicts), ``precision`` with ``ci_low``/``ci_high`` (95 %), ``extrapolated`` (removed items in bands
without a judged pair at this ε), ``kept`` (items removed at eps_max but kept at ε), ``kept_labelled``,
``kept_duplicates`` (estimated true duplicates among those) with its interval, and
``recall_vs_eps_max`` (estimated share of eps_max's true duplicates that ε removes too)."""


def default_grid(eps_max: float) -> np.ndarray:
    """ε values for a report: a round step (0.001 … 0.05) giving 20 to 50 values up to ``eps_max``."""
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1):
        if eps_max / step <= 50:
            break
    grid = np.round(np.arange(1, int(math.floor(eps_max / step + 1e-9)) + 1) * step, 6)
    if not len(grid) or grid[-1] < eps_max - 1e-12:
        grid = np.append(grid, eps_max)
    return grid


def _beta_ppf(q: np.ndarray | float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from scipy.special import betaincinv

    return betaincinv(a, b, q)


def stratified(
    N: np.ndarray, n: np.ndarray, y: np.ndarray, level: float = LEVEL
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Post-stratified proportion per row of ``(G, H)`` arrays: ``N`` items of the domain per band
    (known), ``n`` judged sample units among them, ``y`` of those duplicates. Returns
    ``(p, ci_low, ci_high, extrapolated)``; ``p`` is NaN where nothing is judged or the domain is empty."""
    from scipy.special import stdtrit  # Student t quantiles (scipy.stats is slow to import)

    N = np.asarray(N, dtype=np.float64).copy()
    n = np.asarray(n, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    G, H = N.shape
    extrapolated = np.zeros(G)
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
    exact = (n_tot > 0) & (n_tot >= N_tot)  # every removed item judged: known exactly
    lo = np.where(exact, p, lo)
    hi = np.where(exact, p, hi)
    lo = np.where(np.isnan(p), np.nan, np.minimum(lo, p))
    hi = np.where(np.isnan(p), np.nan, np.maximum(hi, p))
    return p, lo, hi, extrapolated


@dataclass(frozen=True)
class Report:
    """The audit's answer: ``rows`` (one per ε, columns :data:`ROW_COLUMNS`), the ``target`` precision,
    the ``recommended_eps`` (the largest ε whose lower bound meets the target, or ``None``), and
    ``sample``: the design and how much of it is judged."""

    rows: pd.DataFrame
    target: float
    recommended_eps: float | None
    eps_max: float
    sample: dict[str, Any] = field(default_factory=dict)
    level: float = LEVEL

    def message(self) -> str:
        """The recommendation in one sentence."""
        if self.recommended_eps is None:
            return f"no ε reaches {self.target:g} with the verdicts so far; judge more pairs or lower the target"
        row = self.row_at(self.recommended_eps)
        return (
            f"recommended ε = {self.recommended_eps:g}: the largest ε on the grid whose precision is at least "
            f"{self.target:g} with {self.level:.0%} confidence (estimate {row['precision']:.3f}, lower bound "
            f"{row['ci_low']:.3f}; removes {int(row['removed']):,} items)"
        )

    def row_at(self, eps: float) -> dict[str, Any]:
        i = int(np.argmin(np.abs(self.rows["eps"].to_numpy() - eps)))
        return self.rows.iloc[i].to_dict()

    def to_json(self) -> dict[str, Any]:
        """``{"rows": [...], "recommended_eps", "target", ...}`` with NaN as ``None`` (JSON null)."""

        def clean(v: Any) -> Any:
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (float, np.floating)):
                return None if not np.isfinite(v) else float(v)
            return v

        rows = [{k: clean(v) for k, v in r.items()} for r in self.rows.to_dict(orient="records")]
        return {
            "rows": rows,
            "recommended_eps": None if self.recommended_eps is None else float(self.recommended_eps),
            "target": float(self.target),
            "level": self.level,
            "eps_max": self.eps_max,
            "rule": "paper",
            "sample": {k: clean(v) for k, v in self.sample.items()},
            "message": self.message(),
        }


def _check_target(target: float) -> float:
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise SemDedupError(f"target must be a precision between 0 and 1, e.g. 0.95, got {target!r}") from None
    if not 0.0 < target <= 1.0:
        raise SemDedupError(f"target must be a precision above 0 and at most 1, e.g. 0.95, got {target}")
    return target


def check_grid(design: Design, eps: Any) -> np.ndarray:
    """The ε values to report (default :func:`default_grid`), each checked to lie within 0 … eps_max."""
    if eps is None:
        return default_grid(design.eps_max)
    grid = np.array([check_eps(e) for e in np.atleast_1d(eps)], dtype=np.float64)
    if not len(grid):
        return default_grid(design.eps_max)
    above = grid[grid > design.eps_max + 1e-12]
    if len(above):
        raise SemDedupError(
            f"eps {above[0]:g} is above the review sample's eps-max {design.eps_max:g}: the sample says nothing "
            f"about items scored between {1 - above[0]:.4f} and {1 - design.eps_max:.4f}; draw a sample with "
            f"--eps-max {above[0]:g} or ask for a smaller eps"
        )
    return grid


def estimate(
    design: Design,
    resolved: pd.DataFrame,
    eps: Any = None,
    target: float = DEFAULT_TARGET,
    level: float = LEVEL,
) -> Report:
    """The audit report for the verdicts ``resolved`` (one per pair, see
    :func:`semdedup_core.audit.labels.resolve`) on the sample ``design``, at ``eps`` (default
    :func:`default_grid`; each ≤ ``eps_max``). Vectorised over ε: no loop over items or pairs."""
    import pandas as pd

    target = _check_target(target)
    grid = check_grid(design, eps)
    verdict = unit_verdicts(design, resolved)
    units = design.units
    band = units["band"].to_numpy(np.int64)
    score = units["max_sim"].to_numpy(np.float64)
    dup = verdict == "duplicate"
    judged = dup | (verdict == "not_duplicate")
    unsure = verdict == "unsure"
    thr = threshold(grid)
    n_in = np.zeros((len(grid), design.bands))
    y_in = np.zeros((len(grid), design.bands))
    for h in np.unique(band[judged]):  # per band: judged pairs by score; those above 1 − ε by searchsorted
        mine = judged & (band == h)
        order = np.argsort(score[mine], kind="stable")
        s_h, cum = score[mine][order], np.concatenate([[0], np.cumsum(dup[mine][order])])
        first_in = np.searchsorted(s_h, thr, side="right")  # the pairs from here on score above 1 − ε
        n_in[:, h] = len(s_h) - first_in
        y_in[:, h] = cum[-1] - cum[first_in]
    s_unsure = np.sort(score[unsure])
    unsure_in = len(s_unsure) - np.searchsorted(s_unsure, thr, side="right")
    n_all = np.bincount(band[judged], minlength=design.bands).astype(np.float64)
    y_all = np.bincount(band[dup], minlength=design.bands).astype(np.float64)
    N_in = design.band_counts(grid).astype(np.float64)
    N_out = design.band_sizes[None, :] - N_in
    p, lo, hi, extrap = stratified(N_in, n_in, y_in, level)
    pk, lok, hik, _ = stratified(N_out, n_all[None, :] - n_in, y_all[None, :] - y_in, level)
    removed, kept = N_in.sum(axis=1), N_out.sum(axis=1)
    kept_dups = np.where(kept > 0, pk * kept, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        found = p * removed
        recall = np.where(kept > 0, found / (found + pk * kept), np.where(removed > 0, 1.0, np.nan))
    rows = pd.DataFrame(
        {
            "eps": grid,
            "threshold": threshold(grid),
            "removed": removed.astype(np.int64),
            "labelled": n_in.sum(axis=1).astype(np.int64),
            "duplicates": y_in.sum(axis=1).astype(np.int64),
            "not_duplicates": (n_in - y_in).sum(axis=1).astype(np.int64),
            "unsure": unsure_in.astype(np.int64),
            "precision": p,
            "ci_low": lo,
            "ci_high": hi,
            "extrapolated": extrap.astype(np.int64),
            "kept": kept.astype(np.int64),
            "kept_labelled": (n_all[None, :] - n_in).sum(axis=1).astype(np.int64),
            "kept_duplicates": kept_dups,
            "kept_duplicates_low": np.where(kept > 0, lok * kept, 0.0),
            "kept_duplicates_high": np.where(kept > 0, hik * kept, 0.0),
            "recall_vs_eps_max": recall,
        }
    )
    ok = rows["ci_low"].to_numpy() >= target
    recommended = float(grid[np.flatnonzero(ok)[-1]]) if ok.any() else None
    n_judged = int(judged.sum())
    matched = int(judged.sum() + unsure.sum())
    sample = {
        "n": design.n,
        "population": design.population,
        "judged": n_judged,
        "duplicates": int(dup.sum()),
        "not_duplicates": n_judged - int(dup.sum()),
        "unsure": int(unsure.sum()),
        "to_judge": design.n - matched,
        "outside_sample": int(len(resolved)) - matched,
        "seed": design.seed,
        "bands": design.bands,
    }
    return Report(rows, target, recommended, design.eps_max, sample, level)


def report(
    results: Results,
    labels: LabelStore | str | None = None,
    eps: Any = None,
    target: float = DEFAULT_TARGET,
) -> Report:
    """:func:`estimate` for a results folder: its recorded sample and the verdicts in ``labels``
    (default the folder's ``labels.parquet``). Raises :class:`SemDedupError` when no sample was drawn."""
    from .sample import load_design

    design = load_design(results)
    if design is None:
        raise SemDedupError(
            f"no review sample in {str(results.path)!r}; draw one with "
            f"`python -m semdedup_core audit sample {results.path} --n 400 --out queue.csv`"
        )
    return estimate(design, LabelStore.for_results(results.path, labels).resolved(), eps, target)


def summary_at(
    results: Results, eps: float, labels: LabelStore | str | None = None, target: float = DEFAULT_TARGET
) -> dict[str, Any] | None:
    """The audited precision at one ``eps`` for a report (a row of :func:`report` with ``target`` and
    ``recommended_eps``), or ``None`` when no sample was drawn, nothing of it is judged, or ``eps`` lies
    beyond the sample's eps-max (the sample says nothing there)."""
    from .sample import load_design

    design = load_design(results)
    if design is None or eps > design.eps_max:
        return None
    rep = estimate(design, LabelStore.for_results(results.path, labels).resolved(), [eps], target)
    if rep.sample["judged"] == 0:
        return None
    full = estimate(design, LabelStore.for_results(results.path, labels).resolved(), None, target)
    row = rep.rows.iloc[0].to_dict()
    return {**row, "target": rep.target, "recommended_eps": full.recommended_eps, "confidence": rep.level}
