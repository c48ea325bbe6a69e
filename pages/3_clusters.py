"""Clusters: one cluster's items in keep order, with kept / removed badges at the current ε."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa

sa.page_setup("Clusters")

res = sa.require_results()
e = sa.eps()
st.title("Clusters")
table = sa.cluster_table(res, e)
ORDERS = {"largest": "Largest first", "removed": "Most removed first", "id": "By cluster number"}
c1, c2 = st.columns([2, 3])
order = c1.selectbox("Order", list(ORDERS), format_func=ORDERS.get, key="cl_order")
by = {"largest": ["size", "cluster"], "removed": ["removed", "size"], "id": ["cluster"]}[order]
ranked = table.sort_values(by, ascending=[order == "id"] + [False] * (len(by) - 1)).reset_index(drop=True)
options = ranked["cluster"].head(5000).tolist()
sizes = dict(zip(table["cluster"].tolist(), table["size"].tolist(), strict=True))
removals = dict(zip(table["cluster"].tolist(), table["removed"].tolist(), strict=True))
current = st.session_state.get("sd_cluster")
if current is not None and current not in options and current in sizes:
    options = [current] + options
if current not in options:
    st.session_state["sd_cluster"] = options[0]
info = table.set_index("cluster")


def _label(c: int) -> str:
    return f"cluster {c} · {sizes[c]:,} items · {removals[c]:,} removed"


cluster = c2.selectbox("Cluster", options, format_func=_label, key="sd_cluster")
row = info.loc[cluster]
members = res.clusters.members(cluster)  # in keep order
removed = res.removed_mask(e, rows=members)
dist = res.column("dist_to_centroid")[members]

m1, m2, m3, m4 = st.columns(4)
m1.metric("items", sa.fmt_int(row["size"]))
m2.metric(
    "removed at ε",
    sa.fmt_int(row["removed"]),
    f"{row['removed'] / row['size']:.1%}",
    delta_color="off",
    delta_arrow="off",
)
m3.metric("distance to centre (median)", f"{np.median(dist):.4f}")
m4.metric("distance range", f"{dist.min():.3f} – {dist.max():.3f}")

fig = go.Figure(go.Histogram(x=dist, nbinsx=40))
fig.update_layout(title="Distance to the centroid (1 − cosine)", height=240, margin={"t": 40, "b": 30})
st.plotly_chart(fig, key="cl_hist")

items = res.rows(members[:1000], [c for c in ("rank", "id", "max_sim", "dup_of", "dist_to_centroid", "text", "path")
                                   if c in res.columns])  # fmt: skip
view = items[[c for c in ("rank", "id", "max_sim", "dup_of", "dist_to_centroid") if c in items.columns]].copy()
view.insert(0, "status", np.where(removed[:1000], "removed", "kept"))
for extra in ("text", "path"):
    if extra in items.columns:
        view[extra] = items[extra].astype(str).str.slice(0, 200)
st.dataframe(
    view,
    hide_index=True,
    key="cl_items",
    column_config={"max_sim": st.column_config.NumberColumn("max_sim", format="%.4f")},
)
if len(members) > 1000:
    st.caption(f"Showing the first 1,000 of {len(members):,} items in keep order.")
st.page_link(sa.PAGES["pairs"], label="See this ε's pairs", icon=":material/compare:")
