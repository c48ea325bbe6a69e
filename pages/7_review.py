"""Review: judge the pairs of a seeded random sample one at a time; the precision of every ε, with its
95 % interval and the recommended ε, follows each verdict."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

import semdedup_app as sa
from semdedup_app.markdown import escape_markdown
from semdedup_core import SemDedupError

sa.page_setup("Review")

res = sa.require_results()
e = sa.eps()
st.title("Review")
st.caption(
    "Judge the pairs of a seeded random sample of what the paper's rule removes up to eps-max, in a random "
    "order (never borderline first), so that every verdict counts toward an honest estimate: the share of "
    "removed items that are true duplicates at every ε, with a 95 % interval. Verdicts are keyed by the two "
    "ids, so they also count in other runs over the same data."
)

c1, c2 = st.columns(2)
reviewer, not_judging = sa.reviewer_input(c1)  # who judges: the login, or a listed name with its key
sa.labels_store_input(c2, res)  # where verdicts go: in read-only mode only a store named at start
may_draw = sa.gate.allowed("draw-sample", res.path)  # never in read-only mode: the operator draws

try:
    design = sa.audit.design(res)
    store = sa.audit.store(res)
    status = sa.audit.verdicts(res) if design is not None else None
except SemDedupError as exc:
    sa.error(exc)
    st.stop()


def _draw_form(current) -> None:
    with st.form("rev_draw"):
        f1, f2, f3 = st.columns(3)
        n = f1.number_input("Pairs in the sample", min_value=1, value=current.n if current else 400, step=50)
        eps_max = f2.number_input(
            "Largest ε you consider (eps-max)",
            min_value=0.001,
            max_value=2.0,
            value=current.eps_max if current else 0.3,
            step=0.05,
            format="%.3f",
        )
        seed = f3.number_input("Seed", min_value=0, value=current.seed if current else 0, step=1)
        if st.form_submit_button("Draw the sample"):
            try:
                with st.spinner("Drawing the sample…"):
                    sa.audit.draw(res, int(n), float(eps_max), int(seed))
            except SemDedupError as exc:
                sa.error(exc)
                return
            st.session_state.pop("rev_design", None)
            st.rerun()


if design is None:
    st.info(
        "No review sample in this results folder yet. Draw one: a seeded sample of the pairs removed at eps-max, "
        "stratified by similarity so the estimate holds at every ε up to it. 400 pairs take about ten minutes."
        if may_draw
        else "No review sample in this results folder yet: whoever runs this explorer draws it "
        "(`python -m semdedup_core audit sample DIR --n 400 --out queue.csv`)."
    )
    if may_draw:
        _draw_form(None)
    st.stop()

units = design.units
rows, dup_rows = sa.audit.unit_rows(res)
judged = np.asarray([v is not None for v in status], dtype=bool)
n_judged = int(judged.sum())
n_unsure = int(sum(v == "unsure" for v in status))
st.progress(
    n_judged / design.n,
    text=f"{n_judged:,} of {design.n:,} pairs judged ({n_unsure:,} unsure) · sample of the "
    f"{design.population:,} pairs removed at eps-max {design.eps_max:g}, seed {design.seed}",
)
if may_draw:
    with st.expander("Draw a new sample"):
        st.caption(
            "The same eps-max and seed with a larger size keeps every pair of this sample (and its verdicts) and "
            "adds more; another eps-max or seed draws a different sample. Verdicts are never lost: they stay in "
            "the store."
        )
        _draw_form(design)

here = (str(res.path), sa.audit.design_stamp(res))
if st.session_state.get("rev_design") != here:  # another folder or sample: start at its first unjudged pair
    st.session_state.update(rev_design=here, rev_cursor=None, rev_history=[], rev_skipped=[])
if st.session_state.get("rev_cursor") is None or st.session_state["rev_cursor"] >= design.n:
    st.session_state["rev_cursor"] = sa.audit.next_position(status, -1, set(st.session_state["rev_skipped"]))


def _judge(verdict: str, pos: int, who: sa.Reviewer) -> None:
    u = units.iloc[pos]
    try:
        sa.gate.record_verdict(res, who, u["id"], u["dup_of"], verdict, float(u["max_sim"]))
    except (SemDedupError, OSError) as exc:
        st.session_state["rev_error"] = f"could not store the verdict: {exc}"
        return
    st.session_state.pop("rev_error", None)
    st.session_state["rev_history"].append(pos)
    skipped = set(st.session_state["rev_skipped"]) - {pos}
    st.session_state["rev_skipped"] = sorted(skipped)
    st.session_state["rev_cursor"] = sa.audit.next_position(sa.audit.verdicts(res), pos, skipped)


def _skip(pos: int) -> None:
    skipped = set(st.session_state["rev_skipped"]) | {pos}
    st.session_state["rev_skipped"] = sorted(skipped)
    st.session_state["rev_history"].append(pos)
    st.session_state["rev_cursor"] = sa.audit.next_position(status, pos, skipped)


def _back() -> None:
    if st.session_state["rev_history"]:
        st.session_state["rev_cursor"] = st.session_state["rev_history"].pop()


if st.session_state.get("rev_error"):  # shown once, after the click that failed
    sa.error(st.session_state.pop("rev_error"))

pos = st.session_state["rev_cursor"]
if pos is None:
    st.success(f"Every pair of the sample is judged ({n_judged:,}). Draw a larger sample to narrow the intervals.")
    if st.session_state["rev_history"]:
        st.button("Back", key="rev_back", on_click=_back)
else:
    u = units.iloc[pos]
    given = status[pos]
    with st.container(border=True):
        st.caption(
            f"Pair {pos + 1} of {design.n:,} in the review order · similarity band "
            f"{u['sim_low']:.3f}–{u['sim_high']:.3f} · removed for every ε above {1 - float(u['max_sim']):.4f}"
        )
        if given is not None:
            st.info(
                f"Already judged: {sa.audit.VERDICT_WORDS[given]}. A new verdict of yours replaces your earlier one."
            )
        sa.show_pair(
            res,
            int(rows[pos]),
            int(dup_rows[pos]),
            float(u["max_sim"]),
            e,
            False,
            image_width=360,
            captions=("earlier item (dup_of)", "item"),
        )
        if reviewer is None:
            st.warning(escape_markdown(not_judging))
        b1, b2, b3, b4, b5 = st.columns(5)
        buttons = (
            ("Duplicate", "rev_dup", "duplicate"),
            ("Not a duplicate", "rev_not", "not_duplicate"),
            ("Unsure", "rev_unsure", "unsure"),
        )
        for column, (label, key, verdict) in zip((b1, b2, b3), buttons, strict=True):
            column.button(
                label,
                key=key,
                type="primary" if verdict == "duplicate" else "secondary",
                on_click=_judge,
                args=(verdict, pos, reviewer),
                disabled=reviewer is None,
                width="stretch",
            )
        b4.button("Skip", key="rev_skip", on_click=_skip, args=(pos,), width="stretch")
        b5.button(
            "Back",
            key="rev_back",
            on_click=_back,
            disabled=not st.session_state["rev_history"],
            width="stretch",
        )

# -- the estimate --------------------------------------------------------------------------------------
st.subheader("Precision of what each ε removes")
target = st.number_input(
    "Target precision",
    min_value=0.5,
    max_value=0.999,
    step=0.01,
    format="%.3f",
    key="rev_target",
    help="The recommended ε is the largest ε whose precision is at least this with 95 % confidence.",
)
rep = sa.audit.report(res, float(target))
table = rep.rows
fig = go.Figure()
fig.add_trace(
    go.Scatter(x=table["eps"], y=table["ci_high"], mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False)
)
fig.add_trace(
    go.Scatter(
        x=table["eps"],
        y=table["ci_low"],
        mode="lines",
        line={"width": 0},
        fill="tonexty",
        fillcolor="rgba(31, 119, 180, 0.25)",
        name="95 % interval",
    )
)
fig.add_trace(
    go.Scatter(
        x=table["eps"],
        y=table["precision"],
        mode="lines+markers",
        name="precision",
        line={"color": "rgb(31, 119, 180)"},
        customdata=np.stack([table["labelled"], table["removed"]], axis=1),
        hovertemplate="ε %{x}<br>precision %{y:.3f}<br>%{customdata[0]} judged of %{customdata[1]} removed",
    )
)
fig.add_hline(
    y=float(target),
    line_dash="dash",
    line_color="gray",
    annotation_text=f"target {float(target):g}",
    annotation_position="bottom left",
)
if rep.recommended_eps is not None:
    fig.add_vline(
        x=rep.recommended_eps,
        line_color="green",
        annotation_text=f"recommended ε {rep.recommended_eps:g}",
        annotation_position="bottom left",
    )
if e <= design.eps_max:
    fig.add_vline(x=e, line_dash="dot", line_color="red", annotation_text="ε now", annotation_position="bottom right")
low = np.nanmin(np.append(table["ci_low"].to_numpy(dtype=float), float(target)))
fig.update_layout(
    xaxis_title="ε",
    yaxis_title="precision",
    yaxis_range=[max(0.0, low - 0.05), 1.01],  # zoomed on where the estimates are: the region near 1 matters
    height=380,
    margin={"t": 30, "b": 40},
    legend={"orientation": "h", "y": -0.2},
)
st.plotly_chart(fig, key="rev_chart")
st.markdown(f"**{escape_markdown(rep.message())}**")
if rep.recommended_eps is not None and abs(rep.recommended_eps - e) > 1e-9:
    st.button("Use the recommended ε", key="rev_use", on_click=sa.set_eps, args=(rep.recommended_eps,))
s = rep.sample
notes = [f"{s['judged']:,} judged ({s['duplicates']:,} duplicates, {s['not_duplicates']:,} not)"]
if s["unsure"]:
    notes.append(f"{s['unsure']:,} unsure (counted as neither)")
if s["outside_sample"]:
    notes.append(f"{s['outside_sample']:,} judged pairs outside the sample (shown on Pairs, not used by the estimate)")
st.caption(" · ".join(notes) + f" · store: {escape_markdown(str(store.path))}")
with st.expander("The estimate per ε (table)"):
    st.dataframe(
        table[["eps", "removed", "labelled", "unsure", "precision", "ci_low", "ci_high", "kept", "kept_duplicates"]],
        hide_index=True,
        column_config={
            c: st.column_config.NumberColumn(c, format="%.3f")
            for c in ("precision", "ci_low", "ci_high", "kept_duplicates")
        },
    )
    st.caption(
        "precision: removed items that are true duplicates (estimated from the judged pairs of the sample, "
        "weighted by similarity band); kept_duplicates: true duplicates among the items eps-max removes that "
        "this ε keeps."
    )
