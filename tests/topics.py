"""Generated, topic-clustered embeddings with planted near-copies, for the probe tests and benchmarks.

Real embedding sets are lumpy: a few large topics and many small ones, each a cloud of items around
its centre. k-means with more clusters than topics cuts the big clouds into pieces, so an item and a
near-copy of it (cosine 0.90–0.99) often land on opposite sides of a boundary. :func:`topic_items`
makes such a cloud; :func:`planted_copies` makes near-copies of chosen rows; :func:`leak_data` and
:func:`dedup_data` put them together for the two uses (a held-out set against a training set, and one
set against itself). Everything is seeded and row-streamed, so a million rows take seconds.
"""

from __future__ import annotations

import numpy as np


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def topic_sizes(n: int, n_topics: int, rng: np.random.Generator, skew: float = 1.0) -> np.ndarray:
    """``n`` items over ``n_topics`` topics with Zipf-like (``1 / rank**skew``) uneven sizes, shuffled."""
    w = 1.0 / np.arange(1, n_topics + 1) ** skew
    sizes = np.floor(w / w.sum() * n).astype(np.int64)
    sizes[: n - sizes.sum()] += 1
    return rng.permutation(sizes)


def topic_items(
    n: int, d: int, n_topics: int, rng: np.random.Generator, spread: float = 1.2, skew: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit rows around ``n_topics`` random centres (uneven topic sizes), and each row's topic.

    An item is ``centre + spread * g / sqrt(d)`` (``g`` standard normal), normalised: cosine to its
    centre about ``1 / sqrt(1 + spread²)`` (0.64 at the default), between two items of a topic ~0.4.
    """
    centres = unit(rng.standard_normal((n_topics, d)).astype(np.float32))
    topic = np.repeat(np.arange(n_topics), topic_sizes(n, n_topics, rng, skew))
    topic = rng.permutation(topic)
    x = np.empty((n, d), dtype=np.float32)
    step = 1 << 16
    for s in range(0, n, step):
        e = min(n, s + step)
        g = rng.standard_normal((e - s, d), dtype=np.float32)
        x[s:e] = unit(centres[topic[s:e]] + spread * g / np.sqrt(d))
    return x, topic


def planted_copies(src: np.ndarray, rng: np.random.Generator, low: float = 0.9, high: float = 0.995) -> np.ndarray:
    """A near-copy of each unit row of ``src`` with cosine drawn uniformly from ``[low, high]`` to it
    (exactly: the copy is ``cos · src + sin · u`` with ``u`` a random unit direction orthogonal to ``src``)."""
    m, d = src.shape
    cos = rng.uniform(low, high, m).astype(np.float32)
    u = rng.standard_normal((m, d)).astype(np.float32)
    u -= np.einsum("ij,ij->i", u, src)[:, None] * src
    u = unit(u)
    return unit(cos[:, None] * src + np.sqrt(1 - cos**2)[:, None] * u)


def leak_data(
    n: int, m: int, d: int = 64, n_topics: int = 40, leak_share: float = 0.3, seed: int = 0, spread: float = 1.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A training set of ``n`` rows and a held-out set of ``m`` rows from the same topics, where
    ``leak_share`` of the held-out rows are planted near-copies (cosine 0.90–0.995) of training rows.

    Returns ``(train, reference, source)`` with ``source[j]`` the training row copied into reference
    row ``j`` (-1 for a fresh reference item)."""
    rng = np.random.default_rng(seed)
    x, topic = topic_items(n + m, d, n_topics, rng, spread)
    train, ref = x[:n], x[n:].copy()
    n_leak = int(round(leak_share * m))
    source = np.full(m, -1, dtype=np.int64)
    source[:n_leak] = rng.choice(n, n_leak, replace=False)
    ref[:n_leak] = planted_copies(train[source[:n_leak]], rng)
    perm = rng.permutation(m)
    return train, ref[perm], source[perm]


def dedup_data(
    n: int, d: int = 64, n_topics: int = 40, copy_share: float = 0.1, seed: int = 0, spread: float = 1.2
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows where ``copy_share`` of them are planted near-copies (cosine 0.90–0.995) of other rows,
    at random positions. Returns ``(x, source)`` with ``source[i]`` the row copied into row ``i`` (-1 if none)."""
    rng = np.random.default_rng(seed)
    n_copy = int(round(copy_share * n))
    x, _ = topic_items(n - n_copy, d, n_topics, rng, spread)
    src = rng.choice(n - n_copy, n_copy, replace=False)
    allx = np.concatenate([x, planted_copies(x[src], rng)])
    source = np.concatenate([np.full(n - n_copy, -1), src])
    perm = rng.permutation(n)
    inv = np.empty(n, dtype=np.int64)
    inv[perm] = np.arange(n)
    source = source[perm]
    source[source >= 0] = inv[source[source >= 0]]
    return allx[perm], source
