"""The recommended ε and its guarantee, when to stop judging, and where the next pairs go. Pure functions
of arrays.

**The guarantee.** The recommended ε reaches the target precision with probability at least 95 % — and
so does every ε tested below it. The ε of the grid are tested one after the other from small to large
(fixed-sequence testing): ε holds when the lower end of its one-sided interval at level ``α'`` reaches
the target, and the test stops at the first ε that does not hold; the recommendation is the last ε that
held. A wrong recommendation needs the first ε whose true precision is below the target to hold, which
happens with probability at most ``α'``, however many ε the grid has — so nothing is spent on the grid,
and the recommendation is monotone by construction: no ε below it fails. The tests start at the first ε
whose removals the plan's sample is to hold in numbers (:func:`testable`: twice the pairs that could show
the target if all were duplicates — 144 for 95 % — counted on the design before any verdict, so the start
does not move with the verdicts): below it, so few pairs are removed that a test there would mostly
fail for want of pairs, and stop the whole sequence.

**Looks.** A fixed sample is decided once, when all of it is judged: ``α'`` is the one-sided 2.5 % of
the two-sided 95 % interval shown beside every ε. A sequential sample is decided at each of its looks,
and a reviewer stops at the first look that settles the decision, so the chance of a wrong
recommendation at *any* look must stay below 5 %: ``α'`` is the per-look level of a Pocock-type boundary
for the plan's looks (:func:`look_level`: the one-sided crossing probability of a Brownian motion observed
at the looks' information fractions).

**Enough** (:func:`stopping`). At a look, the decision is settled when every tested ε holds; when the
next ε above the recommendation misses the target (its whole 95 % interval lies below it); when it
*stalls* — the pairs up to the next look, or a tenth of the budget where that is more, could not make the
next ε hold at its current estimate (the projection of :meth:`Evidence.project`); when, without a
recommendation, even the hopeful end of the first tested ε (its one-sided 75 % bound) could not be shown
with the whole budget left; or when the budget is spent. Stopping for these reasons never makes a claim, so it costs nothing of the guarantee.

**Where the next pairs go** (:func:`next_allocation`). The decision hinges on the ε above the
recommendation that may still hold with the pairs left (the *reach*); the next batch aims at those of them
that the pairs up to the next look could make hold (the first of them when none could) — every ε of the
sequence must hold before the one above it counts, so pairs spent on a far ε while a near one still
fails are wasted. It goes, one pair at a time, to the band whose next pair most raises the smallest
``margin / standard error`` over them (the margin: how far the hoped-for precision lies above the target; the standard error: the post-stratified
one with ``W_h`` the band's share of the ε's removals, ``S_h²`` its smoothed binomial variance and
``q_h`` the share of the band the ε removes) — a greedy maximin allocation that sends pairs to the bands
just above the threshold of the ε in question. The estimate stays unbiased because every band's sample
remains a simple random sample of the band and is weighted by ``N_h / n_h``, its actual inclusion
probability.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # a wrong recommendation: at most 5 %
OPTIMISM = 0.674  # z of a one-sided 75 % bound: the hoped-for end of an estimate


STEP = 0.025
GRID = np.arange(-10.0, 10.0 + STEP, STEP)  # the Brownian motion's values (its sd is at most 1 by time 1)


@functools.lru_cache(maxsize=16)
def _kernels(times: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    """The Gaussian transition matrices of a standard Brownian motion between consecutive ``times``."""
    out = []
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        dt = t1 - t0
        out.append(np.exp(-0.5 * (GRID[:, None] - GRID[None, :]) ** 2 / dt) / math.sqrt(2 * math.pi * dt) * STEP)
    return tuple(out)


def _crossing(c: float, times: tuple[float, ...]) -> float:
    """``P(max_k W(t_k)/√t_k ≥ c)`` for a standard Brownian motion ``W`` observed at ``times`` (the
    Armitage–McPherson–Rowe recursion on a grid)."""
    density = np.exp(-0.5 * GRID**2 / times[0]) / math.sqrt(2 * math.pi * times[0])
    crossed = 0.0
    for k, t in enumerate(times):
        if k:
            density = _kernels(times)[k - 1] @ density
        # each grid point stands for a cell of width STEP; the part of a cell above the boundary crosses
        above = np.clip(GRID + STEP / 2 - c * math.sqrt(t), 0.0, STEP)
        crossed += float((density * above).sum())
        density = density * (1.0 - above / STEP)
    return crossed


@functools.lru_cache(maxsize=64)
def look_level(looks: tuple[int, ...], alpha: float = ALPHA) -> float:
    """The one-sided level ``α'`` to test at each of the ``looks`` (sample sizes, ascending) so that a
    statistic with independent increments crosses the boundary at any of them with probability ``alpha``
    (a Pocock-type boundary). One look: ``alpha`` itself."""
    from scipy.special import ndtr, ndtri

    looks = tuple(int(x) for x in looks if x > 0)
    if len(looks) <= 1:
        return float(alpha)
    times = tuple(x / looks[-1] for x in looks)
    lo, hi = float(ndtri(1 - alpha)), float(ndtri(1 - alpha / len(looks)))
    for _ in range(30):  # bisection on the boundary c (to 1e-9)
        mid = 0.5 * (lo + hi)
        if _crossing(mid, times) > alpha:
            lo = mid
        else:
            hi = mid
    return float(ndtr(-hi))


def fewest(target: float, alpha: float) -> int:
    """The fewest judged pairs that can show ``target`` at one-sided level ``alpha`` (all of them
    duplicates: the exact binomial bound ``alpha ** (1/n)`` reaches the target)."""
    if target >= 1.0:
        return 1 << 40
    return max(1, math.ceil(math.log(alpha) / math.log(target)))


def testable(planned: np.ndarray, removed: np.ndarray, target: float, alpha: float) -> np.ndarray:
    """Whether each ε is in the test sequence: something is removed, and the plan's sample is to hold at
    least twice :func:`fewest` of its removals (``planned``: the pairs a √N allocation of the plan's whole
    size puts among them — known before any verdict), or all of them."""
    need = np.minimum(2 * fewest(target, alpha), removed)
    return (removed > 0) & (planned >= need - 1e-9)


def fixed_sequence(low: np.ndarray, target: float, tested: np.ndarray) -> np.ndarray:
    """Which ε hold: from the first testable ε up, each while its lower bound ``low`` reaches ``target``;
    the first that does not stops the sequence (every later ε is not claimed)."""
    holds = np.zeros(len(low), dtype=bool)
    start = np.flatnonzero(tested)
    if not len(start):
        return holds
    for g in range(int(start[0]), len(low)):
        if not (tested[g] and np.isfinite(low[g]) and low[g] >= target):
            break
        holds[g] = True
    return holds


@dataclass(frozen=True)
class Evidence:
    """What the verdicts say so far. Per ε of the grid: the estimate, its lower bound at the per-look level
    (the test's), the upper end of its 95 % interval, and the items of each band it removes (``domain``,
    ``(G, H)``); per band: its population, its sampled pairs, and the judged pairs and duplicates among
    them; ``alpha``: the per-look level."""

    precision: np.ndarray
    low: np.ndarray
    high: np.ndarray
    domain: np.ndarray
    sizes: np.ndarray
    sampled: np.ndarray
    judged: np.ndarray
    dups: np.ndarray
    alpha: float

    @property
    def z(self) -> float:
        from scipy.special import ndtri

        return float(ndtri(1 - self.alpha))

    def hopeful(self) -> np.ndarray:
        """The optimistic end of each estimate: its one-sided 75 % upper bound, from the test's spread."""
        return self.precision + OPTIMISM * np.maximum(self.precision - self.low, 0.0) / self.z

    def project(self, ends: list[int], share: np.ndarray, extra: int) -> tuple[np.ndarray, float]:
        """Send ``extra`` more pairs to the bands, greedily, so that the smallest projected lower bound minus
        the target over the ε at grid positions ``ends`` is as large as it can be, were each ε's precision
        ``share``; returns the pairs per band and that smallest distance (≥ 0: every one would hold).

        The projection is the estimator's: ``Var = Σ_h W_h² S_h² / (m_h q_h) − fpc`` (``W_h`` a band's share
        of the ε's removals, ``S_h²`` its smoothed binomial variance, ``q_h`` the share of the band the ε
        removes, ``m_h`` its sampled pairs), the effective sample size ``p̃(1 − p̃)/Var`` and the exact
        binomial lower bound at the per-look level — so near 1 it shrinks as ``1/n``, not ``1/√n``."""
        from scipy.special import betaincinv

        domain = self.domain[ends].astype(np.float64)
        share = np.clip(np.asarray(share, dtype=np.float64), 0.0, 1.0)
        sizes = self.sizes.astype(np.float64)
        total = np.maximum(domain.sum(axis=1, keepdims=True), 1.0)
        smooth = (self.dups + 0.5) / (self.judged + 1.0)
        s2 = (smooth * (1 - smooth))[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            q = np.where(sizes > 0, domain / np.where(sizes > 0, sizes, 1), 0.0)
            w = domain / total
            c = np.where(q > 0, w**2 * s2 / np.where(q > 0, q, 1), 0.0)
            d = np.where(domain > 0, w**2 * s2 / np.where(domain > 0, domain, 1), 0.0).sum(axis=1)
        mean = (w * smooth[None, :]).sum(axis=1)
        m = self.sampled.astype(np.float64).copy()
        alloc = np.zeros(len(sizes), dtype=np.int64)

        def low_after(add: np.ndarray) -> np.ndarray:
            var = np.maximum((c / np.maximum(m + add, 0.25)[..., None, :]).sum(axis=-1) - d, 1e-12)
            n_eff = mean * (1 - mean) / var
            x = share * n_eff
            return np.where(x >= n_eff, self.alpha ** (1.0 / n_eff), betaincinv(x, n_eff - x + 1, self.alpha))

        step = max(1, int(extra) // 40)
        left = int(extra)
        eye = np.eye(len(m))
        while left > 0:
            room = (m < sizes) & (c.sum(axis=0) > 0)
            if not room.any():
                break
            k = min(step, left)
            add = eye * np.minimum(k, sizes - m)[:, None]  # one row per band: k more pairs there
            worst = low_after(add).min(axis=1)
            h = int(np.argmax(np.where(room, worst, -np.inf)))
            take = int(min(k, sizes[h] - m[h]))
            alloc[h] += take
            m[h] += take
            left -= take
        return alloc, float(low_after(np.zeros(len(m))).min())

    def feasible(self, ends: list[int], share: np.ndarray, extra: int, target: float) -> bool:
        """Whether ``extra`` more pairs, well placed, could make every ε at ``ends`` hold were its precision
        ``share``."""
        share = np.asarray(share, dtype=np.float64)
        if not len(ends) or np.any(~np.isfinite(share)) or np.any(share <= target):
            return False
        return self.project(ends, share, extra)[1] >= target

    def farthest(self, above: list[int], share: np.ndarray, extra: int, target: float) -> int:
        """How many of the ε at ``above`` (ascending) could hold together with ``extra`` pairs were their
        precisions ``share`` (a binary search: more ε need more pairs)."""
        lo, hi = 0, len(above)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.feasible(above[:mid], share[:mid], extra, target):
                lo = mid
            else:
                hi = mid - 1
        return lo


@dataclass(frozen=True)
class Decision:
    """Where the review stands: ``recommended`` and ``candidate`` (grid positions or -1: the last ε that
    holds, the first tested one above it), ``start`` (the first tested ε, -1 when none), ``reach`` (the
    tested ε above the recommendation that the budget left could still make hold, in order), ``enough``
    (the stopping rule is met) and ``reason`` (``all`` | ``misses`` | ``stalls`` | ``reach`` | ``complete`` |
    ``""``)."""

    recommended: int
    candidate: int
    start: int
    reach: tuple[int, ...]
    enough: bool
    reason: str


def stopping(
    holds: np.ndarray,
    tested: np.ndarray,
    ev: Evidence,
    target: float,
    at_look: bool,
    last_look: bool,
    left: int,
    batch_done: bool | None = None,
    ahead: int | None = None,
) -> Decision:
    """The stopping rule (see the module's docstring). ``at_look``: the sample is wholly judged at one of
    the plan's looks; ``last_look``: it is the last (a fixed sample's only look, or the budget); ``left``:
    pairs the budget has left; ``batch_done``: the sample is wholly judged, at a look or not (the reach is
    worked out then, for the next batch; default ``at_look``); ``ahead``: the pairs the next ε may take to hold
    before it stalls (up to the next look, or a tenth of the budget where that is more)."""
    start = int(np.flatnonzero(tested)[0]) if tested.any() else -1
    rec = int(np.flatnonzero(holds)[-1]) if holds.any() else -1
    above = [int(g) for g in np.flatnonzero(tested & (np.arange(len(holds)) > rec))] if start >= 0 else []
    candidate = above[0] if above else -1
    reach: tuple[int, ...] = ()
    if (at_look if batch_done is None else batch_done) and above and not last_look:
        # with a recommendation: the ε above it that the pairs up to the next look could prove at their
        # estimates (at a look: is it worth going on?) or the budget left could (between looks: where to
        # go); without one: what the budget left could prove at the hopeful ends of the estimates (not to
        # give up on a noisy start)
        share = ev.precision if rec >= 0 else ev.hopeful()
        extra = min(left, ahead) if rec >= 0 and at_look and ahead is not None else left
        reach = tuple(above[: ev.farthest(above, share[above], extra, target)])
    out = (rec, candidate, start, reach)
    if not at_look:
        return Decision(*out, False, "")
    if rec >= 0 and candidate < 0:
        return Decision(*out, True, "all")
    if candidate >= 0 and np.isfinite(ev.high[candidate]) and ev.high[candidate] < target:
        return Decision(*out, True, "misses")
    if last_look:
        return Decision(*out, True, "complete")
    if candidate >= 0 and not reach:
        return Decision(*out, True, "stalls" if rec >= 0 else "reach")
    return Decision(*out, False, "")


def next_allocation(ev: Evidence, reach: list[int], target: float, size: int, left: int) -> tuple[np.ndarray, int]:
    """Pairs per band for the next batch of ``size`` (see the module's docstring), and the farthest ε it
    aims at: the farthest of ``reach`` whose test — and those of every ε below it — ``left`` pairs (those up
    to the next look) could make pass at the current estimates (the first of ``reach`` when none)."""
    n = ev.farthest(reach, ev.precision[reach], left, target)
    ends = reach[: max(n, 1)]
    share = ev.precision[ends] if n else np.maximum(ev.hopeful()[ends], target + 1e-3)
    return ev.project(ends, share, size)[0], ends[-1]
