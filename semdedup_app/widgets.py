"""Drawing helpers the pages share: the sidebar and its ε slider, errors, items and pairs."""

from __future__ import annotations

import io
from typing import Any

import streamlit as st

from semdedup_core import Results, SemDedupError
from semdedup_core.engine import media
from semdedup_core.explore.pairs import word_diff

from . import jobs
from .data import eps_max, load
from .markdown import diff_markdown, error, escape_markdown
from .state import NAV, PAGES, eps, set_eps


def fmt_int(n: int) -> str:
    return f"{int(n):,}"


# -- the open results ---------------------------------------------------------------------------------
def current_results(show_error: bool = True) -> Results | None:
    """The open results, or ``None`` (with an ``st.error`` naming the reason when it cannot be loaded)."""
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
        st.caption(f"**{escape_markdown(res.path.name)}** · {fmt_int(res.n_items)} items")
        if eps_control:
            e = eps_slider(res)
            n_rem = res.n_removed(e)
            st.caption(f"removes {fmt_int(n_rem)} ({n_rem / res.n_items:.1%}) at ε = {e:.4f}")


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
@st.cache_data(max_entries=512, show_spinner=False)
def _thumb(path: str, stamp: tuple, size: int) -> bytes:
    from PIL import Image

    with media.open_binary(path) as f, Image.open(f) as im:
        im = im.convert("RGB")
        im.thumbnail((size, size))
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()


def image_bytes(path: Any, size: int = 256) -> bytes | None:
    """A PNG thumbnail of the image at ``path`` (``size`` px), or ``None`` when it is missing or unreadable."""
    try:
        return _thumb(str(path), media.stamp(str(path)), size)
    except Exception:
        return None


def show_item(res: Results, row: int, *, caption: str = "", colour: str | None = None, tokens=None) -> None:
    """Draw one item: its image (thumbnail, full size on demand) or its text (escaped, with differing
    words highlighted when ``tokens`` from :func:`semdedup_core.explore.pairs.word_diff` are given), or its id."""
    items = res.items
    item_id = items["id"].iat[row]
    st.caption(f"{caption} · {escape_markdown(item_id)} · cluster {int(items['cluster'].iat[row])}")
    if "path" in items.columns:
        path = items["path"].iat[row]
        data = image_bytes(path)
        if data is None:
            st.warning(f"image not found or unreadable: {escape_markdown(str(path))}")
        else:
            st.image(data, width=180)
            with st.popover("Full size"):
                full = image_bytes(path, size=2048)
                if full is not None:
                    st.image(full)
                st.caption(escape_markdown(str(path)))
    if "text" in items.columns:
        text = items["text"].iat[row]
        if tokens is not None and colour:
            st.markdown(diff_markdown(tokens, colour))
        else:
            st.markdown(escape_markdown(text if text is not None else ""))


def show_pair(res: Results, row: int, dup: int, sim: float, e: float, dup_removed: bool) -> None:
    """A removed item beside the item it duplicates (``dup_removed``: that item is removed too, as
    ``pairs_frame`` decided), with the similarity and its margin over 1 − ε."""
    items = res.items
    tok_removed = tok_kept = None
    if "text" in items.columns:
        a, b = items["text"].iat[dup], items["text"].iat[row]
        tok_kept, tok_removed = word_diff(str(a) if a is not None else "", str(b) if b is not None else "")
    left, mid, right = st.columns([5, 2, 5])
    with left:
        show_item(
            res, dup, caption="earlier (also removed)" if dup_removed else "kept", colour="green", tokens=tok_kept
        )
    with mid:
        st.metric(
            "similarity", f"{sim:.4f}", delta=f"{sim - (1 - e):+.4f} vs 1−ε", delta_color="off", delta_arrow="off"
        )
    with right:
        show_item(res, row, caption="removed", colour="red", tokens=tok_removed)


def show_pairs(res: Results, frame: Any, e: float) -> None:
    """Each row of a :func:`semdedup_core.explore.pairs.pairs_frame` in a bordered box."""
    for row, dup, sim, chained in zip(
        frame["row"], frame["dup_row"], frame["max_sim"], frame["dup_removed"], strict=True
    ):
        with st.container(border=True):
            show_pair(res, int(row), int(dup), float(sim), e, bool(chained))
