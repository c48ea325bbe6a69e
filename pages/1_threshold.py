"""Threshold: choose ε (or the fraction to keep) and watch the counts, the curve and the clusters."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_core import SemDedupError

sa.page_setup("Threshold")

res = sa.require_results(eps_control=False)
st.title("Threshold")
KEEP_WORDS = {
    "hard": "the one farthest from the cluster centre comes first (the paper's default)",
    "easy": "the one nearest the cluster centre comes first",
    "random": "in a seeded random order",
}
keep = res.run.get("params", {}).get("dedup", {}).get("keep", "hard")
if not res.probe:
    st.markdown(
        f"**The rule (the paper's).** Inside each cluster the items are put in order — {KEEP_WORDS.get(keep, keep)}, "
        "and the first is always kept — and every item gets a score: its highest cosine similarity "
        "to any *earlier* item of the same cluster. At ε an item is **removed when that score is above 1 − ε**. "
        "Earlier items count even when they are removed themselves, so chains go together: if A ≈ B and "
        "B ≈ C, both B and C are removed although C may not be close to A. Items in different clusters are "
        "never compared."
    )
else:
    st.markdown(
        f"**The rule (the paper's, with a probe of {res.probe} clusters).** All items are put in one order — "
        f"of each pair of near-copies, {KEEP_WORDS.get(keep, keep)} — and every "
        "item gets a score: its highest cosine similarity to any *earlier* item of its own cluster **or of the "
        f"{res.probe} clusters whose centres are nearest to it**, so near-copies split by a cluster boundary "
        "are found too. At ε an item is **removed when that score is above 1 − ε**. Earlier items count even "
        "when they are removed themselves, so chains go together."
    )


def _solve_fraction() -> None:
    try:
        sa.set_eps(res.eps_for_kept_fraction(st.session_state["thr_fraction"] / 100.0))
        st.session_state.pop("thr_error", None)
    except SemDedupError as exc:
        st.session_state["thr_error"] = str(exc)


left, right = st.columns([3, 2])
with left:
    e = sa.eps_slider(res, widget_key="thr_eps", label="ε (epsilon): remove items more similar than 1 − ε")
with right:
    st.number_input(
        "…or keep this share of the data (%)",
        min_value=0.0,
        max_value=100.0,
        value=None,
        step=1.0,
        key="thr_fraction",
        on_change=_solve_fraction,
        placeholder="e.g. 80",
        help="Solved exactly from the stored scores: the largest ε that keeps at least this share.",
    )
if st.session_state.get("thr_error"):
    sa.error(st.session_state["thr_error"])

n = res.n_items
n_rem = res.n_removed(e)
m1, m2, m3, m4 = st.columns(4)
m1.metric("items", sa.fmt_int(n))
m2.metric("kept", sa.fmt_int(n - n_rem), f"{(n - n_rem) / n:.2%}", delta_color="off", delta_arrow="off")
m3.metric("removed", sa.fmt_int(n_rem), f"{n_rem / n:.2%}", delta_color="off", delta_arrow="off")
m4.metric("similarity threshold 1 − ε", f"{1 - e:.4f}")
try:
    audited = sa.audit.at(res, e)  # the precision estimate at this ε, when reviewers judged a sample
except SemDedupError as exc:
    sa.error(exc)
    audited = None
if audited is not None:
    st.caption(f":material/fact_check: {sa.audit.sentence(audited)}")
    if sa.audit.guarantee_sentence(audited, e):  # the recommended ε, for Review's target, and its guarantee
        st.caption(f":material/verified: {sa.audit.guarantee_sentence(audited, e)}")
    st.page_link(sa.PAGES["review"], label="Review: judge pairs, precision for every ε", icon=":material/fact_check:")
if res.probe:
    n_cross = sa.n_cross_cluster(res, e)
    st.caption(
        f"**{sa.fmt_int(n_cross)} of the {sa.fmt_int(n_rem)} removals** duplicate an item of *another* cluster: "
        f"found by the probe of {res.probe} clusters; the paper's rule never compares them."
    )
if st.toggle(
    "Compare with the conservative rule (kept-only)",
    key="thr_conservative",
    help="Removes an item only when it resembles an earlier item that is itself kept, so a chain A ≈ B ≈ C "
    "loses B but keeps C when C is not close to A. Never removes more than the paper's rule.",
):
    n_cons = sa.n_removed_kept_only(res, e)
    st.caption(
        f"**kept-only rule:** removes {sa.fmt_int(n_cons)} ({n_cons / n:.2%}) — "
        f"{sa.fmt_int(n_rem - n_cons)} of the paper's removals are chain members whose only close earlier "
        "items are themselves removed."
    )

if st.toggle(
    "Compare with the audited rule (reviewers' verdicts)",
    key="thr_audited",
    help="The paper's rule with the pairs reviewers judged not duplicates (Review page, or `audit import`) taken "
    "out: such an item goes only if another earlier item of its cluster is still above 1 − ε.",
):
    try:
        n_aud = sa.audit.n_removed_audited(res, e)
        st.caption(
            f"**audited rule:** removes {sa.fmt_int(n_aud)} ({n_aud / n:.2%}) — {sa.fmt_int(n_rem - n_aud)} of the "
            "paper's removals rest only on pairs judged not duplicates."
        )
    except SemDedupError as exc:
        sa.error(exc)

c1, c2 = st.columns(2)
with c1:
    grid, kept = sa.kept_curve(res)
    fig = go.Figure(go.Scatter(x=grid, y=kept * 100, mode="lines", name="kept %"))
    fig.add_trace(go.Scatter(x=[e], y=[(n - n_rem) / n * 100], mode="markers", marker={"size": 12}, name="now"))
    fig.update_layout(
        title="Kept share vs ε",
        xaxis_title="ε",
        yaxis_title="kept (%)",
        height=340,
        margin={"t": 40, "b": 40},
        showlegend=False,
    )
    st.plotly_chart(fig, key="thr_curve")
with c2:
    counts, edges = sa.score_histogram(res)
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=edges[1] - edges[0], name="items"))
    fig.add_vline(x=1 - e, line_color="red", annotation_text="1 − ε")
    fig.update_layout(
        title="Scores (max_sim); items right of the line are removed",
        xaxis_title="max_sim",
        yaxis_title="items",
        height=340,
        margin={"t": 40, "b": 40},
    )
    st.plotly_chart(fig, key="thr_hist")

st.subheader("Clusters at this ε")
table = sa.cluster_table(res, e)
st.caption("Select a row to open that cluster.")
shown = table.sort_values(["removed", "size"], ascending=False).head(2000).reset_index(drop=True)
event = st.dataframe(
    shown,
    key="thr_table",
    on_select="rerun",
    selection_mode="single-row",
    hide_index=True,
    column_config={
        "mean_score": st.column_config.NumberColumn("mean score", format="%.4f"),
        "max_score": st.column_config.NumberColumn("max score", format="%.4f"),
    },
)
rows = event.selection.rows if event is not None else []
if rows:
    st.session_state["sd_cluster"] = int(shown["cluster"].iat[rows[0]])
    st.switch_page(sa.PAGES["clusters"])
if len(table) > len(shown):
    st.caption(f"Showing the {len(shown):,} clusters with most removals of {len(table):,}.")
st.page_link(sa.PAGES["clusters"], label="Browse all clusters", icon=":material/category:")
