"""Who may open and write what in this explorer: the sharing policy, in one place. Every page asks here.

- **Read-only mode** (``streamlit run app.py -- --read-only``, or ``SEMDEDUP_READ_ONLY=1``): the app opens
  only the folders it was started with (``--results DIR``, repeatable) and the results folders under
  ``SEMDEDUP_ALLOWED_ROOTS``; there is no path box, no run, no demo building and no write into a
  results folder (exports are downloads, maps stay in memory); images are shown only from under the
  run's own input (its image folder, or the folder of its table).
- **Allowed roots** (``SEMDEDUP_ALLOWED_ROOTS``, folders separated by ``os.pathsep``): outside read-only
  mode the app still opens typed paths and starts runs, but refuses any path outside these folders.
- **Labels** (the audit's Review page): in read-only mode a verdict is written only by a reviewer named
  at start (``--reviewer NAME``, repeatable, or ``SEMDEDUP_REVIEWERS=a,b``) who proved who they are
  (:mod:`semdedup_app.identity`), only into a store named at start (``--labels STORE``, repeatable, or
  ``SEMDEDUP_LABELS``; never a path typed by a viewer) and never into a shared results folder — see
  :func:`labels_problem`.

These are the rules; :mod:`semdedup_app.gate` is the one place that applies them to every path a page
opens and every write. Paths are compared after resolving symbolic links, so a link cannot lead out of
an allowed folder. Nothing here imports Streamlit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from semdedup_core import SemDedupError

READ_ONLY_ENV = "SEMDEDUP_READ_ONLY"
ROOTS_ENV = "SEMDEDUP_ALLOWED_ROOTS"
REVIEWERS_ENV = "SEMDEDUP_REVIEWERS"
RESULTS_ENV = "SEMDEDUP_RESULTS"
LABELS_ENV = "SEMDEDUP_LABELS"
_TRUE = ("1", "true", "yes", "on")


def app_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """What follows ``streamlit run app.py --``: ``--results DIR`` (repeatable),
    ``--demo text|images``, ``--read-only``, ``--reviewer NAME`` (repeatable), ``--labels STORE``
    (repeatable: the verdict stores named at start). Unknown arguments are ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--results", action="append", default=[])
    parser.add_argument("--demo")
    parser.add_argument("--read-only", action="store_true")
    parser.add_argument("--reviewer", action="append", default=[])
    parser.add_argument("--labels", action="append", default=[])
    args, _ = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    return args


def read_only(argv: Sequence[str] | None = None) -> bool:
    """Whether the app runs in read-only (sharing) mode."""
    return app_args(argv).read_only or os.environ.get(READ_ONLY_ENV, "").strip().lower() in _TRUE


def _real(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.realpath(Path(path).expanduser()))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def startup_folders(argv: Sequence[str] | None = None) -> list[Path]:
    """The folders the app was started with: each ``--results DIR``, else ``$SEMDEDUP_RESULTS`` (several
    separated by ``os.pathsep``), as given (``~`` expanded)."""
    given = app_args(argv).results or [p for p in os.environ.get(RESULTS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser() for p in given]


def allowed_roots() -> list[Path]:
    """``$SEMDEDUP_ALLOWED_ROOTS`` as resolved folders (empty when unset)."""
    return [_real(p) for p in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if p.strip()]


def folder_allowed(path: str | os.PathLike[str], argv: Sequence[str] | None = None) -> bool:
    """Whether the app may open ``path`` as a results folder."""
    real = _real(path)
    if any(real == _real(p) for p in startup_folders(argv)):
        return True
    roots = allowed_roots()
    if roots:
        return any(_inside(real, root) for root in roots)
    return not read_only(argv)


def may_start_runs(argv: Sequence[str] | None = None) -> bool:
    """Runs and demo builds (background jobs) are allowed outside read-only mode only."""
    return not read_only(argv)


def check_run_target(path: str | os.PathLike[str], argv: Sequence[str] | None = None) -> None:
    """Raise unless the app may start a background job that writes ``path`` (or reads it, for an input):
    never in read-only mode, and only under the allowed roots when they are set."""
    if not may_start_runs(argv):
        raise SemDedupError("this explorer is read-only: it cannot start runs or build demos")
    roots = allowed_roots()
    if roots and not any(_inside(_real(path), root) for root in roots):
        where = ", ".join(str(r) for r in roots)
        raise SemDedupError(
            f"{str(path)!r} is outside the folders this explorer may use ({where}); pick a folder under them"
        )


# -- images ---------------------------------------------------------------------------------------------
def input_roots(run: dict[str, Any]) -> list[Path]:
    """The folders a run read its items from (``run.json``'s ``input``, and ``reference_input`` for a run
    with a held-out set): the image folder, the folder of the table, or the embeddings folder. Empty for
    runs on an embedding matrix (no input recorded)."""
    roots = []
    for key in ("input", "reference_input"):
        source = run.get(key) if isinstance(run.get(key), dict) else {}
        path = source.get("path")
        if isinstance(path, str) and path:
            p = Path(path)
            roots.append(_real(p.parent if source.get("kind") == "table" else p))
    return roots


def image_problem(run: dict[str, Any], path: Any, argv: Sequence[str] | None = None) -> str | None:
    """Why the app must not show the image at ``path`` of a run, or ``None``. Outside read-only mode any
    image is shown; in it, only those under the run's input roots (symbolic links resolved)."""
    if path is None or (isinstance(path, float) and path != path) or str(path) == "":
        return "no image path"
    if not read_only(argv):
        return None
    roots = input_roots(run)
    if not roots:
        return "not shown: this run records no input folder"
    if not any(_inside(_real(str(path)), root) for root in roots):
        return "not shown: outside this run's input folder"
    return None


# -- labels (the audit's Review page) -------------------------------------------------------------------
def reviewers(argv: Sequence[str] | None = None) -> frozenset[str]:
    """The reviewers named at start (``--reviewer NAME``, ``$SEMDEDUP_REVIEWERS`` comma-separated)."""
    names = list(app_args(argv).reviewer) + os.environ.get(REVIEWERS_ENV, "").split(",")
    return frozenset(n.strip() for n in names if n.strip())


def labels_stores(argv: Sequence[str] | None = None) -> list[Path]:
    """The verdict stores named at start (``--labels STORE``, repeatable, else ``$SEMDEDUP_LABELS``, several
    separated by ``os.pathsep``), as given (``~`` expanded); the first is the one used by default."""
    given = app_args(argv).labels or [p for p in os.environ.get(LABELS_ENV, "").split(os.pathsep) if p.strip()]
    return [Path(p).expanduser() for p in given]


def named_store(store: str | os.PathLike[str], argv: Sequence[str] | None = None) -> bool:
    """Whether ``store`` is one of the stores named at start (symbolic links resolved)."""
    return any(_real(store) == _real(s) for s in labels_stores(argv))


def labels_problem(
    reviewer: Any, store: str | os.PathLike[str] | None, results_dir: str | os.PathLike[str] | None = None
) -> str | None:
    """Why ``reviewer`` (a :class:`semdedup_app.identity.Reviewer`; a bare name proves nothing) may not write
    verdicts into ``store`` (the labels file; ``None``: the default one in ``results_dir``), or ``None`` when
    they may. Outside read-only mode anyone may (within the allowed roots, which :mod:`semdedup_app.gate`
    applies). In read-only mode only a reviewer named at start who proved who they are, only into a store
    named at start, and never into a shared results folder."""
    if not read_only():
        return None
    name = getattr(reviewer, "name", None)
    if not getattr(reviewer, "proven", False) or name not in reviewers():
        return (
            "this explorer is read-only: only the reviewers named when it was started, each with their key "
            "(or a login), may record verdicts"
        )
    target = store if store is not None else (Path(results_dir) / "labels.parquet" if results_dir else None)
    if target is None or not named_store(target):
        return (
            "this explorer is read-only: verdicts go only into a labels store named when it was started "
            "(--labels STORE), and none was"
            if not labels_stores()
            else "this explorer is read-only: verdicts go only into the labels stores named when it was started"
        )
    real = _real(target)
    shared = [*(_real(p) for p in startup_folders()), *allowed_roots()]
    if results_dir is not None:
        shared.append(_real(results_dir))
    if any(_inside(real, folder) for folder in shared):
        return (
            "this explorer is read-only: verdicts cannot be written into a shared results folder; "
            "use a labels store elsewhere"
        )
    return None


def may_write_labels(
    reviewer: Any, store: str | os.PathLike[str] | None, results_dir: str | os.PathLike[str] | None = None
) -> bool:
    """Whether ``reviewer`` may record verdicts into ``store`` (see :func:`labels_problem`)."""
    return labels_problem(reviewer, store, results_dir) is None
