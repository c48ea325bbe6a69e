"""Finding the items of a raw input: an image folder, a table, or LAION-style embedding shards.

:func:`load_input` reads only what is cheap (file lists, table rows, shard metadata), checks every item
it can without decoding it (missing paths, empty or huge texts, duplicate ids) and returns
:class:`Items`: the candidate items in a fixed order, the columns to carry into ``items.parquet`` and
the problems found so far. Decoding images and reading embedding rows happens later, in ``embed``.
Nothing here writes anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import SemDedupError
from .common import IMAGE_SUFFIXES, TABLE_SUFFIXES, Items
from .fingerprint import input_fingerprint, source_fingerprint
from .folder import list_images, load_image_folder
from .hf import is_hf_dataset, load_hf_dataset
from .shards import load_shards
from .table import load_table, read_table
from .webdataset import expand_braces, load_webdataset, wds_shards

__all__ = [
    "IMAGE_SUFFIXES",
    "READERS",
    "TABLE_SUFFIXES",
    "Items",
    "Reader",
    "expand_braces",
    "input_fingerprint",
    "is_hf_dataset",
    "list_images",
    "load_hf_dataset",
    "load_image_folder",
    "load_input",
    "load_shards",
    "load_table",
    "load_webdataset",
    "check_options",
    "read_table",
    "reader_for",
    "source_fingerprint",
    "wds_shards",
]


@dataclass(frozen=True)
class Reader:
    """One kind of raw input: ``detect(path)`` says whether ``path`` is of this kind (from listings and
    metadata only), ``load(path, **options)`` finds its items (:class:`Items`). ``options`` names the
    column options (``text_column``, ``image_column``, ``id_column``) the kind accepts."""

    name: str
    description: str
    detect: Callable[[str], bool]
    load: Callable[..., Items]
    options: tuple[str, ...] = ()


def _is_dir_with(*children: str) -> Callable[[str], bool]:
    return lambda path: Path(path).is_dir() and any((Path(path) / c).is_dir() for c in children)


def _load_wds(path: str, *, id_column: str | None = None, **_: Any) -> Items:
    return load_webdataset(wds_shards(path) or [], id_column=id_column)


def _load_folder(path: str, **_: Any) -> Items:
    return load_image_folder(Path(path))


READERS: tuple[Reader, ...] = (
    Reader(
        "webdataset",
        "webdataset .tar shards: a folder, one shard, or a brace pattern (the sample key is the id)",
        lambda path: wds_shards(path) is not None,
        _load_wds,
        ("id_column",),
    ),
    Reader(
        "hf",
        "a Hugging Face dataset split saved with save_to_disk",
        lambda path: Path(path).is_dir() and is_hf_dataset(Path(path)),
        lambda path, **kw: load_hf_dataset(Path(path), **kw),
        ("text_column", "image_column", "id_column", "max_text_chars"),
    ),
    Reader(
        "shards",
        "precomputed embedding shards (img_emb/ or text_emb/ with metadata/)",
        _is_dir_with("img_emb", "text_emb"),
        lambda path, **kw: load_shards(Path(path), **{k: v for k, v in kw.items() if k != "max_text_chars"}),
        ("text_column", "image_column", "id_column"),
    ),
    Reader("folder", "a folder of images (searched recursively)", lambda path: Path(path).is_dir(), _load_folder),
    Reader(
        "table",
        f"a table ({', '.join(TABLE_SUFFIXES)}) of texts and/or image paths",
        lambda path: Path(path).is_file() and Path(path).suffix.lower() in TABLE_SUFFIXES,
        lambda path, **kw: load_table(Path(path), **kw),
        ("text_column", "image_column", "id_column", "max_text_chars"),
    ),
)
"""The input readers, in the order their ``detect`` is asked (the first that says yes reads the input)."""

_OPTION_FLAGS = {"text_column": "--text-column", "image_column": "--image-column", "id_column": "--id-column"}


def reader_for(path: str | os.PathLike[str]) -> Reader:
    """The reader of ``path``; raises :class:`SemDedupError` saying what ``path`` is not."""
    p = Path(path)
    if p.is_dir() and (p / "dataset_dict.json").is_file():
        splits = sorted(q.name for q in p.iterdir() if q.is_dir() and is_hf_dataset(q))
        raise SemDedupError(
            f"{str(p)!r} holds several splits of a Hugging Face dataset ({', '.join(splits)}); pass one of them, "
            f"e.g. {str(p / (splits[0] if splits else 'train'))!r}"
        )
    for reader in READERS:
        if reader.detect(str(path)):
            return reader
    if not p.exists():
        raise SemDedupError(
            f"input {str(p)!r} does not exist; pass an image folder, a .parquet/.csv/.jsonl table or an embeddings folder"
        )
    raise SemDedupError(
        f"input {str(p)!r} is neither a folder nor a table ({', '.join(TABLE_SUFFIXES)}); "
        "pass an image folder, a table, or use --embeddings for an .npy matrix"
    )


def load_input(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    max_text_chars: int = 100_000,
) -> Items:
    """Find the items of ``path`` with the reader that recognises it (:data:`READERS`): a folder of images,
    a table, a folder of embedding shards, webdataset ``.tar`` shards (a folder, one shard, or a brace
    pattern such as ``shards/{00000..00099}.tar``), or a Hugging Face dataset saved with ``save_to_disk``.
    A column option the reader does not take is refused, naming it."""
    reader = check_options(path, text_column=text_column, image_column=image_column, id_column=id_column)
    given = {"text_column": text_column, "image_column": image_column, "id_column": id_column}
    options = {k: v for k, v in {**given, "max_text_chars": max_text_chars}.items() if k in reader.options}
    return reader.load(str(path), **options)


def check_options(path: str | os.PathLike[str], **columns: str | None) -> Reader:
    """The reader of ``path``, once the column options given (``text_column``, ``image_column``,
    ``id_column``) are ones it takes; raises naming the options and the fix otherwise."""
    reader = reader_for(path)
    extra = [_OPTION_FLAGS[k] for k, v in columns.items() if v and k not in reader.options]
    if extra and reader.name == "webdataset":
        raise SemDedupError(
            "--text-column/--image-column do not apply to webdataset shards: images are embedded and each "
            "sample's txt is carried as text; drop them"
        )
    if extra:
        raise SemDedupError(
            f"--text-column/--image-column/--id-column apply to tables, but {str(path)!r} is a folder of images; "
            "drop them or pass a .parquet/.csv/.jsonl file"
        )
    return reader
