"""The audit loop: reviewers' verdicts on a designed sample turn into a measured precision for every ε.

- :mod:`~semdedup_core.audit.sample` — the review sample: stratified by similarity band, seeded,
  nested, recorded in the results folder (``audit/sample.parquet``);
- :mod:`~semdedup_core.audit.precision` — precision per ε with a 95 % interval, the true duplicates an ε
  keeps, and the recommended ε for a target precision;
- :mod:`~semdedup_core.audit.labelfile` — verdicts from a CSV (``audit import``), checked row by row.

The verdicts themselves live in the store of :mod:`semdedup_core.audit.labels`, shared by every run
over the same ids. Imports the engine; never ``ingest``, ``explore``, the CLI or the app.
"""

from __future__ import annotations

from .labelfile import import_labels, read_labels_file
from .precision import Report, default_grid, estimate, report
from .sample import Design, draw_sample, load_design, queue_frame, save_design, unit_verdicts

__all__ = [
    "Design",
    "Report",
    "default_grid",
    "draw_sample",
    "estimate",
    "import_labels",
    "load_design",
    "queue_frame",
    "read_labels_file",
    "report",
    "save_design",
    "unit_verdicts",
]
