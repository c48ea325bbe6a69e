"""Finding the items of a raw input: an image folder, a table, or LAION-style embedding shards.

:func:`load_input` reads only what is cheap (file lists, table rows, shard metadata), checks every item
it can without decoding it (missing paths, empty or huge texts, duplicate ids) and returns
:class:`Items`: the candidate items in a fixed order, the columns to carry into ``items.parquet`` and
the problems found so far. Decoding images and reading embedding rows happens later, in ``embed``.
Nothing here writes anywhere.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..media.images import file_problem
from ..results.io import bad_id_char
from ..results.names import RESERVED_COLUMNS as RESERVED

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")


@dataclass
class Items:
    """The candidate items of an input, in order.

    ``kind``: ``folder``, ``table``, ``shards`` (precomputed embeddings), ``webdataset`` or ``hf``. ``modality``: ``image`` or ``text`` (what an encoder
    must embed; for shards, what the shards hold). ``paths``/``texts``: one per item for the modality
    embedded (``None`` otherwise). ``shards``: for precomputed embeddings, ``(npy_path, first_item,
    rows_in_file)`` with ``rows`` the file rows that are items, in item order. ``errors``: dicts with
    ``id``, ``path`` and ``reason`` for input rows already left out. ``skipped``: files in an image
    folder that are not named like images (captions, json beside them), not counted as errors.
    """

    kind: str
    modality: str
    ids: list[str]
    columns: Any  # pandas.DataFrame, one row per item
    paths: list[str] | None = None
    texts: list[str] | None = None
    shards: list[tuple[str, np.ndarray]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    n_input: int = 0
    skipped: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # container files the items live in (tar shards, Arrow)

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """Identity of the candidate items (ids, paths or texts, file sizes and times)."""
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.kind}|{self.modality}|{len(self.ids)}".encode())
        for i, item_id in enumerate(self.ids):
            h.update(item_id.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
            if self.paths is not None:
                p = self.paths[i]
                try:
                    st = os.stat(p)
                    h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogatepass"))
                except OSError:
                    h.update(p.encode("utf-8", "surrogatepass"))
            elif self.texts is not None:
                h.update(self.texts[i].encode("utf-8", "surrogatepass"))
        for path, rows in self.shards:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}|{len(rows)}".encode())
        for path in self.files:
            st = os.stat(path)
            h.update(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        return h.hexdigest()


def _err(item_id: Any, path: Any, reason: str) -> dict[str, Any]:
    return {
        "id": None if item_id is None else str(item_id),
        "path": None if path is None else str(path),
        "reason": reason,
    }


def load_input(
    path: str | os.PathLike[str],
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    max_text_chars: int = 100_000,
) -> Items:
    """Find the items of ``path``: a folder of images, a table, a folder of embedding shards, webdataset
    ``.tar`` shards (a folder, one shard, or a brace pattern such as ``shards/{00000..00099}.tar``), or a
    Hugging Face dataset saved with ``save_to_disk``."""
    tars = wds_shards(str(path))
    if tars is not None:
        if text_column or image_column:
            raise SemDedupError(
                "--text-column/--image-column do not apply to webdataset shards: images are embedded and each "
                "sample's txt is carried as text; drop them"
            )
        return load_webdataset(tars, id_column=id_column)
    p = Path(path)
    if p.is_dir() and (p / "dataset_dict.json").is_file():
        splits = sorted(q.name for q in p.iterdir() if q.is_dir() and is_hf_dataset(q))
        raise SemDedupError(
            f"{str(p)!r} holds several splits of a Hugging Face dataset ({', '.join(splits)}); pass one of them, "
            f"e.g. {str(p / (splits[0] if splits else 'train'))!r}"
        )
    if p.is_dir() and is_hf_dataset(p):
        return load_hf_dataset(
            p, text_column=text_column, image_column=image_column, id_column=id_column, max_text_chars=max_text_chars
        )
    if not p.exists():
        raise SemDedupError(
            f"input {str(p)!r} does not exist; pass an image folder, a .parquet/.csv/.jsonl table or an embeddings folder"
        )
    if p.is_dir():
        if (p / "img_emb").is_dir() or (p / "text_emb").is_dir():
            return load_shards(p, text_column=text_column, image_column=image_column, id_column=id_column)
        if text_column or image_column or id_column:
            raise SemDedupError(
                f"--text-column/--image-column/--id-column apply to tables, but {str(p)!r} is a folder of images; "
                "drop them or pass a .parquet/.csv/.jsonl file"
            )
        return load_image_folder(p)
    if p.suffix.lower() in TABLE_SUFFIXES:
        return load_table(
            p, text_column=text_column, image_column=image_column, id_column=id_column, max_text_chars=max_text_chars
        )
    raise SemDedupError(
        f"input {str(p)!r} is neither a folder nor a table ({', '.join(TABLE_SUFFIXES)}); "
        "pass an image folder, a table, or use --embeddings for an .npy matrix"
    )


def list_images(folder: Path) -> tuple[list[Path], int]:
    """The image files under ``folder`` (recursive; hidden files and folders left out; links to folders
    not followed), sorted by their path relative to ``folder``, and how many other files were skipped."""
    folder = folder.resolve()
    files, skipped = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES):
                files.append(Path(root, name))
            else:
                skipped += 1
    return sorted(files, key=lambda f: f.relative_to(folder).as_posix()), skipped


def load_image_folder(folder: Path, only: list[str] | None = None) -> Items:
    """Every image file under ``folder`` (recursive, sorted; hidden files and folders left out; links to
    folders not followed), or the files ``only`` names (a slice of that listing, for one part of a sharded
    run). A file whose name holds a line break is an error row at once; a file that must not be decoded (a
    symbolic link to a file outside ``folder``, a FIFO, device or socket, an empty or oversize file)
    becomes one when the embedder opens it (:mod:`semdedup_core.media.images`)."""
    import pandas as pd

    folder = folder.resolve()
    if only is None:
        files, skipped = list_images(folder)
    else:
        files, skipped = [Path(f) for f in only], 0
    if not files:
        raise SemDedupError(
            f"folder {str(folder)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}); pass a folder of images "
            "or a table with --image-column"
        )
    ids, paths, errors = [], [], []
    for rel, path in sorted((f.relative_to(folder).as_posix(), str(f)) for f in files):
        bad = bad_id_char(rel)
        if bad is not None:
            errors.append(_err(rel, path, f"unreadable image (the file name holds a line break or NUL: '{bad}')"))
        else:
            ids.append(rel)
            paths.append(path)
    columns = pd.DataFrame({"path": paths})
    return Items(
        kind="folder",
        modality="image",
        ids=ids,
        columns=columns,
        paths=paths,
        errors=errors,
        n_input=len(files),
        skipped=skipped,
        source={"kind": "folder", "path": str(folder)},
    )


def read_table(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, na_values=[""], dtype_backend="numpy_nullable")
        return pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:
        where = _bad_jsonl_line(path) if suffix == ".jsonl" else None
        reason = where or f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise SemDedupError(f"table {str(path)!r} could not be read ({reason}); check its format") from None


def _bad_jsonl_line(path: Path) -> str | None:
    """``line N is not a JSON object (…)`` for the first line of a JSONL file that is not, else ``None``."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    return f"line {number} is not valid JSON: {exc.msg} at column {exc.colno}"
                if not isinstance(value, dict):
                    return f"line {number} is not a JSON object but {type(value).__name__}"
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    return None


def _carried(df: Any, used: list[str]) -> Any:
    """The table's other columns, renamed where they clash with the results format."""
    rest = df.drop(columns=[c for c in used if c is not None]).copy()
    rest.columns = [str(c) for c in rest.columns]
    renames = {}
    for c in rest.columns:
        if c in RESERVED:
            new = f"{c}_input"
            while new in rest.columns or new in renames.values():
                new += "_"
            renames[c] = new
    return rest.rename(columns=renames)


def _check_column(df: Any, name: str | None, option: str, path: Path) -> None:
    if name is not None and name not in df.columns:
        cols = ", ".join(map(str, df.columns[:30]))
        raise SemDedupError(f"{option} {name!r} is not a column of {str(path)!r} (columns: {cols}); pass one of them")


def _ids_with_errors(
    raw_ids: list[Any], paths: list[Any], first_row: int = 0
) -> tuple[list[str | None], list[dict[str, Any]]]:
    """Stringified ids; a missing or repeated id is an error for that row (its id becomes ``None``).
    Rows are numbered from ``first_row`` in the messages."""
    seen: dict[str, int] = {}
    ids: list[str | None] = []
    errors = []
    for row, (raw, p) in enumerate(zip(raw_ids, paths, strict=True), start=first_row):
        if raw is None or str(raw) == "":
            errors.append(_err(None, p, f"missing id (row {row})"))
            ids.append(None)
            continue
        s = str(raw)
        bad = bad_id_char(s)
        if bad is not None:
            errors.append(_err(s, p, f"the id holds a line break or NUL ('{bad}'; row {row})"))
            ids.append(None)
            continue
        if s in seen:
            errors.append(_err(s, p, f"duplicate id (row {row}; first at row {seen[s]})"))
            ids.append(None)
            continue
        seen[s] = row
        ids.append(s)
    return ids, errors


def _clean(values: Any) -> list[Any]:
    import pandas as pd

    return [None if (v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))) else v for v in values]


def load_table(
    path: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    id_column: str | None,
    max_text_chars: int = 100_000,
    rows: tuple[int, int] | None = None,
) -> Items:
    """Rows of a table; images when ``image_column`` is given (paths relative to the table's folder),
    else texts. With both, the images are embedded and the texts carried as ``text``. ``rows``: only the
    rows ``start:stop`` (one part of a sharded run; default ids stay the table's row numbers)."""
    path = path.resolve()
    if text_column is None and image_column is None:
        raise SemDedupError(f"table {str(path)!r} needs --text-column NAME or --image-column NAME to say what to embed")
    df = read_table(path)
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        _check_column(df, name, option, path)
    first = 0
    if rows is not None:
        first = rows[0]
        df = df.iloc[rows[0] : rows[1]].reset_index(drop=True)
    n = len(df)
    if n == 0:
        raise SemDedupError(f"table {str(path)!r} has no rows; nothing to deduplicate")
    base = path.parent
    paths_all: list[str | None] = [None] * n
    if image_column is not None:
        for row, v in enumerate(_clean(df[image_column].tolist())):
            if v is not None and str(v).strip():
                p = Path(str(v).strip())
                paths_all[row] = str(p if p.is_absolute() else (base / p))
    raw_ids = _clean(df[id_column].tolist()) if id_column is not None else [str(first + i) for i in range(n)]
    ids_all, errors = _ids_with_errors(raw_ids, paths_all, first)
    texts_all = _clean(df[text_column].tolist()) if text_column is not None else None

    keep = []
    for row in range(n):
        item_id = ids_all[row]
        if item_id is None:
            continue
        if image_column is not None:
            v = df[image_column].iloc[row]
            p = paths_all[row]
            if p is None:
                errors.append(_err(item_id, None, f"missing image path in column {image_column!r}"))
                continue
            if re.match(r"^[a-z][a-z0-9+.-]*://", str(v).strip(), re.I):
                errors.append(_err(item_id, v, "a URL, not a local file; download the images first (e.g. img2dataset)"))
                continue
            bad = bad_id_char(p)
            if bad is not None:
                errors.append(_err(item_id, p, f"the image path holds a line break or NUL ('{bad}')"))
                continue
            problem = file_problem(p)
            if problem is not None:
                reason = "file not found" if problem.startswith("file not found") else f"unreadable image ({problem})"
                errors.append(_err(item_id, p, reason))
                continue
        elif texts_all is not None:
            t = texts_all[row]
            if t is None:
                errors.append(_err(item_id, None, f"missing text in column {text_column!r}"))
                continue
            t = str(t)
            if not t.strip():
                errors.append(_err(item_id, None, "empty text"))
                continue
            if len(t) > max_text_chars:
                errors.append(_err(item_id, None, f"text of {len(t):,} characters is longer than {max_text_chars:,}"))
                continue
        keep.append(row)

    carried = _carried(df, [text_column, image_column, id_column]).iloc[keep].reset_index(drop=True)
    ids = [ids_all[r] for r in keep]
    modality = "image" if image_column is not None else "text"
    front = {}
    if image_column is not None:
        front["path"] = [paths_all[r] for r in keep]
    if texts_all is not None:
        front["text"] = [None if texts_all[r] is None else str(texts_all[r]) for r in keep]
    import pandas as pd

    columns = pd.concat([pd.DataFrame(front), carried], axis=1)
    return Items(
        kind="table",
        modality=modality,
        ids=ids,  # type: ignore[arg-type]
        columns=columns,
        paths=front.get("path") if modality == "image" else None,
        texts=front.get("text") if modality == "text" else None,
        errors=errors,
        n_input=n,
        source={
            "kind": "table",
            "path": str(path),
            "text_column": text_column,
            "image_column": image_column,
            "id_column": id_column,
        },
    )


def _shard_number(p: Path) -> int:
    m = re.search(r"(\d+)$", p.stem)
    return int(m.group(1)) if m else -1


def load_shards(
    folder: Path,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    id_column: str | None = None,
    only: Path | None = None,
) -> Items:
    """img2dataset / clip-retrieval embeddings: ``img_emb/img_emb_N.npy`` (or ``text_emb/text_emb_N.npy``)
    with ``metadata/metadata_N.parquet`` of as many rows. Image embeddings are used when both exist.

    Only the metadata is read here; the arrays are memory-mapped shard by shard when copied. Ids come
    from ``--id-column``, else the ``key`` column img2dataset writes, else ``N:row``.
    """
    import pandas as pd

    folder = folder.resolve()
    kind = "img_emb" if (folder / "img_emb").is_dir() else "text_emb"
    emb_files = sorted((folder / kind).glob(f"{kind}_*.npy"), key=_shard_number)
    if only is not None:  # one part of a sharded run
        emb_files = [f for f in emb_files if f.resolve() == Path(only).resolve()]
    if not emb_files:
        raise SemDedupError(
            f"folder {str(folder / kind)!r} holds no {kind}_N.npy files; pass an embeddings folder as img2dataset writes it"
        )
    frames = []
    shard_rows = []
    dim = None
    for f in emb_files:
        num = _shard_number(f)
        meta_path = folder / "metadata" / f"metadata_{num}.parquet"
        try:
            arr = np.load(f, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise SemDedupError(
                f"embedding shard {str(f)!r} is not a readable .npy array ({exc}); re-create it"
            ) from None
        if arr.ndim != 2:
            raise SemDedupError(f"embedding shard {str(f)!r} has shape {arr.shape}; each shard must be n × d")
        if dim is None:
            dim = arr.shape[1]
        elif arr.shape[1] != dim:
            raise SemDedupError(
                f"embedding shard {str(f)!r} has d = {arr.shape[1]} but earlier shards have {dim}; use shards of one model"
            )
        if not meta_path.is_file():
            raise SemDedupError(
                f"embedding shard {str(f)!r} has no metadata file {str(meta_path)!r}; every shard needs one"
            )
        meta = pd.read_parquet(meta_path)
        if len(meta) != arr.shape[0]:
            raise SemDedupError(
                f"metadata {str(meta_path)!r} has {len(meta)} rows but {str(f)!r} has {arr.shape[0]}; they must match row for row"
            )
        meta = meta.copy()
        meta["shard"] = num
        meta["shard_row"] = np.arange(len(meta))
        frames.append(meta)
        shard_rows.append((str(f), arr.shape[0]))
    df = pd.concat(frames, ignore_index=True)
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        if name is not None and name not in df.columns:
            cols = ", ".join(map(str, df.columns[:30]))
            raise SemDedupError(f"{option} {name!r} is not a metadata column (columns: {cols}); pass one of them")
    n = len(df)
    if n == 0:
        raise SemDedupError(f"the shards in {str(folder)!r} hold no rows; nothing to deduplicate")
    if id_column is not None:
        raw_ids = _clean(df[id_column].tolist())
    elif "key" in df.columns:
        raw_ids = _clean(df["key"].tolist())
    else:
        raw_ids = [f"{s}:{r}" for s, r in zip(df["shard"], df["shard_row"], strict=True)]
    where = [f"{Path(p).name}#{r}" for p, count in shard_rows for r in range(count)]
    ids_all, errors = _ids_with_errors(raw_ids, where)
    keep = np.array([i for i, v in enumerate(ids_all) if v is not None], dtype=np.int64)
    shards = []
    start = 0
    for f, count in shard_rows:
        local = keep[(keep >= start) & (keep < start + count)] - start
        shards.append((f, local))
        start += count
    used = [c for c in (text_column, image_column) if c is not None]
    if id_column is not None:
        used.append(id_column)
    elif "key" in df.columns:
        used.append("key")
    front = {}
    if image_column is not None:
        front["path"] = [
            None if v is None else str(Path(v) if Path(str(v)).is_absolute() else folder / str(v))
            for v in _clean(df[image_column].iloc[keep].tolist())
        ]
    if text_column is not None:
        front["text"] = [None if v is None else str(v) for v in _clean(df[text_column].iloc[keep].tolist())]
    carried = _carried(df, used).iloc[keep].reset_index(drop=True)
    columns = pd.concat([pd.DataFrame(front), carried], axis=1)
    return Items(
        kind="shards",
        modality="image" if kind == "img_emb" else "text",
        ids=[ids_all[i] for i in keep],  # type: ignore[misc]
        columns=columns,
        shards=shards,
        errors=errors,
        n_input=n,
        source={"kind": "shards", "path": str(folder), "embeddings": kind, "shards": len(shard_rows), "dim": dim},
    )


# ---------------------------------------------------------------------------------------------------
# webdataset shards and Hugging Face datasets saved with save_to_disk

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

    from ..media import files as media

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


def is_hf_dataset(folder: Path) -> bool:
    return (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()


def load_hf_dataset(
    folder: Path,
    *,
    text_column: str | None,
    image_column: str | None,
    id_column: str | None,
    max_text_chars: int = 100_000,
    only: Path | None = None,
) -> Items:
    """A Hugging Face ``datasets`` folder written by ``save_to_disk``: its Arrow files are memory-mapped
    and read with pyarrow (the ``datasets`` package is not needed). ``--image-column`` (an ``Image()``
    feature: bytes or a path) or ``--text-column`` says what to embed; other columns are carried."""
    import json

    import pandas as pd

    from ..media import files as media

    folder = folder.resolve()
    if text_column is None and image_column is None:
        raise SemDedupError(
            f"Hugging Face dataset {str(folder)!r} needs --text-column NAME or --image-column NAME to say what to embed"
        )
    try:
        state = json.loads((folder / "state.json").read_text())
        files = [folder / f["filename"] for f in state["_data_files"]]
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise SemDedupError(
            f"{str(folder / 'state.json')!r} is not a datasets state file ({exc}); save the dataset again"
        ) from None
    first = 0
    if only is not None:  # one Arrow file: one part of a sharded run; default ids stay global row numbers
        before = files[: [f.resolve() for f in files].index(Path(only).resolve())]
        first = sum(media.arrow_table(str(f)).num_rows for f in before)
        files = [Path(only)]
    tables = []
    for f in files:
        try:
            tables.append((f, media.arrow_table(str(f))))
        except Exception as exc:
            raise SemDedupError(
                f"Arrow file {str(f)!r} of the dataset cannot be read ({exc}); save the dataset again"
            ) from None
    names = tables[0][1].column_names if tables else []
    for name, option in ((text_column, "--text-column"), (image_column, "--image-column"), (id_column, "--id-column")):
        if name is not None and name not in names:
            raise SemDedupError(
                f"{option} {name!r} is not a column of {str(folder)!r} (columns: {', '.join(names)}); pass one of them"
            )
    skip = {c for c in (image_column,) if c}
    frames, refs = [], []
    for f, table in tables:
        keep = [c for c in table.column_names if c not in skip]
        frames.append(table.select(keep).to_pandas())
        if image_column:
            refs.extend(f"{f}/{image_column}/{i}" for i in range(table.num_rows))
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    n = len(df) if frames else 0
    if n == 0:
        raise SemDedupError(f"Hugging Face dataset {str(folder)!r} has no rows; nothing to deduplicate")
    raw_ids = _clean(df[id_column].tolist()) if id_column is not None else [str(first + i) for i in range(n)]
    where = refs if image_column else [f"{folder}#{first + i}" for i in range(n)]
    ids_all, errors = _ids_with_errors(raw_ids, where, first)
    texts_all = _clean(df[text_column].tolist()) if text_column is not None else None
    keep_rows = []
    for row in range(n):
        if ids_all[row] is None:
            continue
        if image_column is None and texts_all is not None:
            t = texts_all[row]
            reason = None
            if t is None:
                reason = f"missing text in column {text_column!r}"
            elif not str(t).strip():
                reason = "empty text"
            elif len(str(t)) > max_text_chars:
                reason = f"text of {len(str(t)):,} characters is longer than {max_text_chars:,}"
            if reason:
                errors.append(_err(ids_all[row], None, reason))
                continue
        keep_rows.append(row)
    carried = _carried(df, [text_column, id_column]).iloc[keep_rows].reset_index(drop=True)
    front: dict[str, Any] = {}
    if image_column:
        front["path"] = [refs[r] for r in keep_rows]
    if texts_all is not None:
        front["text"] = [None if texts_all[r] is None else str(texts_all[r]) for r in keep_rows]
    columns = pd.concat([pd.DataFrame(front), carried], axis=1)
    modality = "image" if image_column else "text"
    return Items(
        kind="hf",
        modality=modality,
        ids=[ids_all[r] for r in keep_rows],  # type: ignore[misc]
        columns=columns,
        paths=front.get("path") if modality == "image" else None,
        texts=front.get("text") if modality == "text" else None,
        errors=errors,
        n_input=n,
        source={
            "kind": "hf",
            "path": str(folder),
            "text_column": text_column,
            "image_column": image_column,
            "id_column": id_column,
        },
        files=[str(f) for f in files],
    )
