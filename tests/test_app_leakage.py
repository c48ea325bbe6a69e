"""The Leakage page (and the leaked export) through streamlit.testing's AppTest, counts against Results."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core.explore.leakage import leak_clusters, leak_pairs

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)


def open_leakage(results_dir) -> AppTest:
    os.environ["SEMDEDUP_RESULTS"] = str(results_dir)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["leakage"]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def shown_pairs(at: AppTest) -> list[tuple[str, str]]:
    """``(held-out id, training id)`` of each pair on the page, in order."""
    caps = [c.value for c in at.caption]
    held = [re.match(r"held\\?-out · (.+?) · cluster", c).group(1) for c in caps if re.match(r"held\\?-out · ", c)]
    train = [re.match(r"training, leaked · (.+?) · cluster", c).group(1) for c in caps if c.startswith("training")]
    return list(zip(held, train, strict=True))


def test_leakage_page_counts_pairs_and_paging(text_leak_results):
    res = text_leak_results
    at = open_leakage(res.path)
    for e in (0.05, 0.1, 0.2):
        at.sidebar.slider(key="sb_eps").set_value(e).run()
        n = res.n_leaked(e)
        assert metric(at, "leaked") == f"{n:,}"
        assert metric(at, "held-out items") == "30" and metric(at, "training items") == f"{res.n_items:,}"
        assert any(c.value.startswith(f"{n:,} leaked items at ε = {e:.4f}") for c in at.caption)
        want = leak_pairs(res, e)  # borderline first
        assert shown_pairs(at) == list(zip(want["ref_id"], want["id"], strict=True))[:10]
        sims = [float(m.value) for m in at.metric if m.label == "similarity"]
        np.testing.assert_allclose(sims, want["ref_sim"][:10], atol=1e-4)
        assert (np.diff(sims) >= 0).all()
        table = at.dataframe[0].value
        assert table["leaked"].tolist() == leak_clusters(res, e)["leaked"].tolist()
    at.selectbox(key="leak_sort").set_value("similarity").run()
    want = leak_pairs(res, 0.2, sort="similarity")
    assert shown_pairs(at) == list(zip(want["ref_id"], want["id"], strict=True))[:10]
    at.button(key="leak_next").click().run()
    assert shown_pairs(at) == list(zip(want["ref_id"], want["id"], strict=True))[10:20]
    # held-out text is shown literally, with the differing words marked
    at.selectbox(key="leak_per_page").set_value(50).run()
    md = [m.value for m in at.markdown]
    assert any("\\<script\\>alert\\(1\\)\\</script\\>" in m for m in md)
    assert any(":red-background[HELDOUT]" in m or ":green-background[HELDOUT]" in m for m in md)
    assert not any(m.proto.allow_html for m in at.markdown)


def test_leakage_page_with_images_and_export(image_leak_results):
    res = image_leak_results
    at = open_leakage(res.path)
    e = 0.05
    at.sidebar.slider(key="sb_eps").set_value(e).run()
    assert metric(at, "leaked") == f"{res.n_leaked(e):,}" and res.n_leaked(e) == 6
    assert len(at.get("image")) >= 2 * 6  # each leaked training image beside its held-out image
    at.switch_page(sa.PAGES["export"]).run()
    assert not at.exception
    at.radio(key="exp_which").set_value("leaked").run()
    assert at.radio(key="exp_rule").disabled
    frame = at.dataframe[0].value
    assert list(frame.columns) == ["id", "path", "cluster", "ref_sim", "ref_id", "ref_path"]
    assert sorted(frame["id"]) == sorted(res.leaked(e)["id"])
    at.button(key="exp_write").click().run()
    written = res.path / "exports" / "leaked-eps0.0500.csv"
    assert at.success and written.is_file()
    assert written.read_text().splitlines()[0] == "id,path,cluster,ref_sim,ref_id,ref_path"


def test_a_run_without_reference_says_how_to_make_one(text_results):
    at = open_leakage(text_results.path)
    assert any("--reference" in i.value for i in at.info)
    assert not at.metric
    at.switch_page(sa.PAGES["export"]).run()
    assert at.radio(key="exp_which").options == ["removed", "kept"]
