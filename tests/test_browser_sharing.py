"""The explorer served in read-only mode, driven by a real browser (Debian's chromium via Playwright):
no path box, no run or demo buttons, no export written into the folder, an image outside the run's
input folder not shown, and bare URLs in dataset text not turned into links; a hostile viewer (Compare
outside the roots, a typed store, an unlisted or unproven reviewer, a redraw) sees and writes nothing;
and no page asks any host but the app's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser import open_page, serve, wait_idle
from conftest import make_text_results

from semdedup_core.cli import main

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_read_only_app_in_a_real_browser(shared_image_run, tmp_path):
    res, outside = shared_image_run
    with serve(res.path, tmp_path, app_args=["--read-only"]) as url, open_page() as page:
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Open:", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        body = page.locator("body").inner_text()
        assert "read-only" in body
        assert page.get_by_label("Results folder", exact=True).count() == 0  # no path box
        assert page.locator("input[type=text]").count() == 0
        for label in ("Start", "Build"):
            assert page.get_by_role("button", name=label, exact=True).count() == 0
        assert "Start a run" not in body and "Offline demos" not in body

        page.get_by_role("link", name="Pairs").first.click()
        page.get_by_text("removed items at ε", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        # the pair (s3, private): the column of the outside image shows a notice and no image
        column = page.locator('[data-testid="stColumn"]').filter(has_text="· private ·").last
        column.wait_for(timeout=15_000)
        assert "outside this run's input folder" in column.inner_text()
        assert column.locator("img").count() == 0
        inside = page.locator('[data-testid="stColumn"]').filter(has_text="· s3 ·").last
        inside.locator('[data-testid="stImage"] img').first.wait_for(timeout=15_000)
        assert inside.locator('[data-testid="stImage"] img').count() == 1
        # dataset text with bare URLs and an e-mail address is shown, but as text: no link anywhere
        page.get_by_text("evil", exact=False).first.wait_for(timeout=15_000)
        assert page.locator('[data-testid="stMain"] a[href*="evil"]').count() == 0
        assert page.locator('[data-testid="stMain"] a[href^="mailto:"]').count() == 0
        page.screenshot(path=str(tmp_path / "pairs-read-only.png"))

        page.get_by_role("link", name="Export").first.click()
        page.get_by_role("button", name="Prepare download").wait_for(timeout=30_000)
        wait_idle(page)
        assert page.get_by_role("button", name="Write into the results folder").count() == 0
        assert "exports are downloads only" in page.locator("body").inner_text()
    assert not (res.path / "exports").exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _press(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def test_a_hostile_viewer_of_a_read_only_explorer_is_shown_and_writes_nothing(text_results, tmp_path):
    """Issue 19: Compare outside the roots, a typed labels store, an unlisted reviewer, a listed name without
    its key and a redraw of the sample, tried in a real browser; nothing of the private run is shown and
    nothing is written anywhere — until the listed reviewer gives their key."""
    root = tmp_path / "shared"
    run_a = Path(shutil.copytree(text_results.path, root / "team" / "run-a"))
    assert main(["audit", "sample", str(run_a), "--n", "10", "--out", str(tmp_path / "queue.csv")]) == 0
    private = make_text_results(tmp_path / "private" / "secret-run", seed=7)
    secret_texts = sorted(set(private.items["text"]) - set(text_results.items["text"]))[:20]
    stores, home = tmp_path / "stores", tmp_path / "server-home"
    stores.mkdir()
    (home / ".streamlit").mkdir(parents=True)
    (home / ".streamlit" / "secrets.toml").write_text('[semdedup.reviewer_keys]\nana = "k-ana"\n')
    store = stores / "team.parquet"
    before = {"root": _snapshot(root), "private": _snapshot(private.path)}
    args = ["--read-only", "--reviewer", "ana", "--labels", str(store)]
    env = {"SEMDEDUP_ALLOWED_ROOTS": str(root), "HOME": str(home)}
    with serve(run_a, tmp_path, app_args=args, env=env) as url, open_page(1280, 1400) as page:
        page.goto(f"{url}/compare", wait_until="domcontentloaded")
        page.get_by_text("Choose run B", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        refusals = []
        for typed in (str(private.path), str(private.path.parent / "no-such-run")):
            _press(page, "… or the folder of run B", typed)
            alert = page.locator('[data-testid="stAlert"]').filter(has_text="shares").first
            alert.wait_for(timeout=15_000)
            refusals.append(alert.inner_text().replace(typed, "PATH"))
            body = page.locator("body").inner_text()
            assert not [t for t in secret_texts if t in body] and "removed by both" not in body
        assert refusals[0] == refusals[1], refusals  # existing or not: the same line

        page.goto(f"{url}/review", wait_until="domcontentloaded")
        page.get_by_text("pairs judged", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        assert page.get_by_label("Labels store", exact=True).count() == 0  # no store can be typed
        for label in ("Draw the sample", "Draw a new sample"):
            assert page.get_by_text(label, exact=True).count() == 0  # no redraw
        duplicate = page.get_by_role("button", name="Duplicate", exact=True)
        for name, key in (("mallory", ""), ("ana", ""), ("ana", "wrong")):
            _press(page, "Your name", name)
            _press(page, "Your reviewer key", key)
            assert duplicate.is_disabled(), (name, key)
        assert not list(stores.iterdir())
        assert {"root": _snapshot(root), "private": _snapshot(private.path)} == before
        _press(page, "Your reviewer key", "k-ana")
        duplicate.click()
        page.get_by_text("1 of 10 pairs judged", exact=False).first.wait_for(timeout=30_000)
    from semdedup_core.audit.labels import LabelStore

    assert list(LabelStore(store).read()["reviewer"]) == ["ana"]
    assert {"root": _snapshot(root), "private": _snapshot(private.path)} == before


def test_a_shared_explorer_makes_no_request_off_its_own_server(shared_image_run, tmp_path):
    """Issue 19: every page load asked a Google host (the tab's Material icon); icons and fonts now come
    from the app's own server. Every page is visited and every request the page makes is counted."""
    res, _ = shared_image_run
    with serve(res.path, tmp_path, app_args=["--read-only"]) as url, open_page() as page:
        own = url.removeprefix("http://")
        elsewhere: list[str] = []
        page.on("request", lambda r: None if r.url.split("/")[2] == own else elsewhere.append(r.url))
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Open:", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        for name in ("Threshold", "Pairs", "Clusters", "Map", "Export", "Stakeholder view", "Review", "Compare"):
            page.get_by_role("link", name=name).first.click()
            page.wait_for_timeout(500)
            wait_idle(page)
        icons = page.locator('[data-testid="stIconMaterial"]')
        assert icons.count() > 0  # the sidebar's icons are drawn (from the font the app serves)
        favicon = page.evaluate("() => document.querySelector(\"link[rel='shortcut icon']\").href")
        page.wait_for_timeout(1000)
    assert elsewhere == [], elsewhere
    assert favicon.startswith(url) or favicon.startswith("data:"), favicon
