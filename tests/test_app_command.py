"""``semdedup app``: what it hands to Streamlit — the explorer's own pages and config, the folders, the
sharing options, headless without a display, and Streamlit's options passed through."""

from __future__ import annotations

from pathlib import Path

import pytest

from semdedup_core import SemDedupError
from semdedup_core.cli import build_parser
from semdedup_core.cli.app import site, streamlit_command

ROOT = Path(__file__).resolve().parents[1]


def command(*argv: str) -> list[str]:
    args = build_parser("semdedup").parse_args(["app", *argv])
    return streamlit_command(args)


def split(cmd: list[str]) -> tuple[list[str], list[str]]:
    at = cmd.index("--")
    return cmd[:at], cmd[at + 1 :]


def test_in_a_checkout_the_pages_are_the_repositorys():
    assert site() == ROOT


def test_folders_and_sharing_options_go_to_the_app(text_results, tmp_path, monkeypatch):
    monkeypatch.chdir(text_results.path.parent)
    cmd = command(
        text_results.path.name, str(text_results.path), "--read-only", "--reviewer", "ana", "--reviewer", "bo",
        "--labels", str(tmp_path / "labels.parquet"),
    )  # fmt: skip
    streamlit, app = split(cmd)
    assert streamlit[1:5] == ["-m", "streamlit", "run", str(ROOT / "app.py")]
    assert app == [
        "--results", str(text_results.path), "--results", str(text_results.path), "--read-only",
        "--reviewer", "ana", "--reviewer", "bo", "--labels", str(tmp_path / "labels.parquet"),
    ]  # fmt: skip


def test_port_address_config_and_headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    streamlit, app = split(command("--port", "8600", "--address", "0.0.0.0", "--demo", "text"))
    assert "--server.port=8600" in streamlit and "--server.address=0.0.0.0" in streamlit
    assert "--server.headless=true" in streamlit
    # the repository's .streamlit/config.toml, which Streamlit reads only from the current folder
    assert "--client.showSidebarNavigation=false" in streamlit and "--client.showErrorDetails=none" in streamlit
    assert app == ["--demo", "text"]
    monkeypatch.setenv("DISPLAY", ":0")
    assert "--server.headless=true" not in split(command())[0]


def test_streamlit_options_pass_through_and_win(text_results):
    streamlit, app = split(
        command("--theme.base", "dark", str(text_results.path), "--client.showErrorDetails=full", "--port", "9000")
    )
    assert "--theme.base=dark" in streamlit and "--server.port=9000" in streamlit
    assert "--client.showErrorDetails=full" in streamlit and "--client.showErrorDetails=none" not in streamlit
    assert app == ["--results", str(text_results.path)]


def test_unknown_options_and_missing_folders_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        command("--bogus")
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SemDedupError, match="does not exist"):
        command(str(tmp_path / "nope"))
