"""A team of reviewers: Cohen's κ against a hand computation, the share judged twice going to a second
reviewer who never sees the first verdict, disagreements listed and settled by a further verdict — in the
library, the CLI and the Review page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core.audit import Plan, cohen_kappa, disputes, draw_sample, kappa_table, reviewer_todo, save_design
from semdedup_core.audit.labels import LabelStore, make_rows
from semdedup_core.cli import main

APP = str(Path(__file__).resolve().parents[1] / "app.py")
D, N, U = "duplicate", "not_duplicate", "unsure"


def test_cohen_kappa_against_a_hand_computation():
    # 10 pairs: both duplicate 4, both not 3, A dup / B not 2, A not / B dup 1
    a = [D] * 4 + [N] * 3 + [D] * 2 + [N]
    b = [D] * 4 + [N] * 3 + [N] * 2 + [D]
    # p_o = 7/10; A says duplicate 6/10, B 5/10: p_e = 0.6·0.5 + 0.4·0.5 = 0.5; κ = (0.7 − 0.5)/(1 − 0.5)
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # three verdicts: p_o = 3/6; A: D 2, N 2, U 2; B: D 3, N 2, U 1 → p_e = (2·3 + 2·2 + 2·1)/36 = 1/3
    a = [D, D, N, N, U, U]
    b = [D, N, N, D, U, D]
    assert cohen_kappa(a, b) == pytest.approx((0.5 - 1 / 3) / (1 - 1 / 3))
    assert cohen_kappa([D, D], [D, D]) != cohen_kappa([D, D], [D, D])  # one verdict throughout: undefined
    assert cohen_kappa([D, N], [N, D]) == pytest.approx(-1.0)


def test_kappa_table_and_disputes_from_a_store(tmp_path):
    store = LabelStore(tmp_path / "labels.parquet")
    t = 1_700_000_000_000_000_000
    pairs = [(f"a{i}", f"b{i}") for i in range(10)]
    ann = [D] * 4 + [N] * 3 + [D] * 2 + [N]
    bob = [D] * 4 + [N] * 3 + [N] * 2 + [D]
    for who, verdicts, dt in (("ann", ann, 0), ("bob", bob, 10**9)):
        store.add(make_rows([p[0] for p in pairs], [p[1] for p in pairs], verdicts, who, when=t + dt))
    store.add(make_rows(["a0", "a7"], ["b0", "b7"], [D, D], "cy", when=t + 2 * 10**9))  # cy settles a7
    table = kappa_table(store.read()).set_index(["reviewer_a", "reviewer_b"])
    assert table.loc[("ann", "bob"), "pairs"] == 10 and table.loc[("ann", "bob"), "kappa"] == pytest.approx(0.4)
    assert table.loc[("ann", "bob"), "agreement"] == pytest.approx(0.7)
    assert table.loc[("ann", "cy"), "pairs"] == 2
    found = disputes(store.read())  # a7 has ann: dup, bob: not, cy: dup → settled; a8, a9 are 1–1
    assert sorted(found["id_a"]) == ["a8", "a9"]
    assert found.set_index("id_a").loc["a8", "verdicts"] == "ann: duplicate · bob: not_duplicate"
    resolved = store.resolved().set_index("id_a")
    assert resolved.loc["a8", "tied"] and not resolved.loc["a7", "tied"] and resolved.loc["a7", "verdict"] == D


def test_the_share_judged_twice_goes_to_a_second_reviewer(audit_copy):
    res = audit_copy
    design = draw_sample(res, 30, 0.3, seed=0, plan=Plan(double=0.4))
    double = design.units["double"].to_numpy(dtype=bool)
    assert 5 <= double.sum() <= 20  # a hash of the pair chooses about 40 %
    again = draw_sample(res, 40, 0.3, seed=0, plan=Plan(double=0.4))  # the same pairs in a larger sample
    marked = dict(zip(zip(again.units["id_a"], again.units["id_b"], strict=True), again.units["double"], strict=True))
    both = [marked[k] for k in zip(design.units["id_a"], design.units["id_b"], strict=True)]
    assert np.array_equal(both, double)
    store = LabelStore(res.path / "labels.parquet")
    u = design.units
    store.add(make_rows(u["id"][:20], u["dup_of"][:20], [D] * 20, "ann"))
    rows = store.read()
    ann, bob, anyone = (reviewer_todo(design, rows, who) for who in ("ann", "bob", None))
    first = np.arange(design.n) < 20
    assert np.array_equal(anyone, ~first) and np.array_equal(ann, ~first)
    assert np.array_equal(bob, ~first | (first & double))  # bob also gets ann's pairs that are judged twice
    store.add(make_rows(u["id"][first & double], u["dup_of"][first & double], [N] * int((first & double).sum()), "bob"))
    assert not reviewer_todo(design, store.read(), "cy")[first].any()  # two verdicts each: nobody's any more


def test_disagreements_in_the_cli_and_settled_by_a_third_reviewer(audit_copy, tmp_path, capsys):
    res = audit_copy
    q = tmp_path / "q.csv"
    assert main(["audit", "sample", str(res.path), "--n", "20", "--double", "0.5", "--out", str(q)]) == 0
    first = pd.read_csv(q, dtype=str, keep_default_na=False)
    first["verdict"] = D
    first.to_csv(q, index=False)
    assert main(["audit", "import", str(res.path), str(q), "--reviewer", "ann"]) == 0
    q2 = tmp_path / "q2.csv"
    assert (
        main(["audit", "sample", str(res.path), "--n", "20", "--double", "0.5", "--out", str(q2), "--reviewer", "bob"])
        == 0
    )
    second = pd.read_csv(q2, dtype=str, keep_default_na=False)
    assert 0 < len(second) < 20  # only the pairs judged twice
    second["verdict"] = N
    second.to_csv(q2, index=False)
    assert main(["audit", "import", str(res.path), str(q2), "--reviewer", "bob"]) == 0
    capsys.readouterr()
    out = tmp_path / "disputes.csv"
    assert main(["audit", "report", str(res.path), "--json", "--disagreements", str(out)]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["disagreements"] == len(second)
    assert rep["agreement"][0]["pairs"] == len(second) and rep["agreement"][0]["agreement"] == 0
    assert rep["sample"]["disputed"] == len(second) and rep["rows"][-1]["disputed"] == len(second)
    d = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(d.columns) == ["id", "dup_of", "reviewers", "verdicts", "verdict"] and len(d) == len(second)
    assert set(zip(d["id"], d["dup_of"], strict=True)) == set(zip(second["id"], second["dup_of"], strict=True))
    d["verdict"] = D
    d.to_csv(out, index=False)
    assert main(["audit", "import", str(res.path), str(out), "--reviewer", "cy"]) == 0  # a third verdict
    capsys.readouterr()
    assert main(["audit", "report", str(res.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["disagreements"] == 0


def test_review_gives_the_second_reviewer_blind_pairs_and_shows_kappa(audit_copy, tmp_path, monkeypatch):
    res = audit_copy
    design = draw_sample(res, 12, 0.3, seed=0, plan=Plan(double=0.5))
    save_design(design, res.path)
    u = design.units
    double = np.flatnonzero(u["double"].to_numpy(dtype=bool))
    assert len(double) >= 2
    store = LabelStore(res.path / "labels.parquet")
    store.add(make_rows(u["id"], u["dup_of"], [D] * design.n, "ann"))
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(res.path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["review"]).run()
    at.text_input(key="rev_reviewer").set_value("bob").run()
    assert not at.exception and not at.error
    assert at.session_state["rev_cursor"] == double[0]  # bob is asked the pairs judged twice only
    assert any("their verdict is hidden" in i.value for i in at.info)
    assert not any("a duplicate" in i.value for i in at.info)  # never ann's verdict
    at.toggle(key="rev_blind").set_value(True).run()
    captions = " ".join(c.value for c in at.caption)
    pair = next(c.value for c in at.caption if c.value.startswith("Pair "))
    assert "item A" in captions and "item B" in captions and "blind" in pair and "similarity band" not in pair
    assert u["id"].iat[double[0]] not in captions and not at.get("metric")  # no ids, no similarity
    at.button(key="rev_not").click().run()
    assert at.session_state["rev_cursor"] == double[1]
    # one disagreement now: the mode to settle it appears, and the agreement table
    assert at.radio(key="rev_mode") is not None
    kappa = next(d.value for d in at.dataframe if "kappa" in d.value.columns)
    assert kappa.iloc[0]["pairs"] == 1 and kappa.iloc[0]["agreement"] == 0
    at.radio(key="rev_mode").set_value("settle").run()
    assert any("Disagreement 1 of 1" in c.value for c in at.caption)
    at.text_input(key="rev_reviewer").set_value("cy").run()
    at.button(key="rev_dup").click().run()
    assert not at.exception and not at.error
    assert disputes(store.read()).empty
