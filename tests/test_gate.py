"""The explorer's one gate (issue 19, findings 1–5 and 8): in read-only mode Compare opens only the shared
runs, verdicts are written only by listed reviewers who prove who they are, only into a store named at
start and never into a shared results folder, nobody redraws the review sample, and the report follows
the image rule. Every page is checked twice: its code never opens, lists or writes a file (only the gate's
operations do), and a read-only explorer run page by page by a hostile session writes nothing and reads
nothing outside its roots (every file this process opens or writes is watched with an audit hook)."""

from __future__ import annotations

import ast
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import make_text_results
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import SemDedupError
from semdedup_core.cli import main

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE_FILES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]


@pytest.fixture(autouse=True)
def _env(clean_app_env):
    """Every test here starts the app as a fresh user would (conftest)."""


@pytest.fixture
def shared(text_results, tmp_path, monkeypatch):
    """A read-only explorer's world: a root with two runs (run-a with a review sample), a private run
    outside the root with texts of its own, and a labels store folder outside the root."""
    root = tmp_path / "shared"
    run_a = Path(shutil.copytree(text_results.path, root / "team" / "run-a"))
    run_b = Path(shutil.copytree(text_results.path, root / "team" / "run-b"))
    assert main(["audit", "sample", str(run_a), "--n", "10", "--out", str(tmp_path / "queue.csv")]) == 0
    private = make_text_results(tmp_path / "private" / "secret-run", seed=7)
    (tmp_path / "stores").mkdir()
    monkeypatch.setenv("SEMDEDUP_ALLOWED_ROOTS", str(root))
    return {"root": root, "a": run_a, "b": run_b, "private": private, "stores": tmp_path / "stores"}


def app(*argv: str, page: str | None = None, keys: dict | None = None, user: dict | None = None) -> AppTest:
    sys.argv[:] = ["app.py", *argv]
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["map_method"] = "pca"
    if keys is not None:
        at.secrets["semdedup"] = {"reviewer_keys": keys}
    if user is not None:
        at.user = user
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    if page:
        at.switch_page(sa.PAGES[page]).run()
        assert not at.exception, [e.value for e in at.exception]
    return at


def shown_text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "text", "error", "info") for e in at.get(kind))


def files_under(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


# -- finding 1: Compare ------------------------------------------------------------------------------
def test_read_only_compare_opens_only_the_shared_runs(shared):
    """Before, typing a folder outside the roots into Compare's box loaded it and showed its texts, and other
    paths gave errors that told whether they exist."""
    private = shared["private"]
    secret_texts = set(private.items["text"]) - set(sa.load(shared["a"]).items["text"])
    at = app("--read-only", "--results", str(shared["a"]), page="compare")
    refusals = []
    for typed in (str(private.path), str(private.path.parent / "no-such-run"), str(private.path / "run.json")):
        at.text_input(key="cmp_typed").set_value(typed).run()
        assert not at.exception, [e.value for e in at.exception]
        assert at.session_state["cmp_path"] is None
        errors = [e.value.replace("\\", "") for e in at.error]
        assert len(errors) == 1, errors
        refusals.append(errors[0].replace(typed, "PATH"))
        assert not any(t in shown_text(at) for t in secret_texts)
    assert len(set(refusals)) == 1, refusals  # the same line whether the path exists, is a file or is missing
    assert "not one of the results folders this read-only explorer shares" in refusals[0]
    at.session_state["cmp_path"] = str(private.path)  # a session that sets the value itself is refused too
    at.run()
    assert not at.exception and at.error and not any(t in shown_text(at) for t in secret_texts)
    at.session_state["cmp_path"] = None
    at.run()
    assert "run-b" in at.selectbox(key="cmp_recent").options  # the shared runs, by name (no server paths)
    at.text_input(key="cmp_typed").set_value(str(shared["b"])).run()  # inside the roots: compared
    assert not at.error and any("removed by both" in m.label for m in at.metric)


def test_a_link_with_a_run_opens_only_what_the_gate_allows(shared):
    sys.argv[:] = ["app.py", "--read-only"]
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = str(shared["private"].path)
    at.run()
    assert at.session_state["sd_results_dir"] is None and at.error
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["run"] = str(shared["a"])
    at.run()
    assert at.session_state["sd_results_dir"] == str(shared["a"])


# -- findings 2, 3, 4: who writes verdicts, and where ---------------------------------------------------------
def judge(at: AppTest, name: str = "", key: str | None = None) -> AppTest:
    if "rev_reviewer" in [t.key for t in at.text_input]:
        at.text_input(key="rev_reviewer").set_value(name).run()
    if key is not None and "rev_key" in [t.key for t in at.text_input]:
        at.text_input(key="rev_key").set_value(key).run()
    button = at.button(key="rev_dup")
    if not button.disabled:
        button.click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_read_only_review_never_writes_where_a_viewer_says(shared):
    """Before: a typed labels store was written (with its lock) outside the roots or into another run's
    folder, and a name not given with --reviewer wrote labels.parquet into the shared results folder."""
    before = files_under(shared["root"])
    evil = shared["stores"] / "evil" / "typed.parquet"
    evil.parent.mkdir()
    for store in (str(evil), str(shared["b"] / "labels.parquet"), ""):
        for who in ("ana", "mallory"):
            at = app("--read-only", "--results", str(shared["a"]), "--reviewer", "ana", page="review")
            at.session_state["sd_labels"] = store
            at.run()
            judge(at, who)
    assert not list(evil.parent.iterdir())  # neither the store nor its lock
    assert files_under(shared["root"]) == before  # no labels.parquet in any shared folder


def test_read_only_reviewers_prove_who_they_are_and_write_only_into_the_named_store(shared):
    """Before, typing a listed reviewer's name gave that reviewer's rights."""
    before = files_under(shared["root"])
    store = shared["stores"] / "team.parquet"
    args = ("--read-only", "--results", str(shared["a"]), "--reviewer", "ana", "--labels", str(store))
    for key in (None, "", "wrong"):  # the name alone, or with a wrong key: nothing written anywhere
        judge(app(*args, page="review", keys={"ana": "k-ana"}), "ana", key)
        assert not store.exists() and files_under(shared["root"]) == before
    at = judge(app(*args, page="review", keys={"ana": "k-ana"}), "ana", "k-ana")
    assert not at.error, [e.value for e in at.error]
    from semdedup_core.audit.labels import LabelStore

    rows = LabelStore(store).read()
    assert list(rows["reviewer"]) == ["ana"] and list(rows["verdict"]) == ["duplicate"]
    # a name with a key configured needs it; a hashed key works as well
    import hashlib

    hashed = {"ana": "sha256:" + hashlib.sha256(b"k-ana").hexdigest()}
    judge(app(*args, page="review", keys=hashed), "ana", "k-ana")
    assert list(LabelStore(store).read()["reviewer"]) == ["ana", "ana"]  # the next pair of the sample
    # with Streamlit's login the reviewer is the logged-in user, who cannot be typed
    login = ("--read-only", "--results", str(shared["a"]), "--reviewer", "bo@example.org", "--labels", str(store))
    at = app(*login, page="review", user={"is_logged_in": True, "email": "bo@example.org"})
    assert "rev_reviewer" not in [t.key for t in at.text_input]
    judge(at)
    assert set(LabelStore(store).read()["reviewer"]) == {"ana", "bo@example.org"}
    at = app(*login, page="review", user={"is_logged_in": False})
    assert at.button(key="rev_dup").disabled and "rev_login" in [b.key for b in at.button]
    assert files_under(shared["root"]) == before


def test_identity_rules():
    from semdedup_app.identity import Reviewer, identify, key_matches, login_name

    keys = {"ana": "k1", "cy": "sha256:" + __import__("hashlib").sha256(b"k3").hexdigest()}
    listed = frozenset({"ana", "bo", "cy", "dee@x.org"})

    def who(**kw):
        base = dict(user={}, typed="", key="", keys=keys, listed=listed, read_only=True)
        return identify(**{**base, **kw})

    assert who(typed="ana", key="k1") == Reviewer("ana", "key")
    assert who(typed=" cy ", key="k3") == Reviewer("cy", "key")
    for bad in (dict(typed="ana"), dict(typed="ana", key="k3"), dict(typed="bo"), dict(typed="mallory", key="k1")):
        with pytest.raises(SemDedupError):
            who(**bad)
    assert who(typed="bo", read_only=False) == Reviewer("bo", "typed")  # one's own machine: a typed name
    with pytest.raises(SemDedupError, match="key for reviewer 'ana' is missing or wrong"):
        who(typed="ana", read_only=False)  # a name with a key needs it in every mode
    logged = {"is_logged_in": True, "email": "dee@x.org", "name": "Dee"}
    assert who(user=logged, typed="ana", key="k1") == Reviewer("dee@x.org", "login")  # typing changes nothing
    with pytest.raises(SemDedupError, match="not one of the reviewers"):
        who(user={"is_logged_in": True, "email": "eve@x.org"})
    with pytest.raises(SemDedupError, match="log in"):
        who(user={"is_logged_in": False}, typed="ana", key="k1")
    assert login_name({}) is None and login_name({"is_logged_in": True, "name": "Dee"}) == "Dee"
    assert key_matches("k1", "k1") and not key_matches("", "") and not key_matches("k2", "k1")


# -- finding 5: the sample -----------------------------------------------------------------------------
def test_viewers_cannot_redraw_the_review_sample(shared):
    """Before, "Draw the sample" / "Draw a new sample" replaced the team's audit/sample.parquet in read-only
    mode."""
    sample = shared["a"] / "audit" / "sample.parquet"
    before = sample.read_bytes()
    at = app("--read-only", "--results", str(shared["a"]), page="review")
    draw = [b for b in at.button if "rev_draw" in str(b.key)]
    for button in draw:  # (none: the form is not offered)
        at.number_input[0].set_value(5)
        button.click().run()
    assert not draw and sample.read_bytes() == before
    assert not any("Draw" in str(e.label) for e in at.get("expandable"))
    res = sa.load(shared["a"])
    with pytest.raises(SemDedupError, match="read-only: the review sample is drawn by whoever runs it"):
        sa.gate.check("draw-sample", res.path)


# -- finding 8: the report's images ------------------------------------------------------------------------------
def test_the_report_download_follows_the_image_rule(image_results, monkeypatch):
    """Before, in read-only mode the Pairs page showed no image of an .npy run but the Stakeholder report
    embedded every thumbnail."""
    _, build = sa.report_file(image_results, 0.3)
    assert build().count(b"<img ") > 0  # outside read-only mode the images are embedded
    monkeypatch.setenv("SEMDEDUP_READ_ONLY", "1")
    html = build().decode()
    assert "<img " not in html and "this run records no input folder" in html


# -- the proof for every page: its code, and what it does -------------------------------------------------------
FORBIDDEN_IMPORTS = ("os", "io", "pathlib", "shutil", "tempfile", "subprocess", "glob")
FORBIDDEN_CORE = ("semdedup_core.results", "semdedup_core.media", "semdedup_core.audit.labels", "semdedup_core.run")
FORBIDDEN_NAMES = {"open", "Path", "PurePath", "ResultsFolder", "LabelStore", "load_embeddings"}
FORBIDDEN_ATTRIBUTES = {
    "write_text", "write_bytes", "read_text", "read_bytes", "mkdir", "unlink", "rmdir", "rename", "touch",
    "iterdir", "glob", "rglob", "exists", "is_dir", "is_file", "stat", "resolve", "expanduser", "to_csv",
    "to_parquet", "to_json", "save", "savez", "write_parquet", "write_json", "atomic_path", "write_report",
    "record", "add", "load",
}  # fmt: skip
PATH_KEYS = {"sd_results_dir", "cmp_path", "sd_labels"}  # session values that are paths: set by the gate only


def page_problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_IMPORTS]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod.split(".")[0] in FORBIDDEN_IMPORTS or mod.startswith(FORBIDDEN_CORE):
                found.append(f"from {mod} import ...")
            if mod == "semdedup_core.explore.export" and any(a.name == "write_export" for a in node.names):
                found.append("write_export")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_NAMES:
            found.append(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES | {"write_export"}:
            owner = ast.unparse(node.value)
            if not (node.attr == "write_export" and owner == "sa.gate"):
                found.append(f"{owner}.{node.attr}")
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant) and t.slice.value in PATH_KEYS:
                    found.append(f"sets {t.slice.value}")
    return found


@pytest.mark.parametrize("page", PAGE_FILES, ids=lambda p: p.name)
def test_no_page_touches_a_file_itself(page):
    assert page_problems(page) == []


def test_the_page_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\nfrom pathlib import Path\nimport semdedup_app as sa\nimport streamlit as st\n"
        "st.session_state['cmp_path'] = 'x'\nopen('f').read()\nres = sa.load('/x')\nPath('a').write_text('b')\n"
        "from semdedup_core.explore.export import write_export\n"
    )
    assert sorted(page_problems(bad)) == sorted([
        "import os", "from pathlib import ...", "sets cmp_path", "open", "sa.load", "Path", "Path('a').write_text",
        "write_export",
    ])  # fmt: skip


class Watch:
    """Every file this process opens (reading or writing), lists, creates, renames or removes while on."""

    events: list[tuple[str, str, bool]] | None = None
    WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.truncate", "os.symlink", "os.link"}

    @classmethod
    def hook(cls, event: str, args: tuple) -> None:
        if cls.events is None:
            return
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode, flags = args[1], args[2] if len(args) > 2 else 0
            write = bool(mode and any(c in str(mode) for c in "wax+")) or bool((flags or 0) & cls.WRITES)
            cls.events.append((event, os.fsdecode(args[0]), write))
        elif event in cls.CHANGES and args and isinstance(args[0], (str, bytes, os.PathLike)):
            cls.events.append((event, os.fsdecode(args[0]), True))
        elif event in ("os.listdir", "os.scandir") and args and isinstance(args[0], (str, bytes, os.PathLike)):
            cls.events.append((event, os.fsdecode(args[0]), False))


if not getattr(sys, "_semdedup_watch", False):
    sys.addaudithook(Watch.hook)
    sys._semdedup_watch = True


def test_a_read_only_explorer_writes_nothing_and_reads_nothing_outside_its_roots_on_any_page(shared, tmp_path):
    private, store = shared["private"].path, shared["stores"] / "named.parquet"
    args = ("--read-only", "--reviewer", "ana", "--labels", str(store))
    at = app(*args, keys={"ana": "k-ana"})
    at.button(key="home_shared_0").click().run()  # run-a (the most recent first): open it
    hostile = {"sd_labels": str(private / "labels.parquet"), "cmp_path": str(private), "rev_reviewer": "ana"}
    Watch.events = []
    try:
        for name in sa.PAGES:
            for key, value in hostile.items():
                at.session_state[key] = value
            at.switch_page(sa.PAGES[name]).run()
            assert not at.exception, (name, [e.value for e in at.exception])
            for key in ("rev_dup", "exp_prepare"):
                if key in [b.key for b in at.button] and not at.button(key=key).disabled:
                    at.button(key=key).click().run()
            if "cmp_typed" in [t.key for t in at.text_input]:
                at.text_input(key="cmp_typed").set_value(str(private)).run()
        events = list(Watch.events)
    finally:
        Watch.events = None
    top, secret = os.path.realpath(tmp_path), os.path.realpath(private.parent)
    writes = [e for e in events if e[2] and os.path.realpath(e[1]).startswith(top)]
    reads = [e for e in events if os.path.realpath(e[1]).startswith(secret)]
    assert not writes and not reads, (writes, reads)
    assert any(os.path.realpath(e[1]).startswith(os.path.realpath(shared["root"])) for e in events)  # it did watch
    assert not store.exists()  # no key typed: no verdict


def test_outside_read_only_the_roots_bound_a_typed_store_too(shared):
    """On one's own machine a typed store is taken — but with allowed roots set, not one outside them."""
    outside = shared["stores"] / "typed.parquet"
    at = app("--results", str(shared["a"]), page="review")
    at.text_input(key="sd_labels").set_value(str(outside)).run()
    assert any("outside the folders this explorer may use" in e.value.replace("\\", "") for e in at.error)
    judge(at, "ann")
    assert not outside.exists() and (shared["a"] / "labels.parquet").exists()  # the folder's own store instead
    inside = shared["root"] / "verdicts.parquet"
    at.text_input(key="sd_labels").set_value(str(inside)).run()
    assert not at.error
    judge(at, "ann")
    assert inside.exists()
