"""The explorer served in read-only mode, driven by a real browser (Debian's chromium via Playwright):
no path box, no run or demo buttons, no export written into the folder, an image outside the run's
input folder not shown, and bare URLs in dataset text not turned into links."""

from __future__ import annotations

import pytest
from browser import open_page, serve, wait_idle

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
