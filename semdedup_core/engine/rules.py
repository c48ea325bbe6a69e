"""Removal rules at a threshold: the one place that decides whether an item is removed at ε.

``paper`` (SemDeDup's rule, the default): an item goes iff its similarity to *any* earlier item of its
cluster exceeds ``1 − ε`` — one column filter (:func:`removed_by_score`). It removes chains: with A≈B
and B≈C, B and C both go even though B, the item C resembles, is itself removed.

``kept-only`` (conservative): an item goes iff it resembles an earlier item that is *kept*. Every item
it removes the paper's rule removes too. An item whose ``dup_of`` the paper's rule keeps goes under
both rules, so only chain members (whose ``dup_of`` is itself removed) need their similarities again;
those are computed in bounded blocks from the stored embeddings. With probing (``probe > 0``) an item's
earlier items are those before it in the global keep order, in its own and its probed clusters; chain
members are then decided one by one in that order.

Leakage uses the same filter over another column: an item is *leaked* at ε iff ``ref_sim > 1 − ε``,
its similarity to the most similar reference (held-out) item it was compared with
(:func:`leaked_by_score`).

Scores are stored as float32; every comparison is made in float64 against ``1 − ε`` computed in
float64, so a count, a mask, a page and an export always agree at the boundary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import SemDedupError

if TYPE_CHECKING:
    from .clusters import ClusterIndex

RULES = ("paper", "kept-only")


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise SemDedupError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def check_eps(eps: float) -> float:
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise SemDedupError(f"eps must be a number between 0 and 2, got {eps!r}") from None
    if not 0.0 <= eps <= 2.0:
        raise SemDedupError(f"eps must be between 0 and 2 (similarity threshold 1 - eps), got {eps}")
    return eps


def threshold(eps: float | np.ndarray) -> float | np.ndarray:
    """The similarity an item's score must exceed to be removed at ``eps``: ``1 − ε`` in float64."""
    return 1.0 - np.asarray(eps, dtype=np.float64) if np.ndim(eps) else 1.0 - float(eps)


def removed_by_score(scores: np.ndarray | float, eps: float) -> np.ndarray | bool:
    """The paper's rule: ``score > 1 − ε``, compared in float64 (a mask for an array, a bool for one score)."""
    if np.ndim(scores) == 0:
        return bool(float(scores) > threshold(eps))
    return np.asarray(scores).astype(np.float64, copy=False) > threshold(eps)


def leaked_by_score(ref_sim: np.ndarray | float, eps: float) -> np.ndarray | bool:
    """Leakage at ``eps``: ``ref_sim > 1 − ε`` — the very filter of :func:`removed_by_score`, over the
    similarity to the nearest reference item (−1.0 where none was compared, never leaked)."""
    return removed_by_score(ref_sim, eps)


def removed_kept_only(
    max_sim: np.ndarray,
    dup_idx: np.ndarray,
    clusters: ClusterIndex,
    rank: np.ndarray,
    emb: np.ndarray,
    eps: float,
    max_block_bytes: int = 64 * 2**20,
    *,
    probes: np.ndarray | None = None,
    position: np.ndarray | None = None,
) -> np.ndarray:
    """Mask of items removed at ``eps`` under the ``kept-only`` rule.

    ``dup_idx``: row of each item's ``dup_of`` (-1 for none); ``clusters``: item rows grouped by
    cluster, each cluster in rank order; ``emb``: unit embeddings. For a run with probing, ``probes``
    (each item's own and probed clusters) and ``position`` (each item's place in the global order).
    """
    thr = threshold(eps)
    removed = removed_by_score(max_sim, eps)
    chain = removed & (dup_idx >= 0) & removed[np.maximum(dup_idx, 0)]
    if not chain.any():
        return removed
    if probes is not None:
        if position is None:
            raise SemDedupError("the kept-only rule of a probing run needs each item's global position")
        return _kept_only_probed(removed, chain, clusters, probes, position, emb, thr)
    cluster_of = clusters.labels()
    for c in np.unique(cluster_of[chain]):
        members = clusters.members(c)
        todo = members[chain[members]]  # chain members of this cluster, in rank order
        depth = int(rank[todo[-1]])  # nothing after the last chain member matters
        e = np.asarray(emb[members[:depth]], dtype=np.float32)
        kept = ~removed[members[:depth]]
        step = max(1, max_block_bytes // max(1, depth * 4))
        for s in range(0, len(todo), step):
            block = todo[s : s + step]
            sims = np.asarray(emb[block], dtype=np.float32) @ e.T  # len(block) × depth
            for row, item in enumerate(block):  # in rank order: earlier decisions feed later ones
                r = int(rank[item])
                hit = bool(np.any(sims[row, :r][kept[:r]].astype(np.float64) > thr))
                removed[item] = hit
                if r < depth:
                    kept[r] = not hit
    return removed


def _kept_only_probed(
    removed: np.ndarray,
    chain: np.ndarray,
    clusters: ClusterIndex,
    probes: np.ndarray,
    position: np.ndarray,
    emb: np.ndarray,
    thr: float,
) -> np.ndarray:
    """The kept-only decision for the chain members of a probing run, in global order: an item stays
    unless it resembles (above ``thr``) an earlier kept item of its own or its probed clusters."""
    kept = ~removed
    todo = np.flatnonzero(chain)
    todo = todo[np.argsort(position[todo], kind="stable")]
    for item in todo:  # in global order: earlier decisions feed later ones
        cand = np.concatenate([clusters.members(int(c)) for c in probes[item] if c >= 0])
        cand = cand[(position[cand] < position[item]) & kept[cand]]
        hit = bool(
            len(cand)
            and np.any(
                (np.asarray(emb[np.sort(cand)], dtype=np.float32) @ np.asarray(emb[item])).astype(np.float64) > thr
            )
        )
        removed[item] = hit
        kept[item] = not hit
    return removed
