"""Leakage: the training items that are semantic copies of a held-out (reference) set, at the current ε."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_core.explore.leakage import SORTS
from semdedup_core.explore.pairs import page

sa.page_setup("Leakage")

res = sa.require_results()
e = sa.eps()
st.title("Leakage")
if not res.has_reference:
    st.info(
        "This run was not compared with a held-out set. To find the training items that are semantic copies "
        "of your evaluation data, add `--reference` to the run: `python -m semdedup_core run --input "
        "train.jsonl --text-column text --reference heldout.jsonl --out DIR --clusters K` (raw data of the same "
        "kind as the input, embedded with the same encoder), or `run --embeddings X.npy --reference "
        "HELD_OUT.npy --reference-ids IDS.txt ...`. Then open DIR here."
    )
    st.stop()

n = res.n_items
n_ref = len(res.reference)
n_leak = res.n_leaked(e)
search = res.run.get("reference", {})
probe = search.get("probe")
st.markdown(
    "Every training item was compared with the held-out items "
    + (
        "— all of them (exact search)."
        if probe is None
        else f"filed under its cluster: each held-out item is filed under its nearest cluster centre and the "
        f"{probe} next nearest."
    )
    + f" At ε an item is **leaked when its similarity to a held-out item is above 1 − ε** ({1 - e:.4f}): "
    "the same filter as removal, over `ref_sim`."
)
m1, m2, m3, m4 = st.columns(4)
m1.metric("training items", sa.fmt_int(n))
m2.metric("held-out items", sa.fmt_int(n_ref))
m3.metric("leaked", sa.fmt_int(n_leak), f"{n_leak / n:.2%} of training", delta_color="off", delta_arrow="off")
m4.metric("similarity threshold 1 − ε", f"{1 - e:.4f}")

c1, c2 = st.columns([3, 2])
with c1:
    counts, edges = sa.ref_sim_histogram(res)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0], name="items"))
    fig.add_vline(x=1 - e, line_color="red", annotation_text="1 − ε")
    low = float(edges[:-1][counts > 0].min()) if counts.any() else -1.0
    fig.update_layout(
        title="Similarity to the nearest held-out item (ref_sim)",
        xaxis_title="ref_sim",
        yaxis_title="training items",
        xaxis_range=[max(-1.0, low - 0.05), 1.02],
        height=340,
        margin={"t": 40, "b": 40},
    )
    st.plotly_chart(fig, key="leak_hist")
with c2:
    table = sa.leak_clusters(res, e)
    st.markdown(f"**Leaks per cluster** ({sa.fmt_int(len(table))} clusters)")
    st.dataframe(
        table,
        hide_index=True,
        height=300,
        key="leak_table",
        column_config={
            "share": st.column_config.NumberColumn("share", format="%.2f"),
            "max_ref_sim": st.column_config.NumberColumn("max ref_sim", format="%.4f"),
        },
    )

st.subheader("Leaked items beside the held-out item they copy")
SORT_LABELS = {
    "borderline": "Borderline first (closest to 1 − ε)",
    "similarity": "Most similar first",
    "cluster": "By cluster",
}


def _reset_page() -> None:
    st.session_state["leak_page"] = 0


s1, s2 = st.columns([2, 5])
sort = s1.selectbox("Sort", SORTS, format_func=SORT_LABELS.get, key="leak_sort", on_change=_reset_page)
frame = sa.leak_pairs(res, e, sort)
per_page = int(st.session_state["leak_per_page"])
part, n_pages = page(frame, st.session_state["leak_page"], per_page)
st.session_state["leak_page"] = min(st.session_state["leak_page"], n_pages - 1)
st.caption(
    f"{sa.fmt_int(len(frame))} leaked items at ε = {e:.4f} · page {st.session_state['leak_page'] + 1} of {n_pages}"
)
if frame.empty:
    st.info("No training item is that close to a held-out item at this ε. Raise ε to look at looser matches.")
ref = res.reference
for row, ref_row, sim in zip(part["row"], part["ref_row"], part["ref_sim"], strict=True):
    with st.container(border=True):
        sa.show_compare(
            res,
            (ref, int(ref_row), "held-out", f"leak_{row}_ref"),
            (sa.item_rows(res, [int(row)]), 0, "training, leaked", f"leak_{row}"),
            float(sim),
            e,
        )


def _move(step: int) -> None:
    st.session_state["leak_page"] = min(max(0, st.session_state["leak_page"] + step), n_pages - 1)


p1, p2, p3 = st.columns([1, 1, 4])
p1.button("◀ Previous", key="leak_prev", on_click=_move, args=(-1,), disabled=st.session_state["leak_page"] == 0)
p2.button("Next ▶", key="leak_next", on_click=_move, args=(1,), disabled=st.session_state["leak_page"] >= n_pages - 1)
p3.selectbox("Per page", [5, 10, 20, 50], key="leak_per_page", on_change=_reset_page)
st.page_link(sa.PAGES["export"], label="Export the leaked items (ids, ref_id, similarity)", icon=":material/download:")
