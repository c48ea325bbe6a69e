"""The report and the Compare page in a real browser (Debian's chromium through Playwright).

The report of the offline image demo is opened with the network cut: every request other than the file
itself is aborted and recorded, and none may happen. The Compare page is driven on the served app, and the
Stakeholder page's download is checked to be the very file the CLI writes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser import SHOTS, need_browser, open_page, serve, wait_idle
from test_report import assert_self_contained

from semdedup_core import ClusterConfig, DedupConfig, dedup
from semdedup_core.explore.compare import compare
from semdedup_core.explore.report import build_report, write_report

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def demo(request):
    need_browser()  # before the ~40 s build, which only the browser tests need
    return request.getfixturevalue("image_demo")


def open_offline(browser, path, dialogs: list[str]):
    """Open the file ``path`` in a fresh offline context of ``browser`` with every other request aborted;
    returns (page, requests seen, requests aborted). Dialogs (``alert``) are recorded in ``dialogs``."""
    url = path.resolve().as_uri()
    seen: list[str] = []
    aborted: list[str] = []
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 1000})

    def handle(route):
        if route.request.url == url:
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    page = context.new_page()
    page.on("request", lambda r: seen.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url, wait_until="load")
    return page, seen, aborted


def test_the_report_opens_offline_with_its_images(demo, hostile_results, tmp_path):
    res, eps, _ = demo
    out = write_report(res, eps, tmp_path / "demo-report.html")
    assert out.stat().st_size < 5_000_000
    assert len(assert_self_contained(out.read_text()).images()) >= 12  # the static check (test_report.py)
    dialogs: list[str] = []
    with open_page() as first:
        browser = first.context.browser
        page, seen, aborted = open_offline(browser, out, dialogs)
        assert seen == [out.resolve().as_uri()] and not aborted  # nothing but the file itself
        assert page.locator("#n-items").inner_text() == f"{res.n_items:,}" == "285"
        assert page.locator("#n-removed").inner_text() == f"{res.n_removed(eps):,}"
        images = page.locator("img")
        assert images.count() >= 12
        widths = images.evaluate_all("els => els.map(e => e.complete && e.naturalWidth)")
        assert all(w and w > 0 for w in widths), widths  # every thumbnail decoded
        assert page.locator("svg.chart polyline").count() == 1
        page.screenshot(path=str(SHOTS / "report.png"))

        # the same check catches a file that does fetch something
        bad = tmp_path / "bad.html"
        bad.write_text(out.read_text().replace("<body>", '<body><img src="http://example.invalid/x.png">', 1))
        _, _, caught = open_offline(browser, bad, dialogs)
        assert caught == ["http://example.invalid/x.png"]

        # hostile captions, ids and paths: shown as text, nothing runs
        hostile = write_report(hostile_results, 0.05, tmp_path / "hostile.html")
        page, seen, aborted = open_offline(browser, hostile, dialogs)
        assert not aborted
        page.get_by_text("<script>alert('report')</script>", exact=False).first.wait_for(timeout=5_000)
        page.get_by_text('<img src=x onerror="alert(1)">', exact=False).first.wait_for(timeout=5_000)
        assert page.locator("img").count() == 0 and page.locator("script").count() == 0
        body = page.locator("body").inner_text()
        assert "<i>item 0</i>" in body and "http://evil.example/0.png" in body
        page.wait_for_timeout(300)
    assert not dialogs


def test_compare_page_and_the_stakeholder_download(demo, tmp_path):
    res, eps, cache = demo
    b = dedup(
        np.asarray(res.embeddings),
        list(res.items["id"]),
        cluster=ClusterConfig(4, seed=1),
        config=DedupConfig(keep="easy", seed=1),
        out=tmp_path / "demo-k4-easy",
        columns=res.items[["path"]],
    )
    cmp = compare(res, b, eps)
    assert cmp.only_a and cmp.only_b
    with serve(res.path, tmp_path, env={"SEMDEDUP_CACHE": str(cache)}) as url, open_page(1280, 1200) as page:
        page.goto(f"{url}/compare", wait_until="domcontentloaded")
        page.get_by_text("Choose run B above.").wait_for(timeout=60_000)
        page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Compare").wait_for(timeout=15_000)
        box = page.get_by_label("… or the folder of run B")
        box.fill(str(b.path))
        box.press("Enter")
        page.get_by_text("removed by A only", exact=True).first.wait_for(timeout=30_000)
        wait_idle(page)

        def metric(label: str) -> str:
            m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
            return m.locator('[data-testid="stMetricValue"]').inner_text()

        assert metric("removed by both") == f"{cmp.both:,}"
        assert metric("removed by A only") == f"{cmp.only_a:,}"
        assert metric("removed by B only") == f"{cmp.only_b:,}"
        assert metric("agreement (Jaccard)") == f"{cmp.jaccard:.3f}"
        page.get_by_role("radio", name="removed by B only").click()
        page.get_by_text(re.compile(rf"^{cmp.only_b:,} items removed by B only")).wait_for(timeout=30_000)
        wait_idle(page)
        first = cmp.items("only_b").iloc[0]
        page.get_by_text(f"the item (removed by B only) · {first['id']}", exact=False).first.wait_for(timeout=15_000)
        page.locator('[data-testid="stImage"] img').first.wait_for(timeout=15_000)
        wait_idle(page)
        page.mouse.wheel(0, 100_000)  # every image of the page in view once
        # the item, its partner in A and in B at least; every image shown (counted in the page itself: a
        # count taken first and looked up later can name an image a late rerender replaced)
        page.wait_for_function(
            """(sel) => {
                const imgs = [...document.querySelectorAll(sel)];
                return imgs.length >= 3 && imgs.every((img) => img.complete && img.naturalWidth > 0);
            }""",
            arg='[data-testid="stImage"] img',
            timeout=30_000,
        )
        page.mouse.wheel(0, -100_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / "compare.png"))

        # the Stakeholder page's download is the report the CLI writes
        page.get_by_role("link", name="Stakeholder view").first.click()
        button = page.get_by_role("button", name=re.compile("Download the report"))
        button.wait_for(timeout=30_000)
        wait_idle(page)
        with page.expect_download(timeout=60_000) as info:
            button.click()
        download = info.value
        assert download.suggested_filename == f"semdedup-report-{res.path.name}-eps{eps:.4f}.html"
        assert open(download.path(), encoding="utf-8").read() == build_report(res, eps)
