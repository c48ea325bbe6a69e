"""Session state, navigation and what opens when a session starts.

Keys shared by every page start with ``sd_``; a page's own keys start with the page's prefix
(``thr_``, ``pairs_``, ``cl_``, ``map_``, ``exp_``, ``home_``, ``rev_``, ``cmp_``, ``leak_``). :func:`ensure_session_state` sets them
once per session; :func:`open_startup_folder` opens what the command line asked for (a results folder,
or an offline demo — starting its build in the background when it is not built yet). What may be opened
at all is :mod:`semdedup_app.access`'s to say; :func:`open_folder` asks it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import streamlit as st

from semdedup_core import SemDedupError
from semdedup_core.results.folder import ResultsFolder

from . import access, gate, jobs
from .access import read_only  # noqa: F401 - what pages ask
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
    "thr_audited": False,
    "exp_rule": "paper",
    "cmp_path": None,  # the results folder of run B on the Compare page
    "cmp_eps_mode": "same",
    "cmp_eps_b": EPS_DEFAULT,
    "cmp_which": "only_a",
    "cmp_page": 0,
    "sd_labels": "",  # the labels store (verdicts); empty = labels.parquet in the open results folder
    "rev_reviewer": "",
    "rev_target": 0.95,
    "rev_blind": False,  # Review's blind mode: no similarity, ids or item order while judging
    "rev_mode": "judge",  # Review: judge the sample, or settle the reviewers' disagreements
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
    "review": ("pages/7_review.py", "Review", ":material/fact_check:"),
    "compare": ("pages/8_compare.py", "Compare", ":material/difference:"),
    "leakage": ("pages/9_leakage.py", "Leakage", ":material/policy:"),
}
PAGES = {name: path for name, (path, _, _) in NAV.items()}


def app_args(argv: list[str] | None = None) -> argparse.Namespace:
    """What follows ``streamlit run app.py --``: ``--results DIR`` (repeatable), ``--demo text|images``,
    ``--read-only``, ``--reviewer NAME``, ``--labels STORE`` (see :func:`semdedup_app.access.app_args`)."""
    return access.app_args(argv)


def cli_results_dir(argv: list[str] | None = None) -> str | None:
    """The first ``--results DIR`` after ``streamlit run app.py --``, else ``$SEMDEDUP_RESULTS``, else ``None``."""
    folders = access.startup_folders(argv)
    return str(folders[0]) if folders else None


def shared_folders(depth: int = 2) -> list[Path]:
    """The results folders the app offers without a path box: the startup folders, then the results
    folders at most ``depth`` levels under each allowed root (``$SEMDEDUP_ALLOWED_ROOTS``); the scan is
    cached for 30 s."""
    return _shared_folders(tuple(map(str, access.startup_folders())), tuple(map(str, access.allowed_roots())), depth)


@st.cache_data(ttl=30, max_entries=8, show_spinner=False)
def _shared_folders(startup: tuple[str, ...], roots: tuple[str, ...], depth: int) -> list[Path]:
    found = {Path(os.path.realpath(p)): None for p in startup}
    for p in jobs.find_runs([Path(r) for r in roots], depth=depth):
        found.setdefault(Path(os.path.realpath(p)), None)
    return list(found)


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
    linked = st.query_params.get("run")  # a shared link to one run: ?run=FOLDER (the gate decides)
    given = cli_results_dir()
    if linked:
        open_folder(linked)
    elif given:
        open_folder(given)
    elif cli_demo():
        open_or_build_demo(cli_demo())
    elif st.session_state["sd_results_dir"] is None:
        for kind in ("text", *demo_kinds()):
            if gate.allowed("open", demo_folder(kind)) and _usable(demo_folder(kind)):
                open_folder(demo_folder(kind))
                break


def page_setup(title: str) -> None:
    """First call of every page: the page's title and wide layout, the session's state, and what the
    command line asked to open."""
    st.set_page_config(page_title=f"{title} · semdedup", page_icon=page_icon(), layout="wide")
    ensure_session_state()
    open_startup_folder()


@st.cache_resource(show_spinner=False)
def page_icon() -> bytes:
    """The tab's icon, two overlapping sheets drawn here as a PNG and served by the app itself: Streamlit
    turns a ``:material/...:`` page icon into a request to fonts.gstatic.com, and a shared explorer makes
    no request off its own server."""
    import io as _io

    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rounded_rectangle((6, 4, 42, 44), radius=6, outline=(9, 105, 218, 255), width=5)
    draw.rounded_rectangle((20, 18, 58, 60), radius=6, fill=(9, 105, 218, 255))
    out = _io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def open_folder(path: str | Path) -> bool:
    """Make ``path`` the open results folder (its contents are checked when a page loads it); refuse, with
    an ``st.error``, a folder the gate does not let this session open (:mod:`semdedup_app.gate`)."""
    try:
        gate.check("open", path)
    except SemDedupError as exc:
        error(exc)
        return False
    st.session_state["sd_results_dir"] = str(Path(path).expanduser())
    suggested = demo_eps(path)
    if suggested is not None:
        set_eps(suggested)
    st.session_state["sd_cluster"] = None
    st.session_state["pairs_page"] = 0
    return True


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
    """The ε the demo module suggests when ``path`` is a demo's default folder (or its first look)."""
    from semdedup_core.ingest.demo import DEMO_EPS, first_look_folder

    where = Path(path).expanduser().resolve()
    for kind, value in DEMO_EPS.items():
        if where in (demo_folder(kind).resolve(), first_look_folder(demo_folder(kind)).resolve()):
            return float(value)
    return None


def first_look_of(run: dict[str, Any]) -> Path | None:
    """The full run a first look (``run.json`` with ``first_look``) stands in for, else ``None``."""
    of = (run.get("first_look") or {}).get("of")
    return Path(of) if of else None


def open_awaited_demo() -> bool:
    """For a demo awaited since ``--demo`` (``sd_waiting_demo``): open it once it is built — in place of
    nothing or of its first look — or else open its first look once that is there and nothing is open.
    Returns True when it opened something (the caller reruns the app)."""
    from semdedup_core.ingest.demo import first_look_folder

    kind = st.session_state.get("sd_waiting_demo")
    if not kind:
        return False
    full, first = demo_folder(kind), first_look_folder(demo_folder(kind))
    current = st.session_state.get("sd_results_dir")
    showing_first = current is not None and Path(current).resolve() == first.resolve()
    if (current is None or showing_first) and _usable(full):
        open_folder(full)
        st.session_state["sd_waiting_demo"] = None
        return True
    if current is None and _usable(first):
        open_folder(first)
        return True
    return False


def switch_to_full_run(run: dict[str, Any]) -> Path | None:
    """For an open first look whose full run is now built: open the full run and return its folder."""
    full = first_look_of(run)
    if full is None or not _usable(full):
        return None
    open_folder(full)
    st.session_state["sd_waiting_demo"] = None
    return full


def _usable(folder: Path) -> bool:
    from .data import load

    if not ResultsFolder(folder).is_complete():
        return False
    try:
        load(folder)
    except SemDedupError:
        return False
    return True


def demo_entries() -> list[dict[str, Any]]:
    """The offline demos Home offers (those the gate lets this session open): ``kind``, ``folder``,
    ``built`` (a finished run is there) and ``building`` (a job started here is writing it)."""
    out = []
    for kind in demo_kinds():
        folder = demo_folder(kind)
        if gate.allowed("open", folder):
            built = ResultsFolder(folder).is_complete()
            out.append({"kind": kind, "folder": folder, "built": built, "building": jobs.running_into(folder)})
    return out


def build_demo(kind: str) -> None:
    """Start building the ``kind`` demo in the background (the gate refuses it in read-only mode)."""
    try:
        jobs.start("demo", [kind], demo_folder(kind), label=f"{kind} demo")
    except SemDedupError as exc:
        error(exc)


def open_or_build_demo(kind: str) -> None:
    """Open the ``kind`` demo when it is built; otherwise start building it in the background (Home shows
    the progress, opens the build's first look as soon as it is there, and the whole demo when done). A
    build another session already started is simply awaited."""
    if kind not in demo_kinds():
        error(f"--demo must be one of {', '.join(demo_kinds())}, got {kind!r}")
        return
    from semdedup_core.ingest.demo import first_look_folder

    folder = demo_folder(kind)
    if _usable(folder):
        open_folder(folder)
        return
    if not gate.allowed("run", folder):
        error(f"the {kind} demo is not built, and this read-only explorer cannot build it; pass --results DIR")
        return
    st.session_state["sd_waiting_demo"] = kind
    if _usable(first_look_folder(folder)):  # the first look of an unfinished build: open it meanwhile
        open_folder(first_look_folder(folder))
    if not any(j["state"] == "running" and Path(j["out"]) == folder.resolve() for j in jobs.list_jobs()):
        try:
            jobs.start("demo", [kind], folder, label=f"{kind} demo")
        except SemDedupError as exc:
            error(exc)
