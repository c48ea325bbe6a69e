"""The audit loop: reviewers' verdicts on a designed sample turn into a measured precision for every ε.

- :mod:`~semdedup_core.audit.design` — the population, its similarity bands (exact copies in band 0), the
  plan (fixed or sequential, the target, the share judged twice) and ``audit/sample.parquet``;
- :mod:`~semdedup_core.audit.sample` — drawing the sample: stratified by similarity band, seeded, nested;
- :mod:`~semdedup_core.audit.sequential` — a sequential sample's next batch, sent where it decides ε;
- :mod:`~semdedup_core.audit.estimator` — the stratified estimate and its interval, on arrays;
- :mod:`~semdedup_core.audit.recommend` — the recommended ε with its guarantee (fixed-sequence testing,
  corrected for a sequential sample's looks), the stopping rule, the next batch's allocation;
- :mod:`~semdedup_core.audit.precision` — precision per ε with a 95 % interval, the sensitivity range, the
  true duplicates an ε keeps, the recommendation and whether enough is judged;
- :mod:`~semdedup_core.audit.agreement` — a team: pairs judged twice, Cohen's κ, disagreements to settle;
- :mod:`~semdedup_core.audit.labelfile` — verdicts from a CSV (``audit import``), checked row by row.

The verdicts themselves live in the store of :mod:`semdedup_core.audit.labels`, shared by every run
over the same ids. Imports the engine; never ``ingest``, ``explore``, the CLI or the app.
"""

from __future__ import annotations

from .agreement import cohen_kappa, disputes, kappa_table, reviewer_todo
from .design import Design, Plan, load_design, save_design
from .labelfile import import_labels, read_labels_file
from .precision import Report, default_grid, estimate, report
from .sample import draw_sample, queue_frame, unit_verdicts
from .sequential import next_batch

__all__ = [
    "Design",
    "Plan",
    "Report",
    "cohen_kappa",
    "default_grid",
    "disputes",
    "draw_sample",
    "estimate",
    "import_labels",
    "kappa_table",
    "load_design",
    "next_batch",
    "queue_frame",
    "read_labels_file",
    "report",
    "reviewer_todo",
    "save_design",
    "unit_verdicts",
]
