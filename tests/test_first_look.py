"""A first view in seconds: the text demo's first look (which part, built how), the full run reusing its
embeddings without changing a result, and the app opening the first look and then the whole demo."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import planted_text_data
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import ClusterConfig, EmbedConfig, dedup, run_input
from semdedup_core.ingest.demo import (
    FIRST_LOOK_ITEMS,
    build_text_data,
    default_out,
    first_look_folder,
    first_look_rows,
    lexical_pairs,
)
from semdedup_core.ingest.embed import reusable_embeddings
from semdedup_core.ingest.inputs import load_input
from semdedup_core.results import io

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_lexical_pairs_find_rewordings_and_only_them():
    texts = [
        "40 isn't old.  If you're a tree.",
        "The quick brown fox jumps over the lazy dog.",
        "Forty isn't old, if you're a tree.",
        "Never trust a computer you can't lift.",
        "A computer you cannot lift should never be trusted.",
        "Bread and butter for breakfast again.",
    ]
    a, b = lexical_pairs(texts)
    assert (0, 2) in set(zip(a.tolist(), b.tolist(), strict=True))
    assert all(i < j for i, j in zip(a, b, strict=True))
    assert not {1, 5} & (set(a.tolist()) | set(b.tolist()))  # nothing shares words with these


def test_first_look_of_the_fortunes(tmp_path, monkeypatch):
    """On the real collection: 1,000 of the 13,889 quotes, up to half of them the two sides of lexically
    close pairs (most similar first), the rest a seeded random sample; the same every time."""
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path))
    df = pd.read_parquet(build_text_data())
    texts = df["text"].tolist()
    rows = first_look_rows(texts, FIRST_LOOK_ITEMS["text"])
    assert len(rows) == 1000 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, first_look_rows(texts, 1000))
    chosen = set(df["text"].iloc[rows])
    assert {"When you dial a wrong number you never get a busy signal.",
            "When you dial a wrong number, you never get a busy signal"} <= chosen  # fmt: skip
    a, b = lexical_pairs(texts)
    both = np.isin(a, rows) & np.isin(b, rows)
    assert both[:200].all() and 250 <= both.sum() <= 400  # the closest pairs, whole
    assert 450 <= np.isin(rows, np.r_[a, b]).sum() <= 700  # half from pairs, and random picks that are in one
    assert np.array_equal(first_look_rows(texts[:50], 80), np.arange(50))  # asking for more than there is


@pytest.fixture(scope="module")
def fortunes_tables(tmp_path_factory):
    """A table of 120 real quotes and a first look of 40 of them (the same ids and texts)."""
    root = tmp_path_factory.mktemp("reuse")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMDEDUP_CACHE", str(root / "cache"))
        df = pd.read_parquet(build_text_data())
    short = df[df["text"].str.len() < 120]  # short quotes: the model's time is what this test spends
    rows = np.sort(np.random.default_rng(0).choice(len(short), 120, replace=False))
    full = short.iloc[rows].reset_index(drop=True)
    io.write_parquet(root / "full.parquet", full)
    io.write_parquet(root / "part.parquet", full.iloc[::3].reset_index(drop=True))
    return root


def test_the_full_run_reuses_the_first_looks_embeddings_and_gets_the_same_results(fortunes_tables):
    root = fortunes_tables
    embed = EmbedConfig(text_column="text", id_column="id", batch_size=32)
    part = run_input(root / "part.parquet", root / "part", embed=embed, cluster=ClusterConfig(3))
    reused = run_input(root / "full.parquet", root / "reused", embed=embed, cluster=ClusterConfig(6), reuse=part.path)
    fresh = run_input(root / "full.parquet", root / "fresh", embed=embed, cluster=ClusterConfig(6))
    assert reused.run["embed"]["reused"] == part.n_items == 40
    assert reused.run["embed"]["reused_from"] == str(part.path.resolve())
    assert fresh.run["embed"]["reused"] == 0
    where = {i: r for r, i in enumerate(reused.items["id"])}
    rows = [where[i] for i in part.items["id"]]
    np.testing.assert_allclose(reused.embeddings[rows], part.embeddings, atol=1e-6)  # copied, not recomputed
    np.testing.assert_allclose(reused.embeddings, fresh.embeddings, atol=1e-5)  # the model's own embeddings
    # and the results are those of a run that embedded everything itself
    np.testing.assert_array_equal(reused.items["cluster"], fresh.items["cluster"])
    np.testing.assert_allclose(reused.items["max_sim"], fresh.items["max_sim"], atol=1e-5)
    assert reused.items["dup_of"].fillna("").tolist() == fresh.items["dup_of"].fillna("").tolist()


def test_only_the_same_encoder_and_the_same_text_are_reused(fortunes_tables, tmp_path):
    root = fortunes_tables
    part = root / "part"
    if not (part / "run.json").exists():
        pytest.skip("needs the folder the reuse test writes")
    items = load_input(root / "full.parquet", text_column="text", id_column="id")
    encoder = json.loads((part / "run.json").read_text())["embed"]["encoder"]
    rows, vecs = reusable_embeddings(part, items, encoder)
    assert len(rows) == 40 and vecs.shape == (40, 384)
    assert reusable_embeddings(part, items, {**encoder, "name": "st:another"}) is None
    assert reusable_embeddings(tmp_path / "nothing-here", items, encoder) is None
    changed = load_input(root / "full.parquet", text_column="text", id_column="id")
    changed.texts[int(rows[0])] += " (edited)"  # same id, other text: embedded again
    rows2, _ = reusable_embeddings(part, changed, encoder)
    assert len(rows2) == 39 and rows[0] not in rows2


# -- the app: the first look opens at once, the whole demo replaces it ---------------------------------


def write_results(out: Path, extra: dict | None = None, k: int = 4):
    x, ids, cols = planted_text_data()
    return dedup(x, ids, cluster=ClusterConfig(k), out=out, columns=cols, extra=extra)


@pytest.fixture
def demo_cache(tmp_path, monkeypatch):
    """A cache where the text demo's first look is built and its full run is being built (a stand-in
    process holds the job's pid, with the progress a real build writes)."""
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)
    full = default_out("text")
    first = write_results(first_look_folder(full), {"first_look": {"of": str(full.resolve()), "items_total": 13889}})
    building = subprocess.Popen(["sleep", "120"])
    jobs = tmp_path / "cache" / "jobs"
    jobs.mkdir(parents=True)
    progress = jobs / "j1.progress.json"
    io.write_json(progress, {"stage": "embed", "done": 3000, "total": 13889, "time": time.time()})
    job = {"id": "j1", "kind": "demo", "args": ["text"], "out": str(full.resolve()), "label": "text demo"}
    job |= {"progress": str(progress), "log": str(jobs / "j1.log"), "started": time.time(), "pid": building.pid}
    io.write_json(jobs / "j1.json", job)
    yield full, first
    building.send_signal(signal.SIGTERM)
    building.wait()


def test_demo_flag_opens_the_first_look_then_the_whole_demo(demo_cache, monkeypatch):
    full, first = demo_cache
    monkeypatch.setattr("sys.argv", ["app.py", "--demo", "text"])
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert Path(at.session_state["sd_results_dir"]) == first.path
    assert at.session_state["sd_eps"] == 0.1  # the demo's suggested eps
    assert any(f"**First look**: {first.n_items} of the 13,889 items" in i.value for i in at.info)
    assert any(s.value.startswith("What it removes at ε = 0.1") for s in at.subheader)
    assert len([m for m in at.metric if m.label == "similarity"]) == 3  # three example pairs on Home
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert (
        f"First look: {first.n_items} of 13,889 items. The whole demo is being built (embed 3,000/13,889)" in captions
    )
    assert len(list((full.parent.parent / "jobs").glob("*.json"))) == 2  # no second build was started

    write_results(full, k=5)  # the background build finishes
    at.run()
    assert not at.exception, at.exception
    assert Path(at.session_state["sd_results_dir"]) == full
    assert not any("First look" in i.value for i in at.info)
    assert "First look" not in " ".join(c.value for c in at.sidebar.caption)


def test_any_page_switches_from_the_first_look_to_the_whole_demo(demo_cache, monkeypatch):
    full, first = demo_cache
    monkeypatch.setattr("sys.argv", ["app.py", "--results", str(first.path)])
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(sa.PAGES["pairs"]).run()
    assert not at.exception, at.exception
    assert any(s.value == "Pairs" or "pair" in s.value.lower() for s in at.title)
    assert "The whole demo is being built" in " ".join(c.value for c in at.sidebar.caption)
    write_results(full, k=5)
    at.run()
    assert Path(at.session_state["sd_results_dir"]) == full
    assert "First look" not in " ".join(c.value for c in at.sidebar.caption)


@pytest.mark.browser
@pytest.mark.slow
def test_readme_first_command_shows_pairs_from_the_first_look_in_a_browser(tmp_path):
    """`streamlit run app.py -- --demo text` on an empty cache, in chromium: without a click, Home opens
    the first look and shows pairs it removes (bench/bench_first_view.py times this in a fresh clone)."""
    from browser import open_page, serve

    try:
        with serve(None, tmp_path, app_args=["--demo", "text"]) as url, open_page() as page:
            page.goto(url, wait_until="domcontentloaded")
            pair = page.locator('[data-testid="stMetric"]').filter(has_text="similarity").first
            pair.wait_for(timeout=300_000)
            sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
            assert "demo-text-first-look" in sidebar and "First look: 1,000 of 13,889 items" in sidebar
            body = page.locator('[data-testid="stMain"]').inner_text()
            assert "What it removes at ε = 0.1" in body and "removed" in body and "kept" in body
    finally:  # the whole demo would take minutes more: stop its build
        for job in (tmp_path / "cache" / "jobs").glob("*.json"):
            pid = json.loads(job.read_text()).get("pid") if not job.name.endswith(".progress.json") else None
            if pid:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGTERM)
