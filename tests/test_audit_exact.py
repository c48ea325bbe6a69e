"""Exact copies in the audit: identical items score 1 or a hair above it in float32 (1.0000004), and they
belong to band 0 everywhere — the sample, its recorded band sizes, the offsets at every ε, the estimate, the
queue, `audit import`, `audit report` and the Review page — on generated data with 500 planted copies and on
real text (the FreeBSD fortunes quoted more than once)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import Results, SemDedupError
from semdedup_core.audit import draw_sample, estimate, load_design, save_design
from semdedup_core.audit.design import bands_of, edges_of
from semdedup_core.audit.labels import LabelStore
from semdedup_core.cli import main
from semdedup_core.kernels.rules import removed_by_score

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def private(res, tmp_path) -> Results:
    dest = tmp_path / "run"
    shutil.copytree(res.path, dest)
    return Results.load(dest)


def test_scores_above_one_are_band_0_and_the_offsets_count_them(exact_results):
    res = exact_results
    s = res.column("max_sim")
    assert (s > 1.0).sum() >= 50  # float32 rounding puts many exact copies above 1
    edges = edges_of(0.3, 10)
    assert np.all(bands_of(np.array([1.0000004, 1.0, 0.9700001]), edges) == 0)
    design = draw_sample(res, 300, 0.3, seed=0)
    # the recorded band sizes are the offsets' band sizes: the check `load_design` makes
    recorded = design.units.groupby("band")["N_h"].first()
    assert np.array_equal(recorded.to_numpy(), design.band_sizes[recorded.index.to_numpy()])
    assert design.offsets[0] == 0 and design.band_sizes.sum() == design.population == res.n_removed(0.3)
    n_exact = int(((s > 1.0) & (res.dup_rows >= 0)).sum())
    assert design.band_sizes[0] >= n_exact
    # every ε — 0 included, where only the copies above 1 go — is the run's own count, band by band
    grid = np.array([0.0, 1e-6, 0.01, 0.03, 0.031, 0.1, 0.3])
    assert np.array_equal(design.n_removed(grid), res.n_removed(grid))
    counts = design.band_counts(grid)
    assert counts[0, 0] == res.n_removed(0.0) == n_exact and counts[0, 1:].sum() == 0
    assert np.array_equal(counts.sum(axis=1), res.n_removed(grid))
    # the sampled copies are band-0 pairs, removed at every ε
    u = design.units
    copies = u[u["max_sim"] > 1.0]
    assert len(copies) and (copies["band"] == 0).all()
    assert np.all(removed_by_score(copies["max_sim"].to_numpy(), 0.0))


def test_exact_copies_through_sample_import_report_and_review(exact_results, tmp_path, monkeypatch, capsys):
    res = private(exact_results, tmp_path)
    queue = tmp_path / "queue.csv"
    assert main(["audit", "sample", str(res.path), "--n", "120", "--out", str(queue)]) == 0
    design = load_design(Results.load(res.path))  # refused before: "drawn from another run"
    assert design is not None and design.n == 120 and (design.units["max_sim"] > 1.0).any()
    q = pd.read_csv(queue, dtype=str, keep_default_na=False)
    q["verdict"] = np.where(q["max_sim"].astype(float) > 0.9, "duplicate", "not_duplicate")
    q.to_csv(queue, index=False)
    assert main(["audit", "import", str(res.path), str(queue), "--reviewer", "ann"]) == 0
    capsys.readouterr()
    assert main(["audit", "report", str(res.path), "--json", "--eps", "0", "0.01", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = out["rows"]
    assert [r["removed"] for r in rows] == [res.n_removed(e) for e in (0.0, 0.01, 0.3)]
    assert rows[0]["removed"] == int((res.column("max_sim") > 1.0).sum()) > 0
    at_zero = design.units["max_sim"].to_numpy() > 1.0
    assert rows[0]["labelled"] == int(at_zero.sum()) and rows[0]["precision"] == pytest.approx(1.0)
    assert rows[-1]["labelled"] == 120
    # the estimate from the store is the one from the verdicts themselves
    rep = estimate(design, LabelStore(res.path / "labels.parquet").resolved(), [0.0, 0.01, 0.3])
    assert [r["precision"] for r in rows] == pytest.approx(rep.rows["precision"].tolist())
    # and the Review page opens the sample (it refused it before) and judges a pair
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(res.path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["review"]).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.get("progress")[0].proto.text.startswith("120 of 120 pairs judged")


def test_real_text_with_exact_duplicates(fortune_results, tmp_path, capsys):
    """The fortunes quoted twice are exact copies (scores above 1); the whole loop runs on them."""
    res = private(fortune_results, tmp_path)
    s = res.column("max_sim")
    texts = res.rows(np.flatnonzero(s > 1.0), ["id", "text"])
    partners = res.rows(res.dup_rows[s > 1.0], ["text"])
    assert len(texts) >= 3  # real repeated quotes …
    norm = [" ".join(t.lower().split()) for t in texts["text"]]
    assert norm == [" ".join(t.lower().split()) for t in partners["text"]]  # … and they are the same text
    queue = tmp_path / "queue.csv"
    assert main(["audit", "sample", str(res.path), "--n", "40", "--out", str(queue), "--seed", "2"]) == 0
    design = load_design(Results.load(res.path))
    assert design.band_sizes[0] >= len(texts) and (design.units["max_sim"] > 1.0).sum() >= 1
    q = pd.read_csv(queue, dtype=str, keep_default_na=False)
    same = [
        " ".join(a.lower().split()) == " ".join(b.lower().split())
        for a, b in zip(q["text"], q["dup_of_text"], strict=True)
    ]
    q["verdict"] = np.where(same, "duplicate", "not_duplicate")
    q.to_csv(queue, index=False)
    assert main(["audit", "import", str(res.path), str(queue), "--reviewer", "ann"]) == 0
    capsys.readouterr()
    assert main(["audit", "report", str(res.path), "--json", "--eps", "0.0", "0.3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"][0]["removed"] == int((s > 1.0).sum())
    assert out["rows"][0]["precision"] == pytest.approx(1.0)  # exact copies, judged by their text
    assert out["rows"][1]["labelled"] == design.n == min(40, design.population)


def test_a_sample_of_another_run_is_still_refused(exact_results, tmp_path):
    """The check that used to misfire on exact copies still catches a sample drawn from another run."""
    res = private(exact_results, tmp_path)
    design = draw_sample(res, 50, 0.3)
    units = design.units.copy()
    units.loc[units.index[0], "N_h"] += 1  # band sizes that differ from this run's
    save_design(
        type(design)(design.eps_max, design.seed, design.bands, design.edges, design.scores, design.offsets, units),
        res.path,
    )
    with pytest.raises(SemDedupError, match="drawn from another run"):
        load_design(Results.load(res.path))
    units = design.units.copy()
    units.loc[units.index[0], "dup_row"] = (int(units["dup_row"].iat[0]) + 1) % res.n_items  # another pair
    save_design(
        type(design)(design.eps_max, design.seed, design.bands, design.edges, design.scores, design.offsets, units),
        res.path,
    )
    with pytest.raises(SemDedupError, match="drawn from another run"):
        load_design(Results.load(res.path))


def test_a_sample_written_before_this_issue_reads_as_a_fixed_plan(exact_results, tmp_path):
    """Samples recorded before plans, rows and double judging existed load as a fixed plan, their rows
    looked up by id."""
    from semdedup_core.audit.design import PLAN_COLUMNS, UNIT_COLUMNS

    res = private(exact_results, tmp_path)
    design = draw_sample(res, 60, 0.3, seed=4)
    old = design.units[list(UNIT_COLUMNS)]
    assert not set(PLAN_COLUMNS) & set(old.columns)
    (res.path / "audit").mkdir(exist_ok=True)
    old.to_parquet(res.path / "audit" / "sample.parquet")
    loaded = load_design(Results.load(res.path))
    assert not loaded.plan.sequential and loaded.plan.double == 0 and not loaded.units["double"].any()
    assert np.array_equal(loaded.units["row"], design.units["row"])
    assert np.array_equal(loaded.units["dup_row"], design.units["dup_row"])
    assert loaded.looks.tolist() == [60]
