"""semdedup: find semantic duplicates in training data (SemDeDup, Abbas et al., 2023)."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import ClusterConfig, DedupConfig
from .errors import SemDedupError
from .pairwise import scores_in_cluster
from .pipeline import dedup
from .results import Results

__all__ = ["ClusterConfig", "DedupConfig", "Results", "SemDedupError", "dedup", "scores_in_cluster"]
