"""The recorded review sample: its population and bands, its plan, and ``audit/sample.parquet``.

**Population.** The items the paper's rule removes at ``eps_max``, each the pair (item, ``dup_of``).
**Bands.** ``bands`` equal bands of ε between 0 and ``eps_max``: band ``h`` holds the items removed at
``ε_{h+1} = eps_max·(h+1)/bands`` but kept at ``ε_h``, band 0 the most similar — and band 0 has no lower
edge: exact copies, whose score is 1 or a hair above it in float32 (1.0000004), belong to it like any
score above ``1 − ε_1``. The bands are contiguous in score order, so band ``h`` is the ranks
``offsets[h]`` to ``offsets[h + 1]`` from the top, and at any ε every band is wholly removed, wholly kept,
or — one band only — split by the threshold: the removed count of each band at every ε follows from the
sorted scores alone (the same float comparisons as every count of the house).

**Plan** (:class:`Plan`). ``fixed``: the sample is drawn once and the decision is taken when all of it is
judged. ``sequential``: the first draw is a pilot; each time the sample is wholly judged (a *look*) the
decision is taken, and unless it is settled the next batch is sent where it narrows the decision most
(:mod:`~semdedup_core.audit.recommend`); the decision is taken at 30, 35, 40, 45, 50, 60, 70, 80, 90
and 100 % of the ``budget`` (the looks: every batch early on, where most reviews settle), and the sample
grows between them by batches of 20 pairs, each sent where it helps most. ``target`` is the precision
the decision is about, ``double`` the share of the pairs that two reviewers judge (chosen by a hash of
the pair, so the same pairs in every draw).

**Keys.** A pair's sampling keys are seeded 64-bit hashes of its two row numbers (input order), so the
sampler reads no id of the population — only the scores, the ``dup_row`` column and, at the end, the
ids of the sampled rows — and the same pair gets the same key in every run over the same input.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import n_above, removed_by_score, threshold
from ..results import io
from ..results.names import AUDIT

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

SAMPLE = "sample.parquet"
DEFAULT_N = 400
DEFAULT_EPS_MAX = 0.3
DEFAULT_BANDS = 10
DEFAULT_TARGET = 0.95
DEFAULT_DOUBLE = 0.1
DEFAULT_BUDGET = 400
# a sequential sample's looks, as shares of its budget: one per batch up to half of it, where most reviews
# settle, then every tenth (each look costs the per-look level a little: ten looks test at 1.5 %, eight at 1.6 %)
LOOKS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
STALL_HORIZON = 0.1  # a sequential review stalls when the next ε could not hold within this share of the budget
DEFAULT_BATCH = 20  # a sequential sample grows by batches of this many pairs (fewer to stop at a look)
DEFAULT_FIRST = 20  # a sequential sample's first draw, suggested
UNIT_COLUMNS = (
    "id",
    "dup_of",
    "id_a",
    "id_b",
    "max_sim",
    "band",
    "sim_low",
    "sim_high",
    "N_h",
    "n_h",
    "inclusion",
    "key",
    "order",
    "seed",
    "eps_max",
    "bands",
    "run",
)
"""``audit/sample.parquet``, one row per sampled pair in queue order: the pair (``id``, ``dup_of``; sorted
``id_a`` < ``id_b``), its score, its band (``sim_low`` < ``max_sim`` ≤ ``sim_high``; band 0 also holds
scores above 1, exact copies), the band's population ``N_h`` and sample size ``n_h``, the inclusion
probability ``n_h / N_h``, the pair's hash ``key``, its queue position ``order``, and the design's
``seed``, ``eps_max``, ``bands`` and the run's input fingerprint ``run``."""
PLAN_COLUMNS = ("row", "dup_row", "double", "batch", "plan", "target", "budget", "double_share")
"""Added with sequential plans and double judging (a sample written before them reads as a fixed plan
without double judging): the rows of the item and of its ``dup_of``, whether two reviewers judge the
pair, the ``batch`` it came in (0: the first draw), and the plan (``fixed`` | ``sequential``), its
``target``, ``budget`` and ``double_share``."""


def sample_path(folder: str | Path) -> Path:
    return Path(folder) / AUDIT / SAMPLE


def _whole(value: Any, name: str, low: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise SemDedupError(f"{name} must be a whole number of at least {low}{fix}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Plan:
    """How a review sample grows and what it decides (see the module's docstring)."""

    sequential: bool = False
    target: float = DEFAULT_TARGET
    budget: int = 0  # sequential: the most pairs the sample grows to; fixed: 0 (the sample's own size)
    double: float = DEFAULT_DOUBLE

    def __post_init__(self) -> None:
        try:
            target = float(self.target)
        except (TypeError, ValueError):
            target = float("nan")
        if not 0.0 < target <= 1.0:
            raise SemDedupError(f"target must be a precision above 0 and at most 1, e.g. 0.95, got {self.target!r}")
        try:
            double = float(self.double)
        except (TypeError, ValueError):
            double = float("nan")
        if not 0.0 <= double <= 1.0:
            raise SemDedupError(
                f"the share judged by two reviewers must be between 0 and 1, e.g. 0.1, got {self.double!r}"
            )
        budget = _whole(self.budget, "the budget", 0, " (the most pairs a sequential sample grows to)")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "double", double)
        object.__setattr__(self, "budget", budget)

    @property
    def kind(self) -> str:
        return "sequential" if self.sequential else "fixed"

    def looks(self, first: int, size: int | None = None, population: int | None = None) -> np.ndarray:
        """The sample sizes at which the decision is taken, for a first draw of ``first`` pairs: a fixed
        plan decides once, when its ``size`` pairs are judged; a sequential one at the shares :data:`LOOKS` of
        its budget (not before its first draw; the budget is at most the ``population``)."""
        if not self.sequential:
            return np.asarray([size if size is not None else first], dtype=np.int64)
        budget = self.budget if population is None else max(min(self.budget, int(population)), int(first))
        return np.unique([max(int(first), math.ceil(f * budget - 1e-9)) for f in LOOKS]).astype(np.int64)


# -- the population and its bands ---------------------------------------------------------------------
def edges_of(eps_max: float, bands: int) -> np.ndarray:
    edges = np.linspace(0.0, eps_max, bands + 1)
    edges[-1] = eps_max
    return edges


def bands_of(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Each score's band: ``h`` when it is removed at ``edges[h + 1]`` but not at ``edges[h]``, with band 0
    open upwards (a score above 1, an exact copy in float32, is in band 0). The float64 comparisons of the
    rule."""
    s = np.asarray(scores, dtype=np.float64)
    above = np.searchsorted(np.sort(threshold(edges[1:])), s, side="left")  # edges k ≥ 1 whose threshold s exceeds
    return (len(edges) - 1 - above).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Population:
    """The items removed at ``eps_max`` (rows of the run, ascending) with their ``dup_of`` rows, scores
    (float64) and bands; ``ids`` gives the ids of some rows (read only for the sampled ones)."""

    rows: np.ndarray
    dup_rows: np.ndarray
    scores: np.ndarray
    band: np.ndarray
    edges: np.ndarray
    sorted_scores: np.ndarray  # the population's scores ascending (a view of the run's sorted scores)
    ids: Any = field(default=None, repr=False)  # rows -> object array of ids

    @property
    def bands(self) -> int:
        return len(self.edges) - 1

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.band, minlength=self.bands).astype(np.int64)


def population(
    scores: np.ndarray, dup_rows: np.ndarray, eps_max: float, bands: int, sorted_scores: np.ndarray | None = None
) -> Population:
    """The population of a review sample from a run's ``max_sim`` column (float32 as stored: filtered
    without a float64 copy) and ``dup_row`` column; ``sorted_scores``: the run's scores ascending when
    already at hand (:attr:`Results.sorted_scores`), else sorted here."""
    edges = edges_of(eps_max, bands)
    rows = np.flatnonzero(removed_by_score(scores, eps_max) & (dup_rows >= 0))
    s = np.asarray(scores[rows], dtype=np.float64)
    if sorted_scores is None:
        top = np.sort(np.asarray(scores[rows]))
    else:
        top = sorted_scores[len(sorted_scores) - int(n_above(sorted_scores, eps_max)) :]
    return Population(rows, np.asarray(dup_rows[rows], dtype=np.int64), s, bands_of(s, edges), edges, top)


def population_of(results: Results, eps_max: float, bands: int) -> Population:
    """:func:`population` of a results folder: reads the score column, ``dup_row`` and the sorted scores,
    and the ids only of the rows asked for (:meth:`Results.rows`)."""

    def ids(rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.asarray([], dtype=object)
        frame = results.rows(np.asarray(rows, dtype=np.int64), ["id"])
        return frame["id"].to_numpy(dtype=object).astype(str).astype(object)

    pop = population(results.scores, results.dup_rows, eps_max, bands, results.sorted_scores)
    return Population(pop.rows, pop.dup_rows, pop.scores, pop.band, pop.edges, pop.sorted_scores, ids)


def unit_keys(rows: np.ndarray, dup_rows: np.ndarray, seed: int, purpose: str = "sample") -> np.ndarray:
    """A seeded 64-bit hash (splitmix64 rounds) of each pair of row numbers, either order: the same pair,
    seed and purpose give the same key on every machine. Vectorised: millions of pairs in milliseconds."""
    salt = int.from_bytes(hashlib.blake2b(f"semdedup:{int(seed)}:{purpose}".encode(), digest_size=8).digest(), "big")
    a = np.asarray(rows, dtype=np.int64)
    b = np.asarray(dup_rows, dtype=np.int64)
    lo, hi = np.minimum(a, b).astype(np.uint64), np.maximum(a, b).astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_mix(lo ^ np.uint64(salt)) + hi)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniform(keys: np.ndarray) -> np.ndarray:
    """Keys as numbers in [0, 1)."""
    return (np.asarray(keys, dtype=np.uint64) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# -- the design -----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Design:
    """A recorded review sample over one run.

    ``edges``: ε at the band edges (``bands + 1`` values from 0 to ``eps_max``); ``scores``: the
    population's scores ascending; ``offsets[h]``: how many population items are more similar than band
    ``h`` (band ``h`` is ranks ``offsets[h]`` to ``offsets[h + 1]`` from the top); ``units``: the sample
    in queue order (columns :data:`UNIT_COLUMNS` and :data:`PLAN_COLUMNS`); ``plan``: its :class:`Plan`."""

    eps_max: float
    seed: int
    bands: int
    edges: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray
    units: pd.DataFrame
    plan: Plan = field(default_factory=Plan)

    @property
    def n(self) -> int:
        return len(self.units)

    @property
    def population(self) -> int:
        return len(self.scores)

    @property
    def band_sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def band_samples(self) -> np.ndarray:
        return np.bincount(self.units["band"].to_numpy(np.int64), minlength=self.bands)

    @property
    def batch(self) -> int:
        """The last batch drawn (0: only the first draw)."""
        return int(self.units["batch"].max()) if self.n else 0

    @property
    def first(self) -> int:
        """The size of the first draw (a sequential plan's pilot)."""
        return int((self.units["batch"].to_numpy() == 0).sum())

    @property
    def looks(self) -> np.ndarray:
        """The sample sizes at which the plan takes its decision (see :meth:`Plan.looks`)."""
        return self.plan.looks(self.first, self.n, self.population)

    @property
    def to_next_look(self) -> int:
        """The pairs from this sample's size to its next look (0 at or past the last)."""
        looks = self.looks
        later = looks[looks > self.n]
        return int(later[0]) - self.n if len(later) else 0

    def n_removed(self, eps: float | np.ndarray) -> np.ndarray:
        """Population items removed at each ``eps`` (≤ ``eps_max``): the run's removed count there."""
        return np.atleast_1d(n_above(self.scores, np.atleast_1d(np.asarray(eps, dtype=np.float64))))

    def band_counts(self, eps: float | np.ndarray) -> np.ndarray:
        """``(len(eps), bands)``: how many items of each band are removed at each ``eps``."""
        removed = self.n_removed(eps).astype(np.int64)
        return np.clip(removed[:, None] - self.offsets[None, :-1], 0, self.band_sizes[None, :])

    def describe(self) -> str:
        plan = (
            f"sequential towards precision {self.plan.target:g}, budget {self.plan.budget:,}"
            if self.plan.sequential
            else "fixed"
        )
        double = f", {self.plan.double:.0%} judged twice" if self.plan.double else ""
        return (
            f"{self.n:,} of the {self.population:,} pairs removed at eps {self.eps_max:g} "
            f"(seed {self.seed}, {self.bands} similarity bands, {plan}{double})"
        )


def offsets_of(band: np.ndarray, bands: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(band, minlength=bands))]).astype(np.int64)


def design_of(pop: Population, seed: int, units: pd.DataFrame, plan: Plan) -> Design:
    eps_max = float(pop.edges[-1])
    return Design(eps_max, seed, pop.bands, pop.edges, pop.sorted_scores, offsets_of(pop.band, pop.bands), units, plan)


# -- saving and loading ------------------------------------------------------------------------------------
def save_design(design: Design, folder: str | Path) -> Path:
    """Write the sample into ``folder/audit/sample.parquet`` atomically (replacing an earlier one)."""
    path = sample_path(folder)
    io.write_parquet(path, design.units)
    return path


def _redraw(path: Path, why: str) -> SemDedupError:
    return SemDedupError(f"{str(path)!r} {why}; draw the sample again with `audit sample`")


def _plan_of(units: pd.DataFrame, path: Path) -> Plan:
    if "plan" not in units.columns:
        return Plan(double=0.0)
    try:
        return Plan(
            sequential=str(units["plan"].iat[0]) == "sequential",
            target=float(units["target"].iat[0]),
            budget=int(units["budget"].iat[0]),
            double=float(units["double_share"].iat[0]),
        )
    except SemDedupError as exc:
        raise _redraw(path, f"records a bad plan ({exc})") from None


def _complete(units: pd.DataFrame, results: Results, plan: Plan) -> pd.DataFrame:
    """Fill the plan columns of a sample written before them (rows looked up by id)."""
    if "row" not in units.columns:
        index = results.row_of_id
        units["row"] = index.get_indexer(units["id"].astype(str)).astype(np.int64)
        units["dup_row"] = index.get_indexer(units["dup_of"].astype(str)).astype(np.int64)
    defaults = {"double": False, "batch": 0, "plan": plan.kind, "target": plan.target, "budget": plan.budget}
    for c, v in {**defaults, "double_share": plan.double}.items():
        if c not in units.columns:
            units[c] = v
    return units


def load_design(results: Results) -> Design | None:
    """The sample recorded in the results folder, or ``None`` when none was drawn. Raises
    :class:`SemDedupError` when the file is damaged or was drawn from another run (its band sizes or its
    pairs differ from this run's). Reads the scores, ``dup_row`` and the ids of the sampled rows only."""
    import pandas as pd

    if results.path is None:
        return None
    path = sample_path(results.path)
    if not path.exists():
        return None
    try:
        units = pd.read_parquet(path)
    except Exception as exc:
        raise _redraw(path, f"is not readable ({type(exc).__name__})") from None
    missing = [c for c in UNIT_COLUMNS if c not in units.columns]
    if missing or units.empty:
        raise _redraw(path, f"lacks columns {missing or 'rows'}")
    plan = _plan_of(units, path)
    eps_max, seed, bands = float(units["eps_max"].iat[0]), int(units["seed"].iat[0]), int(units["bands"].iat[0])
    units = _complete(units.reset_index(drop=True), results, plan)
    pop = population(results.scores, results.dup_rows, eps_max, bands, results.sorted_scores)
    design = design_of(pop, seed, units, plan)
    recorded = units.groupby("band")["N_h"].first()
    actual = design.band_sizes[recorded.index.to_numpy(np.int64)]
    rows = units["row"].to_numpy(np.int64)
    moved = not np.array_equal(recorded.to_numpy(np.int64), actual) or rows.min() < 0 or rows.max() >= results.n_items
    if not moved:
        dup_rows = results.dup_rows[rows]
        ids = results.rows(np.concatenate([rows, np.maximum(dup_rows, 0)]), ["id"])["id"].to_numpy(dtype=object)
        moved = not (
            np.array_equal(dup_rows, units["dup_row"].to_numpy(np.int64))
            and np.array_equal(ids[: len(rows)].astype(str), units["id"].to_numpy(dtype=object).astype(str))
            and np.array_equal(ids[len(rows) :].astype(str), units["dup_of"].to_numpy(dtype=object).astype(str))
        )
    if moved:
        raise SemDedupError(
            f"the review sample in {str(path)!r} was drawn from another run (its band sizes differ from this "
            "run's scores); draw it again with `audit sample`"
        )
    for c in ("id", "dup_of", "id_a", "id_b"):
        design.units[c] = design.units[c].astype(object)
    return design
