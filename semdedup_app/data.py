"""What the pages draw, derived from the open results folder and cached (see :mod:`semdedup_app.cache`).

Nothing here recomputes k-means, scores or maps on a widget change: each function is a thin, cached
call of ``semdedup_core``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import streamlit as st

from semdedup_core import Results, SemDedupError
from semdedup_core.explore import clusters as sd_clusters
from semdedup_core.explore import compare, curve, leakage, maps, pairs, report
from semdedup_core.explore import export as sd_export
from semdedup_core.explore import groups as sd_groups
from semdedup_core.results import rules as sd_rules

from . import gate
from .cache import per_run, stamp
from .markdown import escape_html

MAX_CLUSTER_OPTIONS = 20_000  # beyond this many clusters with removals, the Pairs filter takes typed numbers


# -- loading ------------------------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner="Loading results…")
def _load(path: str, stamp: int) -> Results:
    res = Results.load(path)
    res.check_strings_in_background()  # a big folder's string checks: the pages ask strings_problem
    if res.n_items > GROUPS_IN_BACKGROUND:  # the Groups view's index, ready before anyone asks for it
        threading.Thread(target=sd_groups.group_index, args=(res,), name="semdedup-groups", daemon=True).start()
    return res


GROUPS_IN_BACKGROUND = 1_000_000
"""Above this many items the index of the Groups view (seconds at 20,000,000 items) is built in a background
thread as the folder opens; below, on first use (a fraction of a second)."""


def load(path: str | Path) -> Results:
    """The :class:`Results` in ``path`` (cached); raises :class:`SemDedupError` when unusable. A folder
    above ``STRING_CHECK_ROWS`` items opens once its numbers are checked; its strings are checked in the
    background (:func:`semdedup_app.widgets.current_results` refuses it if they fail)."""
    p = Path(path).expanduser()
    return _load(str(p.resolve()), stamp(p))


# -- the rules ----------------------------------------------------------------------------------------
REMOVAL_RULES = sd_rules.REMOVAL_RULES
"""The rules a page offers for removals (the core's rules table)."""


def rule_words(name: str) -> str:
    """The rule ``name`` in plain words (the core's rules table)."""
    return sd_rules.RULES[name].words


# -- the threshold ------------------------------------------------------------------------------------
@per_run()
def eps_max(res: Results) -> float:
    """The slider's upper end: the ε that removes every item that has a predecessor (at least 0.5)."""
    return curve.eps_max(res)


@per_run(max_entries=4)
def kept_curve(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """``(ε grid, kept fraction)`` from 0 to the slider's end."""
    return curve.kept_curve(res)


@per_run(max_entries=4)
def score_histogram(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of ``max_sim`` (items with a predecessor only)."""
    return curve.score_histogram(res)


@per_run(max_entries=16)
def cluster_table(res: Results, e: float):
    return sd_clusters.cluster_table(res, e)


@per_run(resource=True, max_entries=16)
def removed_mask(res: Results, e: float, rule: str = "paper") -> np.ndarray:
    """The removal mask at ``e`` (shared, do not modify); a page that draws some rows asks
    ``res.removed_mask(e, rows=...)`` instead."""
    return res.removed_mask(e, rule)


def n_cross_cluster(res: Results, e: float) -> int:
    """Items removed at ``e`` whose ``dup_of`` lies in another cluster (runs with probing only), O(log n)."""
    return sd_clusters.n_cross_cluster(res, float(e))


@per_run(max_entries=32, show_spinner="Applying the kept-only rule…")
def n_removed_kept_only(res: Results, e: float) -> int:
    """Removed at ``e`` under the conservative rule (rescoring chain members; cached per ε)."""
    return int(res.n_removed(e, rule="kept-only"))


# -- pairs, groups, clusters --------------------------------------------------------------------------
@per_run(resource=True, max_entries=16)
def pairs_frame(res: Results, e: float, sort: str, clusters: tuple = (), sim_range: tuple | None = None):
    """Removed items at ``e`` beside their ``dup_of`` (see :func:`semdedup_core.explore.pairs.pairs_frame`):
    all of them — the Pairs page reads one page with :func:`pairs_page`."""
    return pairs.pairs_frame(res, float(e), sort=sort, clusters=list(clusters) or None, sim_range=sim_range)


@per_run(resource=True, max_entries=16)
def pairs_page(
    res: Results,
    e: float,
    number: int,
    per_page: int,
    sort: str,
    clusters: tuple = (),
    sim_range: tuple | None = None,
) -> pairs.PairsPage:
    """Page ``number`` of the pairs at ``e`` (see :func:`semdedup_core.explore.pairs.pairs_page`): only its
    rows are read, whatever the size of the run."""
    return pairs.pairs_page(
        res,
        float(e),
        int(number),
        int(per_page),
        sort=sort,
        clusters=list(clusters) or None,
        sim_range=None if sim_range is None else tuple(float(v) for v in sim_range),
    )


GROUPS_SHOWN = 500  # the groups the Pairs page offers (the largest first)


@per_run(resource=True)
def groups(res: Results, e: float) -> sd_groups.Groups:
    """The groups at ``e``: how many kept items caused the removals, the largest groups in a table, and each
    group's members on demand (from an index built once per folder: see ``explore/groups.py``)."""
    return sd_groups.removal_groups(res, float(e), limit=GROUPS_SHOWN)


@per_run(max_entries=4)
def showcase(res: Results, e: float):
    return pairs.showcase_pairs(res, float(e))


@per_run(max_entries=16)
def clusters_with_removals(res: Results, e: float) -> list[int]:
    """The clusters that have at least one removed item at ``e`` (the only ones with pairs to show)."""
    return sd_clusters.clusters_with_removals(res, float(e)).tolist()


def parse_clusters(text: str, n_clusters: int) -> tuple[int, ...]:
    """``"3, 17 42"`` → ``(3, 17, 42)``; raises :class:`SemDedupError` naming a bad entry."""
    out = []
    for part in text.replace(",", " ").split():
        if not part.isdigit() or int(part) >= n_clusters:
            raise SemDedupError(
                f"cluster numbers must be whole numbers from 0 to {n_clusters - 1}, got {part!r}; "
                "separate them with commas or spaces"
            )
        out.append(int(part))
    return tuple(sorted(set(out)))


# -- leakage (runs with a reference set) ---------------------------------------------------------------
@per_run(resource=True, max_entries=16)
def leak_pairs(res: Results, e: float, sort: str = "borderline"):
    """Items leaked at ``e`` beside their reference item (see :func:`semdedup_core.explore.leakage.leak_pairs`)."""
    return leakage.leak_pairs(res, float(e), sort=sort)


@per_run(max_entries=16)
def leak_clusters(res: Results, e: float):
    return leakage.leak_clusters(res, float(e))


@per_run(max_entries=4)
def ref_sim_histogram(res: Results) -> tuple[np.ndarray, np.ndarray]:
    return leakage.ref_sim_histogram(res)


# -- maps (computed in the background, cached in the results folder) ----------------------------------
@st.cache_resource(show_spinner=False)
def _map_executor():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="semdedup-map")


class MapJob:
    """A map being computed in the background: its future, and the step it is on since when. Its result,
    ``(item map, centroid map)``, stays in memory with the job: read-only mode does not store maps in the
    results folder, and a folder that cannot be written does not break the Map page."""

    def __init__(self, res: Results, method: str):
        self.step, self.since, self.started = "queued", time.monotonic(), time.monotonic()
        store = gate.allowed("write-map", res.path)
        self.future = _map_executor().submit(maps.compute_both, res, maps.MAX_POINTS, method, self._progress, store)

    def _progress(self, step: str) -> None:
        self.step, self.since = step, time.monotonic()

    def status(self) -> str:
        words = {
            "queued": "waiting for another map to finish",
            "sample": "choosing the items to draw",
            "umap": "fitting UMAP",
            "pca": "projecting with PCA",
            "centroids": "mapping the cluster centres",
        }
        now = time.monotonic()
        return f"{words.get(self.step, self.step)} ({now - self.since:.0f} s; {now - self.started:.0f} s in all)"


@per_run(resource=True, max_entries=4)
def map_job(res: Results, method: str) -> MapJob:
    return MapJob(res, method)


def item_map(res: Results, method: str = "umap", start: bool = True):
    """The item map if ready (from the folder or a finished background job), else ``None``; starts the
    background computation when ``start``. Raises what the computation raised."""
    cached = maps.load_map(res, maps.MAX_POINTS, method)
    if cached is not None and maps.load_centroid_map(res, method) is not None:
        return cached
    if not start:
        return None
    job = map_job(res, method)
    return job.future.result()[0] if job.future.done() else None


def _map_rows(res: Results, method: str) -> np.ndarray:
    m = maps.load_map(res, maps.MAX_POINTS, method)
    if m is None:
        m = item_map(res, method, start=True)
    if m is None:
        raise SemDedupError("the map is not computed yet; open the Map page and wait for it")
    return m["row"].to_numpy()


@per_run(resource=True, max_entries=4)
def map_labels(res: Results, method: str, n_rows: int) -> np.ndarray:
    """Hover labels (id and a snippet of the text or path, HTML-escaped) of the map's points, in map order."""
    rows = _map_rows(res, method)
    col = "text" if "text" in res.columns else ("path" if "path" in res.columns else None)
    shown = res.rows(rows, ["id"] if col is None else ["id", col])
    ids = shown["id"].to_numpy()
    if col is None:
        return np.asarray([escape_html(i) for i in ids], dtype=object)
    snippets = shown[col].to_numpy()
    return np.asarray(
        [f"{escape_html(i)}<br>{escape_html(pairs.snippet(v, 60))}" for i, v in zip(ids, snippets, strict=True)],
        dtype=object,
    )


def map_lines(
    res: Results, rows: np.ndarray, xy: np.ndarray, removed: np.ndarray, cross: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """x and y (NaN-separated segments) of a line from each drawn removed item to its drawn ``dup_of``;
    ``cross``: only those whose ``dup_of`` lies in another cluster (``True``) or in the same (``False``)."""
    dup = res.dup_rows[rows]
    order = np.argsort(rows, kind="stable")  # the map's rows are sorted already; no array of the run's size
    at = np.minimum(np.searchsorted(rows, np.maximum(dup, 0), sorter=order), max(len(rows) - 1, 0))
    target = order[at] if len(rows) else at
    keep = removed & (dup >= 0) & (rows[target] == dup) if len(rows) else removed
    if cross is not None:
        cluster = res.column("cluster")
        keep &= (cluster[np.maximum(dup, 0)] != cluster[rows]) == cross
    src = np.flatnonzero(keep)[:20000]
    seg = np.full((len(src), 3, 2), np.nan)
    seg[:, 0] = xy[src]
    seg[:, 1] = xy[target[src]]
    return seg[:, :, 0].ravel(), seg[:, :, 1].ravel()


def centroid_map(res: Results, method: str = "umap"):
    """The centroid map once the background job (see :func:`item_map`) has made it, else ``None``."""
    stored = maps.load_centroid_map(res, method)
    if stored is not None:
        return stored
    job = map_job(res, method)
    return job.future.result()[1] if job.future.done() else None


# -- export -------------------------------------------------------------------------------------------
DOWNLOAD_ROWS = 1_000_000
"""The largest export the Export page offers as a browser download: a download is built in the app's memory
(and kept there for the session), so larger lists are written into the results folder a block at a time."""


@per_run(max_entries=4, show_spinner="Preparing the file…")
def export_bytes(
    res: Results,
    e: float,
    which: str,
    fmt: str,
    txt_column: str = "id",
    rule: str = "paper",
    labels: str | None = None,
    labels_stamp: tuple = (),
) -> bytes:
    """The export's bytes; under the audited rule, from the verdict store ``labels`` in the state
    ``labels_stamp`` (part of the cache key, so a new verdict makes a new file)."""
    return sd_export.to_bytes(sd_export.export_frame(res, float(e), which, rule, labels), fmt, txt_column)


# -- apply: the deduplicated dataset ------------------------------------------------------------------
def apply_offer(res: Results, e: float) -> dict | None:
    """What the Export page offers for writing the kept part of the run's input: its ``kind``, the
    writer's ``description`` and ``modes`` (image folders) and a ``suggested`` new path beside the input;
    ``None`` for a run without raw input (an ``.npy`` matrix)."""
    from semdedup_core.ingest import apply as sd_apply

    try:
        source = sd_apply.run_source(res.run)
        writer = sd_apply.writer_for(source["kind"])
    except SemDedupError:
        return None
    return {
        "kind": writer.kind,
        "description": writer.description,
        "modes": sd_apply.MODES if "mode" in writer.options else (),
        "suggested": str(sd_apply.suggested_out(source, e)),
    }


def apply_command(
    res: Results, e: float, out: str, rule: str, labels_path: str | None, leaked: bool, mode: str | None
) -> str:
    """The ``semdedup apply`` command that writes what :func:`apply_kept` writes."""
    from semdedup_core.ingest import apply as sd_apply

    default = str(Path(res.path) / "labels.parquet")
    store = labels_path if labels_path and labels_path != default else None
    return sd_apply.apply_command(res.path, e, out, rule=rule, labels=store, drop_leaked=leaked, mode=mode)


def apply_kept(res: Results, e: float, out: str, rule: str, labels, leaked: bool, mode: str | None):
    """Write the kept part of the run's input into the new path ``out`` (only where this explorer may
    write: never in read-only mode, only under the allowed roots); returns the core's summary."""
    from semdedup_core.ingest import apply as sd_apply

    if not out.strip():
        raise SemDedupError("give a new path to write the deduplicated dataset to")
    target = Path(out.strip()).expanduser()
    gate.check("apply", target)
    return sd_apply.apply_run(res, float(e), target, rule=rule, labels=labels, drop_leaked=leaked, mode=mode)


# -- report and comparison ----------------------------------------------------------------------------
def _report_bytes(res: Results, e: float, labels: str | None) -> bytes:
    from semdedup_core.audit.precision import summary_at

    try:
        audit = summary_at(res, e, labels)
    except SemDedupError:  # a damaged sample or store is reported on Review; the report goes without it
        audit = None
    images = gate.report_image_problem(res)  # the pages' image rule: read-only shows only the run's input
    return report.build_report(res, e, audit=audit, image_problem=images).encode("utf-8")


def report_file(res: Results, e: float, labels: str | None = None) -> tuple[str, Callable[[], bytes]]:
    """``(file name, build)`` of the one-file HTML report at ``e``: ``build`` makes the file only when the
    download button is clicked (Streamlit calls it then), the same bytes as ``python -m semdedup_core report``
    with ``--labels labels`` (the audited precision is in it when reviewers judged the run's sample), except
    that an image the pages would not show (read-only mode: outside the run's input) is not embedded either."""
    name = f"semdedup-report-{res.path.name if res.path is not None else 'run'}-eps{float(e):.4f}.html"
    return name, functools.partial(_report_bytes, res, float(e), labels)


def comparison(res: Results, path_b: str | Path, e_a: float, e_b: float | None) -> compare.Comparison:
    """The open run (A) at ``e_a`` against the run in ``path_b`` at ``e_b`` (``None``: the ε at which B
    removes as many items as A). Raises :class:`SemDedupError` when B cannot be loaded or is not over the
    same ids. Cached per the two folders and their ``run.json`` times (a rewritten B is compared again)."""
    p = Path(path_b).expanduser().resolve()
    return _comparison(res, str(p), stamp(p), float(e_a), None if e_b is None else float(e_b))


def comparison_items(res: Results, path_b: str | Path, e_a: float, e_b: float | None, which: str):
    """The items removed by A only, B only or both (``which``), each with its partner in each run (a
    shared frame: do not modify)."""
    p = Path(path_b).expanduser().resolve()
    return _comparison_items(res, str(p), stamp(p), float(e_a), None if e_b is None else float(e_b), which)


@per_run(resource=True, max_entries=8, show_spinner="Comparing the two runs…")
def _comparison(res: Results, path_b: str, stamp_b: int, e_a: float, e_b: float | None) -> compare.Comparison:
    return compare.compare(res, load(path_b), e_a, e_b, match=e_b is None)


@per_run(resource=True, max_entries=16)
def _comparison_items(res: Results, path_b: str, stamp_b: int, e_a: float, e_b: float | None, which: str):
    return _comparison(res, path_b, stamp_b, e_a, e_b).items(which)
