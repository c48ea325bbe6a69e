"""The Review page in a real browser (Debian's chromium through Playwright, on the served app): draw a
sample, judge pairs by clicking the three verdict buttons (and Skip, Back), and watch the labels store
and the precision chart follow. Saves ``review.png`` (the README's picture with
``SEMDEDUP_SCREENSHOTS=docs/screenshots``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from browser import SHOTS, open_page, serve, wait_idle

from semdedup_core.audit import estimate, load_design
from semdedup_core.audit.labels import LabelStore
from semdedup_core.cli import main
from semdedup_core.explore.pairs import word_diff

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHART_Y = """() => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => p.data);
  if (!plot) return null;
  const t = (plot._fullData || plot.data).find(t => t.name === 'precision');  // _fullData: typed arrays decoded
  return t ? Array.from(t.y, v => (v === null || Number.isNaN(v)) ? null : v) : null;
}"""


def judged(page, n: int, total: int) -> None:
    page.get_by_text(f"{n} of {total} pairs judged", exact=False).first.wait_for(timeout=30_000)
    wait_idle(page)


def test_review_page_labels_pairs_with_the_three_buttons(audit_copy, tmp_path):
    res = audit_copy
    store = LabelStore(res.path / "labels.parquet")
    with serve(res.path, tmp_path) as url, open_page(1280, 1400) as page:
        page.goto(f"{url}/review", wait_until="domcontentloaded")
        page.get_by_text("No review sample", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        total = 24  # of the 44 pairs removed at eps-max 0.3
        size = page.get_by_label("Pairs in the sample")
        size.fill(str(total))
        size.press("Tab")
        page.get_by_role("button", name="Draw the sample").click()
        page.get_by_text(f"0 of {total} pairs judged", exact=False).first.wait_for(timeout=30_000)
        wait_idle(page)
        design = load_design(res)
        assert design.n == total
        name = page.get_by_label("Your name")
        name.fill("dana")
        name.press("Enter")
        wait_idle(page)
        assert not store.exists()
        # the buttons' names are exactly the contract's
        page.get_by_role("button", name="Duplicate", exact=True).click()
        judged(page, 1, total)
        page.get_by_role("button", name="Not a duplicate", exact=True).click()
        judged(page, 2, total)
        page.get_by_role("button", name="Unsure", exact=True).click()
        judged(page, 3, total)
        rows = store.read()
        got = {(a, b): (v, r) for a, b, v, r in rows[["id_a", "id_b", "verdict", "reviewer"]].to_numpy()}
        units = design.units
        for i, verdict in enumerate(("duplicate", "not_duplicate", "unsure")):  # the queue's first three pairs
            assert got[(units["id_a"].iat[i], units["id_b"].iat[i])] == (verdict, "dana")
        assert len(got) == 3
        # Skip then Back shows the same pair again; Duplicate judges it
        page.get_by_role("button", name="Skip", exact=True).click()
        wait_idle(page)
        page.get_by_role("button", name="Back", exact=True).click()
        wait_idle(page)
        page.get_by_text(f"Pair 4 of {total}", exact=False).first.wait_for(timeout=15_000)
        page.get_by_role("button", name="Duplicate", exact=True).click()
        judged(page, 4, total)
        assert store.read()["verdict"].value_counts().to_dict() == {"duplicate": 2, "not_duplicate": 1, "unsure": 1}
        now = store.read()
        assert (units["id_a"].iat[3], units["id_b"].iat[3]) in set(zip(now["id_a"], now["id_b"], strict=True))
        # the chart shows the estimate from exactly these verdicts
        rep = estimate(design, store.resolved())
        want = [None if np.isnan(p) else round(float(p), 6) for p in rep.rows["precision"]]
        page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
        for _ in range(50):  # plotly redraws after the rerun
            shown = page.evaluate(CHART_Y)
            if shown and sum(v is not None for v in shown) == sum(w is not None for w in want):
                break
            page.wait_for_timeout(300)
        assert [None if v is None else round(v, 6) for v in shown] == want
        assert any(w is not None for w in want)
        # a second reviewer imports verdicts on the rest of the sample from another process (the CLI):
        # a pair of texts that differ in at most two words is a duplicate (the planted near-copies)
        queue = tmp_path / "queue.csv"
        assert main(["audit", "sample", str(res.path), "--n", str(total), "--out", str(queue)]) == 0
        q = pd.read_csv(queue, dtype=str, keep_default_na=False).iloc[:-4]  # four are left to judge
        q["verdict"] = [
            "duplicate" if sum(d for _, d in word_diff(a, b)[0]) <= 2 else "not_duplicate"
            for a, b in zip(q["text"], q["dup_of_text"], strict=True)
        ]
        q.to_csv(queue, index=False)
        assert main(["audit", "import", str(res.path), str(queue), "--reviewer", "oracle"]) == 0
        page.reload(wait_until="domcontentloaded")
        judged(page, total - 4, total)
        page.get_by_label("Your name").fill("dana")
        page.get_by_label("Your name").press("Enter")
        wait_idle(page)
        rep = estimate(design, store.resolved())
        want = [None if np.isnan(p) else round(float(p), 6) for p in rep.rows["precision"]]
        page.locator('[data-testid="stPlotlyChart"]').first.scroll_into_view_if_needed()
        for _ in range(50):
            shown = page.evaluate(CHART_Y)
            if shown and [None if v is None else round(v, 6) for v in shown] == want:
                break
            page.wait_for_timeout(300)
        assert [None if v is None else round(v, 6) for v in shown] == want
        page.mouse.wheel(0, -100_000)
        page.wait_for_timeout(800)  # let plotly draw
        page.screenshot(path=str(SHOTS / "review.png"))
    assert (SHOTS / "review.png").stat().st_size > 10_000


def pair_box(page, caption: str):
    """The bordered box of the pair whose caption starts with ``caption`` (the innermost block holding it)."""
    return page.locator('[data-testid="stVerticalBlock"]').filter(has_text=caption).last


def test_blind_mode_hides_similarity_ids_and_order_in_a_real_browser(audit_copy, tmp_path):
    """Blind mode, clicked in chromium: the pair shows as item A and item B, without the similarity, the
    band, the ids or which is the earlier item; a verdict is still recorded for the right pair."""
    res = audit_copy
    assert main(["audit", "sample", str(res.path), "--n", "12", "--out", str(tmp_path / "q.csv")]) == 0
    design = load_design(res)
    units = design.units
    store = LabelStore(res.path / "labels.parquet")
    with serve(res.path, tmp_path) as url, open_page(1280, 1400) as page:
        page.goto(f"{url}/review", wait_until="domcontentloaded")
        page.get_by_text("0 of 12 pairs judged", exact=False).first.wait_for(timeout=60_000)
        wait_idle(page)
        name = page.get_by_label("Your name")
        name.fill("dana")
        name.press("Enter")
        wait_idle(page)
        pair = pair_box(page, "Pair 1 of 12")
        assert "similarity band" in pair.inner_text() and "earlier item (dup_of)" in pair.inner_text()
        page.get_by_text("Blind mode", exact=True).click()
        page.get_by_text("item A", exact=True).first.wait_for(timeout=15_000)
        wait_idle(page)
        pair = pair_box(page, "Pair 1 of 12")
        shown = pair.inner_text()
        assert "item A" in shown and "item B" in shown and "blind" in shown
        for hidden in ("similarity", "earlier item", "dup_of", "1−ε", units["id"].iat[0], units["dup_of"].iat[0]):
            assert hidden not in shown, hidden
        assert pair.locator('[data-testid="stMetric"]').count() == 0
        page.screenshot(path=str(SHOTS / "review-blind.png"))
        page.get_by_role("button", name="Duplicate", exact=True).click()
        judged(page, 1, 12)
        got = store.read()
        assert (got["id_a"].iat[0], got["id_b"].iat[0], got["verdict"].iat[0]) == (
            units["id_a"].iat[0],
            units["id_b"].iat[0],
            "duplicate",
        )
        page.get_by_text("Pair 2 of 12", exact=False).first.wait_for(timeout=15_000)
        assert "item A" in pair_box(page, "Pair 2 of 12").inner_text()
