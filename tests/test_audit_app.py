"""The Review page and the estimate on the other pages, through streamlit.testing's AppTest."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core.audit import estimate, load_design
from semdedup_core.audit.labels import LabelStore, make_rows

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(autouse=True)
def _app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))


def open_review(res, monkeypatch) -> AppTest:
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(res.path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["review"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def click(at: AppTest, key: str) -> None:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def chart_precision(at: AppTest) -> list:
    """The y values of the chart's precision trace (None where there is no estimate)."""
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    y = next(t for t in spec["data"] if t.get("name") == "precision")["y"]
    if isinstance(y, dict):  # plotly sends numpy arrays as typed arrays: {"dtype": "f8", "bdata": base64}
        y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.dtype(y["dtype"])).tolist()
    return [None if v is None or v != v else v for v in y]


def test_review_draws_a_sample_and_records_each_verdict(audit_copy, monkeypatch):
    res = audit_copy
    at = open_review(res, monkeypatch)
    assert any("No review sample" in i.value for i in at.info)
    at.number_input[0].set_value(20)
    at.button[0].click().run()  # "Draw the sample"
    design = load_design(res)
    assert design is not None and design.n == 20 and design.eps_max == pytest.approx(0.3)
    assert at.button(key="rev_dup").disabled  # no name yet: no verdict without a reviewer
    assert chart_precision(at) == [None] * len(chart_precision(at))  # nothing judged, nothing drawn
    at.text_input(key="rev_reviewer").set_value("ann").run()
    assert not at.button(key="rev_dup").disabled
    units = design.units
    for key in ("rev_dup", "rev_not", "rev_unsure"):
        click(at, key)
    store = LabelStore(res.path / "labels.parquet")
    rows = store.read().set_index(["id_a", "id_b"])
    want = {"duplicate": 0, "not_duplicate": 1, "unsure": 2}
    for verdict, i in want.items():  # the first three pairs of the queue, in order
        row = rows.loc[(units["id_a"].iat[i], units["id_b"].iat[i])]
        assert row["verdict"] == verdict and row["reviewer"] == "ann"
        assert row["similarity"] == pytest.approx(units["max_sim"].iat[i])
    assert len(rows) == 3
    # the chart follows the store: the precision drawn is the estimate from these verdicts
    rep = estimate(design, store.resolved())
    want_y = [None if np.isnan(p) else pytest.approx(p) for p in rep.rows["precision"]]
    assert chart_precision(at) == want_y and any(y is not None for y in want_y)
    assert at.get("progress")[0].proto.text.startswith("3 of 20 pairs judged (1 unsure)")
    # Skip moves on, Back returns; a verdict given again replaces this reviewer's earlier one
    assert at.session_state["rev_cursor"] == 3
    click(at, "rev_skip")
    assert at.session_state["rev_cursor"] == 4
    click(at, "rev_back")
    click(at, "rev_back")
    assert at.session_state["rev_cursor"] == 2
    assert any("Already judged: unsure" in i.value for i in at.info)
    click(at, "rev_dup")
    assert (
        len(store.read()) == 3
        and store.resolved().set_index("id_a").loc[units["id_a"].iat[2], "verdict"] == "duplicate"
    )
    # the next pair is the skipped one's successor, and the skipped pair comes back at the end
    assert at.session_state["rev_cursor"] == 4


def test_other_pages_show_the_estimate_and_the_judged_pairs(audit_copy, monkeypatch):
    res = audit_copy
    at = open_review(res, monkeypatch)
    at.number_input[0].set_value(44)
    at.button[0].click().run()
    at.text_input(key="rev_reviewer").set_value("ann").run()
    for key in ("rev_dup", "rev_dup", "rev_not", "rev_dup"):
        click(at, key)
    at.switch_page(sa.PAGES["threshold"]).run()
    at.slider(key="thr_eps").set_value(0.3).run()
    captions = [c.value for c in at.caption]
    line = next(c for c in captions if "Audited: of" in c)
    rep = estimate(load_design(res), LabelStore(res.path / "labels.parquet").resolved(), [0.3])
    assert f"of {rep.rows['labelled'].iat[0]} checked pairs" in line and "95 % interval" in line
    at.toggle(key="thr_audited").set_value(True).run()
    n_aud = res.n_removed(0.3, "audited", LabelStore(res.path / "labels.parquet"))
    assert n_aud == res.n_removed(0.3) - 1  # the one pair judged not a duplicate had no other partner above 0.7
    assert any(f"**audited rule:** removes {n_aud:,}" in c.value for c in at.caption)
    at.switch_page(sa.PAGES["stakeholder"]).run()
    assert any("Audited: of 4 checked pairs" in m.value for m in at.markdown)
    at.switch_page(sa.PAGES["pairs"]).run()
    at.selectbox(key="pairs_per_page").set_value(50).run()
    marks = [c.value for c in at.caption if "judged" in c.value]
    assert sum("judged **a duplicate**" in m for m in marks) == 3
    assert sum("judged **not a duplicate**" in m for m in marks) == 1
    at.switch_page(sa.PAGES["export"]).run()
    at.radio(key="exp_rule").set_value("audited").run()
    assert not at.exception and not at.error
    df = at.dataframe[0].value
    assert len(df) == min(20, res.n_removed(0.3, "audited", LabelStore(res.path / "labels.parquet")))


def test_a_store_that_cannot_be_written_is_an_error_line_not_a_traceback(audit_copy, monkeypatch, tmp_path):
    res = audit_copy
    at = open_review(res, monkeypatch)
    at.number_input[0].set_value(10)
    at.button[0].click().run()
    at.text_input(key="rev_reviewer").set_value("ann").run()
    at.text_input(key="sd_labels").set_value(str(tmp_path / "no" / "such" / "labels.parquet")).run()
    at.button(key="rev_dup").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "does not exist; create it or pass another --labels" in at.error[0].value.replace(
        "\\", ""
    )
    bad = tmp_path / "bad.parquet"
    bad.write_text("not a store")
    at.text_input(key="sd_labels").set_value(str(bad)).run()
    assert not at.exception and "not a readable parquet file" in at.error[0].value.replace("\\", "")
    assert bad.read_text() == "not a store"


def test_review_grows_a_sequential_sample_and_says_enough(audit_copy, monkeypatch):
    """A sequential sample drawn on Review: each time its batch is judged, the page draws the next one (into
    the folder, under the lock), and it says "enough" once the stopping rule is met."""
    res = audit_copy
    at = open_review(res, monkeypatch)
    at.number_input[0].set_value(20)
    at.checkbox[0].check()
    at.number_input[1].set_value(0.3)  # eps-max
    at.button[0].click().run()
    design = load_design(res)
    assert design.plan.sequential and design.n == 20 and design.plan.budget == 400
    store = LabelStore(res.path / "labels.parquet")
    sizes = [design.n]
    for _ in range(12):
        u = load_design(res).units
        verdicts = ["duplicate" if s > 0.9 else "not_duplicate" for s in u["max_sim"]]
        store.add(make_rows(u["id"], u["dup_of"], verdicts, "oracle"))
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        sizes.append(load_design(res).n)
        rep = estimate(load_design(res), store.resolved())
        if rep.enough:
            break
    assert sizes[1] > sizes[0] and sizes == sorted(sizes)  # it grew, batch by batch
    assert rep.enough and rep.stop.startswith("enough")
    shown = [s.value for s in at.success]
    assert any(s.startswith("Enough") for s in shown), shown
