"""Never overwrite, and text that stays text (issue 19, findings 9, 10, 11 and 13): every --out refuses the
results folder's own files and an existing file that is not its own earlier output (naming --force); the
review queue CSV neutralises formulas and `audit import` undoes it; reviewer names are checked; ids are
compared exactly as stored (spaces kept) and a BOM is no part of an id; bidirectional controls are
isolated in the report and the app."""

from __future__ import annotations

import csv
import html.parser
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import Results, SemDedupError
from semdedup_core.audit.labels import LabelStore
from semdedup_core.cli import build_parser, main

APP = str(Path(__file__).resolve().parents[1] / "app.py")
RLO = "\u202e"
SPECIAL = [
    " lead",
    "trail ",
    '=HYPERLINK("http://evil.example","x")',
    "+1 800",
    "-5",
    "@user",
    "'quoted",
    "mid" + RLO + "dle",
]


@pytest.fixture
def special_run(tmp_path):
    """A run (CLI, one cluster) whose ids need care: spaces at either end, formula starts, a quote and a
    right-to-left override; each is the near-copy or the original of a planted pair. The ids file starts
    with a UTF-8 BOM."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(len(SPECIAL), 12)).astype(np.float32)
    copies = base + 0.02 * rng.normal(size=base.shape).astype(np.float32)
    np.save(tmp_path / "x.npy", np.concatenate([base, copies]))
    ids = SPECIAL + [f"copy{i}" for i in range(len(SPECIAL))]
    (tmp_path / "ids.txt").write_bytes(("\ufeff" + "".join(i + "\n" for i in ids)).encode("utf-8"))
    out = tmp_path / "run"
    assert main(["run", "--embeddings", str(tmp_path / "x.npy"), "--ids", str(tmp_path / "ids.txt"), "--out", str(out),
                 "--clusters", "1", "--quiet"]) == 0  # fmt: skip
    return Results.load(out)


# -- finding 11: ids as stored, end to end; no BOM in the first id ----------------------------------------------
def test_ids_keep_their_spaces_through_the_queue_and_import_and_a_bom_is_no_part_of_one(special_run, tmp_path):
    """Before: `audit import` stripped the ids the run keeps (" lead" → "there is no item 'lead'"), and a
    BOM at the start of --ids became part of the first id."""
    assert " lead" in set(special_run.items["id"])
    assert not any(i.startswith("\ufeff") for i in special_run.items["id"])
    folder = str(special_run.path)
    queue = tmp_path / "queue.csv"
    assert main(["audit", "sample", folder, "--n", str(len(SPECIAL)), "--out", str(queue)]) == 0
    with open(queue, newline="", encoding="utf-8") as f:  # a spreadsheet's round trip: cells kept as text
        rows = list(csv.reader(f))
    verdict = rows[0].index("verdict")
    for row in rows[1:]:
        row[verdict] = "duplicate"
    with open(queue, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    assert main(["audit", "import", folder, str(queue), "--reviewer", "ana"]) == 0
    stored = LabelStore.for_results(special_run.path).read()
    pairs = set(zip(special_run.items["id"], special_run.items["dup_of"], strict=True))
    assert len(stored) == len(SPECIAL)
    for a, b in zip(stored["id_a"], stored["id_b"], strict=True):  # exactly the run's ids, spaces and all
        assert (a, b) in pairs or (b, a) in pairs, (a, b)
    assert {" lead", "trail ", "'quoted"} <= set(stored["id_a"]) | set(stored["id_b"])


# -- finding 10: formulas in the queue CSV; reviewer names ------------------------------------------------------
def test_the_review_queue_csv_neutralises_formulas_and_import_reads_them_back(special_run, tmp_path):
    """Before, the queue CSV wrote =HYPERLINK(…), +1…, -5…, @user… raw (exports neutralised them)."""
    queue = tmp_path / "queue.csv"
    assert main(["audit", "sample", str(special_run.path), "--n", str(len(SPECIAL)), "--out", str(queue)]) == 0
    raw = queue.read_text(encoding="utf-8")
    cells = [c for row in csv.reader(raw.splitlines()) for c in row]
    for risky in ("=", "+", "-", "@"):
        assert not [c for c in cells if c.startswith(risky)], risky  # no cell a spreadsheet would run
    assert "'=HYPERLINK(" in raw and "'+1 800" in raw and "'-5" in raw and "'@user" in raw and "''quoted" in raw
    frame = pd.read_csv(queue, dtype=str, keep_default_na=False)
    frame["verdict"] = "not_duplicate"
    frame.to_csv(queue, index=False)
    assert main(["audit", "import", str(special_run.path), str(queue), "--reviewer", "ana"]) == 0
    stored = LabelStore.for_results(special_run.path).read()
    assert {'=HYPERLINK("http://evil.example","x")', "+1 800", "-5", "@user"} <= set(stored["id_a"]) | set(
        stored["id_b"]
    )


@pytest.mark.parametrize("name", ["ana\nbo", "=cmd|' /C calc'!A0", "@sum(1)", "+1", "-x", "ana\u202ebo", "ana\tbo", ""])
def test_reviewer_names_with_a_line_break_or_a_formula_are_refused(special_run, tmp_path, name, capsys):
    """Before, such names were stored as they were."""
    queue = tmp_path / "queue.csv"
    assert main(["audit", "sample", str(special_run.path), "--n", "3", "--out", str(queue)]) == 0
    frame = pd.read_csv(queue, dtype=str, keep_default_na=False)
    frame["verdict"] = "duplicate"
    frame.to_csv(queue, index=False)
    assert main(["audit", "import", str(special_run.path), str(queue), f"--reviewer={name}"]) == 2
    assert "--reviewer must start with a letter or digit" in capsys.readouterr().err
    frame["reviewer"] = name or "x\ny"
    frame.to_csv(queue, index=False)
    assert main(["audit", "import", str(special_run.path), str(queue)]) == 2
    assert "row 1" in capsys.readouterr().err
    store = LabelStore(tmp_path / "s.parquet")
    with pytest.raises(SemDedupError, match="must start with a letter or digit"):
        store.record("a", "b", "duplicate", name or "\n")
    assert not store.exists() and not LabelStore.for_results(special_run.path).exists()
    store.record("a", "b", "duplicate", "Zoë O'Neil-Ça ana+x@example.org")  # names of people are fine


# -- finding 9: never overwrite ---------------------------------------------------------------------------------
def test_every_out_refuses_a_folder_file_and_a_foreign_file_naming_force(special_run, tmp_path, capsys):
    """Before: `audit sample --out myqueue.csv` erased 20 filled-in verdicts, `audit sample --out
    DIR/labels.parquet` replaced the verdict store and `report --out DIR/run.json` destroyed the folder."""
    folder = special_run.path
    sample = ["audit", "sample", str(folder), "--n", "4"]
    queue = tmp_path / "myqueue.csv"
    assert main([*sample, "--out", str(queue)]) == 0
    assert main([*sample, "--out", str(queue)]) == 0  # its own earlier output, still blank: replaced
    filled = pd.read_csv(queue, dtype=str, keep_default_na=False)
    filled["verdict"] = "duplicate"
    filled.to_csv(queue, index=False)
    kept = queue.read_bytes()
    LabelStore.for_results(folder).record(special_run.items["id"].iat[0], "copy0", "unsure", "bo")
    store_bytes, run_bytes = (folder / "labels.parquet").read_bytes(), (folder / "run.json").read_bytes()
    capsys.readouterr()
    refused = [
        ([*sample, "--out", str(queue)], "holds 4 filled-in verdicts"),
        ([*sample, "--out", str(folder / "labels.parquet")], "'labels.parquet' of the results folder"),
        ([*sample, "--out", str(folder / "audit" / "sample.parquet")], "'audit/sample.parquet' of the results folder"),
        (
            ["report", str(folder), "--eps", "0.1", "--out", str(folder / "run.json")],
            "'run.json' of the results folder",
        ),
        (["report", str(folder), "--eps", "0.1", "--out", str(queue)], "is not a report this command wrote"),
    ]
    for args, words in refused:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and words in err and "--force" in err, (args, err)
    assert queue.read_bytes() == kept and (folder / "labels.parquet").read_bytes() == store_bytes
    assert (folder / "run.json").read_bytes() == run_bytes and Results.load(folder).n_items == special_run.n_items
    report = tmp_path / "r.html"
    assert main(["report", str(folder), "--eps", "0.1", "--out", str(report)]) == 0
    assert main(["report", str(folder), "--eps", "0.2", "--out", str(report)]) == 0  # its own: replaced
    assert main([*sample, "--out", str(queue), "--force"]) == 0  # the way out, when meant
    assert "verdict" in queue.read_text() and "duplicate" not in queue.read_text()
    filled.to_csv(queue, index=False)
    assert main(["audit", "import", str(folder), str(queue)]) == 0  # the usual round: fill in, import, redraw
    assert main([*sample, "--out", str(queue)]) == 0  # its verdicts are stored: replaced without --force
    assert "verdict" in queue.read_text() and "duplicate" not in queue.read_text()
    for command in (["audit", "sample"], ["report"]):
        prog = " ".join(["python -m semdedup_core", *command])
        help_text = next(p for p in _parsers(build_parser()) if p.prog == prog).format_help()
        assert "--force" in help_text


def _parsers(parser):
    yield parser
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for child in action.choices.values():
                yield from _parsers(child)


def test_a_progress_file_may_not_be_a_folder_file(special_run, tmp_path, capsys):
    args = ["run", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r2"), "--clusters", "1", "--quiet"]
    assert main([*args, "--progress-file", str(special_run.path / "run.json")]) == 2
    assert "'run.json' of the results folder" in capsys.readouterr().err
    assert json.loads((special_run.path / "run.json").read_text())["status"] == "complete"


# -- finding 13: bidirectional controls ------------------------------------------------------------------------
class _TextNodes(html.parser.HTMLParser):
    """Each text node of a document with the elements open around it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.nodes: list[tuple[tuple[str, ...], str]] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("br", "img", "meta", "link", "input", "hr"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag) :]

    def handle_data(self, data):
        self.nodes.append((tuple(self.stack), data))


def test_a_right_to_left_override_in_an_id_reverses_nothing_around_it(special_run, tmp_path):
    """Before, an id holding U+202E reversed the text after it (the cluster number, the next words) in the
    report and in the app."""
    from semdedup_core.explore.report import build_report

    page = _TextNodes()
    page.feed(build_report(special_run, 0.5, examples=20, borderline=20))
    with_control = [(stack, text) for stack, text in page.nodes if RLO in text]
    assert with_control and all("bdi" in stack or stack[-1:] == ("title",) for stack, text in with_control)
    title = next(text for stack, text in page.nodes if stack[-1:] == ("title",))
    assert RLO not in title or ("\u2068" in title and "\u2069" in title)
    # the app: every line of Markdown holding it is isolated, and closed again right after the id
    shown = sa.escape_markdown("mid" + RLO + "dle")
    assert shown.startswith("\u2068") and shown.endswith("\u2069")
    assert sa.escape_markdown("plain id") == "plain id"  # ASCII text is left alone
    sys.argv[:] = ["app.py", "--results", str(special_run.path)]
    try:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page(sa.PAGES["pairs"]).run()
        at.sidebar.slider(key="sb_eps").set_value(0.5).run()
        at.selectbox(key="pairs_per_page").set_value(50).run()
    finally:
        sys.argv[:] = ["pytest"]
    captions = [c.value for c in at.caption if RLO in c.value]
    assert captions and all(c.index("\u2068") < c.index(RLO) < c.index("\u2069") for c in captions), captions
