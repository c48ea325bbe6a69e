"""The audit's views for the pages (Review, and the estimate on Threshold, Pairs, Export, Stakeholder).

Cached so that a verdict click reruns the Review page in a fraction of a second on a 1,000,000-item
run: the labels store is read once per state of its file (its inode, mtime and size), the recorded sample
once per run and state of ``audit/sample.parquet``, and the estimate — vectorised over ε — once per
(sample, store, target). A write to the store is a new state, so every view follows it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import streamlit as st

from semdedup_core import Results
from semdedup_core.audit import (
    Design,
    Plan,
    Report,
    disputes,
    draw_sample,
    estimate,
    load_design,
    next_batch,
    reviewer_todo,
    save_design,
    unit_verdicts,
)
from semdedup_core.audit.agreement import unit_reviews
from semdedup_core.audit.labels import LabelStore, lookup, resolve
from semdedup_core.audit.sample import sample_path

from . import gate
from .cache import per_run

VERDICT_WORDS = {"duplicate": "a duplicate", "not_duplicate": "not a duplicate", "unsure": "unsure"}
DEFAULT_TARGET = 0.95


# -- the store ----------------------------------------------------------------------------------------
def store(res: Results) -> LabelStore:
    """The labels store this session uses: the gate's choice (:func:`semdedup_app.gate.labels_store`)."""
    return gate.labels_store(res)


@st.cache_resource(max_entries=8, show_spinner=False)
def _rows(path: str, stamp: tuple[int, int, int]):
    return LabelStore(path).read()


@st.cache_resource(max_entries=8, show_spinner=False)
def _resolved(path: str, stamp: tuple[int, int, int]):
    return resolve(_rows(path, stamp))


def rows(res: Results):
    """Every row of the chosen store (one per pair and reviewer; read once per state; do not modify)."""
    s = store(res)
    return _rows(str(s.path), s.stamp())


def resolved(res: Results):
    """One verdict per judged pair in the chosen store (read once per state of the file; do not modify)."""
    s = store(res)
    return _resolved(str(s.path), s.stamp())


# -- the sample ---------------------------------------------------------------------------------------
def design_stamp(res: Results) -> int:
    try:
        return sample_path(res.path).stat().st_mtime_ns
    except OSError:
        return 0


@per_run(resource=True, max_entries=4)
def _design(res: Results, stamp: int) -> Design | None:
    return load_design(res)


def design(res: Results) -> Design | None:
    """The review sample recorded in the folder, or ``None`` (raises ``SemDedupError`` when damaged)."""
    return _design(res, design_stamp(res))


def draw(res: Results, n: int, eps_max: float, seed: int, plan: Plan | None = None) -> Design:
    """Draw and record a new review sample (replacing the folder's earlier one), when the gate allows it
    (never in read-only mode)."""
    gate.check("draw-sample", res.path)
    d = draw_sample(res, n, eps_max, seed, plan=plan)
    save_design(d, res.path)
    return d


def grow(res: Results) -> tuple[bool, str]:
    """A sequential sample's next batch, when it is due (recorded under a lock: two reviewers finishing a
    batch at once add one), when the gate allows it: whether the sample grew, and what happened, in words."""
    gate.check("draw-sample", res.path)
    before = design(res).n
    grown, what = next_batch(res, store(res))
    return grown.n > before, what


def unit_rows(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """Rows (in the run) of each sampled item and of its ``dup_of``, in queue order (recorded with the
    sample: no id lookup)."""
    units = design(res).units
    return units["row"].to_numpy(np.int64), units["dup_row"].to_numpy(np.int64)


@per_run(resource=True, max_entries=8)
def _verdicts(res: Results, d_stamp: int, path: str, s_stamp: tuple[int, int, int]) -> np.ndarray:
    return unit_verdicts(design(res), resolved(res))


def verdicts(res: Results) -> np.ndarray:
    """Each sampled pair's verdict or ``None``, in queue order (do not modify)."""
    s = store(res)
    return _verdicts(res, design_stamp(res), str(s.path), s.stamp())


@per_run(resource=True, max_entries=8)
def _todo(res: Results, d_stamp: int, path: str, s_stamp: tuple, reviewer: str) -> tuple[np.ndarray, np.ndarray]:
    d = design(res)
    table = rows(res)
    todo = reviewer_todo(d, table, reviewer or None)
    mine = np.full(d.n, None, dtype=object)
    if reviewer and not table.empty:
        own = table[table["reviewer"] == reviewer]
        pos = lookup(own, d.units["id_a"].to_numpy(), d.units["id_b"].to_numpy(), presorted=True)
        mine = np.where(pos >= 0, own["verdict"].to_numpy(dtype=object)[np.maximum(pos, 0)] if len(own) else None, None)
    return todo, mine


def todo(res: Results, reviewer: str) -> tuple[np.ndarray, np.ndarray]:
    """``(to judge, own verdicts)`` for ``reviewer``, in queue order: which pairs are theirs to judge (nobody
    judged them, or they are judged twice and another reviewer judged them once), and the verdict they
    gave each pair themselves (``None`` where they gave none) — never another reviewer's (do not modify)."""
    s = store(res)
    return _todo(res, design_stamp(res), str(s.path), s.stamp(), reviewer.strip())


def next_position(status: np.ndarray, after: int, skipped: set[int] | frozenset[int] = frozenset()) -> int | None:
    """The first pair to judge after position ``after`` in queue order (wrapping round), passing over
    ``skipped`` ones while others remain; ``None`` when none is left. ``status``: a boolean array (to
    judge) or the verdicts (``None`` = to judge)."""
    status = np.asarray(status)
    n = len(status)
    if not n:
        return None
    todo_mask = status if status.dtype == bool else np.asarray([v is None or v != v for v in status], dtype=bool)
    todo = np.flatnonzero(todo_mask)
    if not len(todo):
        return None
    for pool in ([p for p in todo if p not in skipped and p != after], [p for p in todo if p != after], list(todo)):
        if pool:
            pool = np.asarray(pool)
            later = pool[pool > after]
            return int(later[0] if len(later) else pool[0])
    return None


# -- the team -----------------------------------------------------------------------------------------
@st.cache_resource(max_entries=8, show_spinner=False)
def _disputes(path: str, stamp: tuple[int, int, int]):
    return disputes(_rows(path, stamp))


def disagreements(res: Results):
    """The pairs whose reviewers disagree without a majority (see ``semdedup_core.audit.disputes``), with
    the rows of the run of each (``row``, ``dup_row``: -1 for pairs of another run)."""
    s = store(res)
    frame = _disputes(str(s.path), s.stamp()).copy()
    d = design(res)
    frame["row"], frame["dup_row"], frame["max_sim"] = -1, -1, np.nan
    if d is not None and len(frame):
        pos = lookup(
            d.units[["id_a", "id_b"]].assign(verdict=""),
            frame["id_a"].to_numpy(dtype=object),
            frame["id_b"].to_numpy(dtype=object),
            presorted=True,
        )
        hit = pos >= 0
        for col in ("row", "dup_row", "max_sim"):
            frame.loc[hit, col] = d.units[col].to_numpy()[pos[hit]]
    return frame


def second_reviews(res: Results) -> tuple[int, int]:
    """``(pairs to judge twice, of them judged by two reviewers)`` in the sample."""
    d = design(res)
    if d is None or "double" not in d.units.columns:
        return 0, 0
    count, _ = unit_reviews(d, rows(res))
    double = d.units["double"].to_numpy(dtype=bool)
    return int(double.sum()), int((double & (count >= 2)).sum())


def blind_swap(id_a: str, id_b: str, reviewer: str) -> bool:
    """In blind mode, whether the pair ``(id_a, id_b)`` shows its later item on the left (a hash of the
    pair and the reviewer, so the order says nothing and stays put across reruns)."""
    digest = hashlib.blake2b(f"{id_a}\0{id_b}\0{reviewer}".encode(), digest_size=1).digest()
    return bool(digest[0] & 1)


# -- the estimate -------------------------------------------------------------------------------------
def target(res: Results | None = None) -> float:
    """The target precision: the one set on Review in this session, else a sequential sample's own (the
    one it decides on), else Review's default."""
    value = st.session_state.get("rev_target")
    if not st.session_state.get("rev_target_set") and res is not None:
        d = design(res)
        if d is not None and d.plan.sequential:
            value = d.plan.target
    return float(value if value is not None else DEFAULT_TARGET)


@per_run(max_entries=16)
def _report(res: Results, d_stamp: int, path: str, s_stamp: tuple[int, int, int], target: float, eps: tuple) -> Report:
    return estimate(design(res), resolved(res), list(eps) or None, target, reviews=rows(res))


def report(res: Results, target_: float | None = None, eps: tuple = ()) -> Report | None:
    """The audit report (precision per ε, interval, recommended ε and its guarantee, whether enough is
    judged, the reviewers' agreement), or ``None`` without a sample. ``target_``: default :func:`target`."""
    if design(res) is None:
        return None
    s = store(res)
    t = target(res) if target_ is None else float(target_)
    return _report(res, design_stamp(res), str(s.path), s.stamp(), t, tuple(float(x) for x in eps))


def at(res: Results, e: float) -> dict[str, Any] | None:
    """The estimate at ``e`` as a dict (see ``semdedup_core.audit.precision.ROW_COLUMNS``) with
    ``eps_max``, ``target``, ``recommended_eps`` and ``guarantee``, or ``None`` when there is no sample or
    nothing of it is judged; ``{"above": eps_max}`` when ``e`` is beyond the sample's eps-max."""
    d = design(res)
    if d is None:
        return None
    if e > d.eps_max:
        return {"above": d.eps_max} if len(resolved(res)) else None
    rep = report(res, None, (float(e),))
    if rep.sample["judged"] == 0:
        return None
    full = report(res)
    return {
        **rep.rows.iloc[0].to_dict(),
        "eps_max": d.eps_max,
        "target": full.target,
        "recommended_eps": full.recommended_eps,
        "guarantee": full.statement(),
        "final": bool(full.guarantee.get("final")),
    }


def sentence(row: dict[str, Any]) -> str:
    """The estimate at one ε in words for people who do not read intervals daily."""
    if "above" in row:
        return (
            f"The review sample covers ε up to {row['above']:g}; move ε below it to see the audited precision "
            "(or draw a sample with a larger eps-max on Review)."
        )
    if not row["labelled"] or row["precision"] != row["precision"]:
        return "No judged pair of the review sample is removed at this ε yet; judge more pairs on Review."
    out = (
        f"Audited: of {int(row['labelled']):,} checked pairs, {percent(row['precision'])} % "
        f"({percent(row['ci_low'])}–{percent(row['ci_high'])} %) are true duplicates at this ε — an estimate "
        f"for all {int(row['removed']):,} removed items, with a 95 % interval."
    )
    left_out = int(row.get("unsure", 0) or 0) + int(row.get("skipped", 0) or 0) + int(row.get("disputed", 0) or 0)
    if left_out and row.get("sensitivity_low") == row.get("sensitivity_low"):
        out += (
            f" Were the {left_out:,} unsure, skipped or disputed pairs all duplicates or none, it would be "
            f"{percent(row['sensitivity_high'])} or {percent(row['sensitivity_low'])} %."
        )
    return out


def guarantee_sentence(row: dict[str, Any], e: float) -> str | None:
    """The recommendation and its guarantee in words, with where ε now stands (``None`` without one)."""
    rec = row.get("recommended_eps") if row else None
    if rec is None or not row.get("guarantee"):
        return None
    g = row["guarantee"]
    where = "ε now is within it" if e <= rec + 1e-12 else "ε now is above it: no such guarantee holds here"
    so_far = "" if row.get("final") else " So far: Review says when enough pairs are judged."
    return f"Checked by people: {g[0].upper()}{g[1:]}; the recommended ε is {rec:g} ({where}).{so_far}"


def percent(x: float) -> str:
    """``0.97`` → ``"97"``; one decimal between 99 and 100 % (``"99.6"``), where rounding would say 100."""
    return f"{100 * x:.1f}" if 0.99 <= x < 1.0 else f"{100 * x:.0f}"


def marks(res: Results, frame: Any) -> list[str | None]:
    """For each row of a pairs frame (``id``, ``dup_of``): the judged verdict in words, or ``None``."""
    table = resolved(res)
    if table.empty or frame.empty:
        return [None] * len(frame)
    pos = lookup(table, frame["id"].to_numpy(dtype=object), frame["dup_of"].to_numpy(dtype=object))
    out: list[str | None] = []
    for p in pos:
        if p < 0:
            out.append(None)
            continue
        n = int(table["reviewers"].iat[p])
        who = f" ({n} reviewers)" if n > 1 else ""
        out.append(f":material/fact_check: judged **{VERDICT_WORDS[table['verdict'].iat[p]]}**{who}")
    return out


def n_removed_audited(res: Results, e: float) -> int:
    """Removed at ``e`` under the audited rule (the store's not-duplicate pairs taken out). The rescored
    column is computed once per state of the store (on the cached :class:`Results`), then O(log n)."""
    return int(res.n_removed(float(e), "audited", store(res)))


def show_blind_pair(res: Results, row: int, dup: int, swap: bool, image_width: int = 360) -> None:
    """The two items of a pair as "A" and "B" in a random order (``swap``), without their ids, their
    similarity or which is the earlier one; differing words marked in one neutral colour on both sides."""
    from semdedup_core.explore.pairs import word_diff

    from .markdown import diff_markdown, escape_markdown
    from .widgets import item_rows, show_image

    order = [row, dup] if swap else [dup, row]
    items = item_rows(res, order)
    tokens: tuple[Any, Any] = (None, None)
    if "text" in items.columns:
        a, b = items["text"].iat[0], items["text"].iat[1]
        tokens = word_diff(str(a) if a is not None else "", str(b) if b is not None else "")
    for i, (column, name) in enumerate(zip(st.columns(2), ("A", "B"), strict=True)):
        with column:
            st.caption(f"item {name}")
            if "path" in items.columns:
                show_image(res, items["path"].iat[i], f"rev_blind_{order[0]}_{order[1]}_{i}", width=image_width)
            if "text" in items.columns:
                text = items["text"].iat[i]
                st.markdown(
                    diff_markdown(tokens[i], "blue") if tokens[i] is not None else escape_markdown(str(text or ""))
                )
