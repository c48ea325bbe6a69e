"""The explorer through streamlit.testing's AppTest: every page, the widgets, counts against Results."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core.explore.clusters import cluster_table
from semdedup_core.explore.pairs import pairs_frame

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["threshold", "pairs", "clusters", "map", "export", "stakeholder"]


@pytest.fixture(autouse=True)
def _app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.delenv("SEMDEDUP_RESULTS", raising=False)


def open_app(results_dir, page: str | None = None) -> AppTest:
    import os

    if results_dir is not None:
        os.environ["SEMDEDUP_RESULTS"] = str(results_dir)
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["map_method"] = "pca"  # keep UMAP (numba compile) out of the fast tests
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


@pytest.mark.parametrize("which", ["text_results", "image_results"])
def test_every_page_runs(which, request):
    res = request.getfixturevalue(which)
    at = open_app(res.path)
    assert "Open:" in at.success[0].value
    for page in PAGES:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert not at.error, (page, [e.value for e in at.error])
        assert at.title, page


def test_threshold_slider_and_target_fraction(text_results):
    res = text_results
    at = open_app(res.path, "threshold")
    assert metric(at, "removed") == f"{res.n_removed(0.05):,}"
    for e in (0.0, 0.02, 0.1, 0.3):
        at.slider(key="thr_eps").set_value(e).run()
        assert metric(at, "removed") == f"{res.n_removed(e):,}"
        assert metric(at, "kept") == f"{res.n_items - res.n_removed(e):,}"
        assert at.session_state["sd_eps"] == pytest.approx(e)
    at.number_input(key="thr_fraction").set_value(80.0).run()
    e = res.eps_for_kept_fraction(0.8)
    assert at.session_state["sd_eps"] == pytest.approx(e)
    assert metric(at, "kept") == f"{res.n_items - res.n_removed(e):,}"
    assert res.kept_fraction(e) >= 0.8
    # ε is shared: the pairs page and the sidebar use the value the fraction gave
    at.switch_page(sa.PAGES["pairs"]).run()
    assert at.sidebar.slider(key="sb_eps").value == pytest.approx(e)
    assert any(f"{res.n_removed(e):,} removed items" in c for c in texts(at))


def test_cluster_table_counts(text_results):
    res = text_results
    at = open_app(res.path, "threshold")
    at.slider(key="thr_eps").set_value(0.1).run()
    table = at.dataframe[0].value
    assert table["removed"].sum() == res.n_removed(0.1)
    assert table["size"].sum() == res.n_items


def _pair_captions(at):
    return [c.value for c in at.caption if c.value.startswith("removed · ")]


def test_pairs_sorting_and_paging(text_results):
    res = text_results
    at = open_app(res.path, "pairs")
    e = 0.1
    at.sidebar.slider(key="sb_eps").set_value(e).run()
    n = res.n_removed(e)
    per = 10
    assert any(f"{n:,} removed items at ε = 0.1000 match · page 1 of {-(-n // per)}" in c for c in texts(at))
    for sort in ("similarity", "borderline", "cluster"):
        at.selectbox(key="pairs_sort").set_value(sort).run()
        expect = pairs_frame(res, e, sort=sort)["id"].tolist()
        shown = [re.match(r"removed · (.+?) · cluster", c).group(1) for c in _pair_captions(at)]
        assert shown == expect[:per], sort
        sims = [float(m.value) for m in at.metric if m.label == "similarity"]
        assert np.allclose(sims, pairs_frame(res, e, sort=sort)["max_sim"][:per], atol=1e-4)
    at.button(key="pairs_next").click().run()
    shown = [re.match(r"removed · (.+?) · cluster", c).group(1) for c in _pair_captions(at)]
    assert shown == expect[per : 2 * per]
    assert any("page 2 of" in c for c in texts(at))
    at.button(key="pairs_prev").click().run()
    assert any("page 1 of" in c for c in texts(at))
    at.selectbox(key="pairs_per_page").set_value(5).run()
    assert len(_pair_captions(at)) == min(5, n)


def test_groups_view_shows_chains(text_results):
    res = text_results
    at = open_app(res.path, "pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.3).run()
    at.session_state["pairs_view"] = "Groups"
    at.run()
    assert not at.exception
    removed = res.removed_mask(0.3)
    assert any(f"caused the {res.n_removed(0.3):,} removals" in c for c in texts(at))
    # pick a group that holds a chain (an item removed as a duplicate of a removed item)
    dup = res.dup_rows
    chained = np.flatnonzero(removed & (dup >= 0) & removed[np.maximum(dup, 0)])
    assert len(chained), "the planted data should hold a chain at ε = 0.3"
    options = at.selectbox(key="pairs_group").options
    ids = res.items["id"].to_numpy()
    r = int(chained[0])
    while removed[r]:  # up the chain to its kept item
        r = int(dup[r])
    want = ids[r]
    choice = next(i for i, o in enumerate(options) if o.startswith(f"{want} ·"))
    at.selectbox(key="pairs_group").set_value(choice).run()
    chain_caps = [c for c in texts(at) if "chain" in c and "↳ ↳" in c]
    assert chain_caps, texts(at)
    chain_ids = re.search(r"chain (.+?) ·", chain_caps[0]).group(1).replace("\\", "").split(" → ")
    assert len(chain_ids) >= 3 and chain_ids[0] == want
    for earlier, later in zip(chain_ids, chain_ids[1:], strict=False):
        assert res.items.set_index("id").loc[later, "dup_of"] == earlier


def test_dataset_text_is_shown_literally(text_results):
    res = text_results
    at = open_app(res.path, "pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.3).run()
    at.selectbox(key="pairs_sort").set_value("cluster").run()
    at.selectbox(key="pairs_per_page").set_value(50).run()
    md = [m.value for m in at.markdown]
    assert any("\\<script\\>alert\\(1\\)\\</script\\>" in m for m in md), md
    assert not any("<script>" in m for m in md)
    for m in at.markdown:
        assert not m.proto.allow_html


@pytest.mark.parametrize("problem", ["missing", "partial", "version", "garbage"])
def test_bad_folders_give_a_message_not_a_traceback(problem, text_results, tmp_path):
    folder = tmp_path / "bad"
    if problem != "missing":
        shutil.copytree(text_results.path, folder)
        run = json.loads((folder / "run.json").read_text())
        if problem == "partial":
            run["status"] = "running"
        elif problem == "version":
            run["format_version"] = 999
        (folder / "run.json").write_text(json.dumps(run))
        if problem == "garbage":
            (folder / "items.parquet").write_bytes(b"not parquet")
    expected = {
        "missing": "does not exist",
        "partial": "has not finished",
        "version": "format version 999",
        "garbage": "could not read",
    }[problem]
    at = open_app(folder)
    assert expected in at.error[0].value
    for page in PAGES:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, (page, [e.value for e in at.exception])
        assert expected in at.error[0].value


def test_missing_image_files_show_a_placeholder(tmp_path):
    from conftest import make_image_results

    res = make_image_results(tmp_path / "imgs", n=12)
    for p in res.items["path"]:
        Path(p).unlink()
    at = open_app(res.path, "pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.5).run()
    assert res.n_removed(0.5) > 0
    assert any("image not found" in w.value for w in at.warning)
    at.switch_page(sa.PAGES["stakeholder"]).run()
    assert not at.exception


def test_clusters_page_shows_the_chosen_cluster(text_results):
    res = text_results
    at = open_app(res.path)
    table = cluster_table(res, 0.05)
    c = int(table.sort_values("size")["cluster"].iloc[0])  # the smallest: not the default choice
    at.session_state["sd_cluster"] = c
    at.switch_page(sa.PAGES["clusters"]).run()
    assert not at.exception
    row = table.set_index("cluster").loc[c]
    assert metric(at, "items") == f"{int(row['size']):,}"
    assert metric(at, "removed at ε") == f"{int(row['removed']):,}"
    items = at.dataframe[0].value
    assert items["rank"].tolist() == list(range(int(row["size"])))
    assert (items["status"] == "removed").sum() == row["removed"]
    at.selectbox(key="cl_order").set_value("removed").run()
    assert at.session_state["sd_cluster"] == c  # the choice survives a change of order


def test_export_page_writes_into_the_results_folder(image_results):
    res = image_results
    at = open_app(res.path, "export")
    at.radio(key="exp_fmt").set_value("txt").run()
    at.radio(key="exp_txt").set_value("path").run()
    at.button(key="exp_write").click().run()
    assert not at.exception and at.success
    out = res.path / "exports" / "removed-eps0.0500-path.txt"
    assert out.read_text().splitlines() == res.removed(0.05)["path"].tolist()
    at.button(key="exp_prepare").click().run()
    assert not at.exception


def test_a_large_export_is_written_to_the_folder_not_offered_as_a_download(text_results, monkeypatch):
    """Above DOWNLOAD_ROWS rows the Export page offers no in-memory download: it names the count, the CLI
    command, and writes the file a block at a time."""
    from semdedup_core.explore import export as export_module

    res = text_results
    monkeypatch.setattr(sa, "DOWNLOAD_ROWS", 10)
    monkeypatch.setattr(export_module, "EXPORT_BATCH_ROWS", 4)
    at = open_app(res.path, "export")
    at.radio(key="exp_which").set_value("kept").run()
    kept = res.n_items - res.n_removed(0.05)
    assert kept > 10
    assert not [b for b in at.button if b.key == "exp_prepare"]
    note = " ".join(c.value for c in at.caption)
    assert f"{kept:,} rows is more than a download" in note
    assert f"python -m semdedup_core export {res.path} --eps 0.0500 --which kept --format csv" in note.replace("\\", "")
    at.button(key="exp_write").click().run()
    assert not at.exception and at.success
    written = pd.read_csv(res.path / "exports" / "kept-eps0.0500.csv", dtype={"id": str})
    assert written["id"].tolist() == res.items.loc[~res.removed_mask(0.05), "id"].tolist()


def _plotly_array(v) -> np.ndarray:
    """A plotly JSON array: a list, or a typed array {"dtype", "bdata"} (base64)."""
    import base64

    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
    return np.asarray([np.nan if a is None else a for a in v], dtype=float)


def test_map_page_draws_points_and_centroids(text_results):
    at = open_app(text_results.path, "map")
    import time

    for _ in range(50):  # the projection is computed in a background thread
        if len(at.get("plotly_chart")) >= 1:
            break
        time.sleep(0.2)
        at.run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    fig = json.loads(charts[0].proto.spec)
    points = sum(len(t["text"]) for t in fig["data"] if t.get("mode") == "markers")
    assert points == text_results.n_items
    # one line (3 values: from, to, gap) per removed item, to its dup_of
    [line] = [t for t in fig["data"] if t.get("mode") == "lines"]
    xs = _plotly_array(line["x"])
    assert len(xs) == 3 * text_results.n_removed(0.05)
    assert np.isnan(xs[2::3]).all() and np.isfinite(xs[0::3]).all() and np.isfinite(xs[1::3]).all()


def test_home_opens_typed_and_recent_folders(text_results, image_results):
    at = open_app(None)
    assert not at.get("success")  # nothing open
    at.text_input(key="home_path").set_value(str(text_results.path))
    at.button[0].click().run()  # the form's submit button
    assert at.session_state["sd_results_dir"] == str(text_results.path)
    at2 = open_app(None)
    assert any(str(text_results.path.resolve()) == t.value for t in at2.text)
    at2.text_input(key="home_path").set_value(str(image_results.path) + "-nope")
    at2.button[0].click().run()
    assert "does not exist" in at2.error[0].value


def test_cli_flag_opens_a_folder(text_results, image_results, monkeypatch):
    """`streamlit run app.py -- --results DIR` opens DIR; without the flag, $SEMDEDUP_RESULTS does; the
    flag wins over the variable."""
    monkeypatch.setattr("sys.argv", ["app.py", "--results", str(text_results.path)])
    at = open_app(None)
    assert at.session_state["sd_results_dir"] == str(text_results.path)
    assert f"{text_results.n_items} items in" in at.success[0].value and "text\\-run" in at.success[0].value

    monkeypatch.setattr("sys.argv", ["app.py"])
    at = open_app(image_results.path)  # through SEMDEDUP_RESULTS
    assert at.session_state["sd_results_dir"] == str(image_results.path)

    monkeypatch.setattr("sys.argv", ["app.py", "--results", str(text_results.path)])
    at = open_app(image_results.path)
    assert at.session_state["sd_results_dir"] == str(text_results.path)


def test_a_built_text_demo_opens_by_itself(text_results, tmp_path):
    from semdedup_core.ingest.demo import DEMO_EPS

    shutil.copytree(text_results.path, sa.demo_folder("text"))
    at = open_app(None)
    assert at.session_state["sd_results_dir"] == str(sa.demo_folder("text"))
    assert at.session_state["sd_eps"] == pytest.approx(DEMO_EPS["text"])
    assert any("text** demo — built" in m.value for m in at.markdown)


def test_without_a_text_demo_another_built_demo_opens(image_results):
    from semdedup_core.ingest.demo import DEMO_EPS

    assert sa.demo_kinds() == ("text", "images")
    shutil.copytree(image_results.path, sa.demo_folder("images"))
    at = open_app(None)
    assert at.session_state["sd_results_dir"] == str(sa.demo_folder("images"))
    assert at.session_state["sd_eps"] == pytest.approx(DEMO_EPS["images"])


def test_conservative_rule_on_threshold_and_export(text_results):
    res = text_results
    at = open_app(res.path, "threshold")
    eps = at.session_state["sd_eps"]
    assert not any("kept-only rule" in t for t in texts(at))  # opt-in: slider moves stay a filter
    at.toggle(key="thr_conservative").set_value(True).run()
    assert not at.exception
    n_cons = res.n_removed(eps, rule="kept-only")
    assert n_cons <= res.n_removed(eps)
    shown = next(t for t in texts(at) if "kept-only rule" in t)
    assert f"removes {n_cons:,} " in shown and f"{res.n_removed(eps) - n_cons:,} of the paper's removals" in shown

    at.switch_page(sa.PAGES["export"]).run()
    at.radio(key="exp_rule").set_value("kept-only").run()
    at.button(key="exp_write").click().run()
    assert not at.exception and at.success
    written = pd.read_csv(res.path / "exports" / f"removed-eps{eps:.4f}-kept-only.csv", dtype={"id": str})
    assert sorted(written["id"]) == sorted(res.removed(eps, rule="kept-only")["id"])


def test_pairs_cluster_filter_lists_clusters_with_removals(text_results, monkeypatch):
    res = text_results
    at = open_app(res.path, "pairs")
    eps = at.session_state["sd_eps"]
    removed = res.removed(eps)
    options = at.multiselect(key="pairs_clusters").options
    assert [int(o) for o in options] == sorted(removed["cluster"].unique().tolist())
    target = int(removed["cluster"].value_counts().index[0])
    at.multiselect(key="pairs_clusters").set_value([target]).run()
    assert not at.exception
    shown = next(c.value for c in at.caption if "removed items at ε" in c.value)
    assert shown.startswith(f"{int((removed['cluster'] == target).sum()):,} removed items")
    # a smaller eps where that cluster has nothing removed: no error, nothing listed
    lonely = res.items["max_sim"][res.items["cluster"] == target].max()
    at.session_state["sd_eps"] = float(max(0.0, 1 - lonely - 1e-3))
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    monkeypatch.setattr(sa, "MAX_CLUSTER_OPTIONS", 0)  # a run with too many clusters to list
    at = open_app(res.path, "pairs")
    at.text_input(key="pairs_clusters_typed").set_value(f"{target}").run()
    shown = next(c.value for c in at.caption if "removed items at ε" in c.value)
    assert shown.startswith(f"{int((removed['cluster'] == target).sum()):,} removed items")
    at.text_input(key="pairs_clusters_typed").set_value("3, x").run()
    assert not at.exception
    assert any("got 'x'" in e.value.replace("\\", "") for e in at.error)


def test_kept_or_also_removed_agrees_with_results_at_the_boundary(text_results):
    """The earlier item of a pair is labelled 'kept' or 'also removed' by the same float64 rule that
    Results counts with. At an ε whose threshold 1 − ε lies a hair below an earlier item's float32 score
    (it rounds to that score in float32), a float32 comparison would call the item kept."""
    res = text_results
    s, dup = res.items["max_sim"].to_numpy(), res.dup_rows
    chained = [r for r in range(res.n_items) if dup[r] >= 0 and s[r] > s[dup[r]] > 0.9]
    assert chained, "the planted chain (B ← C) is in the fixture"
    row = chained[0]
    e = 1.0 - (float(s[dup[row]]) - 1e-9)
    assert not (s[dup[row]] > np.float32(1.0 - e)) and res.removed_mask(e)[dup[row]]  # the two rules disagree
    at = open_app(res.path, "pairs")
    at.session_state["sd_eps"] = e
    at.session_state["pairs_per_page"] = 50
    at.run()
    assert not at.exception
    left = [c.value for c in at.caption if c.value.startswith(("kept · ", "earlier (also removed) · "))]
    assert left
    removed = res.removed_mask(e)
    index = {i: n for n, i in enumerate(res.items["id"])}
    for caption in left:
        item = re.match(r"(?:kept|earlier \(also removed\)) · (.+?) · cluster", caption).group(1)
        assert caption.startswith("earlier (also removed)") == bool(removed[index[item]]), caption
    assert any(res.items["id"].iat[dup[row]] in c and c.startswith("earlier (also removed)") for c in left)


@pytest.mark.slow
def test_map_page_shows_the_step_it_is_on_while_umap_runs(text_results, tmp_path):
    """While the map is computed in the background the page shows a running status naming the step
    (no progress bar pretending to know how far it is), then the map."""
    import time

    shutil.copytree(text_results.path, tmp_path / "run")
    for f in (tmp_path / "run").glob("*map-*"):
        f.unlink()
    at = open_app(tmp_path / "run")
    at.session_state["map_method"] = "umap"
    at.switch_page(sa.PAGES["map"]).run()
    assert not at.exception
    assert not at.get("progress")
    [status] = at.status
    assert status.state == "running" and status.label.startswith("Map: ")
    assert re.search(r"\(\d+ s; \d+ s in all\)", status.label), status.label
    for _ in range(300):
        if len(at.get("plotly_chart")) == 2:
            break
        time.sleep(0.2)
        at.run()
    assert len(at.get("plotly_chart")) == 2 and not at.status, (
        [s.label for s in at.status],
        len(at.get("plotly_chart")),
        [e.value for e in at.error],
    )


def test_a_large_group_is_drawn_fifty_items_at_a_time(tmp_path):
    """A group of 120 removals draws its first 50 items and a button that adds 50 more (a rerun draws what
    is shown again: at 20M items a group of hundreds would take most of the rerun)."""
    from conftest import results_from_frame

    n = 121
    frame = pd.DataFrame(
        {
            "id": [f"g{j:03d}" for j in range(n)],
            "cluster": np.zeros(n, dtype=np.int64),
            "dist_to_centroid": np.linspace(0.5, 0.1, n).astype(np.float32),
            "rank": np.arange(n),
            "max_sim": np.r_[-1.0, np.linspace(0.999, 0.95, n - 1)].astype(np.float32),
            "dup_of": pd.array([None] + ["g000"] * (n - 1), dtype="str"),
            "text": [f"quote number {j}" for j in range(n)],
        }
    )
    res = results_from_frame(frame, {"counts": {"clusters": 1, "items": n}}, tmp_path / "run")
    at = open_app(res.path, "pairs")
    at.sidebar.slider(key="sb_eps").set_value(0.1).run()
    at.session_state["pairs_view"] = "Groups"
    at.run()
    assert not at.exception
    drawn = [c for c in texts(at) if c.startswith("↳ removed")]
    assert len(drawn) == 49 and any("Showing 50 of 121 items in this group." in c for c in texts(at))  # + the kept
    at.button(key="pairs_group_more").click().run()
    assert len([c for c in texts(at) if c.startswith("↳ removed")]) == 99
    assert at.button(key="pairs_group_more").label == "Show 21 more"
    at.button(key="pairs_group_more").click().run()
    assert len([c for c in texts(at) if c.startswith("↳ removed")]) == 120
    assert not [b for b in at.button if b.key == "pairs_group_more"]
