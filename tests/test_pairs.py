"""Pairs, groups and chains at an ε; word diffs; Markdown escaping of dataset text."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import results_from_frame
from markdown_it import MarkdownIt

from semdedup_app.markdown import diff_markdown, escape_markdown
from semdedup_core import Results, SemDedupError
from semdedup_core.explore.groups import Groups, build_index, removal_groups
from semdedup_core.explore.pairs import (
    page,
    pairs_frame,
    showcase_pairs,
    word_diff,
)


def hand_results(folder: Path, max_sim: dict[int, float] | None = None) -> Results:
    """Six items, two clusters. Cluster 0: a (kept) ← b (0.97) ← c (0.95 to b); d ← a (0.90).
    Cluster 1: e (kept) ← f (0.99)."""
    items = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "cluster": [0, 0, 0, 0, 1, 1],
            "dist_to_centroid": [0.3, 0.2, 0.1, 0.05, 0.2, 0.1],
            "rank": [0, 1, 2, 3, 0, 1],
            "max_sim": np.array([-1.0, 0.97, 0.95, 0.90, -1.0, 0.99], dtype=np.float32),
            "dup_of": ["", "a", "b", "a", "", "e"],
        }
    )
    items.loc[items["dup_of"] == "", "dup_of"] = None
    for row, value in (max_sim or {}).items():
        items.loc[row, "max_sim"] = np.float32(value)
    return results_from_frame(items, {"counts": {"clusters": 2}}, folder)


def test_dup_rows_maps_ids_to_rows(tmp_path):
    assert hand_results(tmp_path).dup_rows.tolist() == [-1, 0, 1, 0, -1, 4]


def walk_roots(dup: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """Each item's group: follow dup_of while the item is removed (the definition, link by link)."""
    root = np.arange(len(dup))
    for i in range(len(dup)):
        while removed[root[i]]:
            root[i] = dup[root[i]]
    return root


def test_groups_follow_removed_predecessors(tmp_path):
    res = hand_results(tmp_path)
    found = removal_groups(res, 0.06)  # threshold 0.94: b, c, f go; d (0.90) stays
    assert found.n_removed == 3 and found.n_groups == 2
    assert found.table["id"].tolist() == ["a", "e"] and found.table["removed"].tolist() == [2, 1]
    assert found.members(0).tolist() == [1, 2]  # b, and c through b (a chain a → b → c)
    # at a stricter ε, c's predecessor b is kept, so the chain ends at b
    found = removal_groups(res, 0.04)  # threshold 0.96: b and f
    assert found.table["id"].tolist() == ["a", "e"] and found.members(0).tolist() == [1]


def test_a_long_chain_is_one_group():
    n = 1000
    dup = np.arange(-1, n - 1)  # item i duplicates i - 1
    falling = np.r_[-1.0, np.linspace(0.99, 0.9, n - 1)].astype(np.float32)  # each less similar than the last
    index = build_index(falling, dup)
    assert (index.top == 0).all()  # when an item goes, the ones before it are gone already: it joins item 0
    rising = np.r_[-1.0, np.linspace(0.9, 0.99, n - 1)].astype(np.float32)  # each more similar than the last
    index = build_index(rising, dup)
    assert index.size[index.order == 1].tolist() == [n - 1]  # item 1 goes last, with all the others behind it
    for eps in (0.015, 0.05, 0.2):  # the items above 1 - eps are the chain's end: one group under the last kept
        removed = rising > np.float32(1 - eps)
        found = Groups(index, int(removed.sum()), 0, pd.DataFrame(), rising, np.float32(1 - eps))
        first = int(np.argmax(removed))
        np.testing.assert_array_equal(found.members(first - 1), np.arange(first, n))


def test_groups_match_a_walk_on_a_random_forest(tmp_path):
    """Chains long and short, many tied scores, exact copies above 1: at every ε, every group's size and
    members as following each chain link by link gives."""
    rng = np.random.default_rng(3)
    n = 3000
    dup = np.full(n, -1)
    for i in range(1, n):
        if rng.random() < 0.9:  # a predecessor: mostly the one just before (long chains), else any earlier
            dup[i] = i - 1 if rng.random() < 0.7 else int(rng.integers(0, i))
    levels = np.r_[np.linspace(0.5, 1.0, 40), 1.0000001].astype(np.float32)
    scores = np.where(dup >= 0, rng.choice(levels, n), -1.0).astype(np.float32)
    index = build_index(scores, dup)
    for eps in (0.0, 0.01, 0.1, 0.25, 0.5):
        removed = scores > np.float32(1 - eps)
        root = walk_roots(dup, removed)
        want = np.bincount(root[removed], minlength=n)
        m = int(removed.sum())
        starts = index.top_score[:m] <= np.float32(1 - eps)
        got = np.bincount(index.top[:m][starts], weights=index.size[:m][starts], minlength=n).astype(int)
        np.testing.assert_array_equal(got, want)
        for r in np.flatnonzero(want)[:20]:
            members = np.sort(np.flatnonzero(removed & (root == r)))
            found = Groups(index, m, 0, pd.DataFrame(), scores, np.float32(1 - eps))
            np.testing.assert_array_equal(found.members(int(r)), members)
    assert np.bincount(np.maximum(dup, 0))[0] > 0


def test_group_tree_shows_chains_under_their_cause(tmp_path):
    res = hand_results(tmp_path)
    found = removal_groups(res, 0.2)  # b, c, d, f
    tree = found.tree(0, res.dup_rows, res.items["rank"].to_numpy())
    assert tree == [(0, 0), (1, 1), (2, 2), (3, 1)]  # a; b; c under b (a chain a→b→c); d
    assert found.table["id"].tolist() == ["a", "e"] and found.table["removed"].tolist() == [3, 1]
    assert found.table["removed"].sum() == res.n_removed(0.2) == found.n_removed


def test_pairs_frame_counts_sorts_and_filters(tmp_path):
    res = hand_results(tmp_path)
    e = 0.2
    by_sim = pairs_frame(res, e, sort="similarity")
    assert len(by_sim) == res.n_removed(e) == 4
    assert by_sim["id"].tolist() == ["f", "b", "c", "d"]
    border = pairs_frame(res, e, sort="borderline")
    assert border["id"].tolist() == ["d", "c", "b", "f"]
    assert np.allclose(border["margin"], border["max_sim"] - 0.8)
    assert (np.diff(border["margin"]) >= 0).all()
    by_cluster = pairs_frame(res, e, sort="cluster")
    assert by_cluster["id"].tolist() == ["b", "c", "d", "f"]
    assert pairs_frame(res, e, clusters=[1])["id"].tolist() == ["f"]
    assert set(pairs_frame(res, e, sim_range=(0.94, 0.98))["id"]) == {"b", "c"}
    assert by_sim["dup_of"].tolist() == ["e", "a", "b", "a"]
    with pytest.raises(SemDedupError, match="sort must be one of"):
        pairs_frame(res, e, sort="nope")


def test_paging_clips_and_counts():
    frame = pd.DataFrame({"x": range(23)})
    part, n_pages = page(frame, 0, 10)
    assert n_pages == 3 and part["x"].tolist() == list(range(10))
    part, _ = page(frame, 2, 10)
    assert part["x"].tolist() == [20, 21, 22]
    part, _ = page(frame, 99, 10)
    assert part["x"].tolist() == [20, 21, 22]
    assert page(frame.iloc[:0], 0, 10)[1] == 1
    with pytest.raises(SemDedupError):
        page(frame, 0, 0)


def test_pairs_on_planted_duplicates_agree_with_results(text_results):
    res = text_results
    for e in (0.01, 0.05, 0.2):
        frame = pairs_frame(res, e)
        assert sorted(frame["id"]) == sorted(res.removed(e)["id"])
        assert (res.items["id"].to_numpy()[frame["dup_row"]] == frame["dup_of"].to_numpy()).all()
        assert (frame["max_sim"] > 1 - e).all()


def test_showcase_prefers_pairs_with_a_kept_target(tmp_path):
    res = hand_results(tmp_path)
    best = showcase_pairs(res, 0.2)
    # cluster 0's most similar removal is b (0.97, target a kept), then c (0.95, target b removed)
    assert best["id"].tolist() == ["f", "b"]
    res = hand_results(tmp_path / "b", {1: 0.94})  # now c (0.95 to removed b) is more similar than b
    assert showcase_pairs(res, 0.2)["id"].tolist() == ["f", "b"]


def test_showcase_pairs_one_per_cluster_and_removed(text_results):
    res = text_results
    best = showcase_pairs(res, 0.1)
    assert 1 <= len(best) <= 6
    assert best["cluster"].is_unique
    assert set(best["id"]) <= set(res.removed(0.1)["id"])
    kept_targets = ~res.removed_mask(0.1)[best["dup_row"].to_numpy()]
    assert kept_targets.all()  # the planted data has enough unchained pairs
    assert (np.diff(best["max_sim"]) <= 0).all()


def test_word_diff_marks_only_changed_words():
    a, b = word_diff("the quick brown fox", "the quick red fox\njumps")
    assert [t for t, d in a if d] == ["brown"]
    assert [t for t, d in b if d] == ["red", "jumps"]
    assert "".join(t for t, _ in b) == "the quick red fox\njumps"
    same_a, same_b = word_diff("x y", "x y")
    assert not any(d for _, d in same_a + same_b)


def _rendered_text(md: str) -> str:
    out = MarkdownIt("commonmark").render(md)
    assert "<script" not in out and "<strong" not in out and "<h1" not in out and "<a " not in out
    text = re.sub(r"<[^>]+>", "", out)
    # U+2060 (word joiner, invisible) is what keeps bare URLs from becoming links
    return html.unescape(text).replace("\u00a0", " ").replace("\u2060", "").strip()


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "**bold** # heading [link](http://x) $x^2$ :red[red] `code`",
        "# a heading",
        "1. not a list\n- nor this\n> nor a quote",
        "    indented code? no",
        "a & b &amp; c <b>tag</b> \\escaped\\",
    ],
)
def test_escape_markdown_shows_text_literally(text):
    rendered = _rendered_text(escape_markdown(text))
    assert " ".join(rendered.split()) == " ".join(text.split())


def test_diff_markdown_escapes_and_highlights():
    a, b = word_diff("<script>alert(1)</script> same", "**bold** same")
    md = diff_markdown(b, "red")
    assert md.startswith(":red-background[\\*\\*bold\\*\\*]")
    assert "<script>" not in diff_markdown(a, "green")
    assert diff_markdown(a, "green").startswith(":green-background[\\<script\\>alert\\(1\\)\\</script\\>]")


def test_similarity_range_keeps_identical_items_scored_above_one(tmp_path):
    res = hand_results(tmp_path, {5: 1.0000001})
    assert res.n_removed(0.2) == 4
    assert len(pairs_frame(res, 0.2, sim_range=(-1.0, 1.0))) == 4
    assert set(pairs_frame(res, 0.2, sim_range=(0.96, 1.0))["id"]) == {"b", "f"}
    assert set(pairs_frame(res, 0.2, sim_range=(0.96, 0.999))["id"]) == {"b"}
