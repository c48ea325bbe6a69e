"""The audit's views for the pages (Review, and the estimate on Threshold, Pairs, Export, Stakeholder).

Cached so that a verdict click reruns the Review page in a fraction of a second on a 1,000,000-item
run: the labels store is read once per state of its file (its mtime and size), the recorded sample
once per run and state of ``audit/sample.parquet``, and the estimate — vectorised over ε — once per
(sample, store, target). A write to the store is a new state, so every view follows it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from semdedup_core import Results
from semdedup_core.audit import Design, Report, draw_sample, estimate, load_design, save_design, unit_verdicts
from semdedup_core.audit.labels import LabelStore, lookup
from semdedup_core.audit.sample import sample_path

from . import gate
from .cache import per_run

VERDICT_WORDS = {"duplicate": "a duplicate", "not_duplicate": "not a duplicate", "unsure": "unsure"}


# -- the store ----------------------------------------------------------------------------------------
def store(res: Results) -> LabelStore:
    """The labels store this session uses: the gate's choice (:func:`semdedup_app.gate.labels_store`)."""
    return gate.labels_store(res)


@st.cache_resource(max_entries=8, show_spinner=False)
def _resolved(path: str, stamp: tuple[int, int, int]):
    return LabelStore(path).resolved()


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


def draw(res: Results, n: int, eps_max: float, seed: int) -> Design:
    """Draw and record a new review sample (replacing the folder's earlier one), when the gate allows it
    (never in read-only mode)."""
    gate.check("draw-sample", res.path)
    d = draw_sample(res, n, eps_max, seed)
    save_design(d, res.path)
    return d


@per_run(resource=True, max_entries=4)
def _unit_rows(res: Results, stamp: int) -> tuple[np.ndarray, np.ndarray]:
    units = design(res).units
    index = res.row_of_id
    return index.get_indexer(units["id"].astype(str)), index.get_indexer(units["dup_of"].astype(str))


def unit_rows(res: Results) -> tuple[np.ndarray, np.ndarray]:
    """Rows (in the run) of each sampled item and of its ``dup_of``, in queue order."""
    return _unit_rows(res, design_stamp(res))


@per_run(resource=True, max_entries=8)
def _verdicts(res: Results, d_stamp: int, path: str, s_stamp: tuple[int, int, int]) -> np.ndarray:
    return unit_verdicts(design(res), resolved(res))


def verdicts(res: Results) -> np.ndarray:
    """Each sampled pair's verdict or ``None``, in queue order (do not modify)."""
    s = store(res)
    return _verdicts(res, design_stamp(res), str(s.path), s.stamp())


def next_position(status: np.ndarray, after: int, skipped: set[int] | frozenset[int] = frozenset()) -> int | None:
    """The first unjudged pair after position ``after`` in queue order (wrapping round), passing over
    ``skipped`` ones while others remain; ``None`` when every pair is judged."""
    n = len(status)
    if not n:
        return None
    todo = np.flatnonzero(np.asarray([v is None or v != v for v in status], dtype=bool))
    if not len(todo):
        return None
    for pool in ([p for p in todo if p not in skipped and p != after], [p for p in todo if p != after], list(todo)):
        if pool:
            pool = np.asarray(pool)
            later = pool[pool > after]
            return int(later[0] if len(later) else pool[0])
    return None


# -- the estimate -------------------------------------------------------------------------------------
@per_run(max_entries=16)
def _report(res: Results, d_stamp: int, path: str, s_stamp: tuple[int, int, int], target: float, eps: tuple) -> Report:
    return estimate(design(res), resolved(res), list(eps) or None, target)


def report(res: Results, target: float = 0.95, eps: tuple = ()) -> Report | None:
    """The audit report (precision per ε, interval, recommended ε), or ``None`` without a sample."""
    if design(res) is None:
        return None
    s = store(res)
    return _report(res, design_stamp(res), str(s.path), s.stamp(), float(target), tuple(float(x) for x in eps))


def at(res: Results, e: float) -> dict[str, Any] | None:
    """The estimate at ``e`` as a dict (see ``semdedup_core.audit.precision.ROW_COLUMNS``) with
    ``eps_max``, or ``None`` when there is no sample or nothing of it is judged; ``{"above": eps_max}``
    when ``e`` is beyond the sample's eps-max."""
    d = design(res)
    if d is None:
        return None
    if e > d.eps_max:
        return {"above": d.eps_max} if len(resolved(res)) else None
    rep = report(res, 0.95, (float(e),))
    if rep.sample["judged"] == 0:
        return None
    return {**rep.rows.iloc[0].to_dict(), "eps_max": d.eps_max}


def sentence(row: dict[str, Any]) -> str:
    """The estimate at one ε in words for people who do not read intervals daily."""
    if "above" in row:
        return (
            f"The review sample covers ε up to {row['above']:g}; move ε below it to see the audited precision "
            "(or draw a sample with a larger eps-max on Review)."
        )
    if not row["labelled"] or row["precision"] != row["precision"]:
        return "No judged pair of the review sample is removed at this ε yet; judge more pairs on Review."
    return (
        f"Audited: of {int(row['labelled']):,} checked pairs, {percent(row['precision'])} % "
        f"({percent(row['ci_low'])}–{percent(row['ci_high'])} %) are true duplicates at this ε — an estimate "
        f"for all {int(row['removed']):,} removed items, with a 95 % interval."
    )


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
