"""`python -m semdedup_core audit sample|import|report`: the contract (files, columns, JSON keys), the
same command giving the same queue, a larger sample nesting a smaller one, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from semdedup_core.audit.labels import LabelStore
from semdedup_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "semdedup_core", *map(str, args)], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.mark.slow
def test_the_whole_loop_as_a_user_runs_it(audit_copy, tmp_path):
    """sample → fill in the verdict column → import → report --json → export --rule audited, in a shell."""
    res = audit_copy
    queue = tmp_path / "queue.csv"
    p = cli("audit", "sample", res.path, "--n", 30, "--out", queue)
    assert p.returncode == 0, p.stderr
    q = pd.read_csv(queue, dtype=str, keep_default_na=False)
    assert list(q.columns) == ["id", "dup_of", "max_sim", "text", "dup_of_text", "verdict"]
    assert len(q) == 30 and (q["verdict"] == "").all()
    assert (res.path / "audit" / "sample.parquet").exists()
    q["verdict"] = ["duplicate"] * 25 + ["not_duplicate"] * 3 + ["unsure"] * 2
    q.to_csv(queue, index=False)
    p = cli("audit", "import", res.path, queue, "--reviewer", "ann")
    assert p.returncode == 0, p.stderr
    assert "imported 30 verdicts (25 duplicate, 3 not_duplicate, 2 unsure) by ann" in p.stdout
    p = cli("audit", "report", res.path, "--json", "--target", "0.5")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert {"rows", "recommended_eps", "target"} <= set(out) and out["target"] == 0.5
    row = out["rows"][-1]
    assert {"eps", "removed", "labelled", "precision", "ci_low", "ci_high", "unsure", "kept_duplicates"} <= set(row)
    assert row["eps"] == pytest.approx(0.3) and row["removed"] == res.n_removed(0.3)
    assert row["labelled"] == 28 and row["unsure"] == 2
    assert row["ci_low"] <= row["precision"] <= row["ci_high"]
    assert out["recommended_eps"] is not None and out["recommended_eps"] <= 0.3
    p = cli("export", res.path, "--eps", "0.3", "--rule", "audited")
    assert p.returncode == 0, p.stderr
    assert f"removed: {res.n_removed(0.3, 'audited', LabelStore(res.path / 'labels.parquet')):,} of" in p.stdout


def test_report_table_eps_list_and_plain_no_recommendation(audit_copy, tmp_path, capsys):
    res = audit_copy
    assert main(["audit", "sample", str(res.path), "--n", "10", "--out", str(tmp_path / "q.csv")]) == 0
    capsys.readouterr()
    assert main(["audit", "report", str(res.path), "--eps", "0.05", "0.1", "--eps", "0.2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["eps"] for r in out["rows"]] == [0.05, 0.1, 0.2]
    assert out["rows"][0]["precision"] is None and out["recommended_eps"] is None  # nothing judged: null, not NaN
    assert main(["audit", "report", str(res.path)]) == 0
    text = capsys.readouterr().out
    assert "no ε reaches 0.95 with the verdicts so far; judge more pairs or lower the target" in text
    assert text.count("\n") > 30  # one line per ε of the default grid


def test_same_command_same_queue_and_a_larger_sample_nests(audit_copy, tmp_path, capsys):
    res = audit_copy
    args = ["audit", "sample", str(res.path), "--seed", "3", "--eps-max", "0.25"]
    assert main([*args, "--n", "12", "--out", str(tmp_path / "a.csv")]) == 0
    assert main([*args, "--n", "12", "--out", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert main([*args, "--n", "30", "--out", str(tmp_path / "c.csv")]) == 0
    assert "it contains the earlier sample" in capsys.readouterr().out
    small = pd.read_csv(tmp_path / "a.csv", dtype=str)
    big = pd.read_csv(tmp_path / "c.csv", dtype=str)
    assert set(zip(small["id"], small["dup_of"], strict=True)) <= set(zip(big["id"], big["dup_of"], strict=True))
    # judged pairs leave the queue but stay in the sample
    small["verdict"] = "duplicate"
    small.to_csv(tmp_path / "a.csv", index=False)
    assert main(["audit", "import", str(res.path), str(tmp_path / "a.csv")]) == 0
    assert main([*args, "--n", "30", "--out", str(tmp_path / "d.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "d.csv")) == len(big) - 12
    assert "already judged in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["audit", "report", "{dir}"], ["no review sample", "audit sample"]),
        (["audit", "sample", "{dir}", "--n", "0", "--out", "{tmp}/q.csv"], ["sample size"]),
        (
            ["audit", "sample", "{dir}", "--n", "5", "--out", "{tmp}/q.csv", "--eps-max", "0.0001"],
            ["nothing is removed"],
        ),
        (["audit", "sample", "{tmp}/missing", "--n", "5", "--out", "{tmp}/q.csv"], ["does not exist"]),
        (
            ["audit", "report", "{dir}", "--labels", "{tmp}/nope/labels.parquet", "--target", "1.5"],
            ["no review sample"],
        ),
    ],
)
def test_one_line_errors(audit_copy, tmp_path, capsys, argv, words):
    argv = [a.format(dir=audit_copy.path, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m semdedup_core: error:")
    for w in words:
        assert w in err, err


def test_report_refuses_what_the_sample_cannot_answer(audit_copy, tmp_path, capsys):
    res = audit_copy
    assert (
        main(["audit", "sample", str(res.path), "--n", "10", "--eps-max", "0.2", "--out", str(tmp_path / "q.csv")]) == 0
    )
    capsys.readouterr()
    assert main(["audit", "report", str(res.path), "--eps", "0.1", "0.4"]) == 2
    assert "eps 0.4 is above the review sample's eps-max 0.2" in capsys.readouterr().err
    assert main(["audit", "report", str(res.path), "--target", "1.5"]) == 2
    assert "target must be a precision" in capsys.readouterr().err
    assert not LabelStore(res.path / "labels.parquet").exists()  # reports never write


def test_the_report_shows_the_audited_precision_once_reviewers_judged(audit_copy, tmp_path, capsys):
    """`report` carries the audit's estimate at its ε (a "Checked by people" section) when verdicts exist,
    and none before; at an ε beyond the sample's eps-max it stays silent rather than guess."""
    import re

    from semdedup_core.audit.precision import report as audit_report

    res = audit_copy
    assert main(["report", str(res.path), "--eps", "0.2", "--out", str(tmp_path / "before.html")]) == 0
    assert 'id="audit"' not in (tmp_path / "before.html").read_text()
    queue = tmp_path / "q.csv"
    assert main(["audit", "sample", str(res.path), "--n", "30", "--out", str(queue)]) == 0
    q = pd.read_csv(queue, dtype=str, keep_default_na=False)
    q["verdict"] = ["duplicate"] * 24 + ["not_duplicate"] * 6
    q.to_csv(queue, index=False)
    assert main(["audit", "import", str(res.path), str(queue), "--reviewer", "ann"]) == 0
    capsys.readouterr()
    assert main(["report", str(res.path), "--eps", "0.2", "--out", str(tmp_path / "after.html")]) == 0
    html = (tmp_path / "after.html").read_text()
    row = audit_report(res, eps=[0.2]).rows.iloc[0]
    assert 'id="audit"' in html and re.search(rf"\b{row['precision'] * 100:.0f}\b", html), html[:2000]
    assert main(["report", str(res.path), "--eps", "0.5", "--out", str(tmp_path / "beyond.html")]) == 0
    assert 'id="audit"' not in (tmp_path / "beyond.html").read_text()
