"""The app's one glue module: session-state keys and their initialisation, cached wrappers over
``semdedup_core`` and the small drawing helpers the pages share. Pages import only this and draw.

Caching: a loaded :class:`Results` is a ``st.cache_resource`` keyed by folder and ``run.json``'s
modification time (so a rewritten folder reloads); everything derived from it is cached per ε with
``max_entries``. Nothing here recomputes k-means, scores or maps on a widget change.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every page imports this module first: never reach a model hub

import numpy as np  # noqa: E402
import streamlit as st  # noqa: E402

from semdedup_core import Results, SemDedupError, jobs, maps, pairs  # noqa: E402
from semdedup_core import export as sd_export  # noqa: E402

EPS_DEFAULT = 0.05

# -- session state ----------------------------------------------------------------------------------
# Keys shared by every page start with ``sd_``; a page's own keys start with the page's prefix
# (``thr_``, ``pairs_``, ``cl_``, ``map_``, ``exp_``, ``home_``).
DEFAULTS: dict[str, Any] = {
    "sd_results_dir": None,  # the open results folder
    "sd_eps": EPS_DEFAULT,  # the current ε, shared by all pages
    "sd_cluster": None,  # the cluster the cluster page shows
    "sd_started": False,  # the command line / environment was read
    "sd_waiting_demo": None,  # the demo being built for --demo, opened when it is done
    "pairs_sort": "borderline",
    "pairs_page": 0,
    "pairs_per_page": 10,
    "pairs_view": "Pairs",
    "cl_order": "largest",
    "map_colour": "cluster",
    "map_method": "umap",
    "thr_conservative": False,
    "exp_rule": "paper",
}
# Streamlit's multipage layout: app.py is Home, the others are the files in pages/ (their URL is the
# file name without its number: /threshold, /pairs, ...). (file, label, icon) in navigation order.
NAV = {
    "home": ("app.py", "Home", ":material/home:"),
    "threshold": ("pages/1_threshold.py", "Threshold", ":material/tune:"),
    "pairs": ("pages/2_pairs.py", "Pairs", ":material/compare:"),
    "clusters": ("pages/3_clusters.py", "Clusters", ":material/category:"),
    "map": ("pages/4_map.py", "Map", ":material/scatter_plot:"),
    "export": ("pages/5_export.py", "Export", ":material/download:"),
    "stakeholder": ("pages/6_stakeholder.py", "Stakeholder view", ":material/campaign:"),
}
PAGES = {name: path for name, (path, _, _) in NAV.items()}


def _app_args(argv: list[str] | None = None) -> argparse.Namespace:
    """What follows ``streamlit run app.py --``: ``--results DIR`` and ``--demo text|images``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results")
    parser.add_argument("--demo")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def cli_results_dir(argv: list[str] | None = None) -> str | None:
    """``--results DIR`` after ``streamlit run app.py --``, else ``$SEMDEDUP_RESULTS``, else ``None``."""
    return _app_args(argv).results or os.environ.get("SEMDEDUP_RESULTS") or None


def cli_demo(argv: list[str] | None = None) -> str | None:
    """``--demo KIND`` after ``streamlit run app.py --``: open that offline demo, building it first if needed."""
    return _app_args(argv).demo


def start_demo(kind: str) -> None:
    """Open the ``kind`` demo when it is built; otherwise start building it in the background (Home shows
    the progress and opens it when done). A build another session already started is simply awaited."""
    if kind not in demo_kinds():
        error(f"--demo must be one of {', '.join(demo_kinds()) or '(none installed)'}, got {kind!r}")
        return
    folder = demo_folder(kind)
    if (folder / "run.json").is_file():
        try:
            load(str(folder))
        except SemDedupError:
            pass  # a partial build: start (resume) it below
        else:
            open_folder(folder)
            return
    st.session_state["sd_waiting_demo"] = kind
    if not any(j["state"] == "running" and Path(j["out"]) == folder.resolve() for j in jobs.list_jobs()):
        try:
            jobs.start("demo", [kind], folder, label=f"{kind} demo")
        except SemDedupError as exc:
            error(exc)


def page_setup(title: str) -> None:
    """First call of every page: the page's title and wide layout, then the session's state."""
    st.set_page_config(page_title=f"{title} · semdedup", page_icon=":material/content_copy:", layout="wide")
    init_state()


def init_state(keep_widgets: bool = True) -> None:
    """Set every key's default once per session and open the folder given on the command line (or else
    a built demo, the text demo first). Idempotent; pages call it too (with ``keep_widgets=False``) so that a page opened
    before the entry script ever ran still finds its state."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
        if keep_widgets:
            # re-assigning keeps a widget's value while the page that shows it is not the current one
            st.session_state[key] = st.session_state[key]
    if not st.session_state["sd_started"]:
        st.session_state["sd_started"] = True
        given = cli_results_dir()
        if given:
            open_folder(given)
        elif cli_demo():
            start_demo(cli_demo())
        elif st.session_state["sd_results_dir"] is None:
            for kind in ("text", *demo_kinds()):  # the text demo first, else another built demo
                built = demo_folder(kind)
                if (built / "run.json").is_file():
                    try:
                        load(str(built))
                    except SemDedupError:
                        continue
                    open_folder(built)
                    break


def open_folder(path: str | Path) -> None:
    """Make ``path`` the open results folder (checked when a page loads it)."""
    st.session_state["sd_results_dir"] = str(Path(path).expanduser())
    suggested = demo_eps(path)
    if suggested is not None:
        set_eps(suggested)
    st.session_state["sd_cluster"] = None
    st.session_state["pairs_page"] = 0


# -- demos ------------------------------------------------------------------------------------------
def demo_kinds() -> tuple[str, ...]:
    """The offline demos this installation can build (none when the demo module is absent)."""
    try:
        from semdedup_core import demo
    except ImportError:
        return ()
    return tuple(getattr(demo, "DEMOS", ()))


def demo_folder(kind: str) -> Path:
    """Where ``run_demo(kind)`` (and ``python -m semdedup_core demo KIND``) writes by default."""
    from semdedup_core.demo import default_out

    return default_out(kind)


def demo_eps(path: str | Path) -> float | None:
    """The ε the demo module suggests when ``path`` is a demo's default folder."""
    try:
        from semdedup_core.demo import DEMO_EPS
    except ImportError:
        return None
    for kind, value in DEMO_EPS.items():
        if Path(path).expanduser().resolve() == demo_folder(kind).resolve():
            return float(value)
    return None


# -- loading ------------------------------------------------------------------------------------------
def _stamp(path: str) -> int:
    try:
        return (Path(path) / "run.json").stat().st_mtime_ns
    except OSError:
        return 0


@st.cache_resource(max_entries=4, show_spinner="Loading results…")
def _load(path: str, stamp: int) -> Results:
    return Results.load(path)


def load(path: str) -> Results:
    """The :class:`Results` in ``path`` (cached); raises :class:`SemDedupError` when unusable."""
    return _load(str(Path(path).expanduser().resolve()), _stamp(str(Path(path).expanduser())))


def current_results(show_error: bool = True) -> Results | None:
    """The open results, or ``None`` (with an ``st.error`` naming the reason when it cannot be loaded)."""
    init_state(keep_widgets=False)
    path = st.session_state.get("sd_results_dir")
    if not path:
        return None
    try:
        res = load(path)
    except SemDedupError as exc:
        if show_error:
            error(exc)
        return None
    except Exception as exc:  # a damaged file: say so instead of a traceback
        if show_error:
            error(f"could not read the results folder {path!r}: {exc}; rerun into a new folder")
        return None
    if st.session_state.get("sd_remembered") != str(res.path):  # for the recent-runs list on Home
        try:
            jobs.remember(res.path)
        except OSError:
            pass
        st.session_state["sd_remembered"] = str(res.path)
    return res


def require_results(eps_control: bool = True) -> Results:
    """The open results, or stop the page with a pointer to Home. Draws the sidebar (the open folder and,
    with ``eps_control``, the shared ε slider with the removed count)."""
    res = current_results()
    sidebar(res, eps_control)
    if res is None:
        if not st.session_state.get("sd_results_dir"):
            st.info("No results folder is open yet.")
        st.page_link(PAGES["home"], label="Open a results folder or build a demo on Home", icon=":material/home:")
        st.stop()
    return res


def sidebar(res: Results | None, eps_control: bool = False) -> None:
    """The navigation, the open folder's name and size, and (``eps_control``) the shared ε slider."""
    with st.sidebar:
        for path, label, icon in NAV.values():
            st.page_link(path, label=label, icon=icon)
        st.divider()
        if res is None:
            st.caption("No results folder open.")
            return
        st.caption(f"**{pairs.escape_markdown(res.path.name)}** · {fmt_int(res.n_items)} items")
        if eps_control:
            e = eps_slider(res)
            n_rem = res.n_removed(e)
            st.caption(f"removes {fmt_int(n_rem)} ({n_rem / res.n_items:.1%}) at ε = {e:.4f}")


def key(res: Results) -> tuple[str, int]:
    return str(res.path), _stamp(str(res.path))


# -- ε ------------------------------------------------------------------------------------------------
def eps() -> float:
    return float(st.session_state["sd_eps"])


def set_eps(value: float) -> None:
    st.session_state["sd_eps"] = float(value)


@st.cache_data(max_entries=8, show_spinner=False)
def _eps_max(path: str, stamp: int, _res: Results) -> float:
    scores = _res.items["max_sim"].to_numpy()
    scored = scores[scores > -1.0]
    low = float(scored.min()) if len(scored) else 0.5
    return float(min(2.0, max(0.5, np.ceil((1.0 - low) * 20) / 20)))


def eps_max(res: Results) -> float:
    """The slider's upper end: the ε that removes every item that has a predecessor (at least 0.5)."""
    return _eps_max(*key(res), res)


def _sync_eps(widget_key: str) -> None:
    set_eps(st.session_state[widget_key])


def eps_slider(res: Results, where: Any = st, widget_key: str = "sb_eps", label: str = "ε (epsilon)") -> float:
    """An ε slider bound to the shared ``sd_eps`` (any number of pages can show one)."""
    top = eps_max(res)
    value = min(max(eps(), 0.0), top)
    set_eps(value)
    if st.session_state.get(widget_key) != value:
        # only when ε changed elsewhere: writing the widget's state sends the value back to the browser,
        # which would undo slider moves the user made while this rerun was going
        st.session_state[widget_key] = value
    where.slider(
        label,
        min_value=0.0,
        max_value=top,
        step=0.0005,
        format="%.4f",
        key=widget_key,
        on_change=_sync_eps,
        args=(widget_key,),
        help="An item is removed when its similarity to an earlier item of its cluster exceeds 1 − ε.",
    )
    return eps()


# -- derived data (cached) ---------------------------------------------------------------------------
@st.cache_resource(max_entries=4, show_spinner=False)
def _dup_rows(path: str, stamp: int, _res: Results) -> np.ndarray:
    return pairs.dup_rows(_res.items)


def dup_rows(res: Results) -> np.ndarray:
    return _dup_rows(*key(res), res)


@st.cache_data(max_entries=4, show_spinner=False)
def _curve(path: str, stamp: int, _res: Results, top: float) -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(0.0, top, 401)
    return grid, np.asarray(_res.kept_fraction(grid), dtype=np.float64)


def kept_curve(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """``(ε grid, kept fraction)`` from 0 to the slider's end."""
    return _curve(*key(res), res, eps_max(res))


@st.cache_data(max_entries=4, show_spinner=False)
def _hist(path: str, stamp: int, _res: Results) -> tuple[np.ndarray, np.ndarray]:
    s = _res.items["max_sim"].to_numpy()
    # clipped: float32 scores of identical items can exceed 1 by a hair
    counts, edges = np.histogram(np.clip(s[s > -1.0], -1.0, 1.0), bins=100, range=(-1.0, 1.0))
    return counts, edges


def score_histogram(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """Counts and bin edges of ``max_sim`` (items with a predecessor only)."""
    return _hist(*key(res), res)


@st.cache_data(max_entries=16, show_spinner=False)
def _cluster_table(path: str, stamp: int, _res: Results, e: float):
    return _res.cluster_table(e)


def cluster_table(res: Results, e: float):
    return _cluster_table(*key(res), res, e)


@st.cache_resource(max_entries=16, show_spinner=False)
def _pairs(path: str, stamp: int, _res: Results, e: float, sort: str, clusters: tuple, sim_range: tuple | None):
    return pairs.pairs_frame(_res, e, dup_rows(_res), sort=sort, clusters=list(clusters) or None, sim_range=sim_range)


def pairs_frame(res: Results, e: float, sort: str, clusters: tuple = (), sim_range: tuple | None = None):
    """Removed items at ``e`` beside their ``dup_of`` (see :func:`semdedup_core.pairs.pairs_frame`)."""
    return _pairs(*key(res), res, float(e), sort, tuple(clusters), sim_range)


@st.cache_resource(max_entries=8, show_spinner=False)
def _roots(path: str, stamp: int, _res: Results, e: float):
    removed = _res.removed_mask(e)
    root, depth = pairs.chain_roots(dup_rows(_res), removed)
    return removed, root, depth, pairs.groups_table(_res, root, removed)


def groups(res: Results, e: float):
    """``(removed mask, root per item, chain depth, groups table)`` at ``e``."""
    return _roots(*key(res), res, float(e))


@st.cache_data(max_entries=4, show_spinner=False)
def _showcase(path: str, stamp: int, _res: Results, e: float):
    return pairs.showcase_pairs(_res, e, dup_rows(_res))


def showcase(res: Results, e: float):
    return _showcase(*key(res), res, float(e))


# -- maps (computed in the background, cached in the results folder) ----------------------------------
@st.cache_resource(show_spinner=False)
def _map_executor():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="semdedup-map")


@st.cache_resource(max_entries=4, show_spinner=False)
def _map_future(path: str, stamp: int, method: str, _res: Results):
    return _map_executor().submit(maps.compute_all, _res, dup_rows(_res), maps.MAX_POINTS, method)


def item_map(res: Results, method: str = "umap", start: bool = True):
    """The item map if ready (from the folder or a finished background job), else ``None``; starts the
    background computation when ``start``. Raises what the computation raised."""
    cached = maps.load_map(res, maps.MAX_POINTS, method)
    if cached is not None and maps.load_centroid_map(res, method) is not None:
        return cached
    if not start:
        return None
    fut = _map_future(*key(res), method, res)
    return fut.result() if fut.done() else None


@st.cache_resource(max_entries=4, show_spinner=False)
def _map_labels(path: str, stamp: int, _res: Results, method: str, n_rows: int):
    m = maps.load_map(_res, maps.MAX_POINTS, method)
    rows = m["row"].to_numpy()
    items = _res.items
    col = "text" if "text" in items.columns else ("path" if "path" in items.columns else None)
    ids = items["id"].to_numpy()[rows]
    if col is None:
        return np.asarray(ids, dtype=object)
    snippets = items[col].to_numpy()[rows]
    return np.asarray(
        [
            f"{i}<br>{pairs.snippet(v, 60).replace('&', '&amp;').replace('<', '&lt;')}"
            for i, v in zip(ids, snippets, strict=True)
        ],
        dtype=object,
    )


def map_labels(res: Results, method: str, n_rows: int) -> np.ndarray:
    """Hover labels (id and an escaped snippet of the text or path) of the map's points, in map order."""
    return _map_labels(*key(res), res, method, n_rows)


def map_lines(res: Results, rows: np.ndarray, xy: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x and y (NaN-separated segments) of a line from each drawn removed item to its drawn ``dup_of``."""
    dup = dup_rows(res)
    pos = np.full(res.n_items, -1, dtype=np.int64)
    pos[rows] = np.arange(len(rows))
    target = pos[np.where(dup[rows] >= 0, dup[rows], 0)]
    src = np.flatnonzero(removed & (dup[rows] >= 0) & (target >= 0))[:20000]
    seg = np.full((len(src), 3, 2), np.nan)
    seg[:, 0] = xy[src]
    seg[:, 1] = xy[target[src]]
    return seg[:, :, 0].ravel(), seg[:, :, 1].ravel()


def centroid_map(res: Results, method: str = "umap"):
    """The centroid map once the background job (see :func:`item_map`) has written it, else ``None``."""
    return maps.load_centroid_map(res, method)


# -- export -------------------------------------------------------------------------------------------
@st.cache_data(max_entries=4, show_spinner="Preparing the file…")
def _export_bytes(
    path: str, stamp: int, _res: Results, e: float, which: str, fmt: str, txt_column: str, rule: str
) -> bytes:
    return sd_export.to_bytes(sd_export.export_frame(_res, e, which, rule), fmt, txt_column)


def export_bytes(res: Results, e: float, which: str, fmt: str, txt_column: str = "id", rule: str = "paper") -> bytes:
    return _export_bytes(*key(res), res, float(e), which, fmt, txt_column, rule)


MAX_CLUSTER_OPTIONS = 20_000  # beyond this many clusters with removals, the Pairs filter takes typed numbers


@st.cache_data(max_entries=16, show_spinner=False)
def _clusters_with_removals(path: str, stamp: int, _res: Results, e: float) -> list[int]:
    return np.unique(_res.items["cluster"].to_numpy()[_res.removed_mask(e)]).tolist()


def clusters_with_removals(res: Results, e: float) -> list[int]:
    """The clusters that have at least one removed item at ``e`` (the only ones with pairs to show)."""
    return _clusters_with_removals(*key(res), res, float(e))


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


@st.cache_data(max_entries=32, show_spinner="Applying the kept-only rule…")
def _n_removed_kept_only(path: str, stamp: int, _res: Results, e: float) -> int:
    return int(_res.n_removed(e, rule="kept-only"))


def n_removed_kept_only(res: Results, e: float) -> int:
    """Removed at ``e`` under the conservative rule (rescoring chain members; cached per ε)."""
    return _n_removed_kept_only(*key(res), res, float(e))


# -- drawing helpers ----------------------------------------------------------------------------------
def error(message: Any) -> None:
    """``st.error`` with the message shown literally (paths and values in it are not Markdown)."""
    st.error(pairs.escape_markdown(str(message)))


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


@st.cache_data(max_entries=512, show_spinner=False)
def _thumb(path: str, mtime: int, size: int) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def image_bytes(path: Any, size: int = 256) -> bytes | None:
    """A PNG thumbnail of the image at ``path`` (``size`` px), or ``None`` when it is missing or unreadable."""
    try:
        p = Path(str(path))
        return _thumb(str(p), p.stat().st_mtime_ns, size)
    except Exception:
        return None


def show_item(res: Results, row: int, *, caption: str = "", colour: str | None = None, tokens=None) -> None:
    """Draw one item: its image (thumbnail, full size on demand) or its text (escaped, with differing
    words highlighted when ``tokens`` from :func:`semdedup_core.pairs.word_diff` are given), or its id."""
    items = res.items
    item_id = items["id"].iat[row]
    st.caption(f"{caption} · {pairs.escape_markdown(item_id)} · cluster {int(items['cluster'].iat[row])}")
    if "path" in items.columns:
        path = items["path"].iat[row]
        data = image_bytes(path)
        if data is None:
            st.warning(f"image not found or unreadable: {pairs.escape_markdown(str(path))}")
        else:
            st.image(data, width=180)
            with st.popover("Full size"):
                full = image_bytes(path, size=2048)
                if full is not None:
                    st.image(full)
                st.caption(pairs.escape_markdown(str(path)))
    if "text" in items.columns:
        text = items["text"].iat[row]
        if tokens is not None and colour:
            st.markdown(pairs.diff_markdown(tokens, colour))
        else:
            st.markdown(pairs.escape_markdown(text if text is not None else ""))


def show_pair(res: Results, row: int, dup: int, sim: float, e: float) -> None:
    """A removed item beside the item it duplicates, with the similarity and its margin over 1 − ε."""
    items = res.items
    tok_removed = tok_kept = None
    if "text" in items.columns:
        a, b = items["text"].iat[dup], items["text"].iat[row]
        tok_kept, tok_removed = pairs.word_diff(str(a) if a is not None else "", str(b) if b is not None else "")
    left, mid, right = st.columns([5, 2, 5])
    with left:
        dup_removed = bool(items["max_sim"].iat[dup] > 1.0 - e)
        show_item(
            res, dup, caption="earlier (also removed)" if dup_removed else "kept", colour="green", tokens=tok_kept
        )
    with mid:
        st.metric(
            "similarity", f"{sim:.4f}", delta=f"{sim - (1 - e):+.4f} vs 1−ε", delta_color="off", delta_arrow="off"
        )
    with right:
        show_item(res, row, caption="removed", colour="red", tokens=tok_removed)
