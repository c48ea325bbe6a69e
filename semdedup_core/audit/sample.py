"""The review sample: the removed pairs a person judges, drawn so that the precision estimate at every
ε up to ``eps_max`` is unbiased, and recorded in the results folder (``audit/sample.parquet``).

**Population.** The items the paper's rule removes at ``eps_max`` (default 0.3), each the pair
(``id``, ``dup_of``): the removals of every ε the user considers are among them.

**Strata.** ``bands`` equal bands of ε between 0 and ``eps_max``: band ``h`` holds the items removed at
``ε_{h+1} = eps_max·(h+1)/bands`` but kept at ``ε_h`` (band 0 the most similar). At any ε every band is
wholly removed, wholly kept, or — one band only — split by the threshold; the estimator knows each
band's removed count at every ε from the scores.

**Allocation.** ``n`` is spread over the bands in proportion to ``√N_h`` (Kish's power allocation:
proportional allocation would starve the small high-similarity bands that a small ε removes, equal
allocation would weight the estimate at ``eps_max`` badly), at least 2 per band so that each band's
variance can be estimated. Units are assigned one at a time to the band of highest priority
``√N_h / (n_h + ½)`` (a divisor method), so a larger ``n`` only adds units: the sample of 400 is inside
the sample of 800 drawn with the same seed and ``eps_max``.

**Selection.** Inside each band, the ``n_h`` pairs with the smallest seeded hash (BLAKE2b) of the pair's
two ids: a simple random sample of the band that is the same for the same command, nested in ``n``,
and that gives a pair the same key in every run over the same data.

**Queue.** The sample is judged in a seeded random order (a second hash), never borderline first, so
whatever part of it has been judged is itself a random subsample of every band. Pairs that already
have a verdict (in any store row, from any run) stay in the sample — their verdicts count — but are not
asked again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import threshold
from ..results import io
from ..results.names import AUDIT
from ..results.rules import check_eps
from .labels import lookup, sorted_pairs

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

SAMPLE = "sample.parquet"
DEFAULT_N = 400
DEFAULT_EPS_MAX = 0.3
DEFAULT_BANDS = 10
FLOOR = 2  # units per band at least (when it has them): a band's variance needs two
POWER = 0.5  # n_h ∝ N_h ** POWER
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
``id_a`` < ``id_b``), its score, its band (``sim_low`` < ``max_sim`` ≤ ``sim_high``), the band's
population ``N_h`` and sample size ``n_h``, the inclusion probability ``n_h / N_h``, the pair's hash
``key``, its queue position ``order``, and the design's ``seed``, ``eps_max``, ``bands`` and the run's
input fingerprint ``run``."""


def sample_path(folder: str | Path) -> Path:
    return Path(folder) / AUDIT / SAMPLE


@dataclass(frozen=True, eq=False)
class Design:
    """A recorded review sample over one run.

    ``edges``: ε at the band edges (``bands + 1`` values from 0 to ``eps_max``); ``scores``: the
    population's scores (float64, ascending); ``offsets[h]``: how many population items are removed at
    ``edges[h]`` (band ``h`` is ranks ``offsets[h]`` to ``offsets[h + 1]`` from the top); ``units``: the
    sample in queue order (columns :data:`UNIT_COLUMNS`)."""

    eps_max: float
    seed: int
    bands: int
    edges: np.ndarray
    scores: np.ndarray
    offsets: np.ndarray
    units: pd.DataFrame

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

    def n_removed(self, eps: float | np.ndarray) -> np.ndarray:
        """Population items removed at each ``eps`` (≤ ``eps_max``): the run's removed count there."""
        return len(self.scores) - np.searchsorted(self.scores, threshold(np.atleast_1d(eps)), side="right")

    def band_counts(self, eps: float | np.ndarray) -> np.ndarray:
        """``(len(eps), bands)``: how many items of each band are removed at each ``eps``."""
        removed = self.n_removed(eps).astype(np.int64)
        return np.clip(removed[:, None] - self.offsets[None, :-1], 0, self.band_sizes[None, :])

    def describe(self) -> str:
        return (
            f"{self.n:,} of the {self.population:,} pairs removed at eps {self.eps_max:g} "
            f"(seed {self.seed}, {self.bands} similarity bands)"
        )


# -- the population and its bands ---------------------------------------------------------------------
def _edges(eps_max: float, bands: int) -> np.ndarray:
    edges = np.linspace(0.0, eps_max, bands + 1)
    edges[-1] = eps_max
    return edges


def _population(results: Results, eps_max: float, bands: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, scores, band, edges)`` of the items removed at ``eps_max``, in input order."""
    edges = _edges(eps_max, bands)
    scores = np.asarray(results.column("max_sim"), dtype=np.float32).astype(np.float64)
    rows = np.flatnonzero((scores > threshold(eps_max)) & (results.dup_rows >= 0))
    s = scores[rows]
    # band h: removed at edges[h + 1] but not at edges[h]; the same float64 comparisons as the rule
    above = np.searchsorted(np.sort(threshold(edges[1:])), s, side="left")  # edges k ≥ 1 whose threshold s exceeds
    return rows, s, (bands - above).astype(np.int64), edges


def _offsets(scores: np.ndarray, edges: np.ndarray) -> np.ndarray:
    asc = np.sort(scores)
    return (len(asc) - np.searchsorted(asc, threshold(edges), side="right")).astype(np.int64)


# -- keys and allocation ------------------------------------------------------------------------------
def pair_keys(id_a: Any, id_b: Any, seed: int, purpose: str = "sample") -> np.ndarray:
    """A seeded 64-bit BLAKE2b hash of each (sorted) pair of ids: the same pair, seed and purpose give
    the same key in every run and on every machine."""
    base = hashlib.blake2b(digest_size=8, key=f"semdedup:{int(seed)}".encode(), person=purpose.encode()[:16])
    out = bytearray()
    for a, b in zip(id_a, id_b, strict=True):
        h = base.copy()
        h.update(f"{len(a)}:{a}{b}".encode())
        out += h.digest()
    return np.frombuffer(bytes(out), dtype=">u8").astype(np.uint64)


def allocate(sizes: np.ndarray, n: int, floor: int = FLOOR, power: float = POWER) -> np.ndarray:
    """Units per band for a sample of ``n``: one at a time to the open band of highest priority
    ``N_h ** power / (n_h + ½)``, bands below ``floor`` units first; ties go to the lower band number.
    The allocation for ``n + 1`` is the one for ``n`` plus one unit (a larger sample nests a smaller)."""
    sizes = [int(x) for x in np.asarray(sizes)]
    n = min(int(n), sum(sizes))
    weight = [float(s) ** power for s in sizes]
    alloc = [0] * len(sizes)
    for _ in range(n):
        best, best_key = -1, None
        for h, size in enumerate(sizes):
            if alloc[h] >= size:
                continue
            key = (alloc[h] < floor, weight[h] / (alloc[h] + 0.5))
            if best_key is None or key > best_key:
                best, best_key = h, key
        alloc[best] += 1
    return np.asarray(alloc, dtype=np.int64)


# -- drawing, saving, loading --------------------------------------------------------------------------
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


def draw_sample(
    results: Results,
    n: int = DEFAULT_N,
    eps_max: float = DEFAULT_EPS_MAX,
    seed: int = 0,
    bands: int = DEFAULT_BANDS,
) -> Design:
    """Draw the review sample (see the module's docstring); :func:`save_design` records it."""
    import pandas as pd

    n, eps_max, seed, bands = _check_design(n, eps_max, seed, bands)
    rows, s, band, edges = _population(results, eps_max, bands)
    if not len(rows):
        raise SemDedupError(
            f"nothing is removed at eps-max {eps_max:g} (no item scores above {1 - eps_max:.4f}), so there is "
            "nothing to review; raise --eps-max"
        )
    items = results.items
    ids = items["id"].to_numpy(dtype=object)[rows].astype(str)
    dups = items["dup_of"].to_numpy(dtype=object)[rows].astype(str)
    id_a, id_b = sorted_pairs(ids, dups)
    keys = pair_keys(id_a, id_b, seed)
    sizes = np.bincount(band, minlength=bands)
    alloc = allocate(sizes, n)
    order = np.lexsort((keys, band))  # by band, then by key
    start = np.concatenate([[0], np.cumsum(sizes)])
    position = np.arange(len(order)) - start[band[order]]
    chosen = order[position < alloc[band[order]]]
    queue_key = pair_keys(id_a[chosen], id_b[chosen], seed, purpose="queue")
    chosen = chosen[np.argsort(queue_key, kind="stable")]
    h = band[chosen]
    units = pd.DataFrame(
        {  # object columns for the ids: pandas would make them arrow strings, slower to look up per click
            "id": pd.Series(ids[chosen], dtype=object),
            "dup_of": pd.Series(dups[chosen], dtype=object),
            "id_a": pd.Series(id_a[chosen], dtype=object),
            "id_b": pd.Series(id_b[chosen], dtype=object),
            "max_sim": s[chosen],
            "band": h,
            "sim_low": 1.0 - edges[h + 1],
            "sim_high": 1.0 - edges[h],
            "N_h": sizes[h],
            "n_h": alloc[h],
            "inclusion": alloc[h] / sizes[h],
            "key": keys[chosen],
            "order": np.arange(len(chosen), dtype=np.int64),
            "seed": seed,
            "eps_max": eps_max,
            "bands": bands,
            "run": str(results.run.get("input_fingerprint", "")),
        }
    )
    return Design(eps_max, seed, bands, edges, np.sort(s), _offsets(s, edges), units)


def save_design(design: Design, folder: str | Path) -> Path:
    """Write the sample into ``folder/audit/sample.parquet`` atomically (replacing an earlier one)."""
    path = sample_path(folder)
    io.write_parquet(path, design.units)
    return path


def load_design(results: Results) -> Design | None:
    """The sample recorded in the results folder, or ``None`` when none was drawn. Raises
    :class:`SemDedupError` when the file is damaged or was drawn from another run."""
    import pandas as pd

    if results.path is None:
        return None
    path = sample_path(results.path)
    if not path.exists():
        return None
    try:
        units = pd.read_parquet(path)
    except Exception as exc:
        raise SemDedupError(
            f"{str(path)!r} is not readable ({type(exc).__name__}); draw the sample again with `audit sample`"
        ) from None
    missing = [c for c in UNIT_COLUMNS if c not in units.columns]
    if missing or units.empty:
        raise SemDedupError(
            f"{str(path)!r} lacks columns {missing or 'rows'}; draw the sample again with `audit sample`"
        )
    eps_max, seed, bands = float(units["eps_max"].iat[0]), int(units["seed"].iat[0]), int(units["bands"].iat[0])
    _, s, _, edges = _population(results, eps_max, bands)
    design = Design(eps_max, seed, bands, edges, np.sort(s), _offsets(s, edges), units.reset_index(drop=True))
    recorded = units.groupby("band")["N_h"].first()
    actual = design.band_sizes[recorded.index.to_numpy(np.int64)]
    if not np.array_equal(recorded.to_numpy(np.int64), actual):
        raise SemDedupError(
            f"the review sample in {str(path)!r} was drawn from another run (its band sizes differ from this "
            "run's scores); draw it again with `audit sample`"
        )
    for c in ("id", "dup_of", "id_a", "id_b"):
        design.units[c] = design.units[c].astype(object)
    return design


# -- the sample and the verdicts ----------------------------------------------------------------------
def unit_verdicts(design: Design, resolved: pd.DataFrame) -> np.ndarray:
    """Each sampled pair's verdict (``duplicate`` / ``not_duplicate`` / ``unsure``) or ``None`` when
    unjudged, in queue order, from resolved store verdicts (:func:`semdedup_core.audit.labels.resolve`)."""
    pos = lookup(resolved, design.units["id_a"].to_numpy(), design.units["id_b"].to_numpy(), presorted=True)
    verdicts = resolved["verdict"].to_numpy(dtype=object)
    return np.where(pos >= 0, verdicts[np.maximum(pos, 0)] if len(verdicts) else None, None)


def queue_frame(results: Results, design: Design, resolved: pd.DataFrame) -> pd.DataFrame:
    """The pairs still to judge, in queue order: ``id``, ``dup_of``, ``max_sim``, then ``text`` and
    ``dup_of_text`` and/or ``path`` and ``dup_of_path`` where the run has them, and an empty ``verdict``
    column to fill in (``audit import`` reads the same file back)."""
    import pandas as pd

    todo = design.units[pd.isna(unit_verdicts(design, resolved))]
    frame = pd.DataFrame(
        {"id": todo["id"].to_numpy(), "dup_of": todo["dup_of"].to_numpy(), "max_sim": todo["max_sim"].to_numpy()}
    )
    index = results.row_of_id
    rows = index.get_indexer(frame["id"].astype(str))
    dups = index.get_indexer(frame["dup_of"].astype(str))
    for col in ("text", "path"):
        if col in results.items.columns:
            values = results.items[col].to_numpy(dtype=object)
            frame[col] = values[rows]
            frame[f"dup_of_{col}"] = values[dups]
    frame["verdict"] = ""
    return frame
