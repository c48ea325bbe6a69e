"""semdedup: find semantic duplicates in training data (SemDeDup, Abbas et al., 2023).

The package is layered; a lower layer never imports a higher one (``tests/test_architecture.py``):

- :mod:`semdedup_core.kernels` — the method on arrays: the pairwise kernel, k-means, probing, the rules'
  arithmetic (pure functions, no files); :mod:`semdedup_core.media` — opening the user's files safely;
- :mod:`semdedup_core.results` — the results folder: its names, its lock, the checks on load, the items
  table, the rules table and :class:`Results`, the reader;
- :mod:`semdedup_core.run` — a run: configs, the stages over parts of the input, the executors that decide
  where each unit runs (this process or Ray), progress;
- :mod:`semdedup_core.ingest` — from raw data to embeddings: input readers, encoders, embedding, demos;
  :mod:`semdedup_core.audit` — verdicts, the review sample, precision per ε with an interval;
- :mod:`semdedup_core.explore` — what an explorer computes from a results folder: pairs, maps, exports;
- :mod:`semdedup_core.cli` — the command line over all of them, one module per command.

The Streamlit app (``semdedup_app``, ``app.py``, ``pages/``) sits on top and is not part of this package.
"""

from __future__ import annotations

from ._version import __version__  # noqa: F401
from .errors import SemDedupError
from .ingest.demo import run_demo
from .ingest.embed import EmbedConfig
from .ingest.encoders import list_encoders
from .ingest.raw import run_input
from .kernels.pairwise import scores_in_cluster
from .results.results import Results
from .run.config import ClusterConfig, DedupConfig, ReferenceConfig
from .run.pipeline import dedup

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
