"""semdedup: find semantic duplicates in training data (SemDeDup, Abbas et al., 2023).

The package is layered; a lower layer never imports a higher one:

- :mod:`semdedup_core.engine` — the method on arrays: config, normalising, k-means, the pairwise
  kernel, executors (local or Ray), the staged pipeline, removal rules, and the results folder
  (:mod:`~semdedup_core.engine.schema` owns its format, :class:`Results` reads it);
- :mod:`semdedup_core.ingest` — from raw data to embeddings: inputs, encoders, embedding, demos;
- :mod:`semdedup_core.explore` — what an explorer computes from a results folder: pairs, maps, exports;
- :mod:`semdedup_core.audit` — the audit loop: a review sample, verdicts, precision per ε with an interval;
- :mod:`semdedup_core.cli` — the command line over all of them.

The Streamlit app (``semdedup_app``, ``app.py``, ``pages/``) sits on top and is not part of this package.
"""

from __future__ import annotations

from ._version import __version__  # noqa: F401
from .engine.config import ClusterConfig, DedupConfig, ReferenceConfig
from .engine.pairwise import scores_in_cluster
from .engine.pipeline import dedup
from .engine.results import Results
from .errors import SemDedupError
from .ingest.demo import run_demo
from .ingest.embed import EmbedConfig, run_input
from .ingest.encoders import list_encoders

__all__ = [
    "ClusterConfig",
    "DedupConfig",
    "EmbedConfig",
    "ReferenceConfig",
    "Results",
    "SemDedupError",
    "dedup",
    "list_encoders",
    "run_demo",
    "run_input",
    "scores_in_cluster",
]
