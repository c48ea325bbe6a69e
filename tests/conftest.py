"""Shared fixtures. Append new fixtures below; keep each one self-contained."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# -- app / explorer fixtures: small results folders with planted duplicates ----------------------

WORDS = (
    "the quick brown fox jumps over lazy dog while seven bright stars shine above quiet river "
    "and happy people dance under old trees near warm golden fields of wheat every summer night"
).split()

HOSTILE_TEXTS = ("<script>alert(1)</script>", "**bold** # heading [link](http://x) $x^2$ :red[red]")


def planted_text_data(n_base: int = 120, d: int = 24, seed: int = 0) -> tuple[np.ndarray, list[str], pd.DataFrame]:
    """Embeddings, ids and a ``text`` column: ``n_base`` random items plus near-copies of some of them
    (one word changed, similarity 0.90–0.999) and a chain (a copy of a copy)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_base, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    texts = [" ".join(rng.choice(WORDS, size=8)) for _ in range(n_base)]
    texts[0], texts[1] = HOSTILE_TEXTS
    vecs, out_texts = list(base), list(texts)
    for j, noise in enumerate(np.linspace(0.02, 0.45, 40)):
        src = int(rng.integers(n_base)) if j else 0
        v = base[src] + noise * rng.normal(size=d).astype(np.float32) / np.sqrt(d)
        words = texts[src].split()
        words[int(rng.integers(len(words)))] = "CHANGED"
        vecs.append(v / np.linalg.norm(v))
        out_texts.append(" ".join(words))
    # a chain: C is a copy of B, which is a copy of A (item 5)
    b = base[5] + 0.1 * rng.normal(size=d).astype(np.float32) / np.sqrt(d)
    c = b + 0.1 * rng.normal(size=d).astype(np.float32) / np.sqrt(d)
    for v, t in ((b, texts[5] + " B"), (c, texts[5] + " C")):
        vecs.append(v / np.linalg.norm(v))
        out_texts.append(t)
    x = np.stack(vecs).astype(np.float32)
    ids = [f"t{i:04d}" for i in range(len(x))]
    return x, ids, pd.DataFrame({"text": out_texts})


def make_text_results(out: Path, k: int = 5, **kw):
    from semdedup_core import ClusterConfig, dedup

    x, ids, cols = planted_text_data(**kw)
    return dedup(x, ids, cluster=ClusterConfig(k, seed=0), out=out, columns=cols)


def make_image_results(out: Path, n: int = 30, seed: int = 0):
    """PNG images of coloured squares (some near-copies), embedded as their downsampled pixels."""
    from PIL import Image

    from semdedup_core import ClusterConfig, dedup

    rng = np.random.default_rng(seed)
    img_dir = out.parent / (out.name + "-images")
    img_dir.mkdir(parents=True, exist_ok=True)
    paths, vecs = [], []
    for i in range(n):
        if i >= n // 2 and i % 2 == 0:  # a near-copy of an earlier image
            arr = np.asarray(Image.open(paths[i - n // 2])).astype(np.int16)
            arr = np.clip(arr + rng.integers(-12, 12, size=arr.shape), 0, 255).astype(np.uint8)
        else:
            arr = np.zeros((48, 48, 3), dtype=np.uint8)
            arr[:] = rng.integers(0, 255, size=3)
            x0, y0 = rng.integers(0, 30, size=2)
            arr[y0 : y0 + 18, x0 : x0 + 18] = rng.integers(0, 255, size=3)
        p = img_dir / f"img{i:03d}.png"
        Image.fromarray(arr).save(p)
        paths.append(str(p))
        vecs.append(arr[::6, ::6].astype(np.float32).ravel() - 127.5)
    x = np.stack(vecs)
    cols = pd.DataFrame({"path": paths})
    return dedup(x, [f"img{i:03d}" for i in range(n)], cluster=ClusterConfig(3, seed=0), out=out, columns=cols)


@pytest.fixture(scope="session")
def text_results(tmp_path_factory):
    """A finished results folder of planted text duplicates (with hostile texts and a chain)."""
    return make_text_results(tmp_path_factory.mktemp("app") / "text-run")


@pytest.fixture(scope="session")
def image_results(tmp_path_factory):
    """A finished results folder of generated PNG images with a ``path`` column."""
    return make_image_results(tmp_path_factory.mktemp("app") / "image-run")
