"""Duplicate pairs, groups and chains at a given ε, and a word-level diff of two texts.

Pure functions over a :class:`~semdedup_core.engine.results.Results` (or its arrays); the app only
draws what these return. Which items are removed always comes from ``Results.removed_mask`` — nothing
here re-implements the threshold.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError

if TYPE_CHECKING:
    import pandas as pd

    from ..engine.results import Results

SORTS = ("similarity", "borderline", "cluster")
"""``similarity``: most similar first. ``borderline``: closest above the threshold 1 − ε first (the pairs
worth auditing). ``cluster``: by cluster, then rank."""


def chain_roots(dup_row: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(root, depth)`` per item at one ε.

    A removed item points at its ``dup_of``; when that item is removed too, the chain continues
    (A → B → C: C duplicates B, which duplicates the kept A). ``root`` is the kept item at the end of the
    chain (the item itself when kept) and ``depth`` the number of steps to it (0 when kept).
    """
    n = len(dup_row)
    idx = np.arange(n, dtype=np.int64)
    if len(dup_row) and (dup_row.min() < -1 or dup_row.max() >= n):
        raise SemDedupError(f"dup_row must hold rows between -1 and {n - 1}; the results are damaged")
    parent = np.where(removed & (dup_row >= 0), dup_row, idx)
    depth = (parent != idx).astype(np.int64)
    for _ in range(max(1, int(n).bit_length()) + 1):  # pointer jumping: a chain of n halves in log2(n) passes
        grand = parent[parent]
        if np.array_equal(grand, parent):
            # a chain ends at a kept item; one that ends at a removed item with a dup_of went round a loop
            if not (removed[parent] & (dup_row[parent] >= 0)).any():
                return parent, depth
            break
        depth = depth + depth[parent]
        parent = grand
    # only a loop of dup_of never reaches a kept item (Results.load refuses folders with one)
    raise SemDedupError("the dup_of links form a loop, so a chain has no kept item; the results folder is damaged")


def pairs_frame(
    results: Results,
    eps: float,
    *,
    sort: str = "similarity",
    clusters: list[int] | None = None,
    sim_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """One row per item removed at ``eps``: ``row``, ``id``, ``cluster``, ``rank``, ``max_sim``,
    ``dup_row``, ``dup_of``, ``dup_removed`` (whether that earlier item is removed too: a chain),
    ``margin`` (how far ``max_sim`` lies above the threshold 1 − ε) and ``cross_cluster`` (whether
    ``dup_of`` lies in another cluster: only runs with probing compare across clusters).
    ``clusters`` keeps only those clusters; ``sim_range`` ``(low, high)`` only scores in it (a bound at
    −1 or 1 is open, so identical items scored a hair above 1 stay in)."""
    import pandas as pd

    if sort not in SORTS:
        raise SemDedupError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    removed = results.removed_mask(eps)
    mask = removed.copy()
    dup_row = results.dup_rows
    items = results.items
    scores = items["max_sim"].to_numpy()
    cluster = items["cluster"].to_numpy()
    if clusters:
        mask &= np.isin(cluster, np.asarray(clusters, dtype=cluster.dtype))
    if sim_range is not None:
        lo, hi = sim_range
        # the ends of the scale are open: float32 scores of identical items can exceed 1 slightly
        lo = -np.inf if lo <= -1.0 else lo
        hi = np.inf if hi >= 1.0 else hi
        mask &= (scores >= lo) & (scores <= hi)
    rows = np.flatnonzero(mask)
    ms = scores[rows].astype(np.float64)
    frame = pd.DataFrame(
        {
            "row": rows,
            "id": items["id"].to_numpy()[rows],
            "cluster": cluster[rows],
            "rank": items["rank"].to_numpy()[rows],
            "max_sim": ms,
            "dup_row": dup_row[rows],
            "dup_of": items["dup_of"].to_numpy()[rows],
            "dup_removed": removed[np.maximum(dup_row[rows], 0)] & (dup_row[rows] >= 0),
            "margin": ms - (1.0 - float(eps)),
            "cross_cluster": results.cross_cluster[rows],
        }
    )
    if sort == "similarity":
        order = np.lexsort((rows, -ms))
    elif sort == "borderline":
        order = np.lexsort((rows, frame["margin"].to_numpy()))
    else:
        order = np.lexsort((frame["rank"].to_numpy(), frame["cluster"].to_numpy()))
    return frame.iloc[order].reset_index(drop=True)


def page(frame: pd.DataFrame, number: int, per_page: int) -> tuple[pd.DataFrame, int]:
    """Page ``number`` (0-based, clipped to the last page) of ``frame`` and the number of pages."""
    if per_page < 1:
        raise SemDedupError(f"per_page must be at least 1, got {per_page}")
    n_pages = max(1, -(-len(frame) // per_page))
    number = min(max(0, int(number)), n_pages - 1)
    return frame.iloc[number * per_page : (number + 1) * per_page], n_pages


def groups_table(results: Results, roots: np.ndarray, removed: np.ndarray) -> pd.DataFrame:
    """Kept items that caused removals, most removals first: ``row``, ``id``, ``cluster``, ``removed``."""
    import pandas as pd

    counts = np.bincount(roots[removed], minlength=len(roots))
    rows = np.flatnonzero(counts)
    order = np.lexsort((rows, -counts[rows]))
    rows = rows[order]
    return pd.DataFrame(
        {
            "row": rows,
            "id": results.items["id"].to_numpy()[rows],
            "cluster": results.items["cluster"].to_numpy()[rows],
            "removed": counts[rows],
        }
    )


def group_tree(
    root: int, roots: np.ndarray, dup_row: np.ndarray, removed: np.ndarray, rank: np.ndarray
) -> list[tuple[int, int]]:
    """The group of kept item ``root``: ``(row, depth)`` in tree order — the root (depth 0), then each item
    it caused to be removed, each followed by the items removed as duplicates of *it* (a chain)."""
    members = np.flatnonzero((roots == root) & removed)
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


def showcase_pairs(results: Results, eps: float, n: int = 6) -> pd.DataFrame:
    """The ``n`` most convincing removals at ``eps`` for people new to the method: at most one per
    cluster, preferring pairs whose earlier item is kept (no chain to explain) and, when a ``text``
    column exists, texts that differ in more than whitespace; most similar first."""
    frame = pairs_frame(results, eps, sort="similarity")
    if frame.empty:
        return frame
    chained = frame["dup_removed"].to_numpy()
    same = np.zeros(len(frame), dtype=bool)
    if "text" in results.items.columns:
        text = results.items["text"].to_numpy()
        same = np.array(
            [str(text[a]).split() == str(text[b]).split() for a, b in zip(frame["row"], frame["dup_row"], strict=True)]
        )
    order = np.lexsort((-frame["max_sim"].to_numpy(), chained, same))
    frame = frame.iloc[order].drop_duplicates("cluster")
    return frame.head(n).reset_index(drop=True)


# -- texts -------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> tuple[list[tuple[str, bool]], list[tuple[str, bool]]]:
    """Split ``a`` and ``b`` into tokens (words and the whitespace between them) and mark each word
    that the other text lacks: ``([(token, differs), ...] for a, [...] for b)``. Whitespace never differs."""
    ta, tb = _TOKEN.findall(a or ""), _TOKEN.findall(b or "")
    wa = [i for i, t in enumerate(ta) if not t.isspace()]
    wb = [i for i, t in enumerate(tb) if not t.isspace()]
    da, db = [False] * len(ta), [False] * len(tb)
    sm = difflib.SequenceMatcher(a=[ta[i] for i in wa], b=[tb[i] for i in wb], autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal":
            for i in range(i1, i2):
                da[wa[i]] = True
            for j in range(j1, j2):
                db[wb[j]] = True
    return list(zip(ta, da, strict=True)), list(zip(tb, db, strict=True))


def snippet(value: Any, limit: int = 80) -> str:
    """A one-line, shortened version of a text for hover labels and tables."""
    text = " ".join(str(value).split()) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"
