"""Review: judge the pairs of a seeded random sample one at a time; the precision of every ε, with its
95 % interval and the recommended ε with its guarantee, follows each verdict. A sequential sample grows
batch by batch where it decides ε and says when enough is judged; a share of the pairs is judged by two
reviewers, whose agreement and disagreements are shown; a blind mode hides what could sway a verdict."""

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
who = reviewer.name if reviewer is not None else ""
sa.labels_store_input(c2, res)  # where verdicts go: in read-only mode only a store named at start
may_draw = sa.gate.allowed("draw-sample", res.path)  # never in read-only mode: the operator draws

try:
    design = sa.audit.design(res)
    store = sa.audit.store(res)
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
        g1, g2, g3 = st.columns(3)
        sequential = g1.checkbox(
            "Sequential: grow it where it decides ε",
            value=bool(current and current.plan.sequential),
            help="The pairs above are a first draw (20 is plenty); then batches of 20 go where they decide the "
            "recommended ε, and Review says when enough is judged — fewer verdicts for the same guarantee.",
        )
        budget = g2.number_input(
            "Budget (sequential: most pairs)",
            min_value=1,
            value=current.plan.budget if current and current.plan.budget else 400,
            step=50,
        )
        double = g3.number_input(
            "Judged by two reviewers (%)",
            min_value=0,
            max_value=100,
            value=int(round(100 * current.plan.double)) if current else 10,
            step=5,
            help="This share of the pairs is asked of a second reviewer too, who does not see the first verdict: "
            "their agreement (Cohen's κ) is measured, and their disagreements are settled below.",
        )
        if st.form_submit_button("Draw the sample"):
            try:
                plan = sa.audit.Plan(
                    bool(sequential),
                    float(st.session_state["rev_target"]),
                    int(budget) if sequential else 0,
                    double / 100,
                )
                with st.spinner("Drawing the sample…"):
                    sa.audit.draw(res, int(n), float(eps_max), int(seed), plan)
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


# -- a sequential sample grows when its batch is judged -------------------------------------------------
def _grow() -> None:
    """When every pair of a sequential sample is judged and it has not done enough, draw the next batch."""
    rep = sa.audit.report(res)
    if not design.plan.sequential or rep.enough or rep.sample["to_judge"] > 0:
        return
    if not may_draw:
        st.info(
            "This batch is judged. The next one is drawn into the results folder, which this read-only explorer "
            f"does not write: run `python -m semdedup_core audit sample {res.path} --next --out queue.csv`."
        )
        return
    try:
        grown, what = sa.audit.grow(res)
    except (SemDedupError, OSError) as exc:
        sa.error(exc)
        return
    if grown:
        st.session_state["rev_grown"] = what
        st.rerun()


try:
    _grow()
    units = design.units
    rows, dup_rows = sa.audit.unit_rows(res)
    status = sa.audit.verdicts(res)
    todo, mine = sa.audit.todo(res, who)
    disputed = sa.audit.disagreements(res)
except SemDedupError as exc:  # a store that cannot be read: one line, and nothing else to show
    sa.error(exc)
    st.stop()
judged = np.asarray([v is not None for v in status], dtype=bool)
n_judged = int(judged.sum())
n_unsure = int(sum(v == "unsure" for v in status))
st.progress(
    n_judged / design.n,
    text=f"{n_judged:,} of {design.n:,} pairs judged ({n_unsure:,} unsure) · sample of the "
    f"{design.population:,} pairs removed at eps-max {design.eps_max:g}, seed {design.seed}"
    + (f" · sequential, batch {design.batch + 1}, budget {design.plan.budget:,}" if design.plan.sequential else ""),
)
if st.session_state.get("rev_grown"):
    st.info(f"Next batch drawn: {escape_markdown(st.session_state.pop('rev_grown'))}.")
if may_draw:
    with st.expander("Draw a new sample"):
        st.caption(
            "The same eps-max and seed with a larger size keeps every pair of this sample (and its verdicts) and "
            "adds more; another eps-max or seed draws a different sample. Verdicts are never lost: they stay in "
            "the store."
        )
        _draw_form(design)

here = (str(res.path), sa.audit.design_stamp(res))
if st.session_state.get("rev_design") != here:  # another folder or sample: start at its first pair to judge
    if st.session_state.get("rev_design", (None,))[0] != here[0] and design.plan.sequential:
        st.session_state["rev_target"] = design.plan.target
    st.session_state.update(rev_design=here, rev_cursor=None, rev_history=[], rev_skipped=[])
if st.session_state.get("rev_cursor") is None or st.session_state["rev_cursor"] >= design.n:
    st.session_state["rev_cursor"] = sa.audit.next_position(todo, -1, set(st.session_state["rev_skipped"]))


def _judge(verdict: str, pos: int, judge: sa.Reviewer) -> None:
    u = units.iloc[pos]
    try:
        sa.gate.record_verdict(res, judge, u["id"], u["dup_of"], verdict, float(u["max_sim"]))
    except (SemDedupError, OSError) as exc:
        st.session_state["rev_error"] = f"could not store the verdict: {exc}"
        return
    st.session_state.pop("rev_error", None)
    st.session_state["rev_history"].append(pos)
    skipped = set(st.session_state["rev_skipped"]) - {pos}
    st.session_state["rev_skipped"] = sorted(skipped)
    st.session_state["rev_cursor"] = sa.audit.next_position(sa.audit.todo(res, judge.name)[0], pos, skipped)


def _skip(pos: int) -> None:
    skipped = set(st.session_state["rev_skipped"]) | {pos}
    st.session_state["rev_skipped"] = sorted(skipped)
    st.session_state["rev_history"].append(pos)
    st.session_state["rev_cursor"] = sa.audit.next_position(todo, pos, skipped)


def _back() -> None:
    if st.session_state["rev_history"]:
        st.session_state["rev_cursor"] = st.session_state["rev_history"].pop()


def _buttons(on_click, args_of) -> tuple:
    """The verdict buttons (their labels are the contract), Skip and Back."""
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
            on_click=on_click,
            args=args_of(verdict),
            disabled=reviewer is None,
            width="stretch",
        )
    return b4, b5


def _pair(pos: int, blind: bool) -> None:
    """The pair to judge, with what the reviewer may know of it."""
    u = units.iloc[pos]
    if blind:
        st.caption(f"Pair {pos + 1} of {design.n:,} in the review order · blind: judged on the two items alone")
    else:
        removed_from = (
            "an exact copy: removed at every ε"
            if float(u["max_sim"]) >= 1.0
            else f"removed for every ε above {1 - float(u['max_sim']):.4f}"
        )
        st.caption(
            f"Pair {pos + 1} of {design.n:,} in the review order · similarity band "
            f"{u['sim_low']:.3f}–{u['sim_high']:.3f} · {removed_from}"
        )
    if mine[pos] is not None:
        st.info(
            f"Already judged: {sa.audit.VERDICT_WORDS[mine[pos]]}. A new verdict of yours replaces your earlier one."
        )
    elif status[pos] is not None:
        st.info("Judged once by another reviewer (their verdict is hidden): yours is the second.")
    if blind:
        swap = sa.audit.blind_swap(u["id_a"], u["id_b"], who)
        sa.audit.show_blind_pair(res, int(rows[pos]), int(dup_rows[pos]), swap)
    else:
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


def _judge_sample(blind: bool) -> None:
    pos = st.session_state["rev_cursor"]
    if pos is None:
        rep = sa.audit.report(res)
        if rep.enough:
            st.success(f"{rep.stop[0].upper()}{rep.stop[1:]}.")
        elif design.plan.sequential and rep.sample["to_judge"] == 0:
            st.info("This batch is judged; the next one is drawn when this page reloads.")
        else:
            st.success(
                f"Every pair of the sample that is yours to judge is judged ({n_judged:,}). Draw a larger sample "
                "to narrow the intervals."
            )
        if st.session_state["rev_history"]:
            st.button("Back", key="rev_back", on_click=_back)
        return
    with st.container(border=True):
        _pair(pos, blind)
        b4, b5 = _buttons(_judge, lambda verdict: (verdict, pos, reviewer))
        b4.button("Skip", key="rev_skip", on_click=_skip, args=(pos,), width="stretch")
        b5.button("Back", key="rev_back", on_click=_back, disabled=not st.session_state["rev_history"], width="stretch")


def _settle(frame, blind: bool) -> None:
    """One disagreement at a time: the verdicts given so far, and a further verdict to settle it."""
    i = min(int(st.session_state.get("rev_dispute", 0)), len(frame) - 1)
    d = frame.iloc[i]
    with st.container(border=True):
        st.caption(f"Disagreement {i + 1} of {len(frame):,} · {escape_markdown(d['verdicts'])}")
        if int(d["row"]) < 0:
            st.warning("This pair is not in this run's sample; judge it where it is (Pairs) or with `audit import`.")
            return
        if blind:
            swap = sa.audit.blind_swap(d["id_a"], d["id_b"], who)
            sa.audit.show_blind_pair(res, int(d["row"]), int(d["dup_row"]), swap)
        else:
            sa.show_pair(res, int(d["row"]), int(d["dup_row"]), float(d["max_sim"]), e, False, image_width=360)

        def _vote(verdict: str) -> None:
            try:
                sa.gate.record_verdict(res, reviewer, d["id_a"], d["id_b"], verdict, float(d["max_sim"]))
            except (SemDedupError, OSError) as exc:
                st.session_state["rev_error"] = f"could not store the verdict: {exc}"

        b4, _ = _buttons(lambda verdict: _vote(verdict), lambda verdict: (verdict,))
        b4.button(
            "Skip",
            key="rev_skip",
            on_click=lambda: st.session_state.update(rev_dispute=(i + 1) % len(frame)),
            width="stretch",
        )


if st.session_state.get("rev_error"):  # shown once, after the click that failed
    sa.error(st.session_state.pop("rev_error"))

m1, m2 = st.columns([1, 2])
blind = m1.toggle(
    "Blind mode",
    key="rev_blind",
    help="Hide the similarity, the band, the ids and which item is the earlier one while judging (the two "
    "items are shown as A and B in a random order), so that only what the items show sways the verdict.",
)
if len(disputed):
    mode = m2.radio(
        "What to judge",
        ("judge", "settle"),
        key="rev_mode",
        horizontal=True,
        format_func=lambda m: "The sample" if m == "judge" else f"Disagreements to settle ({len(disputed):,})",
    )
else:
    mode = "judge"
if mode == "settle":
    _settle(disputed, blind)
else:
    _judge_sample(blind)


# -- the estimate --------------------------------------------------------------------------------------
def _chart(table, target: float, rec: float | None) -> None:
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=table["eps"], y=table["ci_high"], mode="lines", line={"width": 0}, hoverinfo="skip", showlegend=False
        )
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
        y=target,
        line_dash="dash",
        line_color="gray",
        annotation_text=f"target {target:g}",
        annotation_position="bottom left",
    )
    if rec is not None:
        fig.add_vline(
            x=rec, line_color="green", annotation_text=f"recommended ε {rec:g}", annotation_position="bottom left"
        )
    if e <= design.eps_max:
        fig.add_vline(
            x=e, line_dash="dot", line_color="red", annotation_text="ε now", annotation_position="bottom right"
        )
    low = np.nanmin(np.append(table["ci_low"].to_numpy(dtype=float), target))
    fig.update_layout(
        xaxis_title="ε",
        yaxis_title="precision",
        yaxis_range=[max(0.0, low - 0.05), 1.01],  # zoomed on where the estimates are: the region near 1 matters
        height=380,
        margin={"t": 30, "b": 40},
        legend={"orientation": "h", "y": -0.2},
    )
    st.plotly_chart(fig, key="rev_chart")


def _estimate() -> None:
    st.subheader("Precision of what each ε removes")
    target = st.number_input(
        "Target precision",
        min_value=0.5,
        max_value=0.999,
        step=0.01,
        format="%.3f",
        key="rev_target",
        on_change=lambda: st.session_state.update(rev_target_set=True),
        help="The recommended ε is the largest ε such that it, and every ε tested below it, has a precision of "
        "at least this with 95 % confidence (tested from small ε up, stopping at the first that fails).",
    )
    rep = sa.audit.report(res, float(target))
    table = rep.rows
    _chart(table, float(target), rep.recommended_eps)
    st.markdown(f"**{escape_markdown(rep.message())}**")
    if rep.stop:
        st.success(f"{rep.stop[0].upper()}{rep.stop[1:]}.")
    elif design.plan.sequential:
        st.caption("Not enough yet: Review says so when the recommended ε is settled (at 10 %, 20 %, … of the budget).")
    if rep.recommended_eps is not None and abs(rep.recommended_eps - e) > 1e-9:
        st.button("Use the recommended ε", key="rev_use", on_click=sa.set_eps, args=(rep.recommended_eps,))
    s = rep.sample
    notes = [f"{s['judged']:,} judged ({s['duplicates']:,} duplicates, {s['not_duplicates']:,} not)"]
    if s["unsure"]:
        notes.append(f"{s['unsure']:,} unsure (counted as neither)")
    if s["skipped"] or s["disputed"]:
        notes.append(f"{s['skipped']:,} skipped and {s['disputed']:,} disputed")
    if s["outside_sample"]:
        notes.append(
            f"{s['outside_sample']:,} judged pairs outside the sample (shown on Pairs, not used by the estimate)"
        )
    st.caption(" · ".join(notes) + f" · store: {escape_markdown(str(store.path))}")
    if rep.recommended_eps is not None and (s["unsure"] or s["skipped"] or s["disputed"]):
        row = rep.row_at(rep.recommended_eps)
        st.caption(
            f"Sensitivity at ε = {rep.recommended_eps:g}: were every unsure, skipped and disputed pair a duplicate, "
            f"precision would be {sa.audit.percent(row['sensitivity_high'])} %; were none, "
            f"{sa.audit.percent(row['sensitivity_low'])} % (estimate {sa.audit.percent(row['precision'])} %)."
        )
    with st.expander("The estimate per ε (table)"):
        cols = ["eps", "removed", "labelled", "unsure", "precision", "ci_low", "ci_high"]
        cols += ["sensitivity_low", "sensitivity_high", "holds", "kept", "kept_duplicates"]
        st.dataframe(
            table[cols],
            hide_index=True,
            column_config={
                c: st.column_config.NumberColumn(c, format="%.3f")
                for c in ("precision", "ci_low", "ci_high", "sensitivity_low", "sensitivity_high", "kept_duplicates")
            },
        )
        st.caption(
            "precision: removed items that are true duplicates (estimated from the judged pairs of the sample, "
            "weighted by similarity band); sensitivity: the same were the unsure, skipped and disputed pairs all "
            "duplicates (high) or none (low); holds: shown to reach the target; kept_duplicates: true "
            "duplicates among the items eps-max removes that this ε keeps."
        )
    _team(rep)


def _team(rep) -> None:
    """Agreement between reviewers and the disagreements to settle."""
    planned, twice = sa.audit.second_reviews(res)
    if not planned and not rep.agreement:
        return
    st.subheader("Reviewers")
    st.caption(
        f"{twice:,} of the {planned:,} pairs to judge twice have two verdicts; "
        f"{len(disputed):,} disagreements to settle (pairs whose reviewers have no majority)."
    )
    if rep.agreement:
        import pandas as pd

        st.dataframe(
            pd.DataFrame(rep.agreement),
            hide_index=True,
            column_config={
                "agreement": st.column_config.NumberColumn("same verdict", format="%.2f"),
                "kappa": st.column_config.NumberColumn("Cohen's κ", format="%.2f"),
            },
            key="rev_kappa",
        )


_estimate()
