"""``app``: serve the explorer (the Streamlit app) from wherever semdedup is installed.

The explorer's pages — ``app.py``, ``pages/`` and ``.streamlit/config.toml`` — sit at the top of the
repository; a wheel carries them in ``semdedup_app/_site/`` (see ``setup.py``). This module only finds
them and starts ``python -m streamlit run`` on them in this process's place: the core never imports
Streamlit or the app package.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from ..errors import SemDedupError

_STREAMLIT_OPTION = re.compile(r"^--[A-Za-z]+\.[A-Za-z]")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "app",
        help="serve the explorer on results folders (Streamlit; extra --section.option pass through)",
        description="Serve the explorer (the Streamlit app) from the installed package. No browser window "
        "opens where there is no display (headless). Streamlit's own options (--server.maxUploadSize 50, "
        "--theme.base=dark, ...) pass through; HF_HUB_OFFLINE=1 is set unless it is set already.",
    )
    p.add_argument("dirs", nargs="*", metavar="DIR", help="results folders to open (the first opens at start)")
    p.add_argument("--port", type=int, metavar="N", help="the port to serve on (Streamlit's default 8501)")
    p.add_argument("--address", metavar="A", help="the address to bind (e.g. 127.0.0.1, or 0.0.0.0 to share)")
    p.add_argument(
        "--read-only",
        action="store_true",
        help="sharing mode: only these folders (and those under SEMDEDUP_ALLOWED_ROOTS), no runs, no writes",
    )
    p.add_argument(
        "--reviewer",
        action="append",
        default=[],
        metavar="NAME",
        help="a reviewer who may record verdicts in read-only mode (repeatable)",
    )
    p.add_argument("--labels", metavar="STORE", help="the verdict store the Review page writes")
    p.add_argument("--demo", choices=("text", "images"), help="open an offline demo (built on first use)")
    p.passthrough = split_streamlit_options
    p.set_defaults(func=cmd_app)


def split_streamlit_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Take Streamlit's options (``--section.option=value`` or ``--section.option value``) out of ``argv``;
    returns (the rest, those options as ``--section.option=value``)."""
    rest: list[str] = []
    handed: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if not _STREAMLIT_OPTION.match(arg):
            rest.append(arg)
        elif "=" in arg or i + 1 == len(argv) or argv[i + 1].startswith("-"):
            handed.append(arg)
        else:
            handed.append(f"{arg}={argv[i + 1]}")
            i += 1
        i += 1
    return rest, handed


def site() -> Path:
    """The folder holding the explorer's ``app.py``, ``pages/`` and ``.streamlit/config.toml``: the wheel's
    ``semdedup_app/_site``, else (a clone, an editable install) the folder that holds ``semdedup_app``."""
    spec = importlib.util.find_spec("semdedup_app")  # finds the package without importing it
    if spec is None or spec.origin is None:
        raise SemDedupError("the explorer (package semdedup_app) is not installed; reinstall semdedup")
    package = Path(spec.origin).parent
    for folder in (package / "_site", package.parent):
        if (folder / "app.py").is_file() and (folder / "pages").is_dir():
            return folder
    raise SemDedupError(
        f"the explorer's pages (app.py, pages/) are missing beside {str(package)!r}; reinstall semdedup"
    )


def _config_options(folder: Path) -> list[str]:
    """``.streamlit/config.toml`` of ``folder`` as command-line options (Streamlit reads that file only from
    the current folder, and ``semdedup app`` runs from anywhere)."""
    path = folder / ".streamlit" / "config.toml"
    if not path.is_file():
        return []
    with open(path, "rb") as f:
        config = tomllib.load(f)
    out = []
    for section, values in config.items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            out.append(f"--{section}.{key}={text}")
    return out


def _headless() -> bool:
    """Whether there is no display to open a browser window on (Linux without X11 or Wayland)."""
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def streamlit_command(args: argparse.Namespace, folder: Path | None = None) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the explorer as ``args`` ask."""
    folder = folder or site()
    given = list(getattr(args, "passthrough", None) or [])
    ours = _config_options(folder)
    if args.port is not None:
        ours.append(f"--server.port={args.port}")
    if args.address is not None:
        ours.append(f"--server.address={args.address}")
    if _headless():
        ours.append("--server.headless=true")
    named = {o.split("=", 1)[0] for o in given}
    options = [o for o in ours if o.split("=", 1)[0] not in named] + given  # the user's own win
    app_args: list[str] = []
    for d in args.dirs:
        if not Path(d).expanduser().exists():
            raise SemDedupError(f"results folder {d!r} does not exist; pass a folder that `semdedup run` wrote")
        app_args += ["--results", str(Path(d).expanduser().resolve())]
    app_args += ["--read-only"] if args.read_only else []
    for name in args.reviewer:
        app_args += ["--reviewer", name]
    app_args += ["--labels", str(Path(args.labels).expanduser().resolve())] if args.labels else []
    app_args += ["--demo", args.demo] if args.demo else []
    return [sys.executable, "-m", "streamlit", "run", str(folder / "app.py"), *options, "--", *app_args]


def cmd_app(args: argparse.Namespace) -> int:
    command = streamlit_command(args)
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    sys.stdout.flush()
    os.execve(sys.executable, command, env)  # the explorer's server takes this process's place
    return 0  # not reached
