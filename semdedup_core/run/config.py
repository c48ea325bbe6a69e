"""Frozen, validated configuration objects shared by the API, the CLI and the app."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import SemDedupError
from ..kernels.kmeans import KMEANS_BACKENDS

KEEP_POLICIES = ("hard", "easy", "random")
DEVICES = ("auto", "cpu", "cuda")


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SemDedupError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise SemDedupError(f"{name} must be {bound}, got {value}")


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise SemDedupError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


@dataclass(frozen=True)
class ClusterConfig:
    """Spherical k-means parameters.

    ``max_points_per_centroid`` bounds the training sample (``k * max_points_per_centroid`` points are
    sampled when there are more); every item is then assigned with the final normalised centroids.
    ``backend``: ``faiss``, ``torch`` (:mod:`semdedup_core.kernels.kmeans`), or ``auto`` — faiss on a CPU
    and on a GPU when faiss has GPU support, torch on a GPU otherwise. The backends find different
    (equally good) centroids, so the backend is part of a run's parameters; ``run.json`` records
    which one ran (``backend``).
    """

    n_clusters: int
    niter: int = 20
    seed: int = 0
    max_points_per_centroid: int = 256
    device: str = "auto"
    backend: str = "auto"

    def __post_init__(self) -> None:
        _check_int("n_clusters", self.n_clusters, 1)
        _check_int("niter", self.niter, 1)
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_int("max_points_per_centroid", self.max_points_per_centroid, 1)
        _check_device(self.device)
        if self.backend not in KMEANS_BACKENDS:
            raise SemDedupError(f"backend must be one of {', '.join(KMEANS_BACKENDS)}, got {self.backend!r}")


@dataclass(frozen=True)
class DedupConfig:
    """How each cluster is ordered and scored.

    ``keep``: ``hard`` keeps the item farthest from its centroid (the paper's default), ``easy`` the
    nearest, ``random`` a seeded shuffle. ``block_size`` is the number of rows compared at once in the
    pairwise step (``None`` picks it from ``max_block_bytes``); it changes memory and speed, never results.
    ``precision`` ``auto`` uses float16 on CUDA and float32 on CPU.

    ``probe``: ``0`` (the default) is the paper's rule — an item is compared with the earlier items of
    its own cluster. With ``probe = P > 0`` its ``max_sim``/``dup_of`` is its highest cosine to any item
    earlier in one global keep order (``hard``: farthest from its own centroid first; ``easy``: nearest
    first; ``random``: a seeded key per item; ties by input order) that lies in its own cluster or in one
    of the ``P`` clusters whose centroids are nearest to it. This finds near-copies split across cluster
    boundaries at about ``1 + P`` times the pairwise cost.
    """

    keep: str = "hard"
    seed: int = 0
    device: str = "auto"
    block_size: int | None = None
    max_block_bytes: int = 256 * 2**20
    precision: str = "auto"
    probe: int = 0

    def __post_init__(self) -> None:
        if self.keep not in KEEP_POLICIES:
            raise SemDedupError(f"keep must be one of {', '.join(KEEP_POLICIES)}, got {self.keep!r}")
        _check_int("seed", self.seed, 0, 2**31 - 1)
        _check_device(self.device)
        if self.block_size is not None:
            _check_int("block_size", self.block_size, 1)
        _check_int("max_block_bytes", self.max_block_bytes, 2**16)
        if self.precision not in ("auto", "float32", "float16"):
            raise SemDedupError(f"precision must be auto, float32 or float16, got {self.precision!r}")
        _check_int("probe", self.probe, 0)


DEFAULT_REFERENCE_PROBE = 12
"""Clusters each reference item is filed under besides its nearest one. The smallest count that found
≥ 99 % of the true leaks (nearest reference cosine > 0.9) in every topic-clustered setting that
``bench/bench_leakage.py --strategies`` measures, with a margin (the hardest setting: 99.0 % at 8,
99.5 % at 12)."""


@dataclass(frozen=True)
class ReferenceConfig:
    """How a run's items are compared with a reference (held-out) set to find leaks.

    Each reference item is filed under its nearest centroid and the ``probe`` next nearest ones; each
    item of the run is compared with the reference items filed under its own cluster. ``probe=None``
    compares every item with every reference item (exact; for small sets). ``block_size``,
    ``max_block_bytes`` and the device come from the run's :class:`DedupConfig`.
    """

    probe: int | None = DEFAULT_REFERENCE_PROBE

    def __post_init__(self) -> None:
        if self.probe is not None:
            _check_int("reference probe", self.probe, 0)

    @property
    def exact(self) -> bool:
        return self.probe is None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass."""
    return dataclasses.asdict(cfg)
