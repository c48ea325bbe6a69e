"""The results folders a page opens — the one shown, and Compare's run B — always through the gate
(:mod:`semdedup_app.gate`), never by the path a session holds alone."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from semdedup_core import Results

from . import access, gate, jobs
from .data import load
from .state import shared_folders


def open_results(path: str | os.PathLike[str], action: str = "open") -> Results:
    """The results folder ``path`` (cached), once the gate lets this session ``action`` it."""
    gate.check(action, path)
    return load(path)


def compare_choices(res: Results) -> list[str]:
    """The runs Compare offers for B: the shared folders in read-only mode, else the recent runs (those the
    allowed roots admit), without the open run itself."""
    here = os.path.realpath(res.path) if res.path is not None else None
    folders = shared_folders() if access.read_only() else jobs.recent_runs()
    return [str(p) for p in folders if os.path.realpath(p) != here and gate.allowed("compare", p)]


def label(path: str) -> str:
    """How Compare names a run it offers: in read-only mode its folder's name (viewers see no server paths)."""
    return Path(path).name if access.read_only() else str(path)


def pick_run_b(value: str) -> str | None:
    """Make ``value`` (a typed or chosen folder) Compare's run B; returns the refusal instead when the gate
    refuses it (B then stays as it was)."""
    value = str(value or "").strip()
    if not value:
        return None
    refused = gate.problem("compare", value)
    if refused is None:
        st.session_state["cmp_path"] = str(Path(value).expanduser())
        st.session_state["cmp_page"] = 0
    return refused


def run_b() -> Results | None:
    """Compare's run B (checked by the gate again: the session's value is never trusted), or ``None``."""
    path = st.session_state.get("cmp_path")
    return open_results(path, "compare") if path else None
