"""Verdicts from a file (``audit import``): every row is checked before anything is stored.

The file is a CSV (or Parquet) with the columns ``id``, ``dup_of`` and ``verdict`` (``duplicate`` |
``not_duplicate`` | ``unsure``) — the queue ``audit sample`` writes, with its ``verdict`` column filled
in, is one — and optionally ``reviewer``. Rows with an empty verdict are pairs not judged yet and are
skipped. A file with an unknown verdict, a pair that is not an (item, ``dup_of``) pair of the run,
missing columns or rows that judge the same pair differently is refused in one line naming the first
such row and the fix, and nothing is stored.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..media import safe
from ..results.text import check_reviewer, restore_formulas
from .labels import VERDICTS, LabelStore, make_rows, sorted_pairs

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

REQUIRED = ("id", "dup_of", "verdict")


def default_reviewer() -> str:
    """The login name, the reviewer of a verdict when no other is given."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # no login name in some containers
        return "unknown"


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not os.path.lexists(path):
        raise SemDedupError(
            f"labels file {str(path)!r} does not exist; pass the CSV with id, dup_of and verdict columns"
        )
    try:
        if path.suffix.lower() == ".parquet":
            with safe.open_regular(path) as f:
                frame = pd.read_parquet(f)
            return frame.astype(object).where(frame.notna(), "").astype(str)
        with safe.open_regular(path) as f:  # a FIFO is refused, not waited on; a UTF-8 BOM is no part of a name
            frame = pd.read_csv(f, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
        return restore_formulas(frame)  # the quote the queue CSV put before =, +, -, @ or ' comes off
    except safe.FileRefused as exc:
        raise SemDedupError(f"labels file {str(path)!r} cannot be read ({exc}); nothing was stored") from None
    except pd.errors.EmptyDataError:
        raise SemDedupError(
            f"labels file {str(path)!r} is empty; it needs a header row with id, dup_of and verdict; nothing was stored"
        ) from None
    except Exception as exc:  # parser, encoding and parquet errors
        raise SemDedupError(
            f"labels file {str(path)!r} is not a readable CSV or Parquet table ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); save it as UTF-8 CSV with id, dup_of, verdict columns; "
            "nothing was stored"
        ) from None


def _bad_name(name: str) -> str | None:
    try:
        check_reviewer(name)
    except SemDedupError as exc:
        return str(exc)
    return None


def _rows_of(results: Results, ids: np.ndarray) -> np.ndarray:
    """The run's row of each id (-1 where the run has none): looked up among the recorded review sample's
    pairs first, so that a queue written by `audit sample` is imported without indexing every id of a big
    run; the run's id index only for ids outside the sample."""
    from .design import load_design

    ids = np.asarray(ids, dtype=object).astype(str)
    out = np.full(len(ids), -1, dtype=np.int64)
    try:
        design = load_design(results)
    except SemDedupError:
        design = None
    if design is not None:
        units = design.units
        known = dict(zip(units["id"].astype(str), units["row"].to_numpy(np.int64), strict=True))
        known.update(zip(units["dup_of"].astype(str), units["dup_row"].to_numpy(np.int64), strict=True))
        out = np.fromiter((known.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
    missing = out < 0
    if missing.any():
        out[missing] = results.row_of_id.get_indexer(ids[missing])
    return out


def read_labels_file(results: Results, path: str | Path, reviewer: str | None = None) -> tuple[pd.DataFrame, int]:
    """The store rows for the verdicts in ``path`` about pairs of ``results``, and the number of rows
    skipped for having no verdict. Raises :class:`SemDedupError` naming the first bad row."""
    path = Path(path).expanduser()
    frame = _read_table(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise SemDedupError(
            f"labels file {str(path)!r} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}: it needs "
            "id, dup_of and verdict (duplicate | not_duplicate | unsure), e.g. the queue CSV `audit sample` "
            "wrote with its verdict column filled in; nothing was stored"
        )
    ids = frame["id"].astype(str).to_numpy(dtype=object)  # exactly as stored: spaces are part of an id
    dups = frame["dup_of"].astype(str).to_numpy(dtype=object)
    verdicts = frame["verdict"].astype(str).str.strip().to_numpy(dtype=object)
    given = verdicts != ""
    if reviewer is not None:
        names = np.full(len(frame), check_reviewer(reviewer, "--reviewer"), dtype=object)
    elif "reviewer" in frame.columns:
        col = frame["reviewer"].astype(str).str.strip().to_numpy(dtype=object)
        names = np.where(col != "", col, default_reviewer())
    else:
        names = np.full(len(frame), default_reviewer(), dtype=object)

    r_id, r_dup = _rows_of(results, ids), _rows_of(results, dups)
    dup_rows = results.dup_rows
    forward = (r_id >= 0) & (r_dup >= 0) & (dup_rows[np.maximum(r_id, 0)] == r_dup)
    backward = (r_id >= 0) & (r_dup >= 0) & (dup_rows[np.maximum(r_dup, 0)] == r_id)

    problems: list[tuple[int, str]] = []
    for i in np.flatnonzero(given):
        where = f"row {i + 1} (id {ids[i]!r}, dup_of {dups[i]!r})"
        if ids[i] == "" or dups[i] == "":
            problems.append((i, f"{where} lacks an id; give both ids of the pair"))
        elif _bad_name(names[i]):
            problems.append((i, f"{where}: {_bad_name(names[i])}"))
        elif verdicts[i] not in VERDICTS:
            problems.append(
                (
                    i,
                    f"{where} has verdict {verdicts[i]!r}, not one of {' | '.join(VERDICTS)}; write one of them "
                    "(or leave it empty to skip the pair)",
                )
            )
        elif not (forward[i] or backward[i]):
            if r_id[i] < 0:
                why = f"there is no item {ids[i]!r} in this run"
            elif dup_rows[r_id[i]] >= 0:
                actual = results.rows([int(dup_rows[r_id[i]])], ["id"])["id"].iat[0]
                why = f"the dup_of of {ids[i]!r} in this run is {actual!r}"
            else:
                why = f"{ids[i]!r} is the first item of its cluster in this run (it has no dup_of)"
            problems.append((i, f"{where} is not an (item, dup_of) pair of this run ({why}); fix or remove the row"))
    ok = given & ~np.isin(np.arange(len(frame)), [i for i, _ in problems])
    if ok.any():
        a, b = sorted_pairs(ids[ok], dups[ok])
        rows = np.flatnonzero(ok)
        first: dict[tuple[str, str, str], int] = {}
        for row, pa, pb, name in zip(rows, a, b, names[ok], strict=True):
            key = (pa, pb, name)
            if key in first and verdicts[first[key]] != verdicts[row]:
                problems.append(
                    (
                        int(row),
                        f"rows {first[key] + 1} and {row + 1} both judge the pair ({pa!r}, {pb!r}) but disagree "
                        f"({verdicts[first[key]]} vs {verdicts[row]}); keep one of them",
                    )
                )
            first.setdefault(key, int(row))
    if problems:
        problems.sort()
        more = (
            f" ({len(problems) - 1} more row{'s' if len(problems) > 2 else ''} with problems)"
            if len(problems) > 1
            else ""
        )
        raise SemDedupError(f"labels file {str(path)!r} {problems[0][1]}; nothing was stored{more}")

    keep = np.flatnonzero(given)
    scores = results.scores
    later = np.where(forward[keep], r_id[keep], r_dup[keep])
    rows = make_rows(
        ids[keep],
        dups[keep],
        list(verdicts[keep]),
        list(names[keep]),
        similarity=scores[later].astype(np.float64),
        run=str(results.run.get("input_fingerprint", "")) or None,
    )
    rows = rows.drop_duplicates(["id_a", "id_b", "reviewer"], keep="first").reset_index(drop=True)
    return rows, int((~given).sum())


def import_labels(
    results: Results, path: str | Path, labels: Any = None, reviewer: str | None = None
) -> dict[str, Any]:
    """Check every row of ``path`` (see the module's docstring), then merge its verdicts into the
    store ``labels`` (default the folder's ``labels.parquet``) in one locked, atomic write. Returns a
    summary: ``imported``, one count per verdict, ``skipped`` (rows without a verdict), ``replaced``
    (earlier verdicts of the same reviewer on the same pair), ``store``."""
    store = LabelStore.for_results(results.path, labels)
    rows, skipped = read_labels_file(results, path, reviewer)
    merged = store.add(rows)
    counts = rows["verdict"].value_counts()
    return {
        "imported": len(rows),
        **{v: int(counts.get(v, 0)) for v in VERDICTS},
        "skipped": skipped,
        "replaced": merged["replaced"],
        "reviewers": sorted(set(rows["reviewer"])),
        "store": str(store.path),
    }
