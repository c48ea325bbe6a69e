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

``audited``: the paper's rule with the pairs reviewers judged ``not_duplicate`` taken out of the
comparison. An item whose ``dup_of`` pair is judged not a duplicate is scored again against the
earlier items of its cluster without that partner and without any other partner judged not a duplicate
of it (:func:`audited_scores`); it goes only if another earlier item is still above ``1 − ε``, and that
item becomes the partner that justifies its removal. The rescored column is computed once per
(run, verdicts), so every ε stays a filter.

Scores are stored as float32; every comparison is made in float64 against ``1 − ε`` computed in
float64, so a count, a mask, a page and an export always agree at the boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SemDedupError

if TYPE_CHECKING:
    from .clusters import ClusterIndex


def threshold(eps: float | np.ndarray) -> float | np.ndarray:
    """The similarity an item's score must exceed to be removed at ``eps``: ``1 − ε`` in float64."""
    return 1.0 - np.asarray(eps, dtype=np.float64) if np.ndim(eps) else 1.0 - float(eps)


def threshold32(thr: float | np.ndarray) -> np.float32 | np.ndarray:
    """The largest float32 at or below ``thr`` (float64): for a float32 score ``s``, ``s > thr`` in float64
    exactly when ``s > threshold32(thr)`` in float32 — so a float32 column is filtered, counted and
    searched without a float64 copy, with the very result of the float64 comparison."""
    t = np.asarray(thr, dtype=np.float64)
    f = t.astype(np.float32)
    over = f.astype(np.float64) > t
    f = np.where(over, np.nextafter(f, np.float32(-np.inf)), f).astype(np.float32)
    return f if np.ndim(thr) else np.float32(f)


def removed_by_score(scores: np.ndarray | float, eps: float) -> np.ndarray | bool:
    """The paper's rule: ``score > 1 − ε``, compared in float64 (a mask for an array, a bool for one score;
    a float32 array is compared with :func:`threshold32`, which gives the same mask without a copy)."""
    if np.ndim(scores) == 0:
        return bool(float(scores) > threshold(eps))
    scores = np.asarray(scores)
    if scores.dtype == np.float32:
        return scores > threshold32(threshold(eps))
    return scores.astype(np.float64, copy=False) > threshold(eps)


def n_above(sorted_scores: np.ndarray, eps: float | np.ndarray) -> int | np.ndarray:
    """How many of the ascending ``sorted_scores`` (float32 or float64) :func:`removed_by_score` removes at
    ``eps`` (a number or an array of them): O(log n) each."""
    thr = threshold(eps)
    key = threshold32(thr) if sorted_scores.dtype == np.float32 else thr
    above = len(sorted_scores) - np.searchsorted(sorted_scores, key, side="right")  # scores <= 1 - eps stay
    return int(above) if np.ndim(above) == 0 else above


def first_above(sorted_scores: np.ndarray, eps: float) -> int:
    """The position in the ascending ``sorted_scores`` of the first score removed at ``eps``: the scores
    from there on are exactly those :func:`removed_by_score` removes."""
    return len(sorted_scores) - int(n_above(sorted_scores, eps))


def leaked_by_score(ref_sim: np.ndarray | float, eps: float) -> np.ndarray | bool:
    """Leakage at ``eps``: ``ref_sim > 1 − ε`` — the very filter of :func:`removed_by_score`, over the
    similarity to the nearest reference item (−1.0 where none was compared, never leaked)."""
    return removed_by_score(ref_sim, eps)


def _cluster_blocks(emb, work: list[tuple[np.ndarray, np.ndarray, int]], max_block_bytes: int):
    """``work``'s clusters ``(members in rank order, the rows to decide, depth)``, each with a function from
    rows to their embeddings as float32. The rows a cluster's decisions read (``members[:depth]`` and the
    rows to decide) of consecutive clusters are read together, one sorted request of at most about
    ``max_block_bytes``: an array read on demand (the explorer's embeddings are read with positioned reads,
    never memory-mapped) costs one request per group of clusters, not one per block."""
    if isinstance(emb, np.ndarray):  # in memory or memory-mapped: indexing is cheap, read as asked
        for item in work:
            yield (*item, lambda rows: np.asarray(emb[rows], dtype=np.float32))
        return
    need = [np.concatenate([members[:depth], rows]) for members, rows, depth in work]
    row_bytes = max(1, int(emb.shape[1]) * 4)
    i = 0
    while i < len(need):
        j, size = i, 0
        while j < len(need) and (j == i or (size + len(need[j])) * row_bytes <= max_block_bytes):
            size += len(need[j])
            j += 1
        union = np.unique(np.concatenate(need[i:j]))
        local = np.asarray(emb[union], dtype=np.float32)
        for item in work[i:j]:
            yield (*item, lambda rows, union=union, local=local: local[np.searchsorted(union, rows)])
        i = j


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
    work = []
    for c in np.unique(cluster_of[chain]):
        members = clusters.members(c)
        todo = members[chain[members]]  # chain members of this cluster, in rank order
        depth = int(rank[todo[-1]])  # nothing after the last chain member matters
        work.append((members, todo, depth))
    for members, todo, depth, rows_of in _cluster_blocks(emb, work, max_block_bytes):
        e = rows_of(members[:depth])
        kept = ~removed[members[:depth]]
        step = max(1, max_block_bytes // max(1, depth * 4))
        for s in range(0, len(todo), step):
            block = todo[s : s + step]
            sims = rows_of(block) @ e.T  # len(block) × depth
            for row, item in enumerate(block):  # in rank order: earlier decisions feed later ones
                r = int(rank[item])
                hit = bool(np.any(sims[row, :r][kept[:r]].astype(np.float64) > thr))
                removed[item] = hit
                if r < depth:
                    kept[r] = not hit
    return removed


@dataclass(frozen=True)
class Audited:
    """The ``audited`` rule's column: ``score`` (float32, the paper's ``max_sim`` where nothing was
    judged not a duplicate) and ``partner`` (row of the item that justifies a removal, -1 for none);
    ``rows`` (the items scored again) with their paper's scores ``old`` (float64), ``paper_sorted`` (the
    paper's scores, float32 or float64, ascending) and ``excluded`` (pairs judged ``not_duplicate`` that apply: both
    items in one cluster of this run).

    Scoring again only ever lowers a score (a partner is taken out, none is added), so a count at ε is
    the paper's count (O(log n)) less the rescored items that drop to or below ``1 − ε``: no sort of the
    whole column for each new verdict."""

    score: np.ndarray
    partner: np.ndarray
    rows: np.ndarray
    old: np.ndarray
    paper_sorted: np.ndarray
    excluded: int

    @property
    def rescored(self) -> int:
        return len(self.rows)

    def removed(self, eps: float) -> np.ndarray:
        return removed_by_score(self.score, eps)

    def n_removed(self, eps: float | np.ndarray) -> int | np.ndarray:
        thr = np.atleast_1d(threshold(eps))[:, None]
        paper = np.atleast_1d(n_above(self.paper_sorted, np.atleast_1d(np.asarray(eps, dtype=np.float64))))
        new = self.score[self.rows].astype(np.float64)[None, :]
        dropped = ((self.old[None, :] > thr) & ~(new > thr)).sum(axis=1)
        removed = paper - dropped
        return int(removed[0]) if np.ndim(eps) == 0 else removed


def audited_scores(
    max_sim: np.ndarray,
    dup_idx: np.ndarray,
    clusters: ClusterIndex,
    rank: np.ndarray,
    emb: np.ndarray,
    not_dup_a: np.ndarray,
    not_dup_b: np.ndarray,
    paper_sorted: np.ndarray | None = None,
    cluster_of: np.ndarray | None = None,
    max_block_bytes: int = 64 * 2**20,
    probes: np.ndarray | None = None,
    position: np.ndarray | None = None,
) -> Audited:
    """The ``audited`` rule's scores and partners.

    ``not_dup_a``/``not_dup_b``: rows of the pairs judged ``not_duplicate`` (either order; -1 for an id
    not in this run, ignored). Only items whose own ``dup_of`` pair is among them change: each is scored
    again against the earlier items of its cluster (rank order, ties to the lower position as in the
    paper's kernel) with every partner judged not a duplicate of it left out; with none left its score
    is -1 and it has no partner. ``paper_sorted``: ``max_sim`` sorted (float32 or float64), and ``cluster_of``: each row's cluster (both
    computed when not given). ``probes``/``position`` (a run with ``--probe P``): each item's own and
    probed clusters and its place in the global keep order; an item is then scored again against the
    items earlier in that order in those clusters (ties to the earlier one), as the probing run scored it.
    """
    score = np.asarray(max_sim, dtype=np.float32).copy()
    partner = np.asarray(dup_idx, dtype=np.int64).copy()
    a = np.asarray(not_dup_a, dtype=np.int64)
    b = np.asarray(not_dup_b, dtype=np.int64)
    ok = (a >= 0) & (b >= 0) & (a != b)
    a, b = a[ok], b[ok]
    cluster_of = clusters.labels() if cluster_of is None else np.asarray(cluster_of, dtype=np.int64)
    if probes is not None and position is not None:
        todo = _audited_probed(score, partner, emb, a, b, clusters, probes, position)
        if paper_sorted is None:
            paper_sorted = np.sort(np.asarray(max_sim, dtype=np.float32).astype(np.float64))
        old = np.asarray(max_sim, dtype=np.float32)[todo].astype(np.float64)
        return Audited(score, partner, todo, old, paper_sorted, int(len(a)))
    same = cluster_of[a] == cluster_of[b]
    a, b = a[same], b[same]
    later = np.where(rank[a] > rank[b], a, b)
    earlier = np.where(rank[a] > rank[b], b, a)
    todo = np.unique(later[partner[later] == earlier])
    if len(todo):
        excluded: dict[int, list[int]] = {}
        for item, other in zip(later.tolist(), earlier.tolist(), strict=True):
            excluded.setdefault(item, []).append(other)
        work = []
        for c in np.unique(cluster_of[todo]):
            members = clusters.members(c)
            items = todo[cluster_of[todo] == c]
            items = items[np.argsort(rank[items], kind="stable")]
            work.append((members, items, int(rank[items[-1]])))
        for members, items, depth, rows_of in _cluster_blocks(emb, work, max_block_bytes):
            e = rows_of(members[:depth])
            step = max(1, max_block_bytes // max(1, depth * 4))
            for s in range(0, len(items), step):
                block = items[s : s + step]
                sims = rows_of(block) @ e.T  # len(block) × depth
                for row, item in enumerate(block):
                    r = int(rank[item])
                    cand = sims[row, :r].astype(np.float64)
                    cand[rank[np.asarray(excluded[int(item)], dtype=np.int64)]] = -np.inf
                    j = int(np.argmax(cand)) if r else 0
                    if r == 0 or not np.isfinite(cand[j]):
                        score[item], partner[item] = -1.0, -1
                    else:
                        score[item], partner[item] = cand[j], members[j]
    if paper_sorted is None:
        paper_sorted = np.sort(np.asarray(max_sim, dtype=np.float32).astype(np.float64))
    old = np.asarray(max_sim, dtype=np.float32)[todo].astype(np.float64)
    return Audited(score, partner, todo, old, paper_sorted, int(len(a)))


def _audited_probed(
    score: np.ndarray,
    partner: np.ndarray,
    emb: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    clusters: ClusterIndex,
    probes: np.ndarray,
    position: np.ndarray,
) -> np.ndarray:
    """The audited rule's rescoring for a probing run (see :func:`audited_scores`); fills ``score`` and
    ``partner`` in place and returns the rescored rows."""
    later = np.where(position[a] > position[b], a, b)
    earlier = np.where(position[a] > position[b], b, a)
    todo = np.unique(later[partner[later] == earlier])
    excluded: dict[int, list[int]] = {}
    for item, other in zip(later.tolist(), earlier.tolist(), strict=True):
        excluded.setdefault(item, []).append(other)
    for item in todo.tolist():
        cand = np.concatenate([clusters.members(int(c)) for c in probes[item] if c >= 0])
        cand = cand[(position[cand] < position[item]) & ~np.isin(cand, excluded[item])]
        if not len(cand):
            score[item], partner[item] = -1.0, -1
            continue
        cand = cand[np.argsort(position[cand], kind="stable")]  # ties go to the earlier item
        sims = np.asarray(emb[np.sort(cand)], dtype=np.float32) @ np.asarray(emb[item], dtype=np.float32)
        sims = sims[np.argsort(np.argsort(cand))]  # back to cand's (global) order
        j = int(np.argmax(sims.astype(np.float64)))
        score[item], partner[item] = sims[j], cand[j]
    return todo


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
