"""The one-file HTML report: self-contained, escaped, deterministic, and showing the run's own numbers."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semdedup_core import Results, SemDedupError
from semdedup_core.cli import main
from semdedup_core.explore import curve, pairs
from semdedup_core.explore.report import THUMB_SIZE, build_report, check_audit, escape, write_report

ROOT = Path(__file__).resolve().parents[1]


class Page(HTMLParser):
    """Every tag with its attributes, the text of each element id, the text of <style>, and all text."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.style: list[str] = []
        self.by_id: dict[str, str] = {}
        self._stack: list[str | None] = []
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        self._in_style = tag == "style"
        if tag not in ("img", "meta", "br", "line", "circle", "rect", "polyline"):
            self._stack.append(a.get("id"))
            if a.get("id"):
                self.by_id[a["id"]] = ""

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        self._in_style = False
        if tag not in ("img", "meta", "br", "line", "circle", "rect", "polyline") and self._stack:
            self._stack.pop()

    def handle_data(self, data):
        (self.style if self._in_style else self.text).append(data)
        for i in self._stack:
            if i:
                self.by_id[i] += data

    def images(self) -> list[str]:
        return [a["src"] for t, a in self.tags if t == "img"]


def assert_self_contained(html: str) -> Page:
    """Nothing in ``html`` can fetch anything or run anything (checked on the parsed markup and the raw file)."""
    page = Page(html)
    names = {t for t, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base", "frame", "audio", "video", "source"}
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)  # no event handlers
            if name in ("src", "href", "xlink:href", "action", "poster", "srcset"):
                assert (value or "").startswith("data:image/"), (tag, name, (value or "")[:60])
        if tag == "meta":
            assert attrs.get("http-equiv") is None, attrs
    css = "".join(page.style)
    assert "url(" not in css and "@import" not in css and "@font-face" not in css
    # the raw file, searched as a tool would: no URL, no external src, no link element, no url(...)
    assert not re.search(r"https?://", html)
    assert not re.search(r"""src\s*=\s*(?!["']?data:image/)""", html, re.I)
    assert not re.search(r"<link\b", html, re.I)
    assert not re.search(r"url\(\s*(?![\"']?data:)", html, re.I)
    assert not re.search(r"<script\b", html, re.I)
    return page


@pytest.fixture(scope="module")
def text_report(text_results):
    return build_report(text_results, 0.1)


def test_the_report_is_self_contained_and_shows_the_numbers(text_results, text_report):
    res, e = text_results, 0.1
    page = assert_self_contained(text_report)
    n_rem = res.n_removed(e)
    assert page.by_id["n-items"] == f"{res.n_items:,}"
    assert page.by_id["n-removed"] == f"{n_rem:,}"
    assert page.by_id["n-kept"] == f"{res.n_items - n_rem:,}"
    assert page.by_id["share-removed"] == f"{100 * n_rem / res.n_items:.1f} %"
    # the run's parameters, from run.json
    params = page.by_id["run"]
    created = res.run["created"].replace("T", " ")
    for needle in ("keep policy", "hard", "clusters (k)", created, "numpy " + res.run["versions"]["numpy"]):
        assert needle in params, needle
    assert "embeddings given to the run (d = 24)" in params
    assert "audit" not in page.by_id  # no verdicts, no section


def test_example_and_borderline_pairs_are_those_of_the_explorer(text_results, text_report):
    res, e = text_results, 0.1
    page = Page(text_report)
    ids = res.items["id"].to_numpy()
    best = pairs.showcase_pairs(res, e)
    near = pairs.pairs_frame(res, e, sort="borderline")
    near = near[~near["row"].isin(best["row"])].head(6)
    for section, frame in (("examples", best), ("borderline", near)):
        text = page.by_id[section]
        shown = re.findall(r"removed (\S+) · cluster", text)  # the removed item's caption, in order
        assert shown == [str(ids[r]) for r in frame["row"]], section
        for sim in frame["max_sim"]:
            assert f"{sim:.4f}" in text
    groups = page.by_id["groups"]
    removed = res.removed_mask(e)
    roots = np.arange(res.n_items)
    for i in np.flatnonzero(removed):  # each removed item's kept item, up its chain link by link
        while removed[roots[i]]:
            roots[i] = res.dup_rows[roots[i]]
    kept, counts = np.unique(roots[removed], return_counts=True)
    order = np.lexsort((kept, -counts))[:4]
    table = pd.DataFrame({"removed": counts[order], "id": [str(ids[r]) for r in kept[order]]})
    heads = re.findall(r"(\d+) removed as duplicates of (t\d{4})", groups)
    assert heads == [(str(c), str(i)) for c, i in zip(table["removed"], table["id"], strict=True)]


def test_the_curve_is_the_kept_fraction_of_the_run(text_results, text_report):
    res, e = text_results, 0.1
    svg = text_report[text_report.index("<svg") : text_report.index("</svg>")]
    pts = np.array([p.split(",") for p in re.search(r'points="([^"]+)"', svg).group(1).split()], dtype=float)
    grid, kept = curve.kept_curve(res)
    assert len(pts) == len(grid) == curve.POINTS
    top, ph = 16, 280 - 16 - 44  # the chart's frame (see curve_svg)
    np.testing.assert_allclose(1 - (pts[:, 1] - top) / ph, kept, atol=0.06 / ph + 1e-3)
    assert np.all(np.diff(pts[:, 1]) >= 0)  # kept never grows with ε: y (downwards) never falls
    cy = float(re.search(r'<circle class="chosen" cx="[\d.]+" cy="([\d.]+)"', svg).group(1))
    assert 1 - (cy - top) / ph == pytest.approx(res.kept_fraction(e), abs=1e-3)
    assert f"ε = {e:.4f}: {100 * res.kept_fraction(e):.1f} % kept" in svg


def test_same_inputs_give_the_same_bytes(text_results, text_report, image_results, tmp_path):
    again = build_report(Results.load(text_results.path), 0.1)
    assert again == text_report
    assert build_report(text_results, 0.2) != text_report
    a = write_report(image_results, 0.05, tmp_path / "a.html")
    b = write_report(Results.load(image_results.path), 0.05, tmp_path / "sub" / "b.html")
    assert a.read_bytes() == b.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_images_are_small_embedded_thumbnails(image_results):
    res, e = image_results, 0.05
    html = build_report(res, e)
    page = assert_self_contained(html)
    srcs = page.images()
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    for s in set(srcs):
        with Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1]))) as im:
            assert im.format == "JPEG" and max(im.size) <= THUMB_SIZE
    best = pairs.showcase_pairs(res, e)
    assert len(srcs) >= 2 * len(best) > 0  # each example pair: both pictures
    assert len(html) < 2_000_000


def test_hostile_text_ids_and_paths_are_shown_as_text(hostile_results):
    res = hostile_results
    html = build_report(res, 0.05)
    page = assert_self_contained(html)
    text = "".join(page.text)
    assert "<script>alert('report')</script>" in text  # shown literally, as text
    assert "<i>item 0</i>" in text
    assert "http://evil.example/0.png" in text  # a path that is not on disk: a placeholder naming it
    assert "image not found or unreadable" in text
    assert not page.images()  # no picture exists, so none is embedded
    tags = [t for t, _ in page.tags]
    assert "i" not in tags and "img" not in tags and tags.count("style") == 1  # no markup from the data


def test_escape_leaves_no_markup_url_or_attribute():
    s = """<a href="http://x" onclick='y'>(url(z)) & javascript:1=2</a>"""
    out = escape(s)
    assert not re.search(r"[<>\"'(=]|://|&(?!amp;|lt;|gt;|quot;|#x27;|#58;|#61;|#40;)", out)
    page = Page(f"<p>{out}</p>")
    assert "".join(page.text) == s


def test_the_audit_section_appears_only_with_a_summary(text_results):
    res = text_results
    audit = {"eps": 0.1, "labelled": 400, "precision": 0.935, "ci_low": 0.905, "ci_high": 0.957, "unsure": 3}
    html = build_report(res, 0.1, audit={**audit, "target": 0.9, "recommended_eps": 0.12})
    page = assert_self_contained(html)
    section = page.by_id["audit"]
    assert "Of 400 removed pairs checked by people at ε = 0.1000" in section
    assert page.by_id["audit-precision"] == "93.5 %"
    assert "95 % interval 90.5 % – 95.7 %" in section
    assert "3 pairs judged unsure are not counted" in section
    assert "0.1200" in section
    assert "(this report is at ε = 0.2000)" in Page(build_report(res, 0.2, audit=audit)).by_id["audit"]
    assert "audit" not in Page(build_report(res, 0.1)).by_id
    with pytest.raises(SemDedupError, match="lacks ci_low, ci_high"):
        check_audit({"precision": 0.9, "labelled": 10})
    with pytest.raises(SemDedupError, match="must contain the precision"):
        check_audit({"precision": 0.9, "ci_low": 0.95, "ci_high": 0.99, "labelled": 10})
    with pytest.raises(SemDedupError, match="between 0 and 1"):
        check_audit({"precision": 1.5, "ci_low": 0.95, "ci_high": 0.99, "labelled": 10})


def test_nothing_removed_and_bad_arguments(text_results, tmp_path):
    page = assert_self_contained(build_report(text_results, 0.0))
    assert page.by_id["n-removed"] == "0"
    assert "Nothing is a duplicate at this threshold." in page.by_id["examples"]
    with pytest.raises(SemDedupError, match="eps must be between 0 and 2"):
        build_report(text_results, 3.0)
    with pytest.raises(SemDedupError, match="examples must be 0 or more"):
        build_report(text_results, 0.1, examples=-1)
    with pytest.raises(SemDedupError, match="is a folder"):
        write_report(text_results, 0.1, tmp_path)
    few = Page(build_report(text_results, 0.1, examples=0, borderline=0, groups=0, clusters=0))
    assert not {"examples", "borderline", "groups", "clusters"} & set(few.by_id)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``python -m semdedup_core ARGS`` in this process: (exit status, stdout, stderr)."""
    try:
        rc = main(list(args))
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_report(text_results, tmp_path, capsys):
    res = text_results
    out = tmp_path / "r" / "report.html"
    p = subprocess.run(  # once as a user runs it
        [sys.executable, "-m", "semdedup_core", "report", str(res.path), "--eps", "0.1", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert out.read_text() == build_report(res, 0.1)
    assert f"{res.n_items:,} items, {res.n_removed(0.1):,} removed" in p.stdout
    e = res.eps_for_kept_fraction(0.8)
    rc, stdout, _ = run_cli(
        capsys, "report", str(res.path), "--keep-fraction", "0.8", "--out", str(out), "--examples", "2"
    )
    assert rc == 0 and str(out) in stdout
    assert out.read_text() == build_report(res, e, examples=2)
    for args, message in (
        ([str(tmp_path / "missing"), "--eps", "0.1", "--out", str(out)], "does not exist"),
        ([str(res.path), "--eps", "5", "--out", str(out)], "eps must be between 0 and 2"),
        ([str(res.path), "--eps", "0.1", "--out", str(tmp_path)], "is a folder"),
        ([str(res.path), "--out", str(out)], "one of the arguments --eps --keep-fraction is required"),
    ):
        rc, _, err = run_cli(capsys, "report", *args)
        assert rc == 2, args
        assert message in err and len(err.strip().splitlines()) == 1, err
