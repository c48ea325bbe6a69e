"""Drawing helpers the pages share: the sidebar and its ε slider, errors, items and pairs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import streamlit as st

from semdedup_core import Results, SemDedupError
from semdedup_core.explore.pairs import word_diff
from semdedup_core.media import images

from . import gate, jobs, runs
from .data import eps_max
from .markdown import diff_markdown, error, escape_markdown
from .state import NAV, PAGES, eps, first_look_of, set_eps, switch_to_full_run


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


# -- the open results ---------------------------------------------------------------------------------
def current_results(show_error: bool = True) -> Results | None:
    """The open results, or ``None`` (with an ``st.error`` naming the reason when it cannot be loaded)."""
    path = st.session_state.get("sd_results_dir")
    if not path:
        return None
    try:
        res = runs.open_results(path)
    except SemDedupError as exc:
        if show_error:
            error(exc)
        return None
    except Exception as exc:  # a damaged file: say so instead of a traceback
        if show_error:
            error(f"could not read the results folder {path!r}: {exc}; rerun into a new folder")
        return None
    if res.strings_problem is not None:  # a big folder's string checks (run in the background) failed
        if show_error:
            error(res.strings_problem)
        return None
    if gate.allowed("remember") and st.session_state.get("sd_remembered") != str(res.path):  # recent runs on Home
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
        st.caption(f"**{escape_markdown(res.path.name)}** · {fmt_int(res.n_items)} items")
        if first_look_of(res.run) is not None:
            _first_look_status(res.run, res.n_items)
        if eps_control:
            e = eps_slider(res)
            n_rem = res.n_removed(e)
            st.caption(f"removes {fmt_int(n_rem)} ({n_rem / res.n_items:.1%}) at ε = {e:.4f}")


@st.fragment(run_every=2.0)
def _first_look_status(run: dict[str, Any], n_items: int) -> None:
    """In the sidebar while a first look is open: how far the full run is, and the switch to it when done."""
    full = switch_to_full_run(run)
    if full is not None:
        st.toast(f"The whole demo is ready: switched from the first look to all of {escape_markdown(full.name)}.")
        st.rerun(scope="app")
    of = first_look_of(run)
    total = int(run["first_look"].get("items_total", 0))
    building = [j for j in jobs.list_jobs() if j["state"] == "running" and of is not None and Path(j["out"]) == of]
    if building:
        info = building[0]["progress_info"] or {}
        where = f"{info.get('stage', 'starting')} {fmt_int(info.get('done', 0))}/{fmt_int(info.get('total', 0))}"
        st.caption(
            f"First look: {fmt_int(n_items)} of {fmt_int(total)} items. The whole demo is being built ({where}) "
            "and replaces this view when done."
        )
    else:
        st.caption(
            f"First look: {fmt_int(n_items)} of {fmt_int(total)} items. The whole demo is not being built now; "
            "build it on Home."
        )


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


# -- items and pairs ----------------------------------------------------------------------------------
THUMB = 256  # thumbnail edge (px)
FULL = 2048  # the full-size view's edge (px), built only when its popover opens
MAX_DOWNLOAD = 100 * 2**20  # an original larger than this is not offered as a download


@st.cache_data(max_entries=512, show_spinner=False)
def _thumb(path: str, stamp: tuple, size: int) -> tuple[bytes | None, str | None]:
    """``(PNG, None)`` or ``(None, reason)``; cached by the file's identity, size and time (``stamp``), so
    an image is decoded once however often a page reruns, and again when its file changes."""
    try:
        return images.thumbnail_png(path, size), None
    except images.ImageRefused as exc:
        return None, f"not shown: {exc}"
    except Exception as exc:  # a damaged file is that item's problem, never the page's
        return None, f"unreadable image ({type(exc).__name__})"


def image(res: Results | None, path: Any, size: int = THUMB) -> tuple[bytes | None, str | None]:
    """A PNG of the image at ``path`` fitted into ``size`` px, or ``(None, why not)``: missing, unreadable,
    refused by :mod:`semdedup_core.media.images` (a FIFO, too many pixels…), or — in read-only mode —
    outside ``res``'s input folders (without ``res`` no image is shown there)."""
    problem = gate.problem("show-image", path, res=res)
    if problem is not None:
        return None, problem
    try:
        stamp = images.file_stamp(str(path))
    except (OSError, ValueError):
        return None, "image not found"
    return _thumb(str(path), stamp, size)


def image_bytes(path: Any, size: int = THUMB, res: Results | None = None) -> bytes | None:
    """A PNG thumbnail of the image at ``path`` (``size`` px), or ``None`` when it is missing, unreadable
    or not to be shown (see :func:`image`)."""
    return image(res, path, size)[0]


def _original(path: str) -> bytes:
    with images.open_regular(path) as f:
        return f.read(MAX_DOWNLOAD + 1)[:MAX_DOWNLOAD]


def show_image(res: Results, path: Any, key: str, width: int = 180) -> None:
    """A thumbnail, and a "Full size" popover that builds the large view only when it is opened (with a
    download of the original file)."""
    data, problem = image(res, path, max(THUMB, width))
    if data is None:
        st.warning(f"{escape_markdown(problem or 'image not found')}: {escape_markdown(str(path))}")
        return
    st.image(data, width=width)
    pop = st.popover("Full size", key=f"{key}_full", on_change="rerun")
    if pop.open:
        with pop:
            full, why = image(res, path, FULL)
            if full is not None:
                st.image(full)
            else:
                st.warning(escape_markdown(why or "unreadable image"))
            st.caption(escape_markdown(str(path)))
            with contextlib.suppress(OSError):
                if Path(str(path)).stat().st_size <= MAX_DOWNLOAD:
                    st.download_button(
                        "Download the original",
                        data=lambda p=str(path): _original(p),
                        file_name=Path(str(path)).name,
                        key=f"{key}_orig",
                    )


def show_item(
    res: Results,
    row: int,
    *,
    caption: str = "",
    colour: str | None = None,
    tokens=None,
    image_width: int = 180,
    key: str | None = None,
) -> None:
    """Draw one item of the run: its image (thumbnail ``image_width`` px wide, full size on demand) or its
    text (escaped, with differing words highlighted when ``tokens`` from
    :func:`semdedup_core.explore.pairs.word_diff` are given), or its id. ``key``: unique on the page when
    the same row may be drawn twice (default ``item_ROW``)."""
    show_record(
        res,
        item_rows(res, [row]),
        0,
        caption=caption,
        colour=colour,
        tokens=tokens,
        image_width=image_width,
        key=key or f"item_{row}",
    )


SHOWN_COLUMNS = ("id", "cluster", "path", "text")


def item_rows(res: Results, rows: Any) -> Any:
    """The items at ``rows`` (in that order) with what :func:`show_record` draws of them: read from the
    open folder row by row, never the whole table."""
    return res.rows(rows, [c for c in SHOWN_COLUMNS if c in res.columns])


def show_record(
    res: Results,
    items: Any,
    row: int,
    *,
    caption: str = "",
    colour: str | None = None,
    tokens=None,
    image_width: int = 180,
    key: str | None = None,
) -> None:
    """:func:`show_item` for a row of any frame of ``res`` with an ``id`` (and maybe ``cluster``, ``path``,
    ``text``) column: the run's items or its reference set."""
    item_id = items["id"].iat[row]
    where = f" · cluster {int(items['cluster'].iat[row])}" if "cluster" in items.columns else ""
    st.caption(f"{caption} · {escape_markdown(item_id)}{where}")
    if "path" in items.columns:
        show_image(res, items["path"].iat[row], key or f"item_{row}", width=image_width)
    if "text" in items.columns:
        text = items["text"].iat[row]
        if tokens is not None and colour:
            st.markdown(diff_markdown(tokens, colour))
        else:
            st.markdown(escape_markdown(text if text is not None else ""))


def show_pair(
    res: Results,
    row: int,
    dup: int,
    sim: float,
    e: float,
    dup_removed: bool,
    *,
    image_width: int = 180,
    captions: tuple[str, str] | None = None,
) -> None:
    """A removed item beside the item it duplicates (``dup_removed``: that item is removed too, as
    ``pairs_frame`` decided), with the similarity and its margin over 1 − ε. ``captions``: the two
    items' captions (earlier item, item) instead of kept/removed; ``image_width``: thumbnails' width."""
    if not 0 <= dup < res.n_items:  # Results.load refuses such folders; never show a wrong partner
        st.warning(f"item {escape_markdown(str(item_rows(res, [row])['id'].iat[0]))} has no earlier item to show")
        return
    earlier, later = captions or ("earlier (also removed)" if dup_removed else "kept", "removed")
    items = item_rows(res, [dup, row])
    cluster = res.column("cluster")
    note = "↔ across clusters (found by the probe)" if cluster[row] != cluster[dup] else ""
    show_compare(
        res,
        (items, 0, earlier, f"pair_{row}_{dup}_kept"),
        (items, 1, later, f"pair_{row}_{dup}_removed"),
        sim,
        e,
        note=note,
        image_width=image_width,
    )


def show_compare(
    res: Results,
    left: tuple[Any, int, str, str],
    right: tuple[Any, int, str, str],
    sim: float,
    e: float,
    *,
    note: str = "",
    image_width: int = 180,
) -> None:
    """Two records of ``res`` side by side — ``(frame, row, caption, widget key)`` each: the one that stays
    on the left (green), the one flagged on the right (red), differing words highlighted when both have
    text — with their similarity and its margin over 1 − ε between them (and ``note`` under it)."""
    (lf, lrow, lcap, lkey), (rf, rrow, rcap, rkey) = left, right
    tok_left = tok_right = None
    if "text" in lf.columns and "text" in rf.columns:
        a, b = lf["text"].iat[lrow], rf["text"].iat[rrow]
        tok_left, tok_right = word_diff(str(a) if a is not None else "", str(b) if b is not None else "")
    c1, mid, c2 = st.columns([5, 2, 5])
    with c1:
        show_record(res, lf, lrow, caption=lcap, colour="green", tokens=tok_left, image_width=image_width, key=lkey)
    with mid:
        st.metric(
            "similarity", f"{sim:.4f}", delta=f"{sim - (1 - e):+.4f} vs 1−ε", delta_color="off", delta_arrow="off"
        )
        if note:
            st.caption(note)
    with c2:
        show_record(res, rf, rrow, caption=rcap, colour="red", tokens=tok_right, image_width=image_width, key=rkey)


def show_pairs(res: Results, frame: Any, e: float, marks: list[str | None] | None = None) -> None:
    """Each row of a :func:`semdedup_core.explore.pairs.pairs_frame` in a bordered box; ``marks``: a line
    of Markdown per row shown above its pair (the verdict a reviewer gave it), or ``None``."""
    marks = marks if marks is not None else [None] * len(frame)
    for row, dup, sim, chained, mark in zip(
        frame["row"], frame["dup_row"], frame["max_sim"], frame["dup_removed"], marks, strict=True
    ):
        with st.container(border=True):
            if mark:
                st.caption(mark)
            show_pair(res, int(row), int(dup), float(sim), e, bool(chained))
