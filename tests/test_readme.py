"""The README stays true: its CLI reference is the current --help, and CI runs its test command verbatim.

Regenerate the reference after changing the CLI with:
    SEMDEDUP_UPDATE_README=1 .venv/bin/python -m pytest tests/test_readme.py
"""

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

from semdedup_core.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def render_help() -> str:
    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    parts = []

    def walk(title, p):  # every command and every subcommand of a command (audit sample|import|report)
        parts.append((f"{title} --help", p))
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, child in action.choices.items():
                    walk(f"{title} {name}", child)

    walk("python -m semdedup_core", parser)
    blocks = []
    for title, p in parts:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            p.print_help()
        blocks.append(f"```\n$ {title}\n{buf.getvalue().rstrip()}\n```")
    return "\n\n".join(blocks)


def test_cli_reference_is_current_help():
    text = README.read_text()
    assert START in text and END in text
    current = text.split(START)[1].split(END)[0].strip()
    wanted = render_help()
    if current != wanted and os.environ.get("SEMDEDUP_UPDATE_README"):
        head, rest = text.split(START)
        README.write_text(head + START + "\n" + wanted + "\n" + END + rest.split(END)[1])
        pytest.skip("README regenerated")
    assert current == wanted, "README's CLI reference is stale: rerun with SEMDEDUP_UPDATE_README=1"


def readme_commands():
    text = README.read_text()
    return re.findall(r"```(?:bash|sh)\n(.+?)\n```", text, flags=re.S)


def test_two_commands_and_ci_runs_the_test_one():
    cmds = readme_commands()
    app_cmd = [c for c in cmds if "streamlit run app.py" in c]
    test_cmd = [c for c in cmds if "pytest" in c]
    assert len(app_cmd) == 1 and len(test_cmd) == 1, cmds
    assert "\n" not in app_cmd[0].strip() and "\n" not in test_cmd[0].strip()  # one command each
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd[0].strip() in ci.splitlines()
    assert "requirements" in app_cmd[0]
