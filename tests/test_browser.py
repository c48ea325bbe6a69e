"""End to end in a real headless browser: Debian's chromium driven by Playwright, on the served app.

Skips when chromium is absent, unless ``SEMDEDUP_REQUIRE_BROWSER=1`` (CI), where that is a failure.
Saves a screenshot of each page into a temporary folder, or into ``$SEMDEDUP_SCREENSHOTS``: the README's
pictures are refreshed with ``SEMDEDUP_SCREENSHOTS=docs/screenshots .venv/bin/python -m pytest -m browser``.
The helpers (serve, open_page, wait_idle) live in tests/browser.py.
"""

from __future__ import annotations

import re

import pytest
from browser import ARGS, CHROMIUM, SHOTS, move_slider, need_browser, serve, wait_idle, wait_metric
from browser import removed_metric as _removed

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def served_app(text_results, tmp_path):
    with serve(text_results.path, tmp_path) as url:
        yield url


def test_served_app_end_to_end(served_app, text_results):
    from playwright.sync_api import sync_playwright

    res = text_results
    SHOTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        # a bookmarked page opened first on a fresh server gets the app's navigation (not a pages/ listing)
        page.goto(f"{served_app}/threshold", wait_until="domcontentloaded")
        page.get_by_role("slider").first.wait_for(timeout=30_000)
        nav = page.locator('[data-testid="stSidebar"]').inner_text()
        assert "Stakeholder view" in nav and "Home" in nav and "app" not in nav.split("\n")
        assert not page.locator('[data-testid="stSidebarNav"]').count()  # Streamlit's file list stays hidden
        page.goto(served_app, wait_until="domcontentloaded")
        page.get_by_text("Open:", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        page.screenshot(path=str(SHOTS / "home.png"))

        # Threshold: the removed count follows the slider
        page.goto(f"{served_app}/threshold")
        page.get_by_role("slider").first.wait_for(timeout=30_000)
        wait_idle(page)
        before = _removed(page)
        assert before == res.n_removed(0.05)
        eps = move_slider(page, page.get_by_role("slider").first, 100)  # 100 steps of 0.0005: ε 0.05 → 0.10
        assert 0.06 <= eps <= 0.1
        wait_metric(page, "removed", res.n_removed(eps))
        after = _removed(page)
        assert after == res.n_removed(eps) and after > before
        page.screenshot(path=str(SHOTS / "threshold.png"), full_page=False)

        # Pairs: through the navigation, with ε carried over and dataset text shown literally
        page.get_by_role("link", name="Pairs").first.click()
        page.get_by_text("removed items at ε", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        caption = page.get_by_text(re.compile(rf"removed items at ε = {eps:.4f}")).first.inner_text()
        assert caption.startswith(f"{after:,} removed items")
        page.screenshot(path=str(SHOTS / "pairs.png"))
        page.get_by_role("combobox").first.click()  # the sort box
        page.get_by_role("option", name=re.compile("Most similar first")).click()
        wait_idle(page)
        page.get_by_text("<script>alert(1)</script>", exact=True).first.wait_for(timeout=15_000)  # shown as text
        assert not dialogs

        for name, path, ready in (
            ("clusters", "clusters", "distance to centre"),
            ("export", "export", "Exports are lists of ids"),
            ("stakeholder", "stakeholder", "semantic duplicates"),
            ("map", "map", "box- or lasso-select"),
        ):
            page.goto(f"{served_app}/{path}")
            page.get_by_text(ready, exact=False).first.wait_for(timeout=90_000)
            wait_idle(page)
            page.wait_for_timeout(800)  # let plotly draw
            page.screenshot(path=str(SHOTS / f"{name}.png"))
        browser.close()
    assert not dialogs
    for name in ("home", "threshold", "pairs", "clusters", "export", "stakeholder", "map"):
        assert (SHOTS / f"{name}.png").stat().st_size > 10_000


@pytest.fixture
def image_run(image_results, request):
    """The offline image demo (built once per session: conftest's ``image_demo``) with its suggested ε and
    the server environment that opens it as the demo; else the generated image folder at the default ε."""
    need_browser()
    try:
        res, eps, cache = request.getfixturevalue("image_demo")
    except ImportError:
        return image_results, 0.05, {}
    return res, eps, {"SEMDEDUP_CACHE": str(cache)}


def test_image_pairs_show_thumbnails(image_run, tmp_path):
    from playwright.sync_api import sync_playwright

    res, eps, env = image_run
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve(res.path, tmp_path, env=env) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url, wait_until="domcontentloaded")
        page.get_by_text("Open:", exact=False).first.wait_for(timeout=30_000)
        # on the demo too, moving ε changes the removed count
        page.get_by_role("link", name="Threshold").first.click()
        slider = page.get_by_role("slider").first
        slider.wait_for(timeout=30_000)
        wait_idle(page)
        assert _removed(page) == res.n_removed(eps)
        moved = move_slider(page, slider, -40)
        assert moved < eps
        wait_metric(page, "removed", res.n_removed(moved))
        assert _removed(page) == res.n_removed(moved)
        page.screenshot(path=str(SHOTS / "threshold-images.png"))
        page.get_by_role("link", name="Stakeholder view").first.click()
        page.get_by_text("semantic duplicates", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "stakeholder-images.png"))
        eps = moved
        page.get_by_role("link", name="Pairs").first.click()
        page.get_by_text("removed items at ε", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        caption = page.get_by_text(re.compile(rf"removed items at ε = {eps:.4f}")).first.inner_text()
        assert caption.startswith(f"{res.n_removed(eps):,} removed items")  # every removal is listed
        n_pairs = min(10, res.n_removed(eps))
        assert n_pairs > 0
        images = page.locator('[data-testid="stImage"] img')
        images.nth(2 * n_pairs - 1).wait_for(timeout=15_000)
        for i in range(images.count()):  # thumbnails below the fold load lazily
            images.nth(i).scroll_into_view_if_needed()
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=images.nth(i).element_handle())
        page.mouse.wheel(0, -100_000)
        widths = images.evaluate_all("els => els.map(e => e.naturalWidth)")
        assert len(widths) == 2 * n_pairs and min(widths) > 0  # every thumbnail decoded
        page.get_by_role("button", name="Full size").first.click()
        page.locator('[data-testid="stPopoverBody"] img').first.wait_for(timeout=15_000)
        page.keyboard.press("Escape")
        page.screenshot(path=str(SHOTS / "pairs-images.png"))
        browser.close()
