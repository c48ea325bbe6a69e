"""The report's "Checked by people" section: the recommendation with its guarantee in plain words, the
sensitivity range of unsure, skipped and disputed pairs, and the reviewers' agreement — from a summary and
from a judged sample end to end."""

from __future__ import annotations

import re
from html import unescape

import pandas as pd

from semdedup_core.audit import Plan, draw_sample, save_design
from semdedup_core.audit.labels import LabelStore, make_rows
from semdedup_core.audit.precision import summary_at
from semdedup_core.cli import main
from semdedup_core.explore.report import build_report


def section(html: str) -> str:
    got = re.search(r'<section id="audit">(.*?)</section>', html, flags=re.S)
    assert got, "no audit section"
    return unescape(re.sub(r"<[^>]+>", " ", got.group(1)))


def test_the_section_says_the_guarantee_the_sensitivity_and_the_agreement(text_results):
    audit = {
        "eps": 0.1,
        "labelled": 400,
        "precision": 0.97,
        "ci_low": 0.95,
        "ci_high": 0.985,
        "unsure": 3,
        "skipped": 2,
        "disputed": 1,
        "sensitivity_low": 0.955,
        "sensitivity_high": 0.972,
        "target": 0.95,
        "recommended_eps": 0.12,
        "guarantee": "with 95 % confidence every ε from 0.08 to 0.12 removes at least 95 % true duplicates",
        "agreement": [{"reviewer_a": "ann", "reviewer_b": "bob", "pairs": 40, "agreement": 0.95, "kappa": 0.81}],
    }
    text = " ".join(section(build_report(text_results, 0.1, audit=audit)).split())
    assert "3 pairs judged unsure are not counted" in text
    assert (
        "were the 6 unsure, skipped or disputed pairs all duplicates or none, the share would be 97.2 % or 95.5 %"
        in text
    )
    assert "the recommended ε is 0.1200: with 95 % confidence every ε from 0.08 to 0.12 removes at least 95 %" in text
    assert "ann and bob: 40 pairs, Cohen's κ 0.81" in text


def test_the_report_command_carries_the_audit_of_a_judged_sample(audit_copy, tmp_path):
    res = audit_copy
    design = draw_sample(res, 30, 0.3, seed=0, plan=Plan(target=0.5, double=0.3))
    save_design(design, res.path)
    u = design.units
    store = LabelStore(res.path / "labels.parquet")
    store.add(make_rows(u["id"], u["dup_of"], ["duplicate"] * 28 + ["unsure"] * 2, "ann"))
    twice = u[u["double"]]
    store.add(make_rows(twice["id"], twice["dup_of"], ["duplicate"] * len(twice), "bob"))
    summary = summary_at(res, 0.2)
    assert summary["target"] == 0.5 and summary["recommended_eps"] is not None and summary["enough"]
    assert summary["guarantee"].startswith("with 95 % confidence")
    assert summary["agreement"][0]["pairs"] == len(twice)
    out = tmp_path / "r.html"
    assert main(["report", str(res.path), "--eps", "0.2", "--out", str(out)]) == 0
    text = " ".join(section(out.read_text()).split())
    assert f"the recommended ε is {summary['recommended_eps']:.4f}: with 95 % confidence" in text
    assert "were the 2 unsure, skipped or disputed pairs all duplicates or none" in text
    assert f"ann and bob: {len(twice)} pairs" in text
    assert isinstance(pd.read_parquet(res.path / "audit" / "sample.parquet"), pd.DataFrame)
