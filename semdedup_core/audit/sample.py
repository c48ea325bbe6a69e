"""Drawing the review sample: the removed pairs a person judges, drawn so that the precision estimate at
every ε up to ``eps_max`` is unbiased, and recorded in the results folder (``audit/sample.parquet``).

The population, its bands and the plan are described in :mod:`~semdedup_core.audit.design`.

**Allocation of the first draw.** ``n`` is spread over the bands in proportion to ``√N_h`` (Kish's power
allocation: proportional allocation would starve the small high-similarity bands that a small ε removes,
equal allocation would weight the estimate at ``eps_max`` badly), at least 2 per band so that each band's
variance can be estimated. Units are assigned one at a time to the band of highest priority
``√N_h / (n_h + ½)`` (a divisor method), so a larger ``n`` only adds units: the sample of 400 is inside
the sample of 800 drawn with the same seed and ``eps_max``.

**Selection.** Inside each band, the pairs with the smallest seeded key
(:func:`~semdedup_core.audit.design.unit_keys`): a simple random sample of the band that is the same for
the same command and nested in ``n``. A later batch of a sequential plan takes, in each band, the next
pairs in the same key order — so at every moment a band's sample is a simple random sample of the band,
its units' inclusion probability is ``n_h / N_h``, and the estimate weights the band by ``N_h / n_h``.

**Queue.** Each draw is judged in a seeded random order (a second key), never borderline first, so
whatever part of it has been judged is itself a random subsample of every band. Pairs that already have
a verdict (in any store row, from any run) stay in the sample — their verdicts count — but are not asked
again. A share ``double`` of the pairs (a third key) is asked of a second reviewer too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..results.rules import check_eps
from .design import (
    DEFAULT_BANDS,
    DEFAULT_EPS_MAX,
    DEFAULT_N,
    PLAN_COLUMNS,
    SAMPLE,
    UNIT_COLUMNS,
    Design,
    Plan,
    Population,
    design_of,
    load_design,
    population_of,
    sample_path,
    save_design,
    uniform,
    unit_keys,
)
from .labels import lookup, sorted_pairs

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

__all__ = [
    "DEFAULT_BANDS",
    "DEFAULT_EPS_MAX",
    "DEFAULT_N",
    "PLAN_COLUMNS",
    "SAMPLE",
    "UNIT_COLUMNS",
    "Design",
    "Plan",
    "add_batch",
    "allocate",
    "draw_sample",
    "draw_units",
    "load_design",
    "pair_keys",
    "queue_frame",
    "sample_path",
    "save_design",
    "unit_verdicts",
]

FLOOR = 2  # units per band at least (when it has them): a band's variance needs two
POWER = 0.5  # n_h ∝ N_h ** POWER


# -- keys and allocation ------------------------------------------------------------------------------
def pair_keys(id_a: Any, id_b: Any, seed: int, purpose: str = "sample") -> np.ndarray:
    """A seeded 64-bit BLAKE2b hash of each (sorted) pair of ids: the same pair, seed and purpose give
    the same key in every run and on every machine (a per-pair hash for simulations and ground truths;
    the sampler itself hashes row numbers, :func:`~semdedup_core.audit.design.unit_keys`)."""
    base = hashlib.blake2b(digest_size=8, key=f"semdedup:{int(seed)}".encode(), person=purpose.encode()[:16])
    out = bytearray()
    for a, b in zip(id_a, id_b, strict=True):
        h = base.copy()
        h.update(f"{len(a)}:{a}{b}".encode())
        out += h.digest()
    return np.frombuffer(bytes(out), dtype=">u8").astype(np.uint64)


def allocate(
    sizes: np.ndarray, n: int, floor: int = FLOOR, power: float = POWER, start: np.ndarray | None = None
) -> np.ndarray:
    """Units per band for a sample of ``n``: one at a time to the open band of highest priority
    ``N_h ** power / (n_h + ½)``, bands below ``floor`` units first; ties go to the lower band number.
    The allocation for ``n + 1`` is the one for ``n`` plus one unit (a larger sample nests a smaller).
    ``start``: units already placed (each at most its band's size), which the allocation continues."""
    sizes = [int(x) for x in np.asarray(sizes)]
    n = min(int(n), sum(sizes))
    weight = [float(s) ** power for s in sizes]
    alloc = [0] * len(sizes) if start is None else [int(x) for x in np.asarray(start)]
    for _ in range(n - sum(alloc)):
        best, best_key = -1, None
        for h, size in enumerate(sizes):
            if alloc[h] >= size:
                continue
            key = (alloc[h] < floor, weight[h] / (alloc[h] + 0.5))
            if best_key is None or key > best_key:
                best, best_key = h, key
        alloc[best] += 1
    return np.asarray(alloc, dtype=np.int64)


def _check_design(n: int, eps_max: float, seed: int, bands: int) -> tuple[int, float, int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SemDedupError(f"the sample size n must be a whole number of at least 1, got {n!r}")
    eps_max = check_eps(eps_max)
    if eps_max <= 0.0:
        raise SemDedupError(f"eps-max must be above 0 (the largest eps you consider, e.g. 0.3), got {eps_max}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SemDedupError(f"the seed must be a whole number of at least 0, got {seed!r}")
    if isinstance(bands, bool) or not isinstance(bands, (int, np.integer)) or not 1 <= bands <= 100:
        raise SemDedupError(f"bands must be a whole number from 1 to 100, got {bands!r}")
    return int(n), eps_max, int(seed), int(bands)


# -- drawing --------------------------------------------------------------------------------------------
def _next_by_key(pop: Population, keys: np.ndarray, taken: np.ndarray, alloc: np.ndarray) -> np.ndarray:
    """Positions in ``pop`` of the next ``alloc[h]`` pairs of each band in key order, passing over the
    positions already ``taken`` (a boolean mask)."""
    free = np.flatnonzero(~taken)
    band = pop.band[free]
    order = free[np.lexsort((keys[free], band))]
    sizes = np.bincount(band, minlength=pop.bands)
    start = np.concatenate([[0], np.cumsum(sizes)])
    position = np.arange(len(order)) - start[pop.band[order]]
    return order[position < alloc[pop.band[order]]]


def _unit_frame(pop: Population, chosen: np.ndarray, seed: int, plan: Plan, batch: int, run: str) -> pd.DataFrame:
    import pandas as pd

    rows, dups = pop.rows[chosen], pop.dup_rows[chosen]
    queue = unit_keys(rows, dups, seed, purpose="queue")
    step = np.argsort(queue, kind="stable")
    chosen, rows, dups = chosen[step], rows[step], dups[step]
    id_of: Callable[[np.ndarray], np.ndarray] = pop.ids or (lambda r: np.asarray(r).astype(str).astype(object))
    both = id_of(np.concatenate([rows, dups]))
    ids, dup_ids = both[: len(rows)], both[len(rows) :]
    id_a, id_b = sorted_pairs(ids, dup_ids)
    h = pop.band[chosen]
    return pd.DataFrame(
        {  # object columns for the ids: pandas would make them arrow strings, slower to look up per click
            "id": pd.Series(ids, dtype=object),
            "dup_of": pd.Series(dup_ids, dtype=object),
            "id_a": pd.Series(id_a, dtype=object),
            "id_b": pd.Series(id_b, dtype=object),
            "max_sim": pop.scores[chosen],
            "band": h,
            "sim_low": 1.0 - pop.edges[h + 1],
            "sim_high": 1.0 - pop.edges[h],
            "N_h": pop.sizes[h],
            "n_h": 0,
            "inclusion": 0.0,
            "key": unit_keys(rows, dups, seed),
            "order": np.arange(len(chosen), dtype=np.int64),
            "seed": seed,
            "eps_max": float(pop.edges[-1]),
            "bands": pop.bands,
            "run": run,
            "row": rows,
            "dup_row": dups,
            "double": uniform(unit_keys(rows, dups, seed, purpose="double")) < plan.double,
            "batch": batch,
            "plan": plan.kind,
            "target": plan.target,
            "budget": plan.budget,
            "double_share": plan.double,
        }
    )


def _refresh(units: pd.DataFrame, bands: int) -> pd.DataFrame:
    """Each unit's band sample size ``n_h`` and inclusion probability ``n_h / N_h`` (after a draw)."""
    counts = np.bincount(units["band"].to_numpy(np.int64), minlength=bands)
    units["n_h"] = counts[units["band"].to_numpy(np.int64)]
    units["inclusion"] = units["n_h"] / units["N_h"]
    units["order"] = np.arange(len(units), dtype=np.int64)
    return units


def draw_units(pop: Population, n: int, seed: int, plan: Plan | None = None, run: str = "") -> Design:
    """The first draw of ``n`` pairs from ``pop`` (see the module's docstring)."""
    plan = plan or Plan()
    keys = unit_keys(pop.rows, pop.dup_rows, seed)
    alloc = allocate(pop.sizes, n)
    chosen = _next_by_key(pop, keys, np.zeros(len(pop.rows), dtype=bool), alloc)
    units = _refresh(_unit_frame(pop, chosen, seed, plan, 0, run), pop.bands)
    return design_of(pop, seed, units, plan)


def add_batch(design: Design, pop: Population, alloc: np.ndarray) -> Design:
    """``design`` with a new batch of ``alloc[h]`` pairs in each band: the next ones in the band's key
    order (so every band's sample stays a simple random sample of it), queued after the earlier ones.
    Pairs asked of a band with too few left go to the bands that have some, by :func:`allocate`'s
    priority, so the batch keeps its size while the population has pairs to give."""
    import pandas as pd

    keys = unit_keys(pop.rows, pop.dup_rows, design.seed)
    taken = np.isin(pop.rows, design.units["row"].to_numpy(np.int64))
    have = np.bincount(pop.band[taken], minlength=pop.bands)
    asked = np.maximum(np.asarray(alloc, dtype=np.int64), 0)
    alloc = np.minimum(asked, pop.sizes - have)
    if alloc.sum() < asked.sum():  # a band is exhausted: its share goes where there are pairs left
        alloc = allocate(pop.sizes, int(have.sum() + asked.sum()), start=have + alloc) - have
    if alloc.sum() == 0:
        return design
    chosen = _next_by_key(pop, keys, taken, alloc)
    run = str(design.units["run"].iat[0]) if design.n else ""
    new = _unit_frame(pop, chosen, design.seed, design.plan, design.batch + 1, run)
    units = _refresh(pd.concat([design.units, new], ignore_index=True), pop.bands)
    return design_of(pop, design.seed, units, design.plan)


def draw_sample(
    results: Results,
    n: int = DEFAULT_N,
    eps_max: float = DEFAULT_EPS_MAX,
    seed: int = 0,
    bands: int = DEFAULT_BANDS,
    plan: Plan | None = None,
) -> Design:
    """Draw the review sample (see the module's docstring); :func:`save_design` records it. Reads the
    score column, ``dup_row`` and the ids of the sampled rows only, so a 20,000,000-item run is sampled
    without its items table."""
    n, eps_max, seed, bands = _check_design(n, eps_max, seed, bands)
    plan = plan or Plan()
    if plan.sequential and plan.budget < n:
        raise SemDedupError(
            f"the budget of a sequential sample ({plan.budget}) must be at least its first draw n ({n}); "
            "raise --budget or lower --n"
        )
    pop = population_of(results, eps_max, bands)
    if not len(pop.rows):
        raise SemDedupError(
            f"nothing is removed at eps-max {eps_max:g} (no item scores above {1 - eps_max:.4f}), so there is "
            "nothing to review; raise --eps-max"
        )
    return draw_units(pop, n, seed, plan, str(results.run.get("input_fingerprint", "")))


# -- the sample and the verdicts ----------------------------------------------------------------------
def unit_verdicts(design: Design, resolved: pd.DataFrame) -> np.ndarray:
    """Each sampled pair's verdict (``duplicate`` / ``not_duplicate`` / ``unsure``) or ``None`` when
    unjudged, in queue order, from resolved store verdicts (:func:`semdedup_core.audit.labels.resolve`)."""
    pos = lookup(resolved, design.units["id_a"].to_numpy(), design.units["id_b"].to_numpy(), presorted=True)
    verdicts = resolved["verdict"].to_numpy(dtype=object)
    return np.where(pos >= 0, verdicts[np.maximum(pos, 0)] if len(verdicts) else None, None)


def queue_frame(
    results: Results, design: Design, resolved: pd.DataFrame, todo: np.ndarray | None = None
) -> pd.DataFrame:
    """The pairs still to judge, in queue order: ``id``, ``dup_of``, ``max_sim``, then ``text`` and
    ``dup_of_text`` and/or ``path`` and ``dup_of_path`` where the run has them, and an empty ``verdict``
    column to fill in (``audit import`` reads the same file back). ``todo``: which units to list (default:
    those nobody judged yet; :func:`~semdedup_core.audit.agreement.reviewer_todo` adds the pairs a second
    reviewer is to judge). Reads the listed rows only."""
    import pandas as pd

    if todo is None:
        todo = pd.isna(unit_verdicts(design, resolved))
    units = design.units[np.asarray(todo, dtype=bool)]
    frame = pd.DataFrame(
        {"id": units["id"].to_numpy(), "dup_of": units["dup_of"].to_numpy(), "max_sim": units["max_sim"].to_numpy()}
    )
    shown = [c for c in ("text", "path") if c in results.columns]
    if shown and len(units):
        rows = units["row"].to_numpy(np.int64)
        both = results.rows(np.concatenate([rows, units["dup_row"].to_numpy(np.int64)]), shown)
        for col in shown:
            values = both[col].to_numpy(dtype=object)
            frame[col] = values[: len(rows)]
            frame[f"dup_of_{col}"] = values[len(rows) :]
    else:
        for col in shown:
            frame[col] = pd.Series([], dtype=object)
            frame[f"dup_of_{col}"] = pd.Series([], dtype=object)
    frame["verdict"] = ""
    return frame
