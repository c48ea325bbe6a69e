"""Map: a 2-D UMAP of the items (a stratified sample for large runs) and of the cluster centres."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_core import SemDedupError
from semdedup_core.explore.maps import MAX_POINTS

sa.page_setup("Map")

res = sa.require_results()
e = sa.eps()
st.title("Map")
colour = st.segmented_control("Colour by", ["cluster", "kept / removed"], key="map_colour") or "cluster"
method = (
    st.segmented_control(
        "Projection",
        ["umap", "pca"],
        format_func={"umap": "UMAP (computed once in the background)", "pca": "PCA (instant, coarser)"}.get,
        key="map_method",
    )
    or "umap"
)
lines = st.toggle(
    "Lines from each removed item to its dup_of"
    + (" (orange: in another cluster, found by the probe)" if res.probe else ""),
    value=True,
    key="map_lines",
)


@st.fragment(run_every=2.0)
def wait_for_map() -> None:
    try:
        if sa.item_map(res, method) is not None:
            st.rerun(scope="app")
    except Exception as exc:
        sa.error(f"the map could not be computed: {exc}")
        return
    st.info(
        f"Computing the map of {min(res.n_items, MAX_POINTS):,} items in the background (once per run and "
        "projection; it is then stored in the results folder). This page updates when it is ready."
    )
    st.status(f"Map: {sa.map_job(res, method).status()}", state="running")  # a spinner, with the real step


try:
    m = sa.item_map(res, method)
except (SemDedupError, Exception) as exc:  # noqa: B014 - a damaged folder or a failed UMAP
    sa.error(f"the map could not be computed: {exc}")
    m = None
if m is None:
    wait_for_map()
else:
    rows = m["row"].to_numpy()
    removed = res.removed_mask(e, rows=rows)
    hover = sa.map_labels(res, method, len(rows))
    fig = go.Figure()
    if lines:
        kinds = [(False, "→ dup_of", "rgba(200,0,0,0.4)"), (True, "→ dup_of in another cluster", "rgba(255,140,0,0.9)")]
        for cross, name, colour in kinds if res.probe else [(None, "→ dup_of", "rgba(200,0,0,0.4)")]:
            xs, ys = sa.map_lines(res, rows, m[["x", "y"]].to_numpy(), removed, cross)
            fig.add_trace(
                go.Scattergl(
                    x=xs,
                    y=ys,
                    mode="lines",
                    line={"width": 2 if cross else 1, "color": colour},
                    name=name,
                    hoverinfo="skip",
                    connectgaps=False,
                )
            )
    if colour == "kept / removed":
        for name, mask, col in (("kept", ~removed, "#1f77b4"), ("removed", removed, "#d62728")):
            fig.add_trace(
                go.Scattergl(
                    x=m["x"][mask],
                    y=m["y"][mask],
                    mode="markers",
                    name=name,
                    marker={"size": 4, "color": col},
                    text=hover[mask],
                    hovertemplate="%{text}<extra></extra>",
                    customdata=rows[mask],
                )
            )
    else:
        fig.add_trace(
            go.Scattergl(
                x=m["x"],
                y=m["y"],
                mode="markers",
                name="items",
                marker={"size": 4, "color": res.column("cluster")[rows], "colorscale": "Turbo"},
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                customdata=rows,
            )
        )
    fig.update_layout(height=600, margin={"t": 20, "b": 20}, dragmode="lasso")
    n_note = "" if len(rows) == res.n_items else f" (a stratified sample of {len(rows):,} of {res.n_items:,})"
    st.caption(f"{len(rows):,} items{n_note}; box- or lasso-select points to list them.")
    event = st.plotly_chart(fig, key="map_plot", on_select="rerun", selection_mode=("box", "lasso", "points"))
    picked = []
    if event is not None:
        for p in event.selection.get("points", []):
            if p.get("customdata") is not None:
                cd = p["customdata"]
                picked.append(int(cd[0] if isinstance(cd, list) else cd))
    if picked:
        chosen = sorted(set(picked))[:1000]
        view = res.rows(chosen, [c for c in ("id", "cluster", "max_sim", "dup_of", "text", "path") if c in res.columns])
        view.insert(0, "removed", res.removed_mask(e, rows=chosen))
        st.write(f"{len(set(picked)):,} selected")
        st.dataframe(view, hide_index=True)

if res.n_clusters > 1:
    st.subheader("Cluster centres")
    try:
        cm = sa.centroid_map(res, method)
        if cm is None:
            st.stop()
        tab = sa.cluster_table(res, e).set_index("cluster")
        cm = cm[cm["size"] > 0]
        rem = tab.reindex(cm["cluster"])["removed"].fillna(0).to_numpy()
        fig = go.Figure(
            go.Scattergl(
                x=cm["x"],
                y=cm["y"],
                mode="markers",
                marker={
                    "size": 4 + 20 * np.sqrt(cm["size"] / cm["size"].max()),
                    "color": rem / cm["size"].to_numpy(),
                    "colorscale": "Reds",
                    "showscale": True,
                    "colorbar": {"title": "removed share"},
                },
                customdata=np.stack([cm["cluster"].to_numpy(), cm["size"].to_numpy(), rem.astype(np.int64)], axis=1),
                hovertemplate="cluster %{customdata[0]}: %{customdata[1]:,} items, %{customdata[2]:,} removed"
                "<extra></extra>",
            )
        )
        fig.update_layout(height=450, margin={"t": 20, "b": 20})
        st.plotly_chart(fig, key="map_centroids")
    except SemDedupError as exc:
        sa.error(exc)
