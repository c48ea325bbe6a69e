"""The command line: parse, build the configs, call one core function, print a summary.

One module per command (:mod:`.run`, :mod:`.demo`, :mod:`.export`, :mod:`.apply`, :mod:`.audit`,
:mod:`.report`, :mod:`.compare`, :mod:`.app`), each with ``add_parser(sub)`` that registers its options and
its function; the shared option groups and helpers live in :mod:`.options`. Installed as a package, the
same commands answer to ``semdedup`` (:func:`script`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ..errors import SemDedupError
from . import app, apply, audit, compare, demo, export, report, run
from .options import _Parser

COMMANDS = (run, demo, export, apply, audit, report, compare, app)
"""The command modules, in the order ``--help`` lists them."""


def build_parser(prog: str = "python -m semdedup_core") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Find semantic duplicates with SemDeDup: embed, cluster with spherical k-means, and score "
        "every item against the earlier items of its cluster. At eps an item is removed iff its score "
        "(max_sim) > 1 - eps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def script() -> int:
    """The ``semdedup`` command of an installed package: :func:`main` under that name."""
    return main(prog="semdedup")


def main(argv: Sequence[str] | None = None, prog: str = "python -m semdedup_core") -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SemDedupError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except OSError as exc:  # a disk that is full or a folder that may not be written: the user's to fix
        where = f" ({exc.filename!s})" if exc.filename else ""
        print(f"{parser.prog}: error: {exc.strerror or exc}{where}; check the paths and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
