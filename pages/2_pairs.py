"""Pairs: every removed item beside the item it duplicates; groups and chains."""

from __future__ import annotations

import streamlit as st

import semdedup_app as sa
from semdedup_app.markdown import escape_markdown
from semdedup_core import SemDedupError
from semdedup_core.explore.pairs import SORTS

sa.page_setup("Pairs")

res = sa.require_results()
e = sa.eps()
st.title("Pairs")
GROUP_PAGE = 50  # a group's items drawn at a time (a rerun draws them all again)
SORT_LABELS = {
    "borderline": "Borderline first (closest to 1 − ε)",
    "similarity": "Most similar first",
    "cluster": "By cluster",
}


def _reset_page() -> None:
    st.session_state["pairs_page"] = 0


view = st.segmented_control(
    "View", ["Pairs", "Groups"], key="pairs_view", on_change=_reset_page, help="Groups: a kept item and all it removed"
)

if view != "Groups":
    c1, c2, c3 = st.columns([2, 2, 3])
    sort = c1.selectbox("Sort", SORTS, format_func=SORT_LABELS.get, key="pairs_sort", on_change=_reset_page)
    options = sa.clusters_with_removals(res, e)
    if len(options) <= sa.MAX_CLUSTER_OPTIONS:
        clusters = c2.multiselect(
            "Clusters",
            options=options,
            key="pairs_clusters",
            on_change=_reset_page,
            placeholder="all",
            help="Only clusters with removals at this ε are listed.",
        )
    else:  # too many to list: type them
        typed = c2.text_input(
            "Clusters", key="pairs_clusters_typed", on_change=_reset_page, placeholder="all, or 3, 17"
        )
        try:
            clusters = sa.parse_clusters(typed, res.n_clusters)
        except SemDedupError as exc:
            sa.error(exc)
            clusters = ()
    low = max(-1.0, round(1.0 - sa.eps_max(res), 3))
    sim_range = c3.slider("Similarity range", low, 1.0, (low, 1.0), step=0.001, key="pairs_sim", on_change=_reset_page)
    per_page = int(st.session_state["pairs_per_page"])
    shown = sa.pairs_page(res, e, st.session_state["pairs_page"], per_page, sort, tuple(clusters), tuple(sim_range))
    part, n_pages = shown.frame, shown.n_pages
    st.session_state["pairs_page"] = shown.number
    across = f" · {sa.fmt_int(shown.cross_cluster)} of them across clusters" if res.probe else ""
    st.caption(
        f"{sa.fmt_int(shown.total)} removed items at ε = {e:.4f} match{across} · page "
        f"{st.session_state['pairs_page'] + 1} of {n_pages}"
    )
    if not shown.total:
        st.info("No item is removed at this ε with these filters. Raise ε on the Threshold page or widen the filters.")
    try:
        judged = sa.audit.marks(res, part)  # pairs a reviewer judged (Review page or `audit import`)
    except SemDedupError as exc:
        sa.error(exc)
        judged = None
    sa.show_pairs(res, part, e, judged)

    def _move(step: int) -> None:
        st.session_state["pairs_page"] = min(max(0, st.session_state["pairs_page"] + step), n_pages - 1)

    p1, p2, p3 = st.columns([1, 1, 4])
    p1.button("◀ Previous", key="pairs_prev", on_click=_move, args=(-1,), disabled=st.session_state["pairs_page"] == 0)
    p2.button(
        "Next ▶", key="pairs_next", on_click=_move, args=(1,), disabled=st.session_state["pairs_page"] >= n_pages - 1
    )
    p3.selectbox("Per page", [5, 10, 20, 50], key="pairs_per_page", on_change=_reset_page)
else:

    def _chain(row: int, d: int) -> list[int]:
        """``row`` and the items its chain of ``dup_of`` passes through, up to the group's kept item."""
        path = [row]
        while path[-1] != root and len(path) <= d:
            path.append(int(res.dup_rows[path[-1]]))
        return path

    found = sa.groups(res, e)
    table = found.table
    st.caption(
        f"{sa.fmt_int(found.n_groups)} kept items caused the {sa.fmt_int(found.n_removed)} removals at ε = {e:.4f}. "
        "Indented items are chains: removed as a duplicate of an item that is itself removed."
    )
    if table.empty:
        st.info("Nothing is removed at this ε.")
        st.stop()
    top = table.head(500)
    choice = st.selectbox(
        "Group (kept item · removals)",
        range(len(top)),
        format_func=lambda i: f"{sa.isolate(top['id'].iat[i])} · {top['removed'].iat[i]} removed",
        key="pairs_group",
        on_change=lambda: st.session_state.update(pairs_group_shown=GROUP_PAGE),
    )
    root = int(top["row"].iat[choice])
    dup = res.dup_rows
    tree = found.tree(root, dup, res.column("rank"))
    scores = res.column("max_sim")
    limit = int(st.session_state.setdefault("pairs_group_shown", GROUP_PAGE))
    chain_rows = sorted({r for row, d in tree[:limit] for r in _chain(row, d)} | {root})
    ids = dict(zip(chain_rows, res.rows(chain_rows, ["id"])["id"], strict=True))
    shown = sa.item_rows(res, [row for row, _ in tree[:limit]])  # one read for what is shown
    for i, (row, d) in enumerate(tree[:limit]):
        cols = st.columns([max(1, d), 12])
        with cols[1], st.container(border=True):
            if d == 0:
                sa.show_record(res, shown, i, caption="kept", key=f"group_{row}")
            else:
                chain = " → ".join(sa.isolate(ids[r]) for r in reversed(_chain(row, d)))  # each id isolated
                sa.show_record(
                    res,
                    shown,
                    i,
                    caption=f"{'↳ ' * d}removed, similarity {scores[row]:.4f} · chain {escape_markdown(chain)}",
                    key=f"group_{row}",
                )
    if len(tree) > limit:
        st.caption(f"Showing {limit:,} of {len(tree):,} items in this group.")
        st.button(
            f"Show {min(GROUP_PAGE, len(tree) - limit):,} more",
            key="pairs_group_more",
            on_click=lambda: st.session_state.update(pairs_group_shown=limit + GROUP_PAGE),
        )
