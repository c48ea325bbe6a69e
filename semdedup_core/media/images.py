"""Opening image files that cannot hurt: the one way the embedder, the app's thumbnails and the report's
embedded pictures read images.

A file is decoded only when it is a regular, non-empty file (checked with ``fstat`` on the opened
descriptor, opened with ``O_NONBLOCK``: a FIFO, a device or a socket named ``x.jpg`` never blocks a read),
inside ``root`` when one is given (a symbolic link out of an image folder is not followed), and of at
most :data:`MAX_PIXELS` decoded pixels — read from the header before anything is decoded (PIL's
``Image.open`` is lazy), after ``draft`` has picked a reduced JPEG scale. A 17 KB PNG that would decode
to 144 megapixels is refused in microseconds instead of costing a gigabyte. Everything refused raises
:class:`ImageRefused` with a one-line reason; decoding errors raise what PIL raises.
"""

from __future__ import annotations

import io as _io
import os
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from . import safe
from .safe import FileRefused

MAX_PIXELS = 40_000_000
"""Decoded pixels an image may have: 40 megapixels (≈ 120 MB as RGB), well under PIL's own bomb limits
(a warning at 89 M, an error at 179 M). Bigger JPEGs pass when ``draft`` decodes them at a reduced scale."""


class ImageRefused(FileRefused):
    """A file that is not decoded (not a regular file, empty, a link out of its folder, too many pixels)."""


inside = safe.inside
file_problem = safe.file_problem  # why a path must not be decoded, without opening it (empty files too)


def open_regular(path: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> BinaryIO:
    """Open ``path`` for binary reading, or raise :class:`ImageRefused` (see :func:`.safe.open_regular`:
    regular, non-empty files only, checked on the opened descriptor). A member of a container
    (``shard.tar/key.jpg``, see :mod:`semdedup_core.media.files`) is read from its container, which must
    itself pass these checks."""
    from . import files as media

    if not os.path.lexists(path) and any(c + "/" in str(path) for c in media.CONTAINERS):
        try:
            ref = media.resolve(str(path))
        except FileNotFoundError:
            raise ImageRefused("file not found (or a broken link)") from None
        if ref.member is not None:
            open_regular(ref.file, root).close()  # the container: a regular file inside the root
            try:
                data = media.read_bytes(str(path))
            except (OSError, EOFError) as exc:
                raise ImageRefused(f"not readable from its container ({type(exc).__name__})") from None
            if not data:
                raise ImageRefused("an empty file (0 bytes)")
            return _io.BytesIO(data)
    try:
        return safe.open_regular(path, root=root, allow_empty=False)
    except FileNotFoundError:
        raise ImageRefused("file not found (or a broken link)") from None
    except FileRefused as exc:
        raise ImageRefused(str(exc)) from None


def open_image(
    path: str | os.PathLike[str],
    *,
    size: int | None = 448,
    root: str | os.PathLike[str] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Any:
    """Decode an image to RGB (first frame of an animation or multi-page file), or raise.

    ``size``: the smallest edge the caller needs; a JPEG is decoded at the smallest scale that still
    gives it (``draft``) and any image far larger is reduced by a whole factor (``Image.reduce``) right
    after decoding. ``None`` decodes at full size. Truncated files raise (``LOAD_TRUNCATED_IMAGES`` stays
    off); transparency is composited on white.
    """
    from PIL import Image, UnidentifiedImageError

    with open_regular(path, root) as f, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower
        try:
            im = Image.open(f)
        except Image.DecompressionBombError as exc:
            raise ImageRefused(f"too many pixels to decode safely ({exc})") from None
        except UnidentifiedImageError:  # named by its path, not by the descriptor it was read through
            raise UnidentifiedImageError(f"cannot identify image file {str(path)!r}") from None
        with im:
            im.seek(0)
            if size is not None:
                im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale when far larger than needed
            w, h = im.size
            if w * h > max_pixels:
                raise ImageRefused(
                    f"{w} × {h} pixels ({w * h / 1e6:.0f} megapixels) is more than the limit of "
                    f"{max_pixels / 1e6:.0f} megapixels"
                )
            im.load()
            factor = min(w, h) // (2 * size) if size is not None else 0
            if factor >= 2 and im.mode in ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F"):
                im = im.reduce(factor)
            return _to_rgb(im)


def _to_rgb(im: Any) -> Any:
    from PIL import Image

    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return im.convert("RGB")


FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


def thumbnail_bytes(
    path: str | os.PathLike[str],
    size: int,
    root: str | os.PathLike[str] | None = None,
    fmt: str = "PNG",
    quality: int = 85,
) -> bytes:
    """The image at ``path`` fitted into ``size`` × ``size`` pixels (never enlarged), decoded as
    :func:`open_image` does, encoded as RGB ``PNG`` or ``JPEG`` (``quality``); raises what it raises.
    The same file gives the same bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    im = open_image(path, size=size, root=root)
    im.thumbnail((size, size))
    buf = _io.BytesIO()
    if fmt == "JPEG":
        im.save(buf, format="JPEG", quality=quality, optimize=True)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_png(path: str | os.PathLike[str], size: int, root: str | os.PathLike[str] | None = None) -> bytes:
    """:func:`thumbnail_bytes` as PNG."""
    return thumbnail_bytes(path, size, root)


def thumbnail(path: Any, size: int = 256, fmt: str = "PNG", quality: int = 85) -> bytes | None:
    """:func:`thumbnail_bytes`, or ``None`` when the file is missing, refused or not a readable image
    (for pictures that are shown when they can be: the report's)."""
    try:
        return thumbnail_bytes(str(path), size, fmt=fmt, quality=quality)
    except ValueError as exc:
        if "fmt must be" in str(exc):
            raise
        return None
    except Exception:  # missing, truncated, not an image, refused: no picture
        return None


def data_uri(data: bytes, fmt: str = "PNG") -> str:
    """``data:image/...;base64,...`` for thumbnail bytes (an image inside an HTML file)."""
    import base64

    return f"data:{FORMATS[fmt]};base64,{base64.b64encode(data).decode('ascii')}"


def file_stamp(path: str | os.PathLike[str]) -> tuple[Any, ...]:
    """``(device, inode, size, mtime_ns)`` of the file ``path`` leads to (of its container, with the
    member's name, for a container member): a cache key that changes when its bytes do."""
    from . import files as media

    if not os.path.lexists(path) and any(c + "/" in str(path) for c in media.CONTAINERS):
        ref = media.resolve(str(path))
        st = Path(ref.file).stat()
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, ref.member or ""
    st = Path(path).stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
