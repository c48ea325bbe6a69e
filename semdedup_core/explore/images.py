"""Thumbnails of the images a results folder points at: the app's pictures and the report's embedded ones.

Pure PIL: an image file in, encoded bytes out. The user's files are only read.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}


def thumbnail(path: Any, size: int = 256, fmt: str = "PNG", quality: int = 85) -> bytes | None:
    """The image at ``path`` shrunk to fit ``size`` × ``size`` px (never enlarged), as RGB ``PNG`` or
    ``JPEG`` bytes (``quality`` for JPEG); ``None`` when the file is missing or not a readable image.
    The same file gives the same bytes."""
    from PIL import Image

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        with Image.open(Path(str(path))) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            if fmt == "JPEG":
                im.save(buf, format="JPEG", quality=quality, optimize=True)
            else:
                im.save(buf, format="PNG")
            return buf.getvalue()
    except Exception:  # missing, truncated, not an image, a decompression bomb...: no picture
        return None


def data_uri(data: bytes, fmt: str = "PNG") -> str:
    """``data:image/...;base64,...`` for bytes from :func:`thumbnail` (an image inside an HTML file)."""
    return f"data:{FORMATS[fmt]};base64,{base64.b64encode(data).decode('ascii')}"
