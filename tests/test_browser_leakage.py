"""The Leakage page in a real headless browser (Debian's chromium through Playwright): the leaked count
follows the ε slider, pairs show the held-out item beside the training item, dataset text stays text.
Saves ``leakage.png`` (the README's picture with ``SEMDEDUP_SCREENSHOTS=docs/screenshots``)."""

from __future__ import annotations

import re

import pytest
from browser import SHOTS, move_slider, open_page, serve, wait_count, wait_idle, wait_metric

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def leaked_metric(page) -> int:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="leaked").first
    return int(metric.locator('[data-testid="stMetricValue"]').inner_text().replace(",", ""))


def test_leakage_page_in_the_browser(text_leak_results, tmp_path):
    res = text_leak_results
    dialogs: list[str] = []
    with serve(res.path, tmp_path) as url, open_page(height=1400) as page:
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(f"{url}/leakage", wait_until="domcontentloaded")
        page.get_by_text("leaked items at ε", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("link", name="Leakage").first.wait_for(timeout=15_000)  # in the app's navigation
        assert leaked_metric(page) == res.n_leaked(0.05)
        eps = move_slider(page, page.get_by_role("slider").first, 100)  # the sidebar's shared ε: 0.05 → 0.10
        assert 0.06 <= eps <= 0.1
        wait_metric(page, "leaked", res.n_leaked(eps))
        assert leaked_metric(page) == res.n_leaked(eps) > res.n_leaked(0.05)
        caption = page.get_by_text(re.compile(rf"leaked items at ε = {eps:.4f}")).first.inner_text()
        assert caption.startswith(f"{res.n_leaked(eps):,} leaked items")
        want = min(10, res.n_leaked(eps))
        assert wait_count(page.get_by_text("held-out · h", exact=False), want) == want
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Sort").get_by_role("combobox").click()
        page.get_by_role("option", name=re.compile("Most similar first")).click()
        wait_idle(page)
        page.get_by_text("<script>alert(1)</script>", exact=False).first.wait_for(timeout=15_000)  # shown as text
        page.mouse.wheel(0, -100_000)
        page.wait_for_timeout(800)  # let plotly draw
        page.screenshot(path=str(SHOTS / "leakage.png"))
    assert not dialogs
    assert (SHOTS / "leakage.png").stat().st_size > 10_000
