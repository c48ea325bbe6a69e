"""The explorer's one gate: every path a page opens and every write the app makes passes through here.

:func:`problem` answers one question — may this session do ``action`` on ``target``? — for every
``action`` in :data:`ACTIONS`, from the mode (read-only, allowed roots, the folders, reviewers and
verdict stores named at start; the rules are :mod:`semdedup_app.access`'s), the way datasette asks
``permission_allowed`` in every view. The operations below ask it before they touch a file, and pages
call only them (and :mod:`semdedup_app.runs`, which opens folders through here): a page never opens,
lists or writes a file itself (``tests/test_gate.py`` reads every
page's code, and runs every page of a read-only explorer watching each file it opens or writes).

A refusal is one line, the same whether or not the path exists: it names the value that was given and
the way out, never what lies outside the allowed folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import streamlit as st

from semdedup_core import Results, SemDedupError
from semdedup_core.audit.labels import LabelStore

from . import access
from .identity import Reviewer

ACTIONS = {
    "open": "open a results folder (Home's box, a listed or recent run, the command line, ?run=)",
    "compare": "open run B on Compare",
    "read-labels": "read a verdict store",
    "write-labels": "record a verdict",
    "draw-sample": "draw the review sample (audit/sample.parquet in the results folder)",
    "write-export": "write an export into the results folder",
    "write-map": "keep a computed map in the results folder",
    "run": "start a run or build a demo in the background (its input and its results folder)",
    "remember": "remember an opened folder in the recent runs",
    "show-image": "show (or embed in a report) an image of a run",
    "apply": "write the deduplicated dataset (the kept part of the run's input) to a new path",
}


def _outside(path: Any) -> str:
    roots = access.allowed_roots()
    if access.read_only():
        return (
            f"{str(path)!r} is not one of the results folders this read-only explorer shares; open one of those "
            "it lists"
        )
    where = ", ".join(str(r) for r in roots)
    return (
        f"{str(path)!r} is outside the folders this explorer may use ({where}); pick a folder under them, or ask "
        f"whoever runs the app to add it to {access.ROOTS_ENV}"
    )


def _real(path: Any) -> Path:
    return Path(os.path.realpath(Path(str(path)).expanduser()))


def _within(path: Any, folder: Any) -> bool:
    real, top = _real(path), _real(folder)
    return real == top or top in real.parents


def _under_roots(path: Any) -> bool:
    roots = access.allowed_roots()
    return not roots or any(_within(path, r) for r in roots)


def _labels_read_problem(target: Any, res: Results | None) -> str | None:
    if access.named_store(target):
        return None
    if res is not None and res.path is not None and _within(target, res.path):
        return None  # the open folder's own store
    if access.read_only():
        return "this explorer is read-only: it reads only the labels stores named when it was started"
    return None if _under_roots(target) else _outside(target)


def problem(
    action: str, target: Any = None, *, res: Results | None = None, reviewer: Reviewer | None = None
) -> str | None:
    """Why this session may not do ``action`` (one of :data:`ACTIONS`) on ``target`` (a path; for
    ``show-image`` an image path of ``res``), or ``None`` when it may. ``reviewer``: who records a verdict."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
    ro = access.read_only()
    if action in ("open", "compare"):
        return None if access.folder_allowed(str(target)) else _outside(target)
    if action == "read-labels":
        return _labels_read_problem(target, res)
    if action == "write-labels":
        refused = access.labels_problem(reviewer, target, res.path if res is not None else None)
        if refused is None and not ro and not access.named_store(target) and not _under_roots(target):
            return _outside(target)
        return refused
    if action in ("draw-sample", "write-export", "write-map", "remember"):
        if ro:
            return {
                "draw-sample": "this explorer is read-only: the review sample is drawn by whoever runs it "
                "(`python -m semdedup_core audit sample DIR ...`)",
                "write-export": "this explorer is read-only: exports are downloads only",
                "write-map": "this explorer is read-only: maps are kept in memory",
                "remember": "this explorer is read-only: it keeps no list of recent runs",
            }[action]
        return None if target is None or _under_roots(target) else _outside(target)
    if action == "apply":
        if ro:
            return "this explorer is read-only: run the command above where the data lives"
        return None if target is None or _under_roots(target) else _outside(target)
    if action == "run":
        try:
            access.check_run_target(str(target))
        except SemDedupError as exc:
            return str(exc)
        return None
    return access.image_problem(res.run if res is not None else {}, target)  # show-image


def check(action: str, target: Any = None, **kw: Any) -> None:
    """Raise :class:`SemDedupError` with :func:`problem`'s one line unless the action is allowed."""
    refused = problem(action, target, **kw)
    if refused is not None:
        raise SemDedupError(refused)


def allowed(action: str, target: Any = None, **kw: Any) -> bool:
    return problem(action, target, **kw) is None


# -- verdicts -----------------------------------------------------------------------------------------
def chosen_store() -> str:
    return str(st.session_state.get("sd_labels") or "").strip()


def labels_store(res: Results) -> LabelStore:
    """The verdict store this session reads and writes: the one chosen on Review when the gate lets it be
    read (in read-only mode only a store named at start can be chosen), else the first store named at start,
    else the folder's ``labels.parquet``. Never raises: Review says why a choice was set aside
    (:func:`labels_choice_problem`)."""
    chosen = chosen_store()
    if chosen and problem("read-labels", chosen, res=res) is None:
        return LabelStore.for_results(res.path, chosen)
    named = access.labels_stores()
    return LabelStore(named[0]) if named else LabelStore.for_results(res.path)


def labels_choice_problem(res: Results) -> str | None:
    """Why the store chosen on Review is not the one used (see :func:`labels_store`), or ``None``."""
    chosen = chosen_store()
    return problem("read-labels", chosen, res=res) if chosen else None


def record_verdict(
    res: Results, reviewer: Reviewer, item: Any, other: Any, verdict: str, similarity: float | None
) -> None:
    """Store ``reviewer``'s verdict on the pair ``(item, other)`` in :func:`labels_store`, once the gate
    lets them write there."""
    store = labels_store(res)
    check("write-labels", store.path, res=res, reviewer=reviewer)
    fingerprint = str(res.run.get("input_fingerprint", "")) or None
    store.record(item, other, verdict, reviewer.name, similarity, fingerprint)


# -- writes into a results folder ------------------------------------------------------------------------
def write_export(res: Results, *args: Any) -> Path:
    """:func:`semdedup_core.explore.export.write_export` into the folder's ``exports/``, when allowed."""
    from semdedup_core.explore.export import write_export as write

    check("write-export", res.path)
    return write(res, *args)


def report_image_problem(res: Results):
    """``path -> why not`` for the report's embedded images: the same rule as the pages' images."""
    return lambda path: problem("show-image", path, res=res)
