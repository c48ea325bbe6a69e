"""semdedup: find semantic duplicates in training data (SemDeDup, Abbas et al., 2023)."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import ClusterConfig, DedupConfig
from .demo import run_demo
from .embed import EmbedConfig, run_input
from .encoders import list_encoders
from .errors import SemDedupError
from .pairwise import scores_in_cluster
from .pipeline import dedup
from .results import Results

__all__ = [
    "ClusterConfig",
    "DedupConfig",
    "EmbedConfig",
    "Results",
    "SemDedupError",
    "dedup",
    "list_encoders",
    "run_demo",
    "run_input",
    "scores_in_cluster",
]
