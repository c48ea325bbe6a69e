"""Spherical k-means and nearest-centroid assignment, on faiss or on torch.

Both entry points take and return plain arrays and hold no global state, so a distributed backend can
run them on workers unchanged. Two backends do the work:

- ``faiss``: ``faiss.Kmeans(spherical=True)`` and an exact inner-product index — on the GPU when the
  installed faiss was built with GPU support (``faiss-gpu``, see ``requirements-gpu.txt``), else on the
  CPU. The default on a CPU.
- ``torch``: the same algorithm written with torch matrix products (:func:`torch_kmeans`,
  :func:`torch_assign`). On CUDA the products run in float16 with float32 accumulation, the points are
  moved to the device once (or streamed chunk by chunk from pinned memory when they do not fit), and
  no ``n × k`` matrix is ever held: similarities are computed a chunk of rows at a time. The default on
  a GPU when faiss has no GPU support (the pinned ``faiss-cpu``); on a CPU it runs in float32 and is
  what the tests check against faiss.

:func:`kmeans_backend` says which one runs for a ``(device, backend)`` request, as recorded in
``run.json`` (``faiss-cpu``, ``faiss-gpu``, ``torch-cpu``, ``torch-cuda``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import SemDedupError
from .device import faiss_gpu_available, resolve_device

log = logging.getLogger(__name__)

KMEANS_BACKENDS = ("auto", "faiss", "torch")
_ASSIGN_CHUNK = 1 << 17
SPLIT_EPS = 1.0 / 1024  # the perturbation faiss gives the two halves of a split cluster


def _unit_rows(c: np.ndarray) -> np.ndarray:
    c = np.ascontiguousarray(c, dtype=np.float32)
    norms = np.linalg.norm(c, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return c / norms


def kmeans_backend(device: str = "auto", backend: str = "auto") -> str:
    """What runs :func:`fit_centroids` and :func:`assign` for ``device`` and ``backend``:
    ``faiss-cpu``, ``faiss-gpu``, ``torch-cpu`` or ``torch-cuda``.

    ``auto`` on a CUDA device is faiss-gpu when the installed faiss can use the GPU, else torch-cuda
    (the pinned faiss-cpu would run k-means on the CPU); ``auto`` on a CPU is faiss-cpu. ``faiss``
    asked for on CUDA without a GPU build runs on the CPU (and says so here)."""
    if backend not in KMEANS_BACKENDS:
        raise SemDedupError(f"backend must be one of {', '.join(KMEANS_BACKENDS)}, got {backend!r}")
    resolved = resolve_device(device)
    if backend == "torch":
        return f"torch-{resolved}"
    if resolved == "cuda" and faiss_gpu_available():
        return "faiss-gpu"
    if backend == "auto" and resolved == "cuda":
        return "torch-cuda"
    return "faiss-cpu"


def kmeans_device(device: str = "auto", backend: str = "auto") -> str:
    """The device (``cpu`` or ``cuda``) that really runs k-means and assignment for this request."""
    return "cpu" if kmeans_backend(device, backend).endswith("cpu") else "cuda"


def faiss_device(resolved: str, faiss_has_gpu: bool) -> str:
    """The device faiss runs on for a resolved ``cpu``/``cuda`` request: ``cuda`` needs a GPU build."""
    return "cuda" if resolved == "cuda" and faiss_has_gpu else "cpu"


def fit_centroids(
    x: np.ndarray,
    n_clusters: int,
    *,
    niter: int = 20,
    seed: int = 0,
    max_points_per_centroid: int = 256,
    device: str = "auto",
    backend: str = "auto",
) -> np.ndarray:
    """Fit spherical k-means on unit rows ``x`` and return ``k × d`` float32 unit centroids.

    Both backends train on at most ``n_clusters * max_points_per_centroid`` rows (a seeded sample when
    ``x`` has more); the result is reproducible for a given seed, backend, thread count and device.
    """
    which = kmeans_backend(device, backend)
    if which.startswith("torch"):
        n_max = n_clusters * max_points_per_centroid
        if x.shape[0] > n_max:
            x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], n_max, replace=False))]
        return torch_kmeans(x, n_clusters, niter=niter, seed=seed, device=which.split("-")[1])
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(
        x.shape[1],
        n_clusters,
        niter=niter,
        seed=seed,
        spherical=True,
        max_points_per_centroid=max_points_per_centroid,
        min_points_per_centroid=1,
        gpu=which == "faiss-gpu",
        verbose=False,
    )
    km.train(x)
    return _unit_rows(km.centroids)


ASSIGN_CANDIDATES = 3
"""Centroids each row's fast search nominates; the one with the highest exact cosine is its cluster."""


def assign(
    x: np.ndarray, centroids: np.ndarray, device: str = "auto", backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Assign each unit row of ``x`` to its highest-cosine centroid.

    Returns ``(labels int64, dist_to_centroid float32)`` with ``dist = 1 - cosine``. A fast search (faiss,
    or torch on a GPU in float16) nominates the best few centroids of each row; where another lies within
    the search's error of the best, they are decided on exact cosines (ties to the lower centroid), and
    ``dist`` is always the exact cosine's, so labels and distances do not depend on how the rows were
    chunked or which backend ran (see :func:`exact_nearest`). Works in chunks, so ``x`` may be a memory map.
    """
    which = kmeans_backend(device, backend)
    if which.startswith("torch"):
        return torch_assign(x, centroids, device=which.split("-")[1])
    import faiss

    centroids = np.ascontiguousarray(centroids, dtype=np.float32)
    index: faiss.Index = faiss.IndexFlatIP(centroids.shape[1])
    if which == "faiss-gpu":
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(centroids)
    n = x.shape[0]
    top = min(ASSIGN_CANDIDATES, centroids.shape[0])
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    for start in range(0, n, _ASSIGN_CHUNK):
        chunk = np.ascontiguousarray(x[start : start + _ASSIGN_CHUNK], dtype=np.float32)
        sims, idx = index.search(chunk, top)
        lab, dst = exact_nearest(chunk, centroids, idx, sims, ASSIGN_TOLERANCE["float32"])
        labels[start : start + len(chunk)], dist[start : start + len(chunk)] = lab, dst
    return labels, dist


ASSIGN_TOLERANCE = {"float32": 2e-5, "float16": 4e-3}
"""How close to the best a nominated centroid's fast similarity must be for the exact cosines to decide."""


def exact_nearest(
    x: np.ndarray, centroids: np.ndarray, cand: np.ndarray, fast: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cluster among its nominated centroids ``cand`` (rows × t, best first by the ``fast``
    similarities) and ``1 −`` its exact cosine, as float32. Rows whose second candidate lies within ``tol``
    of the first are decided on the exact cosines of all candidates within ``tol`` (ties to the lower
    centroid) — of every centroid, where even the last nominee lies within ``tol``; the others keep the
    first. The exact cosine is float64 arithmetic on the float32 values
    (:func:`~semdedup_core.kernels.pairwise.pair_dots`), the same for a row in any chunk."""
    from .pairwise import exact_best, pair_dots

    n = len(x)
    rows = np.arange(n)
    cand = np.asarray(cand, dtype=np.int64)
    label = cand[:, 0].copy()
    if cand.shape[1] > 1:
        close = (cand >= 0) & (fast >= fast[:, :1] - tol)
        close[:, 0] = True
        tied = np.flatnonzero(close[:, 1:].any(axis=1))
        if len(tied):
            t = cand.shape[1]
            exact = pair_dots(x, np.repeat(tied, t), centroids, np.maximum(cand[tied], 0).ravel()).reshape(-1, t)
            exact[~close[tied]] = -np.inf
            best = exact.max(axis=1, keepdims=True)
            label[tied] = np.where(exact == best, cand[tied], np.iinfo(np.int64).max).min(axis=1)
        # where even the last nominee lies within tol, centroids beyond it may too: every one is weighed
        beyond = np.flatnonzero(close[:, -1]) if cand.shape[1] < len(centroids) else np.empty(0, np.int64)
        if len(beyond):
            c32 = np.asarray(centroids, dtype=np.float32)
            label[beyond] = exact_best(np.asarray(x[beyond], np.float32), c32, np.zeros(len(c32), bool), tol)
    sims = pair_dots(x, rows, centroids, label)
    return label, (1.0 - sims).astype(np.float32)


# -- the torch backend --------------------------------------------------------------------------------


def compute_dtype(device: str) -> Any:
    """The dtype of the similarity products: float16 on CUDA (float32 accumulation), float32 on a CPU."""
    import torch

    return torch.float16 if device == "cuda" else torch.float32


def chunk_rows(n_cols: int, dim: int, budget_bytes: int, itemsize: int, n: int) -> int:
    """Rows per chunk so that a chunk's ``rows × n_cols`` similarities, its rows and the float32 copies
    made of them (staging, refinement candidates) stay within ``budget_bytes``."""
    per_row = n_cols * itemsize + (4 + 3) * dim * 4
    return int(max(1, min(n, max(256, budget_bytes // per_row))))


def _default_budget(device: str) -> int:
    return (1 << 30) if device == "cuda" else (128 << 20)


def iter_chunks(x: np.ndarray, rows: int, device: str, dtype: Any) -> Iterator[tuple[int, Any]]:
    """``(start, tensor)`` for consecutive row chunks of the host array ``x`` on ``device`` as ``dtype``.

    On CUDA each chunk is copied once into one of two pinned staging buffers and sent by a non-blocking
    copy on a side stream, so the host copy of the next chunk and its transfer overlap the device's
    work on this one; the compute stream waits for each transfer, and a buffer is reused only after
    its transfer has finished. On a CPU the chunks are views (converted if needed).
    """
    import torch

    n, d = x.shape
    if device != "cuda":
        for s in range(0, n, rows):
            chunk = np.ascontiguousarray(x[s : s + rows])
            yield s, torch.from_numpy(chunk if chunk.flags.writeable else chunk.copy()).to(dtype)
        return
    staging = [torch.empty((rows, d), dtype=torch.float32, pin_memory=True) for _ in range(2)]
    copied: list[Any] = [None, None]
    side = torch.cuda.Stream()
    compute = torch.cuda.current_stream()
    for i, s in enumerate(range(0, n, rows)):
        buf = staging[i % 2]
        if copied[i % 2] is not None:
            copied[i % 2].synchronize()  # the transfer out of this buffer is done: safe to overwrite it
        m = min(rows, n - s)
        buf[:m].copy_(torch.from_numpy(np.ascontiguousarray(x[s : s + m], dtype=np.float32)))
        with torch.cuda.stream(side):
            chunk = buf[:m].to(device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(side)
        copied[i % 2] = event
        compute.wait_event(event)
        chunk.record_stream(compute)  # allocated on the side stream, used on the compute stream
        yield s, chunk.to(dtype)


class _Points:
    """The training points, on the device once when they fit in ``resident_bytes`` (else streamed from
    the host chunk by chunk each iteration). Yields ``(start, chunk)`` in ``dtype``."""

    def __init__(self, x: np.ndarray, rows: int, device: str, dtype: Any, resident_bytes: int | None):
        import torch

        self.x, self.rows, self.device, self.dtype = x, rows, device, dtype
        self.resident: Any = None
        size = x.shape[0] * x.shape[1] * torch.empty((), dtype=dtype).element_size()
        if device == "cuda":
            if resident_bytes is None:
                free, _total = torch.cuda.mem_get_info()
                resident_bytes = int(free * 0.6)
            if size <= resident_bytes:
                self.resident = torch.empty(x.shape, dtype=dtype, device=device)
                for s, chunk in iter_chunks(x, rows, device, dtype):
                    self.resident[s : s + len(chunk)] = chunk
        else:
            self.resident = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(dtype)

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        if self.resident is None:
            yield from iter_chunks(self.x, self.rows, self.device, self.dtype)
            return
        for s in range(0, self.resident.shape[0], self.rows):
            yield s, self.resident[s : s + self.rows]


def split_empty_clusters(sums: Any, counts: Any) -> int:
    """Give every empty cluster half of the largest cluster, as faiss does: the empty one takes a copy of
    the largest one's centroid, the two are pushed apart by ``±SPLIT_EPS`` on alternating coordinates,
    and its count is halved between them. ``sums`` holds centroids (or sums) to be normalised after.
    Returns the number of clusters split. Works in place on torch tensors."""
    empty = (counts == 0).nonzero().flatten().tolist()
    if not empty:
        return 0
    import torch

    d = sums.shape[1]
    sign = torch.ones(d, dtype=sums.dtype, device=sums.device)
    sign[1::2] = -1
    for ci in empty:
        cj = int(torch.argmax(counts))
        if int(counts[cj]) < 2:
            break  # nothing left to split (fewer points than clusters); the centroid stays empty
        sums[ci] = sums[cj] * (1 + SPLIT_EPS * sign)
        sums[cj] = sums[cj] * (1 - SPLIT_EPS * sign)
        half = counts[cj] // 2
        counts[ci] = half
        counts[cj] -= half
    return len(empty)


def torch_kmeans(
    x: np.ndarray,
    n_clusters: int,
    *,
    niter: int = 20,
    seed: int = 0,
    device: str = "cpu",
    budget_bytes: int | None = None,
    resident_bytes: int | None = None,
) -> np.ndarray:
    """Spherical k-means in torch on the unit rows ``x``: ``k × d`` float32 unit centroids.

    Like faiss: the initial centroids are ``k`` distinct rows drawn with ``seed``; each of ``niter``
    iterations assigns every row to its highest-cosine centroid, moves each centroid to the mean of its
    rows, splits the largest cluster for each empty one, and normalises. Similarities are computed
    ``rows × k`` at a time within ``budget_bytes`` (float16 products on CUDA), and the sums accumulate
    in float32. ``resident_bytes`` caps the device memory the points may occupy (default: 60 % of
    the free memory); beyond it they are streamed from pinned host memory every iteration.
    """
    import torch

    n, d = x.shape
    if not 1 <= n_clusters <= n:
        raise SemDedupError(f"n_clusters must be between 1 and the number of items ({n}), got {n_clusters}")
    dtype = compute_dtype(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    rows = chunk_rows(n_clusters, d, budget_bytes or _default_budget(device), itemsize, n)
    init = np.sort(np.random.default_rng(seed).choice(n, n_clusters, replace=False))
    with torch.inference_mode():
        points = _Points(x, rows, device, dtype, resident_bytes)
        centroids = torch.from_numpy(_unit_rows(np.asarray(x[init]))).to(device)
        for _ in range(niter):
            c = centroids.to(dtype)
            sums = torch.zeros((n_clusters, d), dtype=torch.float32, device=device)
            counts = torch.zeros(n_clusters, dtype=torch.int64, device=device)
            for _s, chunk in points:
                labels = (chunk @ c.T).argmax(dim=1)
                sums.index_add_(0, labels, chunk.float())
                counts += torch.bincount(labels, minlength=n_clusters)
            split_empty_clusters(sums, counts)
            norms = sums.norm(dim=1, keepdim=True)
            fresh = norms[:, 0] > 0
            centroids = torch.where(fresh[:, None], sums / norms.clamp_min(1e-30), centroids)
        return centroids.float().cpu().numpy()


def torch_assign(
    x: np.ndarray, centroids: np.ndarray, *, device: str = "cpu", budget_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centroid assignment in torch: ``(labels int64, dist float32)`` with ``dist = 1 − cosine``.

    Rows go to the device a chunk at a time (pinned, non-blocking); on CUDA the similarities are computed
    in float16. Each row's best :data:`ASSIGN_CANDIDATES` centroids are decided by :func:`exact_nearest`,
    so labels and distances are those of exact arithmetic, as with the faiss backend.
    """
    import torch

    n = x.shape[0]
    k = centroids.shape[0]
    dtype = compute_dtype(device)
    itemsize = torch.empty((), dtype=dtype).element_size()
    rows = chunk_rows(k, x.shape[1], budget_bytes or _default_budget(device), itemsize, n)
    tol = ASSIGN_TOLERANCE["float16" if dtype == torch.float16 else "float32"]
    c32 = np.ascontiguousarray(centroids, dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    with torch.inference_mode():
        c = torch.from_numpy(c32).to(device).to(dtype)
        for s, chunk in iter_chunks(x, rows, device, torch.float32):
            fast, cand = (chunk.to(dtype) @ c.T).topk(min(ASSIGN_CANDIDATES, k), dim=1)
            host = np.ascontiguousarray(x[s : s + len(chunk)], dtype=np.float32)
            lab, dst = exact_nearest(host, c32, cand.cpu().numpy(), fast.float().cpu().numpy(), tol)
            labels[s : s + len(chunk)], dist[s : s + len(chunk)] = lab, dst
    return labels, dist
