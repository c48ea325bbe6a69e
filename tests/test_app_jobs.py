"""Runs started from the app: a real background process, its progress file, and the Home page polling it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from semdedup_app import jobs
from semdedup_core import Results, SemDedupError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def wait_for(job_id: str, timeout: float = 120.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = next(j for j in jobs.list_jobs() if j["id"] == job_id)
        if job["state"] != "running":
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still running after {timeout}s")


@pytest.mark.slow
def test_background_run_writes_results_and_home_shows_it(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.text_input(key="home_src").set_value(str(tmp_path / "x.npy"))
    at.number_input(key="home_k").set_value(4)
    at.text_input(key="home_out").set_value(str(tmp_path / "out"))
    next(b for b in at.button if b.label == "Start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Started" in at.success[0].value
    [job] = jobs.list_jobs()
    assert job["state"] == "running" and job["out"] == str((tmp_path / "out").resolve())
    done = wait_for(job["id"])
    assert done["state"] == "complete", done["log_tail"]
    assert done["progress_info"]["stage"] == "write"
    res = Results.load(tmp_path / "out")
    assert res.n_items == 300 and res.n_clusters == 4
    at.run()  # a fresh run of the page (as after a browser refresh) finds the finished job
    assert any("finished" in m.value for m in at.markdown)
    assert (tmp_path / "out").resolve() in jobs.find_runs([tmp_path])


def test_failed_run_reports_its_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    np.save(tmp_path / "x.npy", np.ones((5, 3), dtype=np.float32))
    job = jobs.start("cli", ["run", "--embeddings", str(tmp_path / "x.npy"), "--clusters", "50"], tmp_path / "out")
    done = wait_for(job["id"])
    assert done["state"] == "failed" and done["rc"] != 0
    assert "n_clusters must be between 1 and the number of items (5), got 50" in done["log_tail"]


def test_start_refuses_a_folder_that_is_not_a_results_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(SemDedupError, match="not a semdedup results folder"):
        jobs.start("cli", ["run"], tmp_path / "busy")
    with pytest.raises(SemDedupError, match="job kind"):
        jobs.start("shell", [], tmp_path / "x")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_demo_job_with_an_unknown_demo_fails_with_its_message(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    job = jobs.start("demo", ["nope"], tmp_path / "out")
    done = wait_for(job["id"])
    assert done["state"] == "failed"
    assert "demo must be one of" in done["log_tail"]


@pytest.mark.slow
def test_demo_flag_builds_in_the_background_then_opens(tmp_path, monkeypatch):
    """`streamlit run app.py -- --demo KIND` (the README's first command uses the text demo; the image
    demo builds faster): nothing built → a background build with a note on Home → opened when done."""
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)
    monkeypatch.setattr("sys.argv", ["app.py", "--demo", "images"])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("Building the offline **images** demo" in i.value for i in at.info)
    [job] = jobs.list_jobs()
    assert job["kind"] == "demo" and job["args"] == ["images"] and job["state"] == "running"
    assert at.session_state["sd_results_dir"] is None
    at.run()  # the build is listed as building, with no second Build button for it
    assert "home_demo_build_images" not in [b.key for b in at.button]
    assert "home_demo_build_text" in [b.key for b in at.button]
    assert any("**images** demo — building in the background" in m.value for m in at.markdown)

    at2 = AppTest.from_file(APP, default_timeout=60).run()  # a second browser tab awaits the same build
    assert len(jobs.list_jobs()) == 1 and not at2.error

    done = wait_for(job["id"], timeout=600)
    assert done["state"] == "complete", done["log_tail"]
    at.run()  # Home's poll sees the finished build and opens it
    assert at.session_state["sd_results_dir"] == done["out"]
    assert at.session_state["sd_waiting_demo"] is None

    fresh = AppTest.from_file(APP, default_timeout=60).run()  # once built, it opens straight away
    assert fresh.session_state["sd_results_dir"].endswith("demo-images")
    assert not fresh.info or not any("Building" in i.value for i in fresh.info)
    assert len(jobs.list_jobs()) == 1  # nothing rebuilt

    monkeypatch.setattr("sys.argv", ["app.py", "--demo", "audio"])
    bad = AppTest.from_file(APP, default_timeout=60).run()
    shown = [e.value.replace("\\", "") for e in bad.error]  # Markdown-escaped so that it shows literally
    assert any("--demo must be one of text, images, got 'audio'" in m for m in shown), shown
