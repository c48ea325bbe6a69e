"""Compare: the open run (A) beside a second run over the same items (B): what both remove, what only one
removes and why, and each disagreement with its partner in each run."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_app.markdown import escape_markdown
from semdedup_core import SemDedupError
from semdedup_core.explore.compare import REASONS
from semdedup_core.explore.pairs import page
from semdedup_core.explore.report import run_parameters

sa.page_setup("Compare")

res = sa.require_results()
e = sa.eps()
st.title("Compare two runs")
st.write(
    "**A** is the open results folder (ε from the sidebar); pick **B**, another run over the same items "
    "(another encoder, k, keep policy or seed), to see where the two decisions differ."
)


def _reset_page() -> None:
    st.session_state["cmp_page"] = 0


def _pick(key: str) -> None:
    st.session_state["cmp_refused"] = sa.runs.pick_run_b(st.session_state.get(key) or "")  # the gate decides


c1, c2 = st.columns(2)
c1.selectbox(
    "Run B from the shared runs" if sa.read_only() else "Run B from the recent runs",
    sa.runs.compare_choices(res),
    format_func=sa.runs.label,
    index=None,
    placeholder="choose a recent run",
    key="cmp_recent",
    on_change=_pick,
    args=("cmp_recent",),
)
c2.text_input(
    "… or the folder of run B", key="cmp_typed", on_change=_pick, args=("cmp_typed",), placeholder="/path/to/results"
)

if st.session_state.get("cmp_refused"):
    sa.error(st.session_state["cmp_refused"])
try:
    res_b = sa.runs.run_b()  # checked again by the gate: the session's value is never trusted
except SemDedupError as exc:
    sa.error(exc)
    st.stop()
except Exception as exc:  # a damaged file: say so instead of a traceback
    sa.error(f"could not read the results folder of run B ({type(exc).__name__}); pick another run B")
    st.stop()
if res_b is None:
    st.info("Choose run B above.")
    st.stop()

MODES = {"same": "the same ε as A", "match": "as many removed as A", "other": "another ε"}
m1, m2 = st.columns([2, 1])
mode = m1.radio("ε of B", list(MODES), format_func=MODES.get, key="cmp_eps_mode", horizontal=True)
asked: float | None = e  # None: the ε at which B removes as many items as A
if mode == "other":
    asked = float(
        m2.number_input("ε of B", 0.0, 2.0, step=0.001, format="%.4f", key="cmp_eps_b", on_change=_reset_page)
    )
elif mode == "match":
    asked = None
try:
    cmp = sa.comparison(res, res_b.path, e, asked)
except SemDedupError as exc:
    sa.error(exc)
    st.stop()
e_b = cmp.eps_b

# -- the runs and the counts ---------------------------------------------------------------------------
pa, pb = run_parameters(res), run_parameters(res_b)
st.dataframe(
    {
        "": ["folder", "encoder", "clusters (k)", "keep", "ε", "removed"],
        "A": [res.path.name, pa["encoder"], f"{pa['clusters']:,}", pa["keep"], f"{e:.4f}", f"{cmp.removed_a.sum():,}"],
        "B": [
            res_b.path.name,
            pb["encoder"],
            f"{pb['clusters']:,}",
            pb["keep"],
            f"{e_b:.4f}",
            f"{cmp.removed_b.sum():,}",
        ],
    },
    hide_index=True,
)
k1, k2, k3, k4 = st.columns(4)
k1.metric("removed by both", sa.fmt_int(cmp.both))
k2.metric("removed by A only", sa.fmt_int(cmp.only_a))
k3.metric("removed by B only", sa.fmt_int(cmp.only_b))
k4.metric("agreement (Jaccard)", f"{cmp.jaccard:.3f}", help="removed by both / removed by either")
if cmp.eps_b_matching is not None and mode != "match":
    st.caption(
        f"B removes as many items as A ({sa.fmt_int(cmp.removed_a.sum())}) at ε = {cmp.eps_b_matching:.4f}: "
        "choose “as many removed as A” to compare the two at the same budget."
    )

venn = go.Figure()
for x0, colour in ((0.0, "rgba(9,105,218,0.25)"), (1.2, "rgba(207,34,46,0.25)")):
    venn.add_shape(type="circle", x0=x0, x1=x0 + 2.0, y0=0, y1=2.0, fillcolor=colour, line={"color": colour})
for x, text in (
    (0.55, f"A only<br><b>{cmp.only_a:,}</b>"),
    (1.6, f"both<br><b>{cmp.both:,}</b>"),
    (2.65, f"B only<br><b>{cmp.only_b:,}</b>"),
):
    venn.add_annotation(x=x, y=1.0, text=text, showarrow=False, font={"size": 16})
venn.add_annotation(x=1.6, y=-0.25, text=f"neither: {cmp.neither:,} of {cmp.n_items:,}", showarrow=False)
venn.update_xaxes(visible=False, range=[-0.2, 3.4])
venn.update_yaxes(visible=False, range=[-0.45, 2.1], scaleanchor="x")
venn.update_layout(height=260, margin={"t": 10, "b": 10, "l": 10, "r": 10}, showlegend=False)
st.plotly_chart(venn, key="cmp_venn", config={"staticPlot": True})

with st.expander("Disagreement per cluster"):
    ta, tb = st.tabs(["A's clusters", "B's clusters"])
    ta.dataframe(cmp.cluster_table("a"), hide_index=True)
    tb.dataframe(cmp.cluster_table("b"), hide_index=True)

# -- the items one run removes and the other keeps -----------------------------------------------------
st.subheader("The items the runs disagree on")
WHICH = {"only_a": "removed by A only", "only_b": "removed by B only", "both": "removed by both"}
which = st.segmented_control("Show", list(WHICH), format_func=WHICH.get, key="cmp_which", on_change=_reset_page)
which = which or "only_a"
frame = sa.comparison_items(res, res_b.path, e, asked, which)
part, n_pages = page(frame, st.session_state["cmp_page"], 10)
st.session_state["cmp_page"] = min(st.session_state["cmp_page"], n_pages - 1)
st.caption(f"{sa.fmt_int(len(frame))} items {WHICH[which]} · page {st.session_state['cmp_page'] + 1} of {n_pages}")
if frame.empty:
    st.info(f"No item is {WHICH[which]}.")


def _verdict(run: str, removed: bool, sim: float, eps: float, reason: str | None) -> str:
    if sim <= -1.0:
        return f"{run}: kept — first of its cluster, nothing earlier to compare"
    words = f"similarity {sim:.4f} to its partner, 1 − ε = {1.0 - eps:.4f}"
    if removed:
        return f"{run}: **removed** — {words}"
    return f"{run}: kept — {words}" + (f". Why: {REASONS[reason]}." if reason else "")


for rec in part.itertuples(index=False):
    with st.container(border=True):
        reason_a = rec.reason if which == "only_b" else None
        reason_b = rec.reason if which == "only_a" else None
        st.markdown(
            _verdict("A", bool(rec.removed_a), float(rec.max_sim_a), e, reason_a)
            + "  \n"
            + _verdict("B", bool(rec.removed_b), float(rec.max_sim_b), e_b, reason_b)
        )
        left, mid, right = st.columns(3)
        with left:
            if rec.dup_row_a >= 0:
                sa.show_item(res, int(rec.dup_row_a), caption="partner in A")
            else:
                st.caption("no partner in A")
        with mid:
            sa.show_item(res, int(rec.row_a), caption=f"the item ({escape_markdown(WHICH[which])})")
        with right:
            if rec.dup_row_b >= 0:
                sa.show_item(res_b, int(rec.dup_row_b), caption="partner in B")
            else:
                st.caption("no partner in B")


def _move(step: int) -> None:
    st.session_state["cmp_page"] = min(max(0, st.session_state["cmp_page"] + step), n_pages - 1)


p1, p2, _ = st.columns([1, 1, 4])
p1.button("◀ Previous", key="cmp_prev", on_click=_move, args=(-1,), disabled=st.session_state["cmp_page"] == 0)
p2.button("Next ▶", key="cmp_next", on_click=_move, args=(1,), disabled=st.session_state["cmp_page"] >= n_pages - 1)
