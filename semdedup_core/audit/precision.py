"""Precision per ε from the judged part of the review sample, with a 95 % interval, the true duplicates
an ε keeps, the recommended ε with its guarantee, and whether the review has done enough.

**What is estimated.** At ε the paper's rule removes ``N(ε)`` items (known exactly from the scores).
Precision at ε is the share of them whose pair (item, ``dup_of``) is a true duplicate. The estimator
and its interval are :mod:`~semdedup_core.audit.estimator`'s (post-stratified by similarity band, each
judged pair weighted by the inverse of its inclusion probability; bands without a judged pair widen the
interval), the recommendation and the stopping rule :mod:`~semdedup_core.audit.recommend`'s.

**Kept duplicates.** The same estimator on the complement — items removed at ``eps_max`` but kept at ε —
estimates how many true duplicates ε keeps (among those ``eps_max`` would remove).

**What is left out, and the sensitivity range.** ``unsure`` verdicts count as neither duplicate nor not;
pairs a reviewer passed over (no verdict, but before the last judged pair of the queue: *skipped*) are
not counted either; a pair whose reviewers disagree without a majority (*disputed*) counts by its latest
verdict. None of them is missing at random for sure, so beside the estimate stands what it would be if
all of them were duplicates (``sensitivity_high``) or none (``sensitivity_low``). Verdicts on pairs
outside the sample never enter the estimate (they are reported).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import threshold
from ..results.rules import check_eps
from . import recommend
from .design import STALL_HORIZON, Design
from .estimator import domain_counts, point, stratified
from .labels import LabelStore, resolve
from .sample import unit_verdicts

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

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
    "skipped",
    "disputed",
    "sensitivity_low",
    "sensitivity_high",
    "tested",
    "test_low",
    "holds",
)
"""One row per ε: ``eps``, ``threshold`` (1 − ε), ``removed`` (N(ε), exact), ``labelled`` (judged sample
pairs removed at ε, unsure ones not counted), ``duplicates`` / ``not_duplicates`` / ``unsure`` (their
verdicts), ``precision`` with ``ci_low``/``ci_high`` (95 %), ``extrapolated`` (removed items in bands
without a judged pair at this ε: counted with a neighbour band by the estimate, as unknown by the
interval), ``kept`` (items removed at eps_max but kept at ε), ``kept_labelled``, ``kept_duplicates``
(estimated true duplicates among those) with its interval, ``recall_vs_eps_max`` (estimated share of
eps_max's true duplicates that ε removes too); ``skipped`` and ``disputed`` sample pairs removed at ε, the
``sensitivity_low``/``sensitivity_high`` range (every unsure, skipped and disputed pair taken as not a
duplicate / as a duplicate); ``tested`` (ε is in the recommendation's test sequence), ``test_low`` (its
lower bound at the per-look level) and ``holds`` (ε is shown to reach the target)."""


def default_grid(eps_max: float) -> np.ndarray:
    """ε values for a report: a round step (0.001 … 0.05) giving 20 to 50 values up to ``eps_max``."""
    for step in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1):
        if eps_max / step <= 50:
            break
    grid = np.round(np.arange(1, int(math.floor(eps_max / step + 1e-9)) + 1) * step, 6)
    if not len(grid) or grid[-1] < eps_max - 1e-12:
        grid = np.append(grid, eps_max)
    return grid


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if 0.99 <= x < 1.0 else f"{100 * x:.0f} %"


@dataclass(frozen=True)
class Report:
    """The audit's answer: ``rows`` (one per ε, columns :data:`ROW_COLUMNS`), the ``target`` precision,
    the ``recommended_eps`` (the last ε of the fixed-sequence test that holds, or ``None``), ``sample``
    (the design and how much of it is judged), ``guarantee`` (the test: level, per-look level, the ε tested
    from, the next ε), ``enough`` (the stopping rule is met) with ``stop`` (in words), ``plan`` and
    ``agreement`` (Cohen's κ per two reviewers) with the ``disagreements`` to settle (pairs whose reviewers
    have no majority verdict, in the whole store)."""

    rows: pd.DataFrame
    target: float
    recommended_eps: float | None
    eps_max: float
    sample: dict[str, Any] = field(default_factory=dict)
    level: float = LEVEL
    guarantee: dict[str, Any] = field(default_factory=dict)
    enough: bool = False
    stop: str = ""
    plan: dict[str, Any] = field(default_factory=dict)
    agreement: list[dict[str, Any]] = field(default_factory=list)
    disagreements: int = 0

    def message(self) -> str:
        """The recommendation and its guarantee in one sentence."""
        if self.recommended_eps is None:
            return f"no ε reaches {self.target:g} with the verdicts so far; judge more pairs or lower the target"
        row = self.row_at(self.recommended_eps)
        so_far = "" if self.guarantee.get("final") else " so far"
        return (
            f"recommended ε = {self.recommended_eps:g}{so_far}: {self.statement()} (estimate "
            f"{row['precision']:.3f}, lower bound {row['test_low']:.3f}; removes {int(row['removed']):,} items)"
        )

    def statement(self) -> str:
        """The guarantee in plain words, or ``""`` without a recommendation."""
        if self.recommended_eps is None:
            return ""
        start = self.guarantee.get("tested_from")
        span = (
            f"every ε from {start:g} to {self.recommended_eps:g}"
            if start is not None and start < self.recommended_eps
            else f"ε = {self.recommended_eps:g}"
        )
        return (
            f"with {self.level * 100:.0f} % confidence {span} removes at least {_pct(self.target)} true duplicates "
            "(each ε tested from the smallest up, stopping at the first that fails)"
        )

    def row_at(self, eps: float) -> dict[str, Any]:
        i = int(np.argmin(np.abs(self.rows["eps"].to_numpy() - eps)))
        return self.rows.iloc[i].to_dict()

    def to_json(self) -> dict[str, Any]:
        """``{"rows": [...], "recommended_eps", "target", ...}`` with NaN as ``None`` (JSON null)."""
        rows = [{k: _clean(v) for k, v in r.items()} for r in self.rows.to_dict(orient="records")]
        return {
            "rows": rows,
            "recommended_eps": None if self.recommended_eps is None else float(self.recommended_eps),
            "target": float(self.target),
            "level": self.level,
            "eps_max": self.eps_max,
            "rule": "paper",
            "sample": {k: _clean(v) for k, v in self.sample.items()},
            "message": self.message(),
            "guarantee": {k: _clean(v) for k, v in self.guarantee.items()},
            "enough": bool(self.enough),
            "stop": self.stop,
            "plan": {k: _clean(v) for k, v in self.plan.items()},
            "agreement": [{k: _clean(v) for k, v in a.items()} for a in self.agreement],
            "disagreements": int(self.disagreements),
        }


def _clean(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in v]
    return v


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


def look_alpha(design: Design, level: float = LEVEL) -> float:
    """The one-sided level each ε is tested at: a fixed sample's interval end (2.5 % at 95 %), a
    sequential sample's per-look level for its looks (:func:`~semdedup_core.audit.recommend.look_level`)."""
    if not design.plan.sequential:
        return (1.0 - level) / 2.0
    return min((1.0 - level) / 2.0, recommend.look_level(tuple(int(x) for x in design.looks), 1.0 - level))


def planned_units(design: Design, grid: np.ndarray) -> np.ndarray:
    """The sample pairs the plan can put among the removals of each ε: a √N allocation of a fixed sample's
    size; for a sequential one, whose batches go where the tests need them, up to its budget. Where the
    recommendation's tests start depends on this, never on the verdicts."""
    from .sample import allocate

    if design.plan.sequential:  # its batches go where the tests need them: any ε the budget can cover
        return np.minimum(design.band_counts(grid).sum(axis=1), design.plan.budget).astype(np.float64)
    size = design.n
    sizes = design.band_sizes.astype(np.float64)
    alloc = allocate(design.band_sizes, size).astype(np.float64)
    share = np.where(sizes > 0, alloc / np.where(sizes > 0, sizes, 1), 0.0)
    return (design.band_counts(grid) * share[None, :]).sum(axis=1)


@dataclass(frozen=True)
class _Status:
    """Each sampled pair's state (queue order)."""

    dup: np.ndarray  # judged a duplicate
    judged: np.ndarray  # judged duplicate or not
    unsure: np.ndarray
    skipped: np.ndarray  # no verdict, but before the last pair that has one
    disputed: np.ndarray  # judged, reviewers without a majority

    @property
    def uncertain(self) -> np.ndarray:
        return self.unsure | self.skipped | self.disputed


def status(design: Design, verdict: np.ndarray, disputed: np.ndarray | None = None) -> _Status:
    """The pairs' state from their verdicts (queue order; ``None`` where unjudged) and which of them are
    disputed."""
    import pandas as pd

    given = ~pd.isna(verdict)
    dup = verdict == "duplicate"
    judged = dup | (verdict == "not_duplicate")
    last = np.flatnonzero(given)
    skipped = ~given & (np.arange(design.n) < (last[-1] if len(last) else -1))
    disputed = np.zeros(design.n, dtype=bool) if disputed is None else np.asarray(disputed, dtype=bool) & judged
    return _Status(dup, judged, verdict == "unsure", skipped, disputed)


def _disputed(design: Design, resolved: pd.DataFrame) -> np.ndarray | None:
    if "tied" not in resolved.columns or not len(resolved):
        return None
    from .labels import lookup

    pos = lookup(resolved, design.units["id_a"].to_numpy(), design.units["id_b"].to_numpy(), presorted=True)
    return (pos >= 0) & resolved["tied"].to_numpy(dtype=bool)[np.maximum(pos, 0)]


def _table(design: Design, st: _Status, grid: np.ndarray, level: float, alpha: float) -> pd.DataFrame:
    """The rows of the report without the recommendation's ``tested`` and ``holds`` columns."""
    import pandas as pd

    band = design.units["band"].to_numpy(np.int64)
    score = design.units["max_sim"].to_numpy(np.float64)
    thr = threshold(grid)

    def count(mask: np.ndarray) -> np.ndarray:
        return domain_counts(band, score, mask.astype(np.float64), thr, design.bands)

    n_in, y_in, u_in = count(st.judged), count(st.dup), count(st.uncertain & ~st.disputed)
    clean_n, clean_y = count(st.judged & ~st.disputed), count(st.dup & ~st.disputed)
    n_all = np.bincount(band[st.judged], minlength=design.bands).astype(np.float64)
    y_all = np.bincount(band[st.dup], minlength=design.bands).astype(np.float64)
    N_in = design.band_counts(grid).astype(np.float64)
    N_out = design.band_sizes[None, :] - N_in
    p, lo, hi, extrap = stratified(N_in, n_in, y_in, level)
    test_low = lo if abs(alpha - (1 - level) / 2) < 1e-12 else stratified(N_in, n_in, y_in, 1 - 2 * alpha)[1]
    pk, lok, hik, _ = stratified(N_out, n_all[None, :] - n_in, y_all[None, :] - y_in, level)
    removed, kept = N_in.sum(axis=1), N_out.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        found = p * removed
        recall = np.where(kept > 0, found / (found + pk * kept), np.where(removed > 0, 1.0, np.nan))
    unsure_in = count(st.unsure).sum(axis=1)
    return pd.DataFrame(
        {
            "eps": grid,
            "threshold": thr,
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
            "kept_duplicates": np.where(kept > 0, pk * kept, 0.0),
            "kept_duplicates_low": np.where(kept > 0, lok * kept, 0.0),
            "kept_duplicates_high": np.where(kept > 0, hik * kept, 0.0),
            "recall_vs_eps_max": recall,
            "skipped": count(st.skipped).sum(axis=1).astype(np.int64),
            "disputed": count(st.disputed).sum(axis=1).astype(np.int64),
            "sensitivity_low": point(N_in, clean_n + u_in + count(st.disputed), clean_y),
            "sensitivity_high": point(N_in, clean_n + u_in + count(st.disputed), clean_y + u_in + count(st.disputed)),
            "tested": False,
            "test_low": test_low,
            "holds": False,
        }
    )


def evidence(design: Design, st: _Status, rows: pd.DataFrame, alpha: float) -> recommend.Evidence:
    """What the recommendation's planning needs (see :class:`~semdedup_core.audit.recommend.Evidence`)."""
    band = design.units["band"].to_numpy(np.int64)
    return recommend.Evidence(
        rows["precision"].to_numpy(),
        rows["test_low"].to_numpy(),
        rows["ci_high"].to_numpy(),
        design.band_counts(rows["eps"].to_numpy()),
        design.band_sizes,
        design.band_samples,
        np.bincount(band[st.judged], minlength=design.bands),
        np.bincount(band[st.dup], minlength=design.bands),
        alpha,
    )


def _stop_words(design: Design, grid: np.ndarray, d: recommend.Decision, target: float, level: float) -> str:
    conf = f"{level * 100:.0f} %"
    rec = f"ε = {grid[d.recommended]:g}" if d.recommended >= 0 else None
    nxt = f"ε = {grid[d.candidate]:g}" if d.candidate >= 0 else None
    head = f"enough: {rec} holds at {conf}" if rec else f"enough: no ε reaches {_pct(target)} at {conf}"
    if not d.enough:
        return ""
    if d.reason == "all":
        return f"{head} (every ε up to eps-max reaches {_pct(target)})"
    if d.reason == "misses":
        return f"{head} ({nxt} misses the target: its 95 % interval lies below it)"
    if d.reason == "stalls":
        return f"{head} ({nxt} would need more pairs than the next look or a tenth of the budget has, at its estimate)"
    if d.reason == "reach":
        return f"{head} ({nxt} is out of reach: even at the hopeful end of its estimate it would need more pairs than the budget has left)"
    if design.plan.sequential:
        return f"{head} (the budget of {int(design.looks[-1]):,} pairs is spent)"
    return f"{head} (the whole sample is judged)"


def estimate(
    design: Design,
    resolved: pd.DataFrame,
    eps: Any = None,
    target: float | None = None,
    level: float = LEVEL,
    reviews: pd.DataFrame | None = None,
) -> Report:
    """The audit report for the verdicts ``resolved`` (one per pair, see
    :func:`semdedup_core.audit.labels.resolve`) on the sample ``design``, at ``eps`` (default
    :func:`default_grid`; each ≤ ``eps_max``), for ``target`` (default the plan's). ``reviews``: the
    store's rows, for the reviewers' agreement. Vectorised over ε: no loop over items or pairs."""
    from .agreement import kappa_table

    verdict = unit_verdicts(design, resolved)
    matched = int((~pd_isna(verdict)).sum())
    agreement = kappa_table(reviews).to_dict(orient="records") if reviews is not None else []
    rep = estimate_units(
        design, verdict, eps, target, level, _disputed(design, resolved), len(resolved) - matched, agreement
    )
    tied = int(resolved["tied"].sum()) if "tied" in resolved.columns else 0
    return dataclasses.replace(rep, disagreements=tied)


def pd_isna(values: np.ndarray) -> np.ndarray:
    import pandas as pd

    return np.asarray(pd.isna(values), dtype=bool)


def estimate_units(
    design: Design,
    verdict: np.ndarray,
    eps: Any = None,
    target: float | None = None,
    level: float = LEVEL,
    disputed: np.ndarray | None = None,
    outside: int = 0,
    agreement: list[dict[str, Any]] | None = None,
) -> Report:
    """:func:`estimate` from each sampled pair's verdict (queue order; ``None`` where unjudged) and which
    are ``disputed``; ``outside``: judged pairs outside the sample (reported only). What simulations call."""
    target = design.plan.target if target is None else _check_target(target)
    grid = check_grid(design, eps)
    st = status(design, np.asarray(verdict, dtype=object), disputed)
    alpha = look_alpha(design, level)
    rows = _table(design, st, grid, level, alpha)
    tested = recommend.testable(planned_units(design, grid), rows["removed"].to_numpy(np.float64), target, alpha)
    tested &= grid >= design.edges[1] - 1e-12  # ε inside the most similar band remove too little of it to test
    holds = recommend.fixed_sequence(rows["test_low"].to_numpy(), target, tested)
    rows["tested"], rows["holds"] = tested, holds
    given = st.judged | st.unsure
    at_look = bool(design.n and given.all() and design.n in set(design.looks.tolist()))
    last_look = not design.plan.sequential or design.n >= int(design.looks[-1])
    ev = evidence(design, st, rows, alpha)
    left = int(design.looks[-1]) - design.n if design.plan.sequential else 0
    batch_done = bool(design.n and given.all())
    # the next ε stalls when it could not hold by the next look, nor within a tenth of the budget
    horizon = math.ceil(STALL_HORIZON * int(design.looks[-1])) if design.plan.sequential else 0
    ahead = max(design.to_next_look, horizon) if design.to_next_look else 0
    d = recommend.stopping(holds, tested, ev, target, at_look, last_look, left, batch_done, ahead)
    n_judged, matched = int(st.judged.sum()), int(given.sum())
    sample = {
        "n": design.n,
        "population": design.population,
        "judged": n_judged,
        "duplicates": int(st.dup.sum()),
        "not_duplicates": n_judged - int(st.dup.sum()),
        "unsure": int(st.unsure.sum()),
        "to_judge": design.n - matched,
        "outside_sample": int(outside),
        "seed": design.seed,
        "bands": design.bands,
        "skipped": int(st.skipped.sum()),
        "disputed": int(st.disputed.sum()),
        "double": int(design.units["double"].sum()) if "double" in design.units.columns else 0,
        "batch": design.batch,
    }
    looks = design.looks
    guarantee = {
        "level": level,
        "method": "fixed-sequence",
        "alpha_per_look": alpha,
        "looks": [int(x) for x in looks],
        "look": int(np.searchsorted(looks, design.n)) if at_look else None,
        "tested_from": float(grid[d.start]) if d.start >= 0 else None,
        "holds_up_to": float(grid[d.recommended]) if d.recommended >= 0 else None,
        "next_eps": float(grid[d.candidate]) if d.candidate >= 0 else None,
        "within_reach": [float(grid[g]) for g in d.reach],
        "final": bool(d.enough),
    }
    plan = {"kind": design.plan.kind, "target": design.plan.target, "budget": design.plan.budget}
    plan["double"] = design.plan.double
    recommended = float(grid[d.recommended]) if d.recommended >= 0 else None
    stop = _stop_words(design, grid, d, target, level)
    rep = Report(rows, target, recommended, design.eps_max, sample, level, guarantee, d.enough, stop, plan)
    guarantee["statement"] = rep.statement()
    return Report(
        rows, target, recommended, design.eps_max, sample, level, guarantee, d.enough, stop, plan, agreement or []
    )


def report(
    results: Results,
    labels: LabelStore | str | None = None,
    eps: Any = None,
    target: float | None = None,
) -> Report:
    """:func:`estimate` for a results folder: its recorded sample and the verdicts in ``labels``
    (default the folder's ``labels.parquet``). Raises :class:`SemDedupError` when no sample was drawn."""
    from .design import load_design

    design = load_design(results)
    if design is None:
        raise SemDedupError(
            f"no review sample in {str(results.path)!r}; draw one with "
            f"`python -m semdedup_core audit sample {results.path} --n 400 --out queue.csv`"
        )
    rows = LabelStore.for_results(results.path, labels).read()
    return estimate(design, resolve(rows), eps, target, reviews=rows)


def summary_at(
    results: Results, eps: float, labels: LabelStore | str | None = None, target: float | None = None
) -> dict[str, Any] | None:
    """The audited precision at one ``eps`` for a report (a row of :func:`report` with ``target``,
    ``recommended_eps``, ``guarantee`` (the recommendation's guarantee in words), ``enough`` and the
    reviewers' ``agreement``), or ``None`` when no sample was drawn, nothing of it is judged, or ``eps``
    lies beyond the sample's eps-max (the sample says nothing there)."""
    from .design import load_design

    design = load_design(results)
    if design is None or eps > design.eps_max:
        return None
    rows = LabelStore.for_results(results.path, labels).read()
    resolved = resolve(rows)
    rep = estimate(design, resolved, [eps], target)
    if rep.sample["judged"] == 0:
        return None
    full = estimate(design, resolved, None, target, reviews=rows)
    row = rep.rows.iloc[0].to_dict()
    return {
        **row,
        "target": full.target,
        "recommended_eps": full.recommended_eps,
        "confidence": full.level,
        "guarantee": full.statement(),
        "enough": full.enough,
        "agreement": full.agreement,
    }
