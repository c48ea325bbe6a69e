"""Webdataset ``.tar`` shards: a folder, one shard, or a brace pattern; read in place from the headers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ...errors import SemDedupError
from ...results.io import bad_id_char
from ...results.names import RESERVED_COLUMNS as RESERVED
from .common import IMAGE_SUFFIXES, Items, _clean, _err

WDS_IMAGE_EXT = ("jpg", "jpeg", "png", "webp")


_MAX_SIDE_TEXT = 1 << 20  # a txt/json/cls member larger than this is not carried


def expand_braces(pattern: str) -> list[str]:
    """Expand webdataset-style braces: ``shard-{000..012}.tar`` (numeric range, zero padding kept) and
    ``{train,val}``; several groups multiply. A pattern without braces is returned as it is."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    body = m.group(1)
    rng = re.fullmatch(r"(\d+)\.\.(\d+)", body)
    if rng:
        a, b = rng.group(1), rng.group(2)
        width = len(a) if a.startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        if hi < lo:
            raise SemDedupError(f"brace range {{{body}}} in {pattern!r} runs backwards; write {{{b}..{a}}}")
        choices = [str(i).zfill(width) for i in range(lo, hi + 1)]
    else:
        choices = body.split(",")
    out = []
    for c in choices:
        out.extend(expand_braces(pattern[: m.start()] + c + pattern[m.end() :]))
    return out


def wds_shards(path: str) -> list[Path] | None:
    """The ``.tar`` shards ``path`` names (a folder of them, one shard, or a brace pattern), or ``None``
    when ``path`` is not a webdataset input."""
    if "{" in path and "}" in path:
        shards = [Path(p) for p in expand_braces(path)]
        missing = [str(p) for p in shards if not p.is_file()]
        if missing:
            raise SemDedupError(
                f"{len(missing)} of the {len(shards)} shards {path!r} names do not exist (first: {missing[0]!r}); "
                "check the pattern"
            )
        return shards
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".tar":
        return [p]
    if p.is_dir():
        tars = sorted(q for q in p.iterdir() if q.suffix.lower() == ".tar" and q.is_file())
        if tars and not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            return tars
    return None


def _wds_key(name: str) -> tuple[str, str]:
    """``dir/abc.def.jpg`` → (``dir/abc``, ``def.jpg``): webdataset's key is everything before the first
    dot of the file name; the rest is the extension."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def _side_value(data: bytes, ext: str) -> tuple[str, Any] | None:
    import json

    if len(data) > _MAX_SIDE_TEXT:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if ext == "json":
        try:
            return "json", json.loads(text)
        except ValueError:
            return "json_error", text[:200]
    return ext, text


def load_webdataset(shards: list[Path], *, id_column: str | None = None) -> Items:
    """Samples of webdataset ``.tar`` shards, read in place (member offsets from the tar headers; nothing
    is extracted). Each key with a ``jpg``/``jpeg``/``png``/``webp`` member is an image item whose id is
    the key; its ``txt`` becomes ``text``, a ``json`` member's top-level fields become columns (nested
    values as JSON text), ``cls`` and other small text members are carried by extension. A key without an
    image, a repeated key, a damaged member or a truncated shard is an error row."""
    import json

    import pandas as pd

    from ...media import files as media

    if id_column is not None:
        raise SemDedupError("--id-column does not apply to webdataset shards: the sample key is the id; drop it")
    ids: list[str] = []
    paths: list[str] = []
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    n_input = 0
    for shard in shards:
        shard = shard.resolve()
        index = media.tar_index(str(shard))
        samples: dict[str, dict[str, str]] = {}
        for name in index.order:
            key, ext = _wds_key(name)
            samples.setdefault(key, {})[ext] = name
        for key, members in samples.items():
            n_input += 1
            images = [members[e] for e in WDS_IMAGE_EXT if e in members]
            where = f"{shard}/{key}"
            if not images:
                errors.append(_err(key, where, f"no image member ({', '.join(sorted(members)) or 'none'})"))
                continue
            if key in seen:
                errors.append(_err(key, f"{shard}/{images[0]}", f"duplicate key (first in {seen[key]})"))
                continue
            if bad_id_char(key) is not None:
                errors.append(_err(None, f"{shard}/{images[0]}", "key contains a line break or NUL"))
                continue
            seen[key] = shard.name
            row: dict[str, Any] = {"shard": shard.name}
            for ext, name in sorted(members.items()):
                if ext in WDS_IMAGE_EXT:
                    continue
                try:
                    side = _side_value(media.read_bytes(f"{shard}/{name}"), ext)
                except (OSError, EOFError):
                    side = None
                if side is None:
                    continue
                kind, value = side
                if kind == "json" and isinstance(value, dict):
                    for k, v in value.items():
                        row[f"json_{k}" if k in RESERVED or k == "shard" else str(k)] = (
                            json.dumps(v) if isinstance(v, (dict, list)) else v
                        )
                elif kind == "txt":
                    row["text"] = value
                else:
                    row[kind] = value if not isinstance(value, (dict, list)) else json.dumps(value)
            ids.append(key)
            paths.append(f"{shard}/{images[0]}")
            rows.append(row)
        if index.error:
            errors.append(
                _err(
                    None, str(shard), f"shard is damaged or truncated after {len(index.order)} members ({index.error})"
                )
            )
    if not ids:
        raise SemDedupError(
            f"the {len(shards)} shard(s) hold no usable image samples ({len(errors)} problems, e.g. "
            f"{errors[0]['reason'] if errors else 'no members'}); pass webdataset shards with jpg/png/webp members"
        )
    columns = pd.DataFrame(rows)
    front = pd.DataFrame({"path": paths})
    if "text" in columns:
        front["text"] = _clean(columns.pop("text").tolist())
    columns = pd.concat([front, columns.reset_index(drop=True)], axis=1)
    return Items(
        kind="webdataset",
        modality="image",
        ids=ids,
        columns=columns,
        paths=paths,
        errors=errors,
        n_input=n_input,
        source={"kind": "webdataset", "shards": [str(s.resolve()) for s in shards]},
        files=[str(s.resolve()) for s in shards],
    )
