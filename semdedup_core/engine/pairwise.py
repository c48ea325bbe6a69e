"""The SemDeDup kernels: ordering a cluster by keep policy, and scoring each item against the
earlier items of its cluster in bounded-memory blocks. Pure functions of arrays: they run in this
process or on any worker, and hold no state."""

from __future__ import annotations

import numpy as np

from ..errors import SemDedupError

PRECISIONS = ("float32", "float16")


def order_cluster(dist_to_centroid: np.ndarray, keep: str, seed: int = 0, cluster: int = 0) -> np.ndarray:
    """Positions of a cluster's items in keep order (the first one is always kept).

    ``hard``: farthest from the centroid first (the paper's default); ``easy``: nearest first;
    ``random``: a shuffle seeded by ``(seed, cluster)``, so each cluster's order is reproducible on its
    own. Ties keep input order.
    """
    d = np.asarray(dist_to_centroid)
    if keep == "hard":
        return np.argsort(-d, kind="stable")
    if keep == "easy":
        return np.argsort(d, kind="stable")
    if keep == "random":
        return np.random.default_rng([seed, cluster]).permutation(len(d))
    raise SemDedupError(f"keep must be one of hard, easy, random, got {keep!r}")


def block_rows(n_items: int, max_block_bytes: int, itemsize: int = 4) -> int:
    """The largest row block whose ``block × n_items`` similarity slab fits in ``max_block_bytes``."""
    return max(1, min(n_items, max_block_bytes // max(1, n_items * itemsize)))


def scores_in_cluster(
    emb: np.ndarray,
    block: int | None = None,
    device: str = "cpu",
    *,
    dtype: str = "float32",
    max_block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Score one cluster whose unit rows ``emb`` are already in keep order.

    For row ``r``, ``max_sim[r]`` is the highest cosine similarity to any row ``< r`` and
    ``argmax[r]`` the position of that row (the lowest on ties). Row 0 has no predecessor:
    ``max_sim = -1`` and ``argmax = -1``. Rows are compared in blocks of ``block`` against the earlier
    rows only, so peak memory is ``block × len(emb)`` similarities, never ``n × n``; the results do
    not depend on ``block``.
    """
    import torch

    m = emb.shape[0]
    max_sim = np.full(m, -1.0, dtype=np.float32)
    argmax = np.full(m, -1, dtype=np.int64)
    if m < 2:
        return max_sim, argmax
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    itemsize = 2 if dtype == "float16" else 4
    if block is None:
        block = block_rows(m, max_block_bytes, itemsize)
    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).to(device=device, dtype=tdtype)
    with torch.inference_mode():
        # row start+i may only see columns < start+i: in the block's own square, the diagonal and above
        square = torch.ones(block, block, dtype=torch.bool, device=device).triu_()
        for start in range(1, m, block):  # row 0 has no predecessor
            stop = min(start + block, m)
            sims = e[start:stop] @ e[:stop].T  # (stop-start) × stop: only earlier columns are computed
            b = stop - start
            sims[:, start:stop].masked_fill_(square[:b, :b], float("-inf"))
            best, where = sims.max(dim=1)
            max_sim[start:stop] = best.float().cpu().numpy()
            argmax[start:stop] = where.cpu().numpy()
    return max_sim, argmax


def score_clusters(
    emb: np.ndarray,
    dist: np.ndarray,
    offsets: np.ndarray,
    cluster_ids: np.ndarray,
    keep: str,
    seed: int,
    *,
    device: str = "auto",
    precision: str = "float32",
    block_size: int | None = None,
    max_block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order and score a run of whole clusters (the unit of work a shard hands to a worker).

    ``emb``/``dist`` hold the clusters' rows back to back, cluster ``j`` (number ``cluster_ids[j]``) at
    ``offsets[j]:offsets[j+1]``. Returns, per row, ``rank`` (position in its cluster's keep order),
    ``max_sim`` and ``dup_row`` (the row, in ``emb``'s numbering, of the earlier item it is most
    similar to; -1 for rank 0). ``device`` and ``block_size`` change speed only; ``precision``
    (float32 or float16 arithmetic) can move scores by about 1e-3.
    """
    from .device import resolve_device

    if precision not in PRECISIONS:
        raise SemDedupError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(device)
    n = emb.shape[0]
    rank = np.empty(n, dtype=np.int64)
    max_sim = np.empty(n, dtype=np.float32)
    dup_row = np.empty(n, dtype=np.int64)
    for j, cluster in enumerate(cluster_ids):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        if hi == lo:
            continue
        perm = order_cluster(dist[lo:hi], keep, seed, int(cluster))
        ms, am = scores_in_cluster(
            emb[lo:hi][perm], block_size, device, dtype=precision, max_block_bytes=max_block_bytes
        )
        rows = lo + perm
        rank[rows] = np.arange(hi - lo)
        max_sim[rows] = ms
        dup_row[rows] = np.where(am >= 0, lo + perm[np.maximum(am, 0)], -1)
    return rank, max_sim, dup_row


def best_matches(
    queries: np.ndarray,
    targets: np.ndarray,
    *,
    query_pos: np.ndarray | None = None,
    target_pos: np.ndarray | None = None,
    block: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    max_block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """For each unit row of ``queries``, its most similar unit row of ``targets``.

    Returns ``(sim, arg)``: ``arg[i]`` the target row with the highest cosine to query ``i`` (the lowest
    such row on ties) and ``sim[i]`` that cosine, recomputed in float32 for the chosen pair whatever
    ``dtype`` the search used, so it is the true cosine of a real pair and never above the best one;
    ``-1.0`` and ``-1`` where no target qualifies. With positions, target ``j`` qualifies for query ``i``
    only when ``target_pos[j] < query_pos[i]`` (an *earlier* item in a global order; give targets sorted
    by position so that ties go to the earliest). Queries are compared in blocks of ``block`` rows
    against every target, so peak memory is ``block × len(targets)`` similarities; the results do not
    depend on ``block``.
    """
    import torch

    mq, mt = queries.shape[0], targets.shape[0]
    sim = np.full(mq, -1.0, dtype=np.float32)
    arg = np.full(mq, -1, dtype=np.int64)
    if mq == 0 or mt == 0:
        return sim, arg
    if (query_pos is None) != (target_pos is None):
        raise SemDedupError("best_matches needs both query_pos and target_pos, or neither")
    tdtype = torch.float16 if dtype == "float16" else torch.float32
    itemsize = 2 if dtype == "float16" else 4
    if block is None:
        block = block_rows(mt, max_block_bytes, itemsize + 1)  # the similarities and their mask
    t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(device=device, dtype=tdtype)
    tpos = None if target_pos is None else torch.from_numpy(np.asarray(target_pos, dtype=np.int64)).to(device)
    with torch.inference_mode():
        # buffers reused block after block (a fresh slab per block costs more in page faults than the matmul)
        buf = torch.empty((min(block, mq), mt), dtype=tdtype, device=device)
        later = None if tpos is None else torch.empty((min(block, mq), mt), dtype=torch.bool, device=device)
        for start in range(0, mq, block):
            stop = min(start + block, mq)
            q = torch.from_numpy(np.ascontiguousarray(queries[start:stop], dtype=np.float32)).to(device, tdtype)
            sims = torch.mm(q, t.T, out=buf[: stop - start])
            if tpos is not None:
                qpos = torch.from_numpy(np.asarray(query_pos[start:stop], dtype=np.int64)).to(device)
                mask = torch.ge(tpos[None, :], qpos[:, None], out=later[: stop - start])
                sims.masked_fill_(mask, float("-inf"))
            best, where = sims.max(dim=1)
            found = torch.isfinite(best).cpu().numpy()
            arg[start:stop] = np.where(found, where.cpu().numpy(), -1)
    has = arg >= 0
    if has.any():  # the reported similarity: the pair's cosine in float32, independent of block and dtype
        q32 = np.asarray(queries[has], dtype=np.float32)
        t32 = np.asarray(targets[arg[has]], dtype=np.float32)
        sim[has] = np.einsum("ij,ij->i", q32, t32)
    return sim, arg


def match_in_clusters(
    queries: np.ndarray,
    probes: np.ndarray,
    targets: np.ndarray,
    offsets: np.ndarray,
    *,
    target_key: np.ndarray,
    query_pos: np.ndarray | None = None,
    device: str = "auto",
    precision: str = "float32",
    block_size: int | None = None,
    max_block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best target among the groups (clusters) it probes: the unit of work of a probing shard.

    ``targets`` holds groups back to back, group ``g`` at ``offsets[g]:offsets[g+1]``, each sorted by
    ``target_key``; ``probes[i]`` lists the groups query ``i`` looks into (-1: none). ``target_key`` is
    the targets' tie-break (lower wins) and, with ``query_pos``, also their position in the global order:
    then only targets with ``target_key < query_pos[i]`` count (earlier items). Returns ``(sim, row)``
    with ``row`` indexing ``targets`` (-1 and -1.0 where nothing qualified). A target filed in several
    probed groups is simply found again; ``device``, ``block_size`` and the order of the groups change
    nothing but speed; ``precision`` at most which of two near-tied targets is chosen.
    """
    from .device import resolve_device

    if precision not in PRECISIONS:
        raise SemDedupError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(device)
    mq = queries.shape[0]
    best = np.full(mq, -1.0, dtype=np.float32)
    row = np.full(mq, -1, dtype=np.int64)
    key = np.asarray(target_key, dtype=np.int64)
    flat = probes.ravel()
    who = np.repeat(np.arange(mq), probes.shape[1])
    order = np.argsort(flat, kind="stable")
    flat, who = flat[order], who[order]
    bounds = np.searchsorted(flat, np.arange(len(offsets)))  # group g's queries: bounds[g]:bounds[g+1]
    for g in range(len(offsets) - 1):
        qs = who[bounds[g] : bounds[g + 1]]
        lo, hi = int(offsets[g]), int(offsets[g + 1])
        if len(qs) == 0 or hi == lo:
            continue
        sim, arg = best_matches(
            queries[qs],
            targets[lo:hi],
            query_pos=None if query_pos is None else query_pos[qs],
            target_pos=None if query_pos is None else key[lo:hi],
            block=block_size,
            device=device,
            dtype=precision,
            max_block_bytes=max_block_bytes,
        )
        hit = arg >= 0
        qs, sim, cand = qs[hit], sim[hit], lo + arg[hit]
        cur = row[qs]
        better = (cur < 0) | (sim > best[qs]) | ((sim == best[qs]) & (key[cand] < key[np.maximum(cur, 0)]))
        best[qs[better]], row[qs[better]] = sim[better], cand[better]
    return best, row
