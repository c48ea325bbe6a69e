"""Sharing the explorer (AppTest; the served-app check is tests/test_browser_sharing.py): read-only mode
opens only the folders it was given, offers no path box, run or demo building, writes nothing into a
results folder and shows images only from under a run's input; allowed roots bound what Home opens;
at most two background runs; the Review page's "may this reviewer write labels" predicate."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_app import access, jobs
from semdedup_app.identity import Reviewer
from semdedup_core import SemDedupError
from semdedup_core.results.folder import ResultsFolder

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["threshold", "pairs", "clusters", "map", "export", "stakeholder"]


@pytest.fixture(autouse=True)
def _env(clean_app_env):
    """Every test here starts the app as a fresh user would (conftest)."""


def app(*argv: str, page: str | None = None) -> AppTest:
    import sys

    sys.argv[:] = ["app.py", *argv]
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["map_method"] = "pca"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def test_read_only_home_has_no_path_box_runs_or_demos(text_results, image_results, tmp_path):
    shutil.copytree(text_results.path, sa.demo_folder("text"))  # a built demo is not offered either
    at = app("--read-only", "--results", str(text_results.path), "--results", str(image_results.path))
    assert at.session_state["sd_results_dir"] == str(text_results.path)
    assert not at.text_input, [t.key for t in at.text_input]
    labels = [b.label for b in at.button]
    assert labels == ["Open", "Open"]  # the two shared folders, nothing else
    assert not [b for b in at.button if b.key and b.key.startswith(("home_demo", "home_recent", "home_job"))]
    assert not any("Start a run" in s.value or "Offline demos" in s.value for s in at.subheader)
    at.button(key="home_shared_1").click().run()
    assert at.session_state["sd_results_dir"] == str(image_results.path.resolve())
    # nothing else can be opened, even by setting the session's folder
    at.session_state["sd_results_dir"] = str(sa.demo_folder("text"))
    at.run()
    assert any("not one of the results folders this read\\-only explorer shares" in e.value for e in at.error)
    with pytest.raises(SemDedupError, match="read-only"):
        jobs.start("demo", ["text"], tmp_path / "elsewhere")


def test_read_only_via_the_environment_and_allowed_roots(text_results, tmp_path, monkeypatch):
    root = tmp_path / "shared"
    shutil.copytree(text_results.path, root / "team" / "run-a")
    monkeypatch.setenv("SEMDEDUP_READ_ONLY", "1")
    monkeypatch.setenv("SEMDEDUP_ALLOWED_ROOTS", str(root))
    at = app()
    assert [t.value for t in at.text] == ["run-a"] and not at.text_input
    at.button(key="home_shared_0").click().run()
    assert at.session_state["sd_results_dir"] == str((root / "team" / "run-a").resolve())
    assert "Open:" in at.success[0].value


def test_read_only_pages_write_nothing_into_the_results_folder(text_results, tmp_path):
    folder = shutil.copytree(text_results.path, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "*map-*"))
    before = sorted(p.name for p in folder.iterdir())
    at = app("--read-only", "--results", str(folder))
    for page in PAGES:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
    at.switch_page(sa.PAGES["export"]).run()
    assert not [b for b in at.button if b.key == "exp_write"]
    assert any("read-only: exports are downloads only" in c.value for c in at.caption)
    at.button(key="exp_prepare").click().run()
    assert at.get("download_button")  # downloads still work
    at.switch_page(sa.PAGES["map"]).run()
    for _ in range(60):  # the PCA map is computed in the background, kept in memory
        if len(at.get("plotly_chart")) == 2:
            break
        time.sleep(0.5)
        at.run()
    assert len(at.get("plotly_chart")) == 2 and not at.exception
    assert sorted(p.name for p in folder.iterdir()) == before  # no map, no export, no lock left behind


def test_a_results_folder_that_cannot_be_written_still_shows_its_map(text_results, tmp_path):
    """Before, the map's write into a read-only folder failed and the Map page showed only an error. (The
    write is made to fail by a folder standing where the map file goes: this works for root too.)"""
    folder = shutil.copytree(text_results.path, tmp_path / "run", ignore=shutil.ignore_patterns("exports", "*map-*"))
    (folder / "map-pca.parquet").mkdir()
    (folder / "map-pca.parquet" / "keep").write_text("a folder in the way")
    at = app("--results", str(folder), page="map")
    for _ in range(60):
        if len(at.get("plotly_chart")) == 2:
            break
        time.sleep(0.5)
        at.run()
    assert len(at.get("plotly_chart")) == 2 and not at.error and not at.exception  # items and centres


def test_read_only_images_only_from_under_the_runs_input(shared_image_run, image_results, monkeypatch):
    res, outside = shared_image_run
    assert res.run["input"]["kind"] == "shards"
    assert access.input_roots(res.run) == [Path(res.run["input"]["path"]).resolve()]
    table = {"input": {"kind": "table", "path": str(res.path / "t.parquet")}}  # a table: its folder
    assert access.input_roots(table) == [res.path.resolve()] and access.input_roots({}) == []
    inside = res.items["path"][res.items["id"] == "s3"].iat[0]
    secret = res.items["path"][res.items["id"] == "private"].iat[0]
    assert secret == str(outside)
    # outside read-only mode everything readable is shown
    assert sa.image(res, inside)[0] is not None and sa.image(res, secret)[0] is not None
    monkeypatch.setenv("SEMDEDUP_READ_ONLY", "1")
    assert sa.image(res, inside)[0] is not None
    data, why = sa.image(res, secret)
    assert data is None and why == "not shown: outside this run's input folder"
    link = Path(inside).parent / "sneaky.png"  # a link inside the folder to the file outside
    link.symlink_to(outside)
    try:
        assert sa.image(res, link) == (None, "not shown: outside this run's input folder")
    finally:
        link.unlink()
    # a run on an embedding matrix records no input folder: no image is shown in read-only mode
    assert sa.image(image_results, image_results.items["path"].iat[0])[1] == (
        "not shown: this run records no input folder"
    )
    assert sa.image_bytes(inside) is None  # without the run there is nothing to check it against
    at = app("--read-only", "--results", str(res.path), page="pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.5).run()
    at.selectbox(key="pairs_per_page").set_value(50).run()
    warnings = [w.value for w in at.warning]
    assert any("outside this run" in w and "private" in w for w in warnings), warnings
    assert len(at.get("image")) >= 1  # the images inside the input folder are shown


def test_allowed_roots_bound_what_home_opens_and_runs(text_results, tmp_path, monkeypatch):
    root = tmp_path / "allowed"
    inside = shutil.copytree(text_results.path, root / "run")
    monkeypatch.setenv("SEMDEDUP_ALLOWED_ROOTS", str(root))
    at = app()
    at.text_input(key="home_path").set_value(str(text_results.path))
    at.button[0].click().run()
    assert at.session_state["sd_results_dir"] is None
    assert "outside the folders this explorer may use" in at.error[0].value
    at.text_input(key="home_path").set_value(str(inside))
    at.button[0].click().run()
    assert at.session_state["sd_results_dir"] == str(inside)
    np.save(tmp_path / "x.npy", np.ones((4, 2), np.float32))
    at.text_input(key="home_src").set_value(str(tmp_path / "x.npy"))
    at.button(key="FormSubmitter:home_run-Start").click().run()
    assert any("outside the folders this explorer may use" in e.value for e in at.error)
    assert not jobs.list_jobs()
    with pytest.raises(SemDedupError, match="outside the folders"):
        jobs.start("cli", ["run", "--embeddings", str(root / "x.npy")], tmp_path / "out-elsewhere")


@pytest.mark.slow
def test_at_most_two_background_runs(tmp_path):
    """A third run is refused with a message while two are going; a folder another process writes is
    refused naming that process."""
    x = np.random.default_rng(0).normal(size=(3000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    args = ["run", "--embeddings", str(tmp_path / "x.npy"), "--clusters", "3"]
    started = [jobs.start("cli", args, tmp_path / f"r{i}") for i in range(2)]
    try:
        with pytest.raises(SemDedupError, match="2 runs are already going .* at most 2 run at a time"):
            jobs.start("cli", args, tmp_path / "r2")
    finally:
        deadline = time.monotonic() + 240
        while any(j["state"] == "running" for j in jobs.list_jobs()) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert [j["state"] for j in jobs.list_jobs()] == ["complete", "complete"], [j["log_tail"] for j in jobs.list_jobs()]
    assert {j["id"] for j in jobs.list_jobs()} == {j["id"] for j in started}
    with ResultsFolder(tmp_path / "r3").lock():  # this process writes r3 now
        import os

        with pytest.raises(SemDedupError, match=f"being written by another run \\(pid {os.getpid()}\\)"):
            jobs.start("cli", args, tmp_path / "r3")


def test_labels_may_be_written_by_named_reviewers_outside_shared_folders(text_results, tmp_path, monkeypatch):
    """(Issue 19 sharpened this: a bare name proves nothing, and the store must be one named at start.)"""
    store = tmp_path / "labels" / "team.parquet"
    inside = text_results.path / "team.parquet"
    ana, cy = Reviewer("ana", "key"), Reviewer("cy", "login")
    assert access.may_write_labels(None, None, text_results.path)  # not read-only: anyone, anywhere
    monkeypatch.setenv("SEMDEDUP_READ_ONLY", "1")
    argv = ["app.py", "--results", str(text_results.path), "--reviewer", "ana", "--labels", str(store)]
    monkeypatch.setattr("sys.argv", [*argv, "--labels", str(inside)])
    monkeypatch.setenv("SEMDEDUP_REVIEWERS", "bo, cy")
    assert access.reviewers() == {"ana", "bo", "cy"}
    assert access.may_write_labels(ana, store, text_results.path)
    assert access.may_write_labels(cy, store, text_results.path)
    for who in (Reviewer("mallory", "key"), "ana", Reviewer("ana", "typed"), None):  # unlisted, or unproven
        assert "only the reviewers named" in access.labels_problem(who, store, text_results.path)
    assert "only into the labels stores named" in access.labels_problem(ana, tmp_path / "typed.parquet")
    assert "only into the labels stores named" in access.labels_problem(ana, None, text_results.path)
    assert "shared results folder" in access.labels_problem(ana, inside)  # named, but in a shared folder


def test_full_size_views_are_built_only_when_their_popover_opens(image_results):
    """Before, every item on a Pairs page built a 2048-px image whether or not it was ever opened."""
    at = app("--results", str(image_results.path), page="pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.5).run()
    thumbs = len(at.get("image"))
    assert thumbs >= 2 and not at.get("download_button")
    keys = sorted(set(re.findall(r"'(pair_\d+_\d+_(?:kept|removed)_full)'", repr(at.session_state))))
    assert len(keys) == thumbs and not any(at.session_state[k] for k in keys)
    at.session_state[keys[0]] = True  # the user opens one popover
    at.run()
    assert len(at.get("image")) == thumbs + 1 and len(at.get("download_button")) == 1
