"""Session state, navigation and what opens when a session starts.

Keys shared by every page start with ``sd_``; a page's own keys start with the page's prefix
(``thr_``, ``pairs_``, ``cl_``, ``map_``, ``exp_``, ``home_``, ``leak_``). :func:`ensure_session_state` sets them
once per session; :func:`open_startup_folder` opens what the command line asked for (a results folder,
or an offline demo — starting its build in the background when it is not built yet).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import streamlit as st

from semdedup_core import SemDedupError
from semdedup_core.engine.schema import ResultsFolder

from . import jobs
from .markdown import error

EPS_DEFAULT = 0.05

DEFAULTS: dict[str, Any] = {
    "sd_results_dir": None,  # the open results folder
    "sd_eps": EPS_DEFAULT,  # the current ε, shared by all pages
    "sd_cluster": None,  # the cluster the cluster page shows
    "sd_started": False,  # the command line / environment was read
    "sd_waiting_demo": None,  # the demo being built for --demo, opened when it is done
    "pairs_sort": "borderline",
    "pairs_page": 0,
    "pairs_per_page": 10,
    "pairs_view": "Pairs",
    "cl_order": "largest",
    "map_colour": "cluster",
    "map_method": "umap",
    "thr_conservative": False,
    "exp_rule": "paper",
    "leak_sort": "borderline",
    "leak_page": 0,
    "leak_per_page": 10,
}
# Streamlit's multipage layout: app.py is Home, the others are the files in pages/ (their URL is the
# file name without its number: /threshold, /pairs, ...). (file, label, icon) in navigation order.
NAV = {
    "home": ("app.py", "Home", ":material/home:"),
    "threshold": ("pages/1_threshold.py", "Threshold", ":material/tune:"),
    "pairs": ("pages/2_pairs.py", "Pairs", ":material/compare:"),
    "clusters": ("pages/3_clusters.py", "Clusters", ":material/category:"),
    "map": ("pages/4_map.py", "Map", ":material/scatter_plot:"),
    "export": ("pages/5_export.py", "Export", ":material/download:"),
    "stakeholder": ("pages/6_stakeholder.py", "Stakeholder view", ":material/campaign:"),
    "leakage": ("pages/7_leakage.py", "Leakage", ":material/policy:"),
}
PAGES = {name: path for name, (path, _, _) in NAV.items()}


def app_args(argv: list[str] | None = None) -> argparse.Namespace:
    """What follows ``streamlit run app.py --``: ``--results DIR`` and ``--demo text|images``."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results")
    parser.add_argument("--demo")
    args, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return args


def cli_results_dir(argv: list[str] | None = None) -> str | None:
    """``--results DIR`` after ``streamlit run app.py --``, else ``$SEMDEDUP_RESULTS``, else ``None``."""
    return app_args(argv).results or os.environ.get("SEMDEDUP_RESULTS") or None


def cli_demo(argv: list[str] | None = None) -> str | None:
    """``--demo KIND`` after ``streamlit run app.py --``: open that offline demo, building it first if needed."""
    return app_args(argv).demo


def ensure_session_state(keep_widgets: bool = True) -> None:
    """Give every key its default once per session. With ``keep_widgets``, re-assign each key, which
    keeps a widget's value while the page that shows it is not the current one."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
        if keep_widgets:
            st.session_state[key] = st.session_state[key]


def open_startup_folder() -> None:
    """Once per session: open the folder the command line names, or the demo it asks for (building it in
    the background first when needed), or else a demo that is already built (the text demo first)."""
    if st.session_state["sd_started"]:
        return
    st.session_state["sd_started"] = True
    given = cli_results_dir()
    if given:
        open_folder(given)
    elif cli_demo():
        open_or_build_demo(cli_demo())
    elif st.session_state["sd_results_dir"] is None:
        for kind in ("text", *demo_kinds()):
            if _usable(demo_folder(kind)):
                open_folder(demo_folder(kind))
                break


def page_setup(title: str) -> None:
    """First call of every page: the page's title and wide layout, the session's state, and what the
    command line asked to open."""
    st.set_page_config(page_title=f"{title} · semdedup", page_icon=":material/content_copy:", layout="wide")
    ensure_session_state()
    open_startup_folder()


def open_folder(path: str | Path) -> None:
    """Make ``path`` the open results folder (checked when a page loads it)."""
    st.session_state["sd_results_dir"] = str(Path(path).expanduser())
    suggested = demo_eps(path)
    if suggested is not None:
        set_eps(suggested)
    st.session_state["sd_cluster"] = None
    st.session_state["pairs_page"] = 0


# -- ε ------------------------------------------------------------------------------------------------
def eps() -> float:
    return float(st.session_state["sd_eps"])


def set_eps(value: float) -> None:
    st.session_state["sd_eps"] = float(value)


# -- demos ------------------------------------------------------------------------------------------
def demo_kinds() -> tuple[str, ...]:
    """The offline demos this installation can build."""
    from semdedup_core.ingest.demo import DEMOS

    return tuple(DEMOS)


def demo_folder(kind: str) -> Path:
    """Where ``run_demo(kind)`` (and ``python -m semdedup_core demo KIND``) writes by default."""
    from semdedup_core.ingest.demo import default_out

    return default_out(kind)


def demo_eps(path: str | Path) -> float | None:
    """The ε the demo module suggests when ``path`` is a demo's default folder."""
    from semdedup_core.ingest.demo import DEMO_EPS

    for kind, value in DEMO_EPS.items():
        if Path(path).expanduser().resolve() == demo_folder(kind).resolve():
            return float(value)
    return None


def _usable(folder: Path) -> bool:
    from .data import load

    if not ResultsFolder(folder).is_complete():
        return False
    try:
        load(folder)
    except SemDedupError:
        return False
    return True


def open_or_build_demo(kind: str) -> None:
    """Open the ``kind`` demo when it is built; otherwise start building it in the background (Home shows
    the progress and opens it when done). A build another session already started is simply awaited."""
    if kind not in demo_kinds():
        error(f"--demo must be one of {', '.join(demo_kinds())}, got {kind!r}")
        return
    folder = demo_folder(kind)
    if _usable(folder):
        open_folder(folder)
        return
    st.session_state["sd_waiting_demo"] = kind
    if not any(j["state"] == "running" and Path(j["out"]) == folder.resolve() for j in jobs.list_jobs()):
        try:
            jobs.start("demo", [kind], folder, label=f"{kind} demo")
        except SemDedupError as exc:
            error(exc)
