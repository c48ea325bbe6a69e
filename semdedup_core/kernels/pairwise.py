"""The SemDeDup kernels: scoring each item against the earlier items of its cluster in bounded-memory
blocks, and each query against groups of targets. Pure functions of arrays: they run in this process or on
any worker, and hold no state.

**Exact answers whatever ran them.** A fast product (float32 on a CPU, float16 on a GPU, batched or
blocked) only *nominates* each item's partner: where another candidate lies within the product's error
(:data:`TOLERANCE`) of the best, the candidates are decided again on their exact cosines (:func:`pair_dots`:
float64 sums of the float32 vectors' exact products, the same for every row whatever the batch), ties to
the lowest position; and every reported similarity is that exact cosine of the named pair, rounded to
float32. So the partner and the score of an item do not depend on the block size, the batching, the
device's precision, the thread count or how the input was split — two executors give the same bytes.
Rows that are bitwise copies of an earlier row of their group are never candidates (the earlier copy has
the same cosine and the lower position), so a cluster of ten thousand identical items costs no more than
any other.

A shard of clusters (:func:`score_clusters`) goes to the device once, in keep order. A large cluster is
scored in row blocks against its earlier rows; the many small ones are packed, clusters of similar size
together, into padded batches scored with one batched matrix product each (:func:`plan_batches`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SemDedupError
from .order import ranks_in_clusters

PRECISIONS = ("float32", "float16")
_ITEMSIZE = {"float32": 4, "float16": 2}
TOLERANCE = {"float32": 2e-5, "float16": 4e-3}
"""How far below the best a fast product's candidate may lie and still be the exact best: above the error
of a float32 dot product of unit vectors with fp32 accumulation (at most about ``d · 2^-24``, far less in
practice), and of float16 inputs (each rounded by up to ``2^-11``)."""
_DOT_BYTES = 1 << 20  # a step of pair_dots: its float64 row block stays in cache


def pair_dots(x: np.ndarray, i: np.ndarray, y: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``dot(x[i[k]], y[j[k]])`` for each ``k``, in float64: the products of two float32 numbers are exact
    in float64 and each row is summed alone, so a pair's value does not depend on the other pairs."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    out = np.empty(len(i), dtype=np.float64)
    step = max(64, _DOT_BYTES // (8 * max(1, int(np.shape(x)[-1]))))
    for s in range(0, len(i), step):
        a = np.asarray(x[i[s : s + step]], dtype=np.float64)
        a *= y[j[s : s + step]]
        out[s : s + step] = a.sum(axis=1)
    return out


_HASH_ROWS = 1 << 14  # rows hashed per step of later_copies
_HASH_WORDS = 32  # words of a row the hash reads, spread over the row


def _row_hashes(raw: np.ndarray) -> np.ndarray:
    """A 64-bit hash of some of each row's words (integer arithmetic): bitwise-equal rows hash equal; rows
    that differ only in the words not read collide, and are told apart byte for byte by the caller."""
    words = raw.view(np.uint32) if raw.dtype.itemsize == 4 else raw.view(np.uint8)
    cols = np.unique(np.linspace(0, words.shape[1] - 1, min(_HASH_WORDS, words.shape[1])).astype(np.int64))
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=len(cols), dtype=np.uint64) | np.uint64(1)
    out = np.empty(len(raw), dtype=np.uint64)
    for s in range(0, len(raw), _HASH_ROWS):
        out[s : s + _HASH_ROWS] = words[s : s + _HASH_ROWS, cols].astype(np.uint64) @ mult
    return out


def later_copies(rows: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Whether each row is a bitwise copy of an earlier row (of the same group, when ``groups`` is given).
    A hash of 32 words of each row tells most rows apart at once; only rows that share a hash with another
    row of their group (the copies, and the rare rows alike in those words) are compared byte for byte."""
    n = len(rows)
    out = np.zeros(n, dtype=bool)
    if n < 2:
        return out
    raw = np.ascontiguousarray(rows)
    key = _row_hashes(raw)
    if groups is not None:
        key ^= np.asarray(groups, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    shared = np.flatnonzero(counts[inverse.ravel()] > 1)
    if len(shared) == 0:
        return out
    sub = raw[shared]
    _, exact = np.unique(sub.view(np.dtype((np.void, sub.dtype.itemsize * sub.shape[1]))).ravel(), return_inverse=True)
    exact = exact.ravel().astype(np.int64)
    if groups is not None:
        exact += np.asarray(groups, dtype=np.int64)[shared] * (int(exact.max()) + 1)
    _, first = np.unique(exact, return_index=True)
    copy = np.ones(len(shared), dtype=bool)
    copy[first] = False
    out[shared[copy]] = True
    return out


def block_rows(n_items: int, max_block_bytes: int, itemsize: int = 4) -> int:
    """The largest row block whose ``block × n_items`` similarity slab fits in ``max_block_bytes``."""
    return max(1, min(n_items, max_block_bytes // max(1, n_items * itemsize)))


def _torch_dtype(dtype: str) -> Any:
    import torch

    return torch.float16 if dtype == "float16" else torch.float32


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise SemDedupError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def _best_two(sims: Any, dim: int, tol: float) -> tuple[Any, Any, Any]:
    """The best similarity along ``dim``, its position, and whether the runner-up lies within ``tol`` of it
    (one ``topk`` pass, as fast as ``max``). On a tie the position may be either: the exact cosines decide
    those rows (ties to the lowest position)."""
    top = sims.topk(min(2, sims.shape[dim]), dim=dim)
    best, where = top.values.select(dim, 0), top.indices.select(dim, 0)
    if sims.shape[dim] < 2:
        return best, where, best != best  # all False
    return best, where, top.values.select(dim, 1) >= best - tol


def _score_blocks(e: Any, block: int, skip: Any, tol: float, square: Any, out: tuple[Any, Any, Any]) -> None:
    """The blockwise kernel on one cluster's rows ``e`` (a device tensor, keep order): fills ``out`` =
    (best similarity, its position, whether another candidate lies within ``tol``) for rows 1.., a block
    of rows at a time. ``skip``: columns that are never candidates (later copies), or ``None``; ``square``:
    an upper-triangular mask (diagonal included) of at least ``block`` rows."""
    out_sim, out_arg, out_near = out
    m = e.shape[0]
    for start in range(1, m, block):  # row 0 has no predecessor
        stop = min(start + block, m)
        sims = e[start:stop] @ e[:stop].T  # (stop-start) × stop: only earlier columns are computed
        b = stop - start
        sims[:, start:stop].masked_fill_(square[:b, :b], float("-inf"))  # row start+i sees columns < start+i
        if skip is not None:
            sims.masked_fill_(skip[None, :stop], float("-inf"))
        best, where, near = _best_two(sims, 1, tol)
        out_sim[start:stop] = best.float()
        out_arg[start:stop] = where
        out_near[start:stop] = near


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


def _score_batch(e: Any, starts: Any, sizes: Any, big: int, skip: Any, tol: float, out: tuple[Any, Any, Any]) -> None:
    """The batched kernel: the clusters at ``e[starts[b] : starts[b] + sizes[b]]`` (keep order), padded
    to ``big`` (their largest size), scored with one batched matrix product. Only rows ``1..size-1``
    of each cluster are written; a padded column is only ever seen by padded rows, and padded rows (and
    each first row) write into the spare last slot of the outputs — no boolean indexing, so the device
    never has to report back to the host between batches. ``skip`` (positions in ``e`` that are never
    candidates) may be ``None``."""
    import torch

    out_sim, out_arg, out_near = out
    spare = out_sim.shape[0] - 1
    ar = torch.arange(big, device=e.device)
    pos = starts[:, None] + ar[None, :]  # B × M positions in e
    valid = (ar[None, :] < sizes[:, None]) & (ar[None, :] > 0)
    safe = torch.where(valid, pos, starts[:, None])  # padding filled with a real row
    rows = e[safe]  # B × M × d
    sims = torch.bmm(rows, rows.transpose(1, 2))  # B × M × M
    sims.masked_fill_(torch.ones(big, big, dtype=torch.bool, device=e.device).triu_(), float("-inf"))
    if skip is not None:
        sims.masked_fill_(skip[safe][:, None, :], float("-inf"))
    best, where, near = _best_two(sims, 2, tol)
    target = torch.where(valid, pos, spare).flatten()
    out_sim.index_put_((target,), best.flatten().float())
    out_arg.index_put_((target,), where.flatten())
    out_near.index_put_((target,), near.flatten())


def _on_device(rows: np.ndarray, device: str) -> Any:
    """``rows`` (float32, C order) as a tensor on ``device``: the same memory on a CPU; on CUDA, copied
    into pinned memory and sent with one non-blocking copy."""
    import torch

    if device != "cuda":
        return torch.from_numpy(rows)
    host = torch.empty(rows.shape, dtype=torch.float32, pin_memory=True)
    host.numpy()[:] = rows
    return host.to(device, non_blocking=True)


def exact_best(
    queries: np.ndarray,
    targets: np.ndarray,
    skip: np.ndarray,
    tol: float,
    limit: np.ndarray | None = None,
    target_key: np.ndarray | None = None,
    chunk_bytes: int = 64 * 2**20,
) -> np.ndarray:
    """For each query row, the target with the highest exact cosine, ties to the lowest target row; -1
    where none qualifies. A target qualifies unless ``skip``, and — with ``limit`` — only when its
    ``target_key`` is below the query's ``limit``. Candidates are nominated by a float32 product (within
    ``tol`` of its best), then decided by :func:`pair_dots`."""
    t = np.asarray(targets, dtype=np.float32)
    out = np.full(len(queries), -1, dtype=np.int64)
    step = max(1, chunk_bytes // max(1, 5 * len(t)))
    for s in range(0, len(queries), step):
        q = np.asarray(queries[s : s + step], dtype=np.float32)
        sims = q @ t.T
        sims[:, skip] = -np.inf
        if limit is not None:
            sims[np.asarray(target_key)[None, :] >= np.asarray(limit[s : s + step])[:, None]] = -np.inf
        best = sims.max(axis=1)
        for k in np.flatnonzero(np.isfinite(best)):
            cand = np.flatnonzero(sims[k] >= best[k] - tol)
            exact = pair_dots(q, np.full(len(cand), k), t, cand)
            out[s + k] = cand[int(np.argmax(exact))]
    return out


def _refine_clusters(
    e: np.ndarray, offsets: np.ndarray, skip: np.ndarray, arg: np.ndarray, near: np.ndarray, tol: float
) -> None:
    """Decide again, on exact cosines, the positions (of ``e``, rows in keep order, clusters at
    ``offsets``) where the fast product saw another candidate within ``tol``; updates ``arg`` (positions
    within the cluster) in place."""
    todo = np.flatnonzero(near)
    if not len(todo):
        return
    cluster_of = np.searchsorted(offsets, todo, side="right") - 1
    for c in np.unique(cluster_of):
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        rows = todo[cluster_of == c] - lo
        local = e[lo:hi]
        arg[lo + rows] = exact_best(local[rows], local, skip[lo:hi], tol, rows, np.arange(hi - lo))


def score_clusters(
    emb: np.ndarray,
    keys: np.ndarray,
    offsets: np.ndarray,
    *,
    device: str = "auto",
    precision: str = "float32",
    block_size: int | None = None,
    max_block_bytes: int = 256 * 2**20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order and score a run of whole clusters (the unit of work a shard hands to a worker).

    ``emb`` holds the clusters' unit rows back to back, cluster ``j`` at ``offsets[j]:offsets[j+1]``;
    ``keys`` their keep-order keys (:func:`~semdedup_core.kernels.order.keep_keys`). Returns, per row,
    ``rank`` (position in its cluster's keep order), ``max_sim`` (the exact cosine, as float32, to the
    earlier item it is most similar to; -1 for rank 0) and ``dup_row`` (that item's row in ``emb``'s
    numbering, the lowest position on ties; -1 for rank 0). ``device``, ``precision``, ``block_size`` and
    ``max_block_bytes`` change speed and memory only (see the module docstring).
    """
    from .device import resolve_device

    _check_precision(precision)
    device = resolve_device(device)
    n = emb.shape[0]
    offsets = np.asarray(offsets, dtype=np.int64)
    ordered, rank = ranks_in_clusters(np.asarray(keys, dtype=np.int64), offsets)
    emb = np.asarray(emb)
    in_order = bool((ordered == np.arange(n)).all())  # a bucket arrives in keep order: no copy then
    e_host = np.ascontiguousarray(emb if in_order else np.take(emb, ordered, axis=0), dtype=np.float32)
    skip = later_copies(e_host, np.repeat(np.arange(len(offsets) - 1), np.diff(offsets)))
    arg, near = _fast_scores(e_host, offsets, skip, device, precision, block_size, max_block_bytes)
    _refine_clusters(e_host, offsets, skip, arg, near, TOLERANCE[precision])
    has = arg >= 0
    partner = np.where(has, np.repeat(offsets[:-1], np.diff(offsets)) + arg, -1)  # positions in keep order
    sims = np.full(n, -1.0, dtype=np.float32)
    pos = np.flatnonzero(has)
    sims[pos] = pair_dots(e_host, pos, e_host, partner[pos]).astype(np.float32)
    max_sim = np.empty(n, dtype=np.float32)
    dup_row = np.full(n, -1, dtype=np.int64)
    max_sim[ordered] = sims
    dup_row[ordered[pos]] = ordered[partner[pos]]
    return rank, max_sim, dup_row


def _fast_scores(e_host, offsets, skip, device, precision, block_size, max_block_bytes):
    """The fast product over a shard (keep order): each position's best earlier position in its cluster
    (``arg``, -1 for the first) and whether another candidate lies within the tolerance (``near``)."""
    import torch

    n = len(e_host)
    sizes = np.diff(offsets)
    itemsize = _ITEMSIZE[precision] + 1  # the similarities and the near-candidate mask
    tol = TOLERANCE[precision]
    # a GPU pays a launch per cluster, so every cluster that fits is batched; a CPU pays the padding and
    # the gather instead, which only small clusters repay (bench_gpu.py --parts pairwise)
    max_size = None if device == "cuda" else max(2, CPU_BATCHED_ROW_ELEMENTS // max(1, e_host.shape[1]))
    batches, single = plan_batches(sizes, e_host.shape[1], max_block_bytes, itemsize, block_size, max_size)
    with torch.inference_mode():
        e = _on_device(e_host, device).to(_torch_dtype(precision))
        skip_t = torch.from_numpy(skip).to(device) if skip.any() else None
        out = (
            torch.full((n + 1,), -1.0, dtype=torch.float32, device=device),  # + a spare slot
            torch.full((n + 1,), -1, dtype=torch.int64, device=device),
            torch.zeros((n + 1,), dtype=torch.bool, device=device),
        )
        blocks = {int(j): block_size or block_rows(int(sizes[j]), max_block_bytes, itemsize) for j in single}
        side = min(max(blocks.values(), default=1), int(sizes.max(initial=1)))
        square = torch.ones(side, side, dtype=torch.bool, device=device).triu_()  # one mask for every cluster
        for j in single:
            lo, hi = int(offsets[j]), int(offsets[j + 1])
            cluster_skip = None if skip_t is None else skip_t[lo:hi]
            parts = (out[0][lo:hi], out[1][lo:hi], out[2][lo:hi])
            _score_blocks(e[lo:hi], min(blocks[int(j)], side), cluster_skip, tol, square, parts)
        if batches:  # every batch's starts and sizes go to the device in one copy
            flat = np.concatenate(batches)
            bounds = np.cumsum([0] + [len(b) for b in batches])
            starts_all = torch.from_numpy(offsets[:-1][flat]).to(device)
            sizes_all = torch.from_numpy(sizes[flat]).to(device)
            for b, batch in enumerate(batches):
                sl = slice(int(bounds[b]), int(bounds[b + 1]))
                big = int(sizes[batch].max())
                _score_batch(e, starts_all[sl], sizes_all[sl], big, skip_t, tol, out)
        arg = out[1][:n].cpu().numpy()
        near = out[2][:n].cpu().numpy()
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1][sizes > 0]] = True
    arg[first] = -1
    near[first] = False
    return arg, near


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
    not depend on ``block`` (nor on ``dtype``: see the module docstring).
    """
    m = emb.shape[0]
    _, max_sim, dup_row = score_clusters(
        emb,
        np.arange(m, dtype=np.int64),
        np.array([0, m]),
        device=device,
        precision=dtype,
        block_size=block,
        max_block_bytes=max_block_bytes,
    )
    return max_sim, dup_row


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

    Returns ``(sim, arg)``: ``arg[i]`` the target row with the highest exact cosine to query ``i`` (the
    lowest such row on ties) and ``sim[i]`` that exact cosine in float64 (see the module docstring);
    ``-1.0`` and ``-1`` where no target qualifies. With positions, target ``j`` qualifies for query ``i``
    only when ``target_pos[j] < query_pos[i]`` (an *earlier* item in a global order; give targets sorted
    by position so that ties go to the earliest). A target that is a bitwise copy of an earlier target is
    never chosen. Queries are compared in blocks of ``block`` rows against every target, so peak memory is
    ``block × len(targets)`` similarities; the results do not depend on ``block`` or ``dtype``.
    """
    mq, mt = queries.shape[0], targets.shape[0]
    sim = np.full(mq, -1.0, dtype=np.float64)
    arg = np.full(mq, -1, dtype=np.int64)
    if mq == 0 or mt == 0:
        return sim, arg
    if (query_pos is None) != (target_pos is None):
        raise SemDedupError("best_matches needs both query_pos and target_pos, or neither")
    _check_precision(dtype)
    skip = later_copies(np.asarray(targets, dtype=np.float32))
    if block is None:
        block = block_rows(mt, max_block_bytes, _ITEMSIZE[dtype] + 2)  # the similarities and two masks
    near = _fast_matches(queries, targets, query_pos, target_pos, skip, block, device, dtype, arg)
    if near.any():
        rows = np.flatnonzero(near)
        limit = None if query_pos is None else np.asarray(query_pos)[rows]
        arg[rows] = exact_best(np.asarray(queries)[rows], targets, skip, TOLERANCE[dtype], limit, target_pos)
    has = arg >= 0
    if has.any():
        q32, t32 = np.asarray(queries, dtype=np.float32), np.asarray(targets, dtype=np.float32)
        rows = np.flatnonzero(has)
        sim[rows] = pair_dots(q32, rows, t32, arg[rows])
    return sim, arg


def _fast_matches(queries, targets, query_pos, target_pos, skip, block, device, dtype, arg) -> np.ndarray:
    """The fast product of :func:`best_matches`: fills ``arg`` with each query's nominated target and returns
    whether another candidate lies within the tolerance."""
    import torch

    mq, mt = queries.shape[0], targets.shape[0]
    tdtype, tol = _torch_dtype(dtype), TOLERANCE[dtype]
    near = np.zeros(mq, dtype=bool)
    t = torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)).to(device=device, dtype=tdtype)
    tpos = None if target_pos is None else torch.from_numpy(np.asarray(target_pos, dtype=np.int64)).to(device)
    tskip = torch.from_numpy(skip).to(device) if skip.any() else None
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
                sims.masked_fill_(torch.ge(tpos[None, :], qpos[:, None], out=later[: stop - start]), float("-inf"))
            if tskip is not None:
                sims.masked_fill_(tskip[None, :], float("-inf"))
            best, where, close = _best_two(sims, 1, tol)
            found = torch.isfinite(best)
            arg[start:stop] = np.where(found.cpu().numpy(), where.cpu().numpy(), -1)
            near[start:stop] = (close & found).cpu().numpy()
    return near


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
    then only targets with ``target_key < query_pos[i]`` count (earlier items). Returns ``(sim, row)``:
    the exact cosine (float64) and ``row`` indexing ``targets`` (-1 and -1.0 where nothing qualified).
    A target filed in several probed groups is simply found again; ``device``, ``block_size``,
    ``precision`` and the order of the groups change nothing but speed.
    """
    from .device import resolve_device

    _check_precision(precision)
    device = resolve_device(device)
    mq = queries.shape[0]
    best = np.full(mq, -1.0, dtype=np.float64)
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
