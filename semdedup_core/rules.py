"""Removal rules at a threshold.

``paper`` (SemDeDup's rule, the default): an item goes iff its similarity to *any* earlier item of its
cluster exceeds ``1 − ε`` — one column filter. It removes chains: with A≈B and B≈C, B and C both go
even though B, the item C resembles, is itself removed.

``kept-only`` (conservative): an item goes iff it resembles an earlier item that is *kept*. Every item
it removes the paper's rule removes too. An item whose ``dup_of`` the paper's rule keeps goes under
both rules, so only chain members (whose ``dup_of`` is itself removed) need their similarities again;
those are computed in bounded blocks from the stored embeddings.
"""

from __future__ import annotations

import numpy as np

from .errors import SemDedupError

RULES = ("paper", "kept-only")


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise SemDedupError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    return rule


def removed_kept_only(
    max_sim: np.ndarray,
    dup_idx: np.ndarray,
    order: np.ndarray,
    offsets: np.ndarray,
    rank: np.ndarray,
    emb: np.ndarray,
    eps: float,
    max_block_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """Mask of items removed at ``eps`` under the ``kept-only`` rule.

    ``dup_idx``: row of each item's ``dup_of`` (-1 for none); ``order``/``offsets``: item rows grouped by
    cluster, each cluster in rank order (``order[offsets[c]:offsets[c+1]]``); ``emb``: unit embeddings.
    """
    thr = 1.0 - eps
    removed = max_sim.astype(np.float64) > thr
    chain = removed & (dup_idx >= 0) & removed[np.maximum(dup_idx, 0)]
    if not chain.any():
        return removed
    cluster_of = np.empty(len(max_sim), dtype=np.int64)
    cluster_of[order] = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    for c in np.unique(cluster_of[chain]):
        members = order[offsets[c] : offsets[c + 1]]
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
                hit = bool(np.any(sims[row, :r][kept[:r]] > thr))
                removed[item] = hit
                if r < depth:
                    kept[r] = not hit
    return removed
