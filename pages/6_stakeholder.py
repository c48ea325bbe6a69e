"""Stakeholder view: the story of a run without any controls."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_core import SemDedupError

sa.page_setup("Stakeholder view")

res = sa.require_results(eps_control=False)
e = sa.eps()
n = res.n_items
n_rem = res.n_removed(e)
st.title("Semantic duplicates in this dataset")
first_look = res.run.get("first_look")
if first_look:  # a part chosen to contain likely duplicates: its share says nothing about the collection
    st.warning(
        f"This is a first look at {sa.fmt_int(n)} of the {sa.fmt_int(first_look.get('items_total', 0))} items, "
        "chosen so that it holds likely duplicates: its share of duplicates overstates the whole collection's. "
        "The figures below are the whole demo's once it is built (it replaces this view by itself)."
    )
m1, m2, m3 = st.columns(3)
m1.metric("items in the dataset", sa.fmt_int(n))
m2.metric("semantic duplicates", f"{n_rem / n:.1%}", f"{sa.fmt_int(n_rem)} items", delta_color="off", delta_arrow="off")
m3.metric("kept after deduplication", sa.fmt_int(n - n_rem))
report_name, build_report = sa.report_file(res, e, str(sa.audit.store(res).path))
st.download_button(
    "Download the report (HTML)",
    data=build_report,
    file_name=report_name,
    mime="text/html",
    key="story_report",
    icon=":material/download:",
    on_click="ignore",
    help="One self-contained file (images and chart inside, nothing fetched) with these numbers, example and "
    "borderline pairs, the biggest groups of duplicates and the run's parameters: for people without the app.",
)
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
try:
    audited = sa.audit.at(res, e)
except SemDedupError:
    audited = None  # a damaged sample or store is reported on Review; this page has no controls
if audited is not None and "above" not in audited and audited["labelled"]:
    st.markdown(f"**{sa.audit.sentence(audited)}**")
    if sa.audit.guarantee_sentence(audited, e):  # the recommended ε, for Review's target, and its guarantee
        st.markdown(sa.audit.guarantee_sentence(audited, e))
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
