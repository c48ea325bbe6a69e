"""Duplicate pairs, groups and chains at a given ε, and a word-level diff of two texts.

Pure functions over a :class:`~semdedup_core.results.results.Results` (or its arrays); the app only
draws what these return. Which items are removed always comes from the rule of
:mod:`semdedup_core.kernels.rules` (``Results.n_removed``, ``removed_by_score``) — nothing here
re-implements the threshold. The orders come from the scores sorted once per run
(``Results.score_order``), so a page of pairs reads only its own rows, whatever the size of the run.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import removed_by_score, threshold32
from .clusters import scores_by_cluster

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

SORTS = ("similarity", "borderline", "cluster")
"""``similarity``: most similar first. ``borderline``: closest above the threshold 1 − ε first (the pairs
worth auditing). ``cluster``: by cluster, then rank."""


def _bounds(sorted_scores: np.ndarray, sim_range: tuple[float, float] | None) -> tuple[int, int]:
    """Positions ``[lo, hi)`` of the ascending ``sorted_scores`` (float32) that lie in ``sim_range``
    (compared in float64; a bound at −1 or 1 is open: identical items may score a hair above 1)."""
    if sim_range is None:
        return 0, len(sorted_scores)
    low, high = float(sim_range[0]), float(sim_range[1])
    lo = 0 if low <= -1.0 else int(np.searchsorted(sorted_scores, -threshold32(-low), side="left"))
    hi = len(sorted_scores) if high >= 1.0 else int(np.searchsorted(sorted_scores, threshold32(high), side="right"))
    return lo, max(lo, hi)


def removed_order(
    results: Results,
    eps: float,
    sort: str = "similarity",
    clusters: list[int] | None = None,
    sim_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """The rows the paper's rule removes at ``eps``, in the order of ``sort`` (see :data:`SORTS`; ties in
    row order), only those of ``clusters`` and with a score in ``sim_range`` when given.

    Without a cluster filter this is a slice of an order :class:`Results` sorts once (no work per ε);
    ``cluster`` order is one pass over the scores in cluster order; a cluster filter reads those clusters."""
    if sort not in SORTS:
        raise SemDedupError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    n = results.n_items
    m = int(results.n_removed(eps))
    s = results.sorted_scores
    lo, hi = _bounds(s, sim_range)
    if clusters:
        k = results.clusters.n_clusters
        wanted = sorted({int(c) for c in clusters if 0 <= int(c) < k})
        members = np.concatenate([results.clusters.members(c) for c in wanted]) if wanted else np.empty(0, np.int64)
        scores = results.column("max_sim")[members]
        keep = removed_by_score(scores, eps) & _in_range(scores, sim_range)
        rows, scores = members[keep], scores[keep]
        if sort == "similarity":
            return rows[np.lexsort((rows, -scores.astype(np.float64)))]
        if sort == "borderline":
            return rows[np.lexsort((rows, scores))]
        return rows
    if sort == "borderline":  # ascending from the threshold
        return results.score_order()[max(n - m, lo) : hi]
    if sort == "similarity":  # descending from the top
        return results.score_order(descending=True)[n - hi : min(m, n - lo)]
    by_cluster = scores_by_cluster(results)
    keep = removed_by_score(by_cluster, eps)
    if sim_range is not None:
        keep &= _in_range(by_cluster, sim_range)
    return results.clusters.order[np.flatnonzero(keep)]


def _in_range(scores: np.ndarray, sim_range: tuple[float, float] | None) -> np.ndarray:
    if sim_range is None:
        return np.ones(len(scores), dtype=bool)
    low, high = float(sim_range[0]), float(sim_range[1])
    s = np.asarray(scores, dtype=np.float64)
    return ((s >= low) | (low <= -1.0)) & ((s <= high) | (high >= 1.0))


def pairs_rows(results: Results, eps: float, rows: np.ndarray) -> pd.DataFrame:
    """The pairs of the removed items ``rows`` (in that order): ``row``, ``id``, ``cluster``, ``rank``,
    ``max_sim``, ``dup_row``, ``dup_of``, ``dup_removed`` (that earlier item is removed too: a chain),
    ``margin`` (``max_sim`` above 1 − ε) and ``cross_cluster`` (``dup_of`` in another cluster). Reads
    only those rows."""
    import pandas as pd

    rows = np.asarray(rows, dtype=np.int64)
    scores = results.column("max_sim")
    cluster = results.column("cluster")
    dup = np.asarray(results.dup_rows[rows], dtype=np.int64)
    target = np.maximum(dup, 0)
    ms = scores[rows].astype(np.float64)
    text = results.rows(rows, ["id", "dup_of"])
    return pd.DataFrame(
        {
            "row": rows,
            "id": text["id"].to_numpy(),
            "cluster": cluster[rows],
            "rank": results.column("rank")[rows],
            "max_sim": ms,
            "dup_row": dup,
            "dup_of": text["dup_of"].to_numpy(),
            "dup_removed": (dup >= 0) & removed_by_score(scores[target], eps),
            "margin": ms - (1.0 - float(eps)),
            "cross_cluster": (dup >= 0) & (cluster[target] != cluster[rows]),
        }
    )


def pairs_frame(
    results: Results,
    eps: float,
    *,
    sort: str = "similarity",
    clusters: list[int] | None = None,
    sim_range: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """One row per item removed at ``eps`` (see :func:`pairs_rows` for the columns), in the order of
    ``sort``. ``clusters`` keeps only those clusters; ``sim_range`` ``(low, high)`` only scores in it (a
    bound at −1 or 1 is open, so identical items scored a hair above 1 stay in). For a big run, read a
    page of it with :func:`pairs_page`."""
    return pairs_rows(results, eps, removed_order(results, eps, sort, clusters, sim_range))


@dataclass(frozen=True)
class PairsPage:
    """One page of :func:`pairs_frame`: its rows (``frame``), the page ``number`` shown (clipped), the number
    of pages, how many pairs match in all (``total``) and of those how many cross clusters (probing runs)."""

    frame: pd.DataFrame
    number: int
    n_pages: int
    total: int
    cross_cluster: int


def pairs_page(
    results: Results,
    eps: float,
    number: int,
    per_page: int,
    *,
    sort: str = "similarity",
    clusters: list[int] | None = None,
    sim_range: tuple[float, float] | None = None,
) -> PairsPage:
    """Page ``number`` (0-based, clipped to the last page) of ``pairs_frame(results, eps, sort=sort,
    clusters=clusters, sim_range=sim_range)``, reading only that page's rows: what the Pairs page shows of
    a run of any size."""
    if per_page < 1:
        raise SemDedupError(f"per_page must be at least 1, got {per_page}")
    order = removed_order(results, eps, sort, clusters, sim_range)
    n_pages = max(1, -(-len(order) // per_page))
    number = min(max(0, int(number)), n_pages - 1)
    part = order[number * per_page : (number + 1) * per_page]
    cross = int(results.cross_cluster[order].sum()) if results.probe else 0
    return PairsPage(pairs_rows(results, eps, part), number, n_pages, len(order), cross)


def page(frame: pd.DataFrame, number: int, per_page: int) -> tuple[pd.DataFrame, int]:
    """Page ``number`` (0-based, clipped to the last page) of ``frame`` and the number of pages."""
    if per_page < 1:
        raise SemDedupError(f"per_page must be at least 1, got {per_page}")
    n_pages = max(1, -(-len(frame) // per_page))
    number = min(max(0, int(number)), n_pages - 1)
    return frame.iloc[number * per_page : (number + 1) * per_page], n_pages


SHOWCASE_SCAN = 200_000
""":func:`showcase_pairs` looks at most at this many of the most similar removals…"""
SHOWCASE_FIRST = 2_000
"""…in steps of this many, then four times as many each time."""


def showcase_pairs(results: Results, eps: float, n: int = 6, scan: int = SHOWCASE_SCAN) -> pd.DataFrame:
    """The ``n`` most convincing removals at ``eps`` for people new to the method: at most one per
    cluster, preferring pairs whose earlier item is kept (no chain to explain) and, when a ``text``
    column exists, texts that differ in more than whitespace; most similar first.

    Read from the top of the similarity order in growing steps, stopping as soon as the answer cannot
    change (``n`` clusters with a pair of the preferred kind), and after ``scan`` pairs at most."""
    import pandas as pd

    m = int(results.n_removed(eps))
    top = results.score_order(descending=True)[: min(m, max(1, scan))]
    frames, sames, good = [], [], set()
    start, step = 0, SHOWCASE_FIRST
    while start < len(top) or not frames:
        frame = pairs_rows(results, eps, top[start : start + step])
        same = _same_words(results, frame)
        frames.append(frame)
        sames.append(same)
        good.update(frame["cluster"].to_numpy()[~same & ~frame["dup_removed"].to_numpy()].tolist())
        if len(good) >= n:  # n clusters with a preferred pair: nothing further down can come first
            break
        start, step = start + step, step * 4
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if frame.empty:
        return frame
    same = np.concatenate(sames)
    order = np.lexsort((-frame["max_sim"].to_numpy(), frame["dup_removed"].to_numpy(), same))
    frame = frame.iloc[order].drop_duplicates("cluster")
    return frame.head(n).reset_index(drop=True)


def _same_words(results: Results, frame: pd.DataFrame) -> np.ndarray:
    """Whether each pair's two texts are the same words (differ at most in whitespace); all False
    without a ``text`` column."""
    if "text" not in results.columns or frame.empty:
        return np.zeros(len(frame), dtype=bool)
    texts = results.rows(np.concatenate([frame["row"], frame["dup_row"]]), ["text"])["text"].to_numpy()
    half = len(frame)
    return np.array([str(texts[i]).split() == str(texts[half + i]).split() for i in range(half)], dtype=bool)


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
