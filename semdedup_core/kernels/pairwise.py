"""The SemDeDup kernels: ordering a cluster by keep policy, and scoring each item against the
earlier items of its cluster in bounded-memory blocks. Pure functions of arrays: they run in this
process or on any worker, and hold no state.

A shard of clusters (:func:`score_clusters`) goes to the device once, in keep order. A large cluster is
scored in row blocks against its earlier rows (:func:`scores_in_cluster`'s loop); the many small ones
are packed, clusters of similar size together, into padded batches scored with one batched matrix
product each (:func:`plan_batches`), so thousands of tiny clusters cost tens of kernel launches, not
thousands. Both paths apply the same mask and the same tie rule (the lowest earlier position wins).
"""

from __future__ import annotations

from typing import Any

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
    tdtype = _torch_dtype(dtype)
    if block is None:
        block = block_rows(m, max_block_bytes, _ITEMSIZE[dtype])
    e = torch.from_numpy(np.ascontiguousarray(emb, dtype=np.float32)).to(device=device, dtype=tdtype)
    with torch.inference_mode():
        out_sim = torch.full((m,), -1.0, dtype=torch.float32, device=device)
        out_arg = torch.full((m,), -1, dtype=torch.int64, device=device)
        _score_blocks(e, block, out_sim, out_arg)
        max_sim[:] = out_sim.cpu().numpy()
        argmax[:] = out_arg.cpu().numpy()
    return max_sim, argmax


_ITEMSIZE = {"float32": 4, "float16": 2}


def _torch_dtype(dtype: str) -> Any:
    import torch

    return torch.float16 if dtype == "float16" else torch.float32


def _score_blocks(e: Any, block: int, out_sim: Any, out_arg: Any) -> None:
    """The blockwise kernel on one cluster's rows ``e`` (a device tensor, keep order): fills
    ``out_sim``/``out_arg`` (views of length ``len(e)``) for rows 1.., row by row block."""
    import torch

    m = e.shape[0]
    # row start+i may only see columns < start+i: in the block's own square, the diagonal and above
    square = torch.ones(block, block, dtype=torch.bool, device=e.device).triu_()
    for start in range(1, m, block):  # row 0 has no predecessor
        stop = min(start + block, m)
        sims = e[start:stop] @ e[:stop].T  # (stop-start) × stop: only earlier columns are computed
        b = stop - start
        sims[:, start:stop].masked_fill_(square[:b, :b], float("-inf"))
        best, where = sims.max(dim=1)
        out_sim[start:stop] = best.float()
        out_arg[start:stop] = where


CPU_BATCHED_ROW_ELEMENTS = 16_384  # on a CPU, batch clusters of at most this many elements per row × size


def plan_batches(
    sizes: np.ndarray,
    dim: int,
    max_block_bytes: int,
    itemsize: int = 4,
    block_size: int | None = None,
    max_size: int | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """Group clusters for the batched kernel: ``(batches, single)``.

    ``batches`` lists arrays of cluster positions (into ``sizes``) scored together: clusters of
    similar size (the largest at most 1.25 × the smallest + 8), padded to the largest, with the
    batch's ``B × M × M`` similarities and ``B × M × dim`` rows each within ``max_block_bytes`` (and
    ``B × M`` rows within ``block_size`` when one is given, the memory a block of that many rows would
    take). ``single`` lists the clusters too large to batch (or larger than ``max_size``), scored
    block by block on their own. Clusters of fewer than two items need no work and are in neither.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    limit = max_block_bytes // 2  # a batch should hold at least two clusters of its size
    fits = sizes * np.maximum(sizes, dim) * itemsize <= limit
    if block_size is not None:
        fits &= sizes <= block_size
    if max_size is not None:
        fits &= sizes <= max_size
    work = sizes >= 2
    single = np.flatnonzero(work & ~fits)
    small = np.flatnonzero(work & fits)
    small = small[np.argsort(sizes[small], kind="stable")]
    batches: list[np.ndarray] = []
    i = 0
    while i < len(small):
        m0 = int(sizes[small[i]])
        cap = max(m0 + 8, (m0 * 5) // 4)
        j = i + 1
        while j < len(small):
            m = int(sizes[small[j]])
            b = j - i + 1
            if m > cap or b * m * max(m, dim) * itemsize > max_block_bytes:
                break
            if block_size is not None and b * m > block_size:
                break
            j += 1
        batches.append(small[i:j])
        i = j
    return batches, single


def _score_batch(e: Any, starts: Any, sizes: Any, big: int, out_sim: Any, out_arg: Any) -> None:
    """The batched kernel: the clusters at ``e[starts[b] : starts[b] + sizes[b]]`` (keep order), padded
    to ``big`` (their largest size), scored with one batched matrix product. Only rows ``1..size-1``
    of each cluster are written; a padded column is only ever seen by padded rows, and padded rows (and
    each first row) write into the spare last slot of ``out_sim``/``out_arg`` — no boolean indexing, so
    the device never has to report back to the host between batches."""
    import torch

    spare = out_sim.shape[0] - 1
    ar = torch.arange(big, device=e.device)
    pos = starts[:, None] + ar[None, :]  # B × M positions in e
    valid = (ar[None, :] < sizes[:, None]) & (ar[None, :] > 0)
    rows = e[torch.where(valid, pos, starts[:, None])]  # B × M × d, padding filled with a real row
    sims = torch.bmm(rows, rows.transpose(1, 2))  # B × M × M
    sims.masked_fill_(torch.ones(big, big, dtype=torch.bool, device=e.device).triu_(), float("-inf"))
    best, where = sims.max(dim=2)  # the first (lowest) position on ties, as in _score_blocks
    target = torch.where(valid, pos, spare).flatten()
    out_sim.index_put_((target,), best.flatten().float())
    out_arg.index_put_((target,), where.flatten())


def _pinned_on_device(emb: np.ndarray, rows: np.ndarray, device: str) -> Any:
    """``emb[rows]`` as a float32 tensor on ``device``: gathered on the host straight into pinned
    memory and sent with one non-blocking copy on CUDA; a plain gather on a CPU."""
    import torch

    if device != "cuda":
        return torch.from_numpy(np.take(emb, rows, axis=0).astype(np.float32, copy=False))
    host = torch.empty((len(rows), emb.shape[1]), dtype=torch.float32, pin_memory=True)
    np.take(np.asarray(emb, dtype=np.float32), rows, axis=0, out=host.numpy())
    return host.to(device, non_blocking=True)


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

    The shard's rows go to the device once, in keep order; large clusters are scored block by block,
    small ones in padded batches (:func:`plan_batches`), and the scores come back in one copy.
    """
    import torch

    from .device import resolve_device

    if precision not in PRECISIONS:
        raise SemDedupError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = resolve_device(device)
    n = emb.shape[0]
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    rank = np.empty(n, dtype=np.int64)
    ordered = np.empty(n, dtype=np.int64)  # ordered[p]: the row at keep-order position p of the shard
    for j, cluster in enumerate(cluster_ids):
        lo, hi = int(offsets[j]), int(offsets[j + 1])
        if hi > lo:
            perm = order_cluster(dist[lo:hi], keep, seed, int(cluster))
            ordered[lo:hi] = lo + perm
            rank[lo + perm] = np.arange(hi - lo)
    itemsize = _ITEMSIZE[precision]
    # a GPU pays a launch per cluster, so every cluster that fits is batched; a CPU pays the padding and
    # the gather instead, which only small clusters repay (bench_gpu.py --parts pairwise)
    max_size = None if device == "cuda" else max(2, CPU_BATCHED_ROW_ELEMENTS // emb.shape[1])
    batches, single = plan_batches(sizes, emb.shape[1], max_block_bytes, itemsize, block_size, max_size)
    with torch.inference_mode():
        e = _pinned_on_device(emb, ordered, device).to(_torch_dtype(precision))
        out_sim = torch.full((n + 1,), -1.0, dtype=torch.float32, device=device)  # + a spare slot
        out_arg = torch.full((n + 1,), -1, dtype=torch.int64, device=device)
        for j in single:
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            block = block_size or block_rows(hi - lo, max_block_bytes, itemsize)
            _score_blocks(e[lo:hi], block, out_sim[lo:hi], out_arg[lo:hi])
        if batches:  # every batch's starts and sizes go to the device in one copy
            flat = np.concatenate(batches)
            bounds = np.cumsum([0] + [len(b) for b in batches])
            starts_all = torch.from_numpy(offsets[:-1][flat]).to(device)
            sizes_all = torch.from_numpy(sizes[flat]).to(device)
            for b, batch in enumerate(batches):
                sl = slice(int(bounds[b]), int(bounds[b + 1]))
                big = int(sizes[batch].max())
                _score_batch(e, starts_all[sl], sizes_all[sl], big, out_sim, out_arg)
        ms = out_sim[:n].cpu().numpy()
        am = out_arg[:n].cpu().numpy()
    max_sim = np.empty(n, dtype=np.float32)
    dup_row = np.full(n, -1, dtype=np.int64)
    max_sim[ordered] = ms
    has = am >= 0
    cluster_start = np.repeat(offsets[:-1], sizes)  # position of each position's cluster start
    dup_row[ordered[has]] = ordered[cluster_start[has] + am[has]]
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
