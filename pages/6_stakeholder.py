"""Stakeholder view: the story of a run without any controls."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa

sa.page_setup("Stakeholder view")

res = sa.require_results(eps_control=False)
e = sa.eps()
n = res.n_items
n_rem = res.n_removed(e)
st.title("Semantic duplicates in this dataset")
m1, m2, m3 = st.columns(3)
m1.metric("items in the dataset", sa.fmt_int(n))
m2.metric("semantic duplicates", f"{n_rem / n:.1%}", f"{sa.fmt_int(n_rem)} items", delta_color="off", delta_arrow="off")
m3.metric("kept after deduplication", sa.fmt_int(n - n_rem))
where = (
    "same cluster of meaning"
    if not res.probe
    else f"its own cluster of meaning and the {res.probe} nearest ones, so near-copies on either side of a "
    "cluster boundary count too"
)
st.markdown(
    f"Every item was compared with the similar items around it ({where}). "
    f"**{n_rem / n:.1%} of the items are near-copies of another item** — cosine similarity above "
    f"{1 - e:.3f} (ε = {e:.4f}). Removing them keeps the information while training on less, "
    "repetitive data; the SemDeDup paper removed half of LAION this way at a cost of under half a point "
    "of ImageNet zero-shot accuracy."
)
grid, kept = sa.kept_curve(res)
fig = go.Figure(go.Scatter(x=grid, y=(1 - kept) * 100, mode="lines", name="duplicates %"))
fig.add_trace(go.Scatter(x=[e], y=[n_rem / n * 100], mode="markers", marker={"size": 12}, name="chosen"))
fig.update_layout(
    title="Share flagged as duplicates, by how strict the threshold is",
    xaxis_title="ε (larger = looser)",
    yaxis_title="duplicates (%)",
    height=320,
    showlegend=False,
    margin={"t": 40, "b": 40},
)
st.plotly_chart(fig, key="story_curve")

st.subheader("Examples")
best = sa.showcase(res, e)
if best.empty:
    st.info("Nothing is a duplicate at this threshold.")
sa.show_pairs(res, best, e)
