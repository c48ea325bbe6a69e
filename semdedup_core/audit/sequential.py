"""A sequential review sample's next batch: drawn when the sample is wholly judged at a look and the
decision is not settled yet, sent to the bands that decide the candidate ε
(:func:`~semdedup_core.audit.recommend.next_allocation`), and recorded under a lock so that two reviewers
finishing a batch at once add one batch, not two.

A batch is 20 pairs (fewer to stop at the next look: 30, 35, 40, 45, 50, 60, …, 100 % of the budget). It aims
at what the next look can settle: the ε above the recommendation that its pairs could make hold. When no ε is
testable or within reach yet, the batch continues the first draw's √N allocation — the one a larger first
draw would have made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..results import io
from .design import DEFAULT_BATCH, Design, load_design, population_of, sample_path, save_design
from .labels import LabelStore, resolve
from .precision import Report, estimate_units, evidence, status
from .recommend import next_allocation
from .sample import add_batch, allocate, unit_verdicts

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results


def plan_next(design: Design, resolved: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """The next batch's pairs per band, or ``None`` and why there is none (the sample is fixed, pairs of
    this batch are still to judge, the decision is settled, or the budget is spent)."""
    return plan_next_units(design, unit_verdicts(design, resolved))


def plan_next_units(design: Design, verdict: np.ndarray, rep: Report | None = None) -> tuple[np.ndarray | None, str]:
    """:func:`plan_next` from each sampled pair's verdict (queue order; ``None`` where unjudged); ``rep``:
    their :func:`~semdedup_core.audit.precision.estimate_units` when already at hand."""
    if not design.plan.sequential:
        return None, "the review sample is fixed (drawn once); draw a sequential one to grow it batch by batch"
    rep = rep if rep is not None else estimate_units(design, verdict)
    if rep.enough:
        return None, rep.stop
    if rep.sample["to_judge"] > 0:
        return None, f"{rep.sample['to_judge']:,} pairs of this batch are still to judge"
    size = min(DEFAULT_BATCH, design.to_next_look)  # a batch, or fewer to stop at the next look
    if not size:
        return None, "the budget is spent"
    reach = rep.guarantee.get("within_reach") or []
    if rep.guarantee.get("next_eps") is None or not reach:  # nothing to aim at yet: as the first draw
        alloc = allocate(design.band_sizes, design.n + size) - allocate(design.band_sizes, design.n)
        why = "no ε is testable yet" if rep.guarantee.get("next_eps") is None else "no ε is within reach yet"
        return np.maximum(alloc, 0), f"{size:,} more pairs, spread as the first draw was ({why})"
    grid = rep.rows["eps"].to_numpy()
    at = [int(g) for g in np.searchsorted(grid, reach)]
    ev = evidence(design, status(design, verdict), rep.rows, float(rep.guarantee["alpha_per_look"]))
    alloc, far = next_allocation(ev, at, rep.target, size, design.to_next_look)
    return alloc, f"{int(alloc.sum()):,} more pairs, sent where they decide ε = {reach[0]:g} to {grid[far]:g}"


def next_batch(results: Results, labels: Any = None) -> tuple[Design, str]:
    """Draw and record the next batch of the folder's sequential sample when it is due (see
    :func:`plan_next`); returns the sample (with the batch, or as it was) and what happened, in words.
    Raises :class:`SemDedupError` when no sample was drawn."""
    path = sample_path(results.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with io.locked(path.with_name(path.name + ".lock")):
        design = load_design(results)
        if design is None:
            raise SemDedupError(
                f"no review sample in {str(results.path)!r}; draw one with "
                f"`python -m semdedup_core audit sample {results.path} --n 100 --sequential --out queue.csv`"
            )
        resolved = resolve(LabelStore.for_results(results.path, labels).read())
        alloc, why = plan_next(design, resolved)
        if alloc is None or alloc.sum() == 0:
            return design, why
        pop = population_of(results, design.eps_max, design.bands)
        grown = add_batch(design, pop, alloc)
        save_design(grown, results.path)
        return grown, f"batch {grown.batch}: {why}"
