"""The offline demo datasets: built from pip packages into the cache, and the image demo's figures."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import brute_force_scores

from semdedup_core.errors import SemDedupError
from semdedup_core.ingest.demo import (
    DEMO_EPS,
    FORTUNE_FILES,
    build_text_data,
    cache_dir,
    demo_clusters,
    fortune_dir,
    parse_fortunes,
    run_demo,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    old = os.environ.get("SEMDEDUP_CACHE")
    path = tmp_path_factory.mktemp("cache")
    os.environ["SEMDEDUP_CACHE"] = str(path)
    yield path
    if old is None:
        del os.environ["SEMDEDUP_CACHE"]
    else:
        os.environ["SEMDEDUP_CACHE"] = old


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SEMDEDUP_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "semdedup"
    with pytest.raises(SemDedupError, match="demo must be one of text, images, got 'audio'"):
        run_demo("audio")


def test_parse_fortunes():
    src = (
        "%% $FreeBSD$\n%\nFirst quote,\n\ttwo lines.\n%\n%\nSecond.\n\t\t-- Someone\n%\n\n%\nLast, no trailing percent"
    )
    assert parse_fortunes(src) == ["First quote,\n\ttwo lines.", "Second.\n\t\t-- Someone", "Last, no trailing percent"]


def test_text_data_is_built_once_without_the_offensive_collections(cache):
    path = build_text_data()
    assert path.is_relative_to(cache)
    df = pd.read_parquet(path)
    assert 13_000 < len(df) < 15_000 and df["id"].is_unique
    # every quote of the four collections, and none from the offensive (-o, rot13) or limerick files
    src = fortune_dir()
    wanted = {q for name in FORTUNE_FILES for q in parse_fortunes((src / name).read_text(encoding="latin-1"))}
    assert set(df["text"]) == wanted and set(df["source"]) == set(FORTUNE_FILES)
    left_out = [p for p in src.iterdir() if p.suffix != ".dat" and p.name not in FORTUNE_FILES]
    assert {p.name for p in left_out} >= {"fortunes-o", "limerick"}
    for p in left_out:
        raw = p.read_text(encoding="latin-1")
        quotes = set(parse_fortunes(raw)) | set(parse_fortunes(codecs.decode(raw, "rot13")))
        assert not quotes & set(df["text"]), p.name
    assert {"40 isn't old.  If you're a tree.", "Forty isn't old, if you're a tree."} <= set(df["text"])
    mtime = path.stat().st_mtime_ns
    assert build_text_data() == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert demo_clusters(len(df)) == 59 and demo_clusters(3) == 1


@pytest.mark.slow
def test_image_demo_flags_derived_copies_and_not_unrelated_photos(cache):
    """The done-when figure: at the demo's eps, derived copies are removed (as duplicates of their own
    photo) while no image is removed as a duplicate of a different photograph."""
    results = run_demo("images")
    out = cache / "runs" / "demo-images"
    assert Path(results.path) == out
    items = pd.read_parquet(out / "items.parquet")
    assert 250 <= len(items) <= 400
    assert {"path", "source", "transform", "group", "role"} <= set(items.columns)
    assert all(Path(p).is_absolute() and Path(p).is_relative_to(cache) and Path(p).is_file() for p in items["path"])
    assert pd.read_parquet(out / "errors.parquet").empty
    emb = np.load(out / "embeddings.npy")
    max_sim, dup_of = brute_force_scores(emb, items)  # the same contract as --embeddings runs
    np.testing.assert_allclose(items["max_sim"].to_numpy(), max_sim, atol=1e-5)
    assert [d if isinstance(d, str) else None for d in items["dup_of"]] == dup_of

    eps = DEMO_EPS["images"]
    src = items["source"].to_numpy()
    role = items["role"].to_numpy()
    where = {i: n for n, i in enumerate(items["id"])}
    dup_src = np.array([src[where[d]] if isinstance(d, str) else None for d in items["dup_of"]])
    removed = items["max_sim"].to_numpy() > 1 - eps
    photos = role != "region"
    expected = photos.sum() - len(set(src[photos]))  # all but one image of each photo's group
    copies_removed = (removed & photos & (dup_src == src)).sum()
    across = (removed & (dup_src != src)).sum()
    assert copies_removed >= 0.9 * expected, (copies_removed, expected)
    assert across == 0
    # and the unrelated photographs are far apart: no two different photos come near the threshold
    sims = emb[photos] @ emb[photos].T
    other = src[photos][:, None] != src[photos][None, :]
    assert sims[other].max() < 1 - eps - 0.05

    again = run_demo("images")  # a finished run is returned as it is
    assert again.n_items == results.n_items and again.n_removed(eps) == results.n_removed(eps)


def test_concurrent_builds_of_the_same_data_both_succeed(tmp_path):
    from semdedup_core.ingest.demo import _build_atomically

    target = tmp_path / "data"

    def build_with_a_rival(tmp):
        (tmp / "x").write_text("mine")
        _build_atomically(target, lambda t: (t / "x").write_text("rival"))  # finishes first

    assert _build_atomically(target, build_with_a_rival) == target
    assert (target / "x").read_text() == "rival" and (target / ".complete").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary folder left behind
