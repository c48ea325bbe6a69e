"""The scoring stages over *buckets* of whole clusters (about ``SHARD_ITEMS`` items each; a cluster is never
split): every part sends each row to the bucket of its cluster (``shuffle``), and with probing also to the
bucket of every other cluster it probes, as a *visitor*; each bucket then scores its clusters and its
visitors (``score``) and compares its rows with the reference items filed under its clusters
(``leakage``), and sends each result back to the part the row came from.

Within a bucket, rows are ordered by their keep-order keys (:mod:`semdedup_core.kernels.order`): a row's
own cluster is scored by the paper's rule (:func:`~semdedup_core.kernels.pairwise.score_clusters`) and a
visitor against the items earlier than it in the global order of the clusters it probes
(:func:`~semdedup_core.kernels.pairwise.match_in_clusters`). The buckets are made from the global cluster
counts, and every partner is decided on exact cosines, so the results do not depend on the parts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..kernels.order import keep_keys
from ..kernels.pairwise import match_in_clusters, pair_dots, score_clusters
from ..results import io
from .cluster import load_assign
from .layout import Layout
from .prepare import read_rows
from .sources import Source

_OWN = ("gidx", "local", "label", "key", "ids")
_VISIT = ("v_local", "v_key", "v_clusters")
# the shuffle files carry row numbers, not vectors: a bucket reads its rows' vectors from the parts' files
# (:func:`_vectors`), where they are on disk once already


def bucket_bounds(counts: np.ndarray, shard_items: int) -> list[tuple[int, int]]:
    """Split clusters ``0..k-1`` into consecutive runs of about ``shard_items`` items (whole clusters)."""
    bounds, first = [], 0
    k = len(counts)
    total = 0
    for c in range(k):
        total += int(counts[c])
        if total >= shard_items or c == k - 1:
            bounds.append((first, c + 1))
            first, total = c + 1, 0
    return bounds


def shuffle_part(
    source: Source, layout: Layout, p: int, start: int, bounds: list[tuple[int, int]], keep: str, seed: int, probe: int
) -> int:
    """Send part ``p``'s rows to the buckets of their clusters (and, probing, as visitors to the buckets of
    the clusters they probe): ``shuffle/BBBBB/NNNNN.npz``, with each row's number in the part, global
    index, cluster, keep-order key and id (the bucket reads the vectors from the part's file)."""
    marker = layout.marker("shuffle", p)
    if marker.is_file():
        return 0
    labels, dist = load_assign(layout, p)
    n = len(labels)
    gidx = start + np.arange(n, dtype=np.int64)
    keys = keep_keys(dist, keep, seed, gidx)
    ids = source.ids(p)[np.load(layout.part(p) / "rows.npy")]
    firsts = np.array([a for a, _ in bounds])
    own_bucket = np.searchsorted(firsts, labels, side="right") - 1
    probes = np.load(layout.probes(p))[:, 1:] if probe else np.empty((n, 0), np.int64)
    probe_bucket = np.searchsorted(firsts, probes, side="right") - 1
    for b in np.unique(np.concatenate([own_bucket, probe_bucket.ravel()])):
        own = np.flatnonzero(own_bucket == b)
        arrays: dict[str, Any] = {
            "gidx": gidx[own],
            "local": own,
            "label": labels[own],
            "key": keys[own],
            "ids": np.asarray(ids[own], dtype=str),
        }
        if probe:
            here = probe_bucket == b
            visit = np.flatnonzero(here.any(axis=1))
            arrays.update(
                v_local=visit,
                v_key=keys[visit],
                v_clusters=np.where(here[visit], probes[visit], -1).astype(np.int64),
            )
        io.save_npz(layout.shuffle(int(b), p), **arrays)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return n


def _gather(layout: Layout, b: int, n_parts: int, names: tuple[str, ...]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The bucket's arrays ``names`` from every part's shuffle file, and the part of each row."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in names}
    part: list[np.ndarray] = []
    for p in range(n_parts):
        f = layout.shuffle(b, p)
        if not f.is_file():
            continue
        with np.load(f) as z:
            if names[0] not in z.files:
                continue
            for k in names:
                cols[k].append(z[k])
            part.append(np.full(len(z[names[0]]), p, dtype=np.int64))
    if not part:
        return {}, np.empty(0, np.int64)
    return {k: np.concatenate(v) for k, v in cols.items()}, np.concatenate(part)


def _vectors(layout: Layout, part: np.ndarray, local: np.ndarray) -> np.ndarray:
    """The unit vectors of rows ``local`` of parts ``part`` (aligned arrays), in that order, in memory."""
    parts = np.unique(part).tolist() or [0]
    if len(parts) == 1:  # one part: one read, no second copy
        return read_rows(layout, parts[0], local)
    out = None
    for p in parts:  # one part's rows at a time beside the result, not every part's at once
        at = part == p
        rows = read_rows(layout, p, local[at])
        if out is None:
            out = np.empty((len(local), rows.shape[1]), dtype=np.float32)
        out[at] = rows
    return out


def _own(
    layout: Layout, b: int, n_parts: int, first: int, last: int
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The bucket's own rows grouped by cluster, each cluster in keep order, with the groups' offsets."""
    a, part = _gather(layout, b, n_parts, _OWN)
    if not a:
        return {}, part, np.zeros(last - first + 1, np.int64)
    order = np.lexsort((a["key"], a["label"]))
    a = {k: v[order] for k, v in a.items()}
    a["emb"] = _vectors(layout, part[order], a["local"])
    offsets = np.zeros(last - first + 1, dtype=np.int64)
    np.cumsum(np.bincount(a["label"] - first, minlength=last - first), out=offsets[1:])
    return a, part[order], offsets


def _send_back(layout: Layout, kind: str, b: int, part: np.ndarray, **arrays: np.ndarray) -> None:
    """Write each part's share of ``arrays`` (rows aligned with ``part``) to its ``kind`` folder."""
    for p in np.unique(part):
        sel = np.flatnonzero(part == p)
        io.save_npz(layout.back(kind, int(p), b), **{k: v[sel] for k, v in arrays.items()})


def score_bucket(layout: Layout, b: int, first: int, last: int, probe: int, options: dict[str, Any]) -> int:
    """Score bucket ``b`` (clusters ``first..last-1``): each own row against the earlier rows of its cluster,
    and each visitor against the earlier rows of the clusters it probes here; results back to the parts."""
    marker = layout.marker("score", b)
    if marker.is_file():
        return 0
    a, part, offsets = _own(layout, b, layout.n_parts, first, last)
    if a:
        rank, max_sim, dup = score_clusters(a["emb"], a["key"], offsets, **options)
        has = dup >= 0
        safe = np.maximum(dup, 0)
        back = {
            "local": a["local"],
            "rank": rank,
            "max_sim": max_sim,
            "dup_gidx": np.where(has, a["gidx"][safe], -1),
            "dup_id": np.where(has, a["ids"][safe], ""),
        }
        if probe:  # the exact value and the partner's key, to be weighed against the visits
            sim64 = np.full(len(dup), -1.0)
            sim64[has] = pair_dots(a["emb"], np.flatnonzero(has), a["emb"], dup[has])
            back.update(sim64=sim64, dup_key=np.where(has, a["key"][safe], np.iinfo(np.int64).max))
        _send_back(layout, "scored", b, part, **back)
        if probe:
            _score_visitors(layout, b, first, last, a, offsets, options)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return last - first


def _score_visitors(
    layout: Layout, b: int, first: int, last: int, own: dict[str, np.ndarray], offsets: np.ndarray, options: dict
) -> None:
    """The visitors of bucket ``b``: each against the items earlier than it in the global order, of the
    bucket's clusters it probes. Each result goes back to the visitor's part as a candidate partner."""
    v, part = _gather(layout, b, layout.n_parts, _VISIT)
    if not v:
        return
    v["v_emb"] = _vectors(layout, part, v["v_local"])
    groups = np.where(v["v_clusters"] >= 0, v["v_clusters"] - first, -1)
    sim, row = match_in_clusters(
        v["v_emb"], groups, own["emb"], offsets, target_key=own["key"], query_pos=v["v_key"], **options
    )
    hit = row >= 0
    safe = np.maximum(row, 0)
    _send_back(
        layout,
        "visits",
        b,
        part[hit],
        local=v["v_local"][hit],
        sim64=sim[hit],
        dup_gidx=own["gidx"][safe][hit],
        dup_key=own["key"][safe][hit],
        dup_id=own["ids"][safe][hit],
    )


def leak_bucket(layout: Layout, b: int, first: int, last: int, exact: bool, options: dict[str, Any]) -> int:
    """Compare bucket ``b``'s rows with the reference items filed under its clusters (every reference item
    when ``exact``); each row's most similar one goes back to its part (``leaks``)."""
    from pathlib import Path

    from ..results.names import REFERENCE_EMBEDDINGS

    marker = layout.marker("leakage", b)
    if marker.is_file():
        return 0
    a, part, _ = _own(layout, b, layout.n_parts, first, last)
    if a:
        ref = np.load(Path(layout.out) / REFERENCE_EMBEDDINGS, mmap_mode="r")
        with np.load(layout.work + "/ref-filing.npz") as z:
            filed_rows, filed_offsets = z["rows"], z["offsets"]
        if exact:
            keys, groups = np.arange(len(ref), dtype=np.int64), np.zeros((len(a["emb"]), 1), np.int64)
            offsets = np.array([0, len(ref)])
        else:
            lo, hi = int(filed_offsets[first]), int(filed_offsets[last])
            keys, groups = filed_rows[lo:hi], (a["label"] - first)[:, None]
            offsets = filed_offsets[first : last + 1] - lo
        sim, row = match_in_clusters(
            a["emb"], groups, np.asarray(ref[keys], dtype=np.float32), offsets, target_key=keys, **options
        )
        has = row >= 0
        _send_back(
            layout,
            "leaks",
            b,
            part,
            local=a["local"],
            ref_sim=np.where(has, sim, -1.0).astype(np.float32),
            ref_row=np.where(has, keys[np.maximum(row, 0)], -1),
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return last - first
