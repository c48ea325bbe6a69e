"""The Export page's offer of ``apply``: the exact command for the current ε and rule, and the write itself
where the explorer may write (refusals as one-line errors, never a traceback)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from apply_data import kept_ids, planted_run, table_rows, write_jsonl
from streamlit.testing.v1 import AppTest

import semdedup_app as sa

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)
    monkeypatch.delenv("SEMDEDUP_READ_ONLY", raising=False)


@pytest.fixture
def jsonl_run(tmp_path):
    src = write_jsonl(tmp_path / "data.jsonl", table_rows())
    return planted_run(src, tmp_path / "run", text_column="text", id_column="id"), src


def export_page(results_dir) -> AppTest:
    os.environ["SEMDEDUP_RESULTS"] = str(results_dir)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["export"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_export_page_offers_and_writes_the_deduplicated_dataset(jsonl_run, tmp_path):
    res, src = jsonl_run
    at = export_page(res.path)
    suggested = tmp_path / "data-kept-eps0.0500.jsonl"
    assert at.text_input(key="exp_apply_out").value == str(suggested)
    command = at.code[-1].value
    assert shlex.split(command) == ["semdedup", "apply", str(res.path), "--eps", "0.0500", "--out", str(suggested)]
    at.radio(key="exp_rule").set_value("kept-only").run()
    assert "--rule kept-only" in at.code[-1].value
    at.radio(key="exp_rule").set_value("paper").run()
    at.button(key="exp_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Wrote" in at.success[-1].value
    got = [json.loads(line)["id"] for line in suggested.read_text().splitlines()]
    assert got == kept_ids(res, 0.05)
    at.button(key="exp_apply").click().run()  # the same path again: refused in one line, nothing overwritten
    assert not at.exception and "exists; apply never overwrites" in at.error[-1].value
    assert [json.loads(line)["id"] for line in suggested.read_text().splitlines()] == got


def test_read_only_explorer_shows_the_command_only(jsonl_run, monkeypatch):
    res, _ = jsonl_run
    monkeypatch.setenv("SEMDEDUP_READ_ONLY", "1")
    at = export_page(res.path)
    assert at.code[-1].value.startswith("semdedup apply ")
    assert not [b for b in at.button if b.key == "exp_apply"]
    assert any("read-only: run the command above" in c.value for c in at.caption)


def test_a_run_without_raw_input_says_to_export(text_results):
    at = export_page(text_results.path)
    assert any("no raw input" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == "exp_apply"]
