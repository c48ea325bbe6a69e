"""Groups of duplicates at any ε: a kept item and everything removed because of it (chains included), from
one index built once per folder.

Under the paper's rule an item ``d`` is removed at ε when its score ``s_d > 1 − ε``; it then belongs to the
group of the kept item its chain of ``dup_of`` links ends at. As ε grows, groups only merge: when ``d`` is
removed, its group (``d`` and what was removed because of it) joins the group of the nearest item up its
chain that is still kept — the nearest ancestor whose score is *lower* than ``s_d``. That ancestor, the
*top* of ``d``, does not depend on ε, so the index stores, once, for every item with a ``dup_of``: its top,
the top's score, and how many items join with it (its subtree in the tree of tops). At any ε the removed
items are the first ``n_removed`` in score order; the ones whose top is kept start a group, and a group's
size is the sum of its starters' subtrees — one filter and one weighted count, whatever the chains' length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import n_above, threshold, threshold32
from ..results.rules import check_eps

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results


@dataclass(frozen=True)
class GroupIndex:
    """The ε-independent index (see the module docstring). ``order``: the items with a ``dup_of``, by score
    descending (ties by row) — the order ε removes them in; aligned with it, ``top_id`` (the item whose group
    each joins when removed, as a position in ``top_rows``: every row that is some item's top, ascending —
    the weighted count at an ε runs over these rows, not over every item), ``top_score`` and ``size`` (items
    joining with it, itself included)."""

    order: np.ndarray
    top_id: np.ndarray
    top_score: np.ndarray
    size: np.ndarray
    top_rows: np.ndarray

    @property
    def top(self) -> np.ndarray:
        """Each item's top as a row (aligned with ``order``)."""
        return self.top_rows[self.top_id]

    def ids_of(self, rows: np.ndarray) -> np.ndarray:
        """The positions in ``top_rows`` of those of ``rows`` that are some item's top."""
        at = np.minimum(np.searchsorted(self.top_rows, rows), max(len(self.top_rows) - 1, 0))
        return at[self.top_rows[at] == rows] if len(self.top_rows) else at[:0]


def build_index(scores: np.ndarray, dup_rows: np.ndarray, order: np.ndarray | None = None) -> GroupIndex:
    """The index of a run's scores and ``dup_of`` rows (a forest: every ``dup_of`` is an earlier item).
    ``order``: every row by score descending, ties by row, when the caller has it (``Results.score_order``)."""
    scores = np.asarray(scores, dtype=np.float32)
    dup = np.asarray(dup_rows, dtype=np.int64)
    n = len(scores)
    has = dup >= 0
    if order is None:
        order = np.lexsort((np.arange(n), -scores.astype(np.float64)))
    order = order[has[order]]
    top = np.where(has, dup, -1)
    todo = np.flatnonzero(has)
    # jump past ancestors at least as similar (what lies between an item and its top goes with it): pointer
    # jumping, log2 of the longest chain in a forest
    for _ in range(2 * n.bit_length() + 2):
        if not len(todo):
            break
        c = top[todo]
        jump = (scores[c] >= scores[todo]) & has[c]
        todo = todo[jump]
        top[todo] = top[c[jump]]
    if len(todo):  # only a loop of dup_of never settles (Results.load refuses folders with one)
        raise SemDedupError("the dup_of links form a loop, so a chain has no kept item; the results folder is damaged")
    size = _subtree_sizes(top, has)
    rows = np.int32 if n < 2**31 else np.int64  # the index of 20,000,000 items in ~0.33 GB
    tops = top[order]
    top_rows, top_id = np.unique(tops, return_inverse=True)
    return GroupIndex(
        order.astype(rows), top_id.astype(rows), scores[tops], size[order].astype(rows), top_rows.astype(rows)
    )


def _subtree_sizes(top: np.ndarray, has: np.ndarray) -> np.ndarray:
    """Per item, the items in its subtree of the tree of tops (itself included), deepest level first."""
    n = len(top)
    depth = has.astype(np.int64)  # the distance to `anc`, an ancestor in the tree of tops
    anc = np.where(has, top, -1)
    live = np.flatnonzero(has)
    live = live[has[anc[live]]]
    for _ in range(2 * n.bit_length() + 2):  # pointer doubling: log2 of the longest path of tops
        if not len(live):
            break
        a = anc[live]
        depth[live] += depth[a]
        anc[live] = anc[a]
        live = live[has[anc[live]]]
    size = np.ones(n, dtype=np.int64)
    deepest = int(depth.max(initial=0))
    key = (deepest - depth).astype(np.uint16 if deepest < 2**16 else np.int64)  # uint16: a radix sort, O(n)
    by_depth = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[by_depth], np.arange(deepest + 1), side="left")
    for level in range(deepest):  # deepest first: a level's items all lie below the next one's
        part = by_depth[bounds[level] : bounds[level + 1]]
        np.add.at(size, top[part], size[part])
    return size


def group_index(results: Results) -> GroupIndex:
    """The index of ``results``, built once per folder (:meth:`~semdedup_core.results.results.Results.memo`)."""
    return results.memo(
        "group_index", lambda: build_index(results.scores, results.dup_rows, results.score_order(descending=True))
    )


@dataclass(frozen=True)
class Groups:
    """The groups at one ε: ``n_removed`` items removed by ``n_groups`` kept items, the largest in ``table``
    (``row``, ``id``, ``cluster``, ``removed``). ``scores`` and ``thr`` decide what is removed."""

    index: GroupIndex
    n_removed: int
    n_groups: int
    table: pd.DataFrame
    scores: np.ndarray
    thr: np.float32
    cluster: np.ndarray | None = None  # each row's cluster where dup_of never leaves it (no probing)

    @property
    def rows(self) -> np.ndarray:
        """The removed items, most similar first."""
        return self.index.order[: self.n_removed]

    def members(self, root: int) -> np.ndarray:
        """The items removed because of the kept item ``root`` (chains included), ascending: the removed
        items that join ``root``, those that join them, and so on (a scan of the removed items' tops per
        step of the tree, only as deep as the group; where ``dup_of`` never leaves a cluster, only the
        removed items of ``root``'s cluster are scanned)."""
        index = self.index
        tops, rows = index.top_id[: self.n_removed], index.order[: self.n_removed]
        if self.cluster is not None:
            same = self.cluster[rows] == self.cluster[root]
            tops, rows = tops[same], rows[same]
        mark = np.zeros(len(index.top_rows), dtype=bool)  # by top id
        frontier = np.asarray([root])
        found = []
        while len(frontier):  # an item that joined a removed item is removed with it
            ids = index.ids_of(frontier)
            mark[ids] = True
            frontier = rows[mark[tops]]
            mark[ids] = False
            found.append(frontier)
        return np.sort(np.concatenate(found)).astype(np.int64)

    def tree(self, root: int, dup_row: np.ndarray, rank: np.ndarray) -> list[tuple[int, int]]:
        """The group of ``root`` as ``(row, depth)`` in tree order: the root (depth 0), then each item it
        caused to be removed, each followed by the items removed as duplicates of *it* (a chain)."""
        return group_tree(root, self.members(root), dup_row, rank)


def removal_groups(results: Results, eps: float, limit: int | None = None) -> Groups:
    """The groups of what the paper's rule removes at ``eps``, with the ``limit`` largest in ``table``: a
    filter over the removed items' tops and one weighted count (:class:`GroupIndex`)."""
    eps = check_eps(eps)
    index = group_index(results)
    m = int(n_above(results.sorted_scores, eps))
    thr = threshold32(threshold(eps))
    starts = index.top_score[:m] <= thr  # removed items whose top is kept: each starts a group there
    counts = np.bincount(index.top_id[:m][starts], weights=index.size[:m][starts], minlength=len(index.top_rows))
    ids = np.flatnonzero(counts > 0)
    rows, counts = index.top_rows[ids], counts[ids]
    table = groups_frame(results, rows, counts.astype(np.int64), limit)
    cluster = None if results.probe else np.asarray(results.column("cluster"))
    return Groups(index, m, len(rows), table, results.scores, thr, cluster)


def groups_frame(results: Results, rows: np.ndarray, counts: np.ndarray, limit: int | None = None) -> pd.DataFrame:
    """Kept items ``rows`` with their removal ``counts``, most removals first (ties: the lower row), the
    ``limit`` largest without sorting them all: ``row``, ``id``, ``cluster``, ``removed``."""
    import pandas as pd

    if limit is not None and limit < len(counts):
        kth = np.partition(counts, len(counts) - limit)[len(counts) - limit]
        above = np.flatnonzero(counts > kth)
        ties = np.flatnonzero(counts == kth)[: limit - len(above)]  # rows ascending: the first rows win ties
        pick = np.concatenate([above, ties])
        rows, counts = rows[pick], counts[pick]
    order = np.lexsort((rows, -counts))[:limit]
    rows, counts = rows[order].astype(np.int64), counts[order].astype(np.int64)
    return pd.DataFrame(
        {
            "row": rows,
            "id": results.rows(rows, ["id"])["id"].to_numpy(),
            "cluster": results.column("cluster")[rows],
            "removed": counts,
        }
    )


def group_tree(root: int, members: np.ndarray, dup_row: np.ndarray, rank: np.ndarray) -> list[tuple[int, int]]:
    """``(row, depth)`` in tree order: ``root``, then its ``members`` nested under their ``dup_of``."""
    children: dict[int, list[int]] = {}
    for m in members[np.argsort(rank[members], kind="stable")]:
        children.setdefault(int(dup_row[m]), []).append(int(m))
    out: list[tuple[int, int]] = []
    stack = [(int(root), 0)]
    while stack:
        row, d = stack.pop()
        out.append((row, d))
        stack.extend((c, d + 1) for c in reversed(children.get(row, [])))
    return out
