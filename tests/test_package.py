"""The package as a user gets it: a wheel built from this tree, installed with the pinned set as constraints
(``pip install semdedup-*.whl -c requirements.txt``) into a fresh venv outside the repository. There:
``semdedup --help``, ``semdedup run`` on a JSONL with the real text model, ``semdedup apply`` on every
input kind, and ``semdedup app DIR --port N`` serving every page to a real browser.

The install takes a few minutes (torch and its libraries), once per session; the venv is removed
afterwards. ``SEMDEDUP_PACKAGE_VENV=/path`` reuses a venv this test made earlier (the freshly built wheel
is installed into it again, without its dependencies) — a shortcut for developers; CI never sets it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from apply_data import (
    kept_ids,
    planted_run,
    table_rows,
    write_csv,
    write_hf,
    write_image_folder,
    write_parquet,
    write_wds,
)

from semdedup_core.cli import COMMANDS
from semdedup_core.results.results import Results

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SKIP = {
    ".git",
    ".venv",
    "venv",
    "tests",
    "bench",
    "docs",
    "build",
    "dist",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
}
PAGES = {
    "": "semdedup explorer",
    "threshold": "Threshold",
    "pairs": "Pairs",
    "clusters": "Clusters",
    "map": "Map",
    "export": "Export",
    "stakeholder": "Semantic duplicates in this dataset",
    "review": "Review",
    "compare": "Compare two runs",
    "leakage": "Leakage",
}


def _run(cmd: list[str], cwd: Path, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SEMDEDUP_RESULTS")}
    p = subprocess.run(cmd, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of this tree's package files (nothing is written into the repository)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work), str(src)],
        work,
    )
    (found,) = work.glob("semdedup-*.whl")
    return found


@pytest.fixture(scope="module")
def semdedup(wheel, tmp_path_factory) -> Path:
    """The ``semdedup`` command of a fresh venv that installed the wheel with ``-c requirements.txt``."""
    reuse = os.environ.get("SEMDEDUP_PACKAGE_VENV")
    venv = Path(reuse) if reuse else tmp_path_factory.mktemp("venv") / "venv"
    work = venv.parent
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    if reuse and (venv / "bin" / "semdedup").exists():
        _run([*pip, "--no-deps", "--force-reinstall", str(wheel)], work)
    else:
        _run([sys.executable, "-m", "venv", str(venv)], work)
        _run([*pip, str(wheel), "-c", str(ROOT / "requirements.txt")], work, timeout=1800)
    yield venv / "bin" / "semdedup"
    if not reuse:  # gigabytes (torch and its libraries): removed in the background, the suite does not wait
        subprocess.Popen(["rm", "-rf", str(venv)], start_new_session=True)


def test_the_wheel_carries_the_explorer_and_declares_ranges(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith("dist-info/entry_points.txt"))).decode()
    pages = {f"semdedup_app/_site/pages/{p.name}" for p in (ROOT / "pages").glob("*.py")}
    assert {"semdedup_app/_site/app.py", "semdedup_app/_site/.streamlit/config.toml"} | pages <= names
    assert "semdedup = semdedup_core.cli:script" in entry
    pinned = [line.split("==")[0] for line in (ROOT / "requirements.txt").read_text().splitlines() if "==" in line]
    required = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)([^;\n]*)$", meta, flags=re.M)
    ranges = {name.lower().replace("_", "-"): spec for name, spec in required}
    for name in pinned:  # every pinned runtime package is a dependency, with a range rather than a pin
        spec = ranges[name.lower().replace("_", "-")]
        assert ">=" in spec and "==" not in spec, (name, spec)
    for extra in ("ray", "hf", "gpu", "dev"):
        assert f"Provides-Extra: {extra}" in meta


def test_installed_help_lists_every_subcommand(semdedup, tmp_path):
    out = _run([str(semdedup), "--help"], tmp_path).stdout
    listed = re.search(r"\{([a-z,]+)\}", out).group(1).split(",")
    names = [c.__name__.rsplit(".", 1)[1] for c in COMMANDS]
    assert set(listed) >= {"run", "encoders", "demo", "export", "audit", "report", "compare", "app", "apply"}
    assert out.startswith("usage: semdedup ") and len(listed) == len(names) + 1  # + encoders (a run module command)
    where = _run(
        [str(semdedup.parent / "python"), "-c", "import semdedup_core; print(semdedup_core.__file__)"], tmp_path
    )
    assert str(semdedup.parent.parent) in where.stdout  # the installed copy, not this checkout


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A journey of a thousand miles begins with a single step.",
    "All that glitters is not gold.",
    "Fortune favours the bold.",
    "Where there is smoke there is fire.",
    "Actions speak louder than words.",
    "Better late than never.",
    "Every cloud has a silver lining.",
    "Knowledge is power.",
    "Practice makes perfect.",
    "Time flies when you are having fun.",
    "The early bird catches the worm.",
]


@pytest.fixture(scope="module")
def jsonl_run(semdedup, tmp_path_factory):
    """``semdedup run`` of the installed package on a JSONL of proverbs and near-copies of some."""
    work = tmp_path_factory.mktemp("run")
    rows = [{"id": f"s{i}", "text": t, "n": i, "tags": ["a", str(i)]} for i, t in enumerate(SENTENCES)]
    rows += [{"id": f"s{i}~1", "text": SENTENCES[i].upper().rstrip(".") + "!", "n": -i, "tags": []} for i in (0, 3, 7)]
    (work / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["run", "--input", "data.jsonl", "--text-column", "text", "--id-column", "id", "--out", "run"]
    _run([str(semdedup), *args, "--clusters", "3", "--quiet"], work, HF_HUB_OFFLINE="1")
    return work


def test_installed_run_and_apply_on_jsonl(semdedup, jsonl_run):
    res = Results.load(jsonl_run / "run")
    assert res.run["input"]["fingerprint"] and res.n_items == len(SENTENCES) + 3
    eps = 0.1
    assert res.n_removed(eps) >= 2  # the upper-cased copies
    p = _run([str(semdedup), "apply", "run", "--eps", str(eps), "--out", "kept.jsonl", "--quiet"], jsonl_run)
    assert "kept" in p.stdout and (jsonl_run / "kept.jsonl").is_file()
    lines = (jsonl_run / "kept.jsonl").read_text().splitlines()
    source = {json.loads(line)["id"]: line for line in (jsonl_run / "data.jsonl").read_text().splitlines()}
    assert [json.loads(line)["id"] for line in lines] == kept_ids(res, eps)
    assert all(line == source[json.loads(line)["id"]] for line in lines)  # every field intact


def _tree(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["csv", "parquet", "webdataset", "hf", "folder"])
def test_installed_apply_on_every_kind(semdedup, kind, tmp_path):
    """The installed ``semdedup apply`` writes what this checkout's :func:`apply_run` writes (whose output
    test_apply.py checks field by field and member by member)."""
    from semdedup_core.ingest.apply import apply_run

    options = {"text_column": "text", "id_column": "id"} if kind in ("csv", "parquet", "hf") else {}
    make = {
        "csv": lambda: write_csv(tmp_path / "data.csv", table_rows()),
        "parquet": lambda: write_parquet(tmp_path / "data.parquet", table_rows()),
        "webdataset": lambda: write_wds(tmp_path / "shards"),
        "hf": lambda: write_hf(tmp_path / "hf", table_rows()),
        "folder": lambda: write_image_folder(tmp_path / "photos"),
    }
    res = planted_run(make[kind](), tmp_path / "run", **options)
    suffix = {"csv": ".csv", "parquet": ".parquet"}.get(kind, "")
    extra = ["--mode", "copy"] if kind == "folder" else ["--shard-size", "4"] if kind == "webdataset" else []
    p = _run([str(semdedup), "apply", "run", "--eps", "0.05", "--out", f"installed{suffix}", *extra], tmp_path)
    assert f"kept {len(kept_ids(res, 0.05))} of the run's {res.n_items} items" in p.stdout
    mine = {"mode": "copy"} if kind == "folder" else {"shard_size": 4} if kind == "webdataset" else {}
    apply_run(res, 0.05, tmp_path / f"here{suffix}", **mine)
    installed, here = _tree(tmp_path / f"installed{suffix}"), _tree(tmp_path / f"here{suffix}")
    assert installed.keys() == here.keys() and installed == here


@pytest.mark.browser
def test_installed_app_serves_every_page(semdedup, jsonl_run):
    """``semdedup app DIR --port N`` from the venv (outside the repository): healthy, and every page renders
    in chromium without an exception."""
    from browser import ARGS, CHROMIUM, free_port, need_browser, wait_idle
    from playwright.sync_api import sync_playwright

    need_browser()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SEMDEDUP_RESULTS")}
    env.update(SEMDEDUP_CACHE=str(jsonl_run / "cache"))
    env.pop("DISPLAY", None)
    log = open(jsonl_run / "app.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(semdedup), "app", "run", "--port", str(port), "--address", "127.0.0.1"],
        cwd=jsonl_run,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200 and r.read().strip() == b"ok":
                        break
            except OSError:
                time.sleep(0.1)
            assert proc.poll() is None, (jsonl_run / "app.log").read_text()
        else:
            raise AssertionError("the installed app did not become healthy in 60 s")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            for path, title in PAGES.items():
                page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
                wait_idle(page)
                page.get_by_role("link", name="Stakeholder view").first.wait_for(timeout=30_000)  # the app's nav
                assert not page.locator('[data-testid="stException"]').count(), path
                assert not page.locator('[data-testid="stSidebarNav"]').count(), path  # not Streamlit's file list
            page.goto(f"{url}/export", wait_until="domcontentloaded")
            page.get_by_text("semdedup apply", exact=False).first.wait_for(timeout=60_000)
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    text = (jsonl_run / "app.log").read_text()
    assert "Traceback" not in text, text[-3000:]
    assert np.isfinite(Results.load(jsonl_run / "run").n_items)
