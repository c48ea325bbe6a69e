"""Shared helpers of the real-browser tests: Debian's chromium driven by Playwright, on a served app.

``serve(...)`` starts ``streamlit run app.py`` on a free port; ``open_page(...)`` launches chromium with
the flags this project's machines need and yields a page; ``wait_idle(page)`` waits for a rerun to end.
Screenshots go to a temporary folder, or to ``$SEMDEDUP_SCREENSHOTS`` (the README's pictures).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
SHOTS = Path(os.environ.get("SEMDEDUP_SCREENSHOTS") or tempfile.mkdtemp(prefix="semdedup-screenshots-"))


def need_browser() -> None:
    """Skip without chromium, unless ``SEMDEDUP_REQUIRE_BROWSER=1`` (CI), where that is a failure."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("SEMDEDUP_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is missing and SEMDEDUP_REQUIRE_BROWSER=1; apt-get install chromium")
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(
    results_dir: Path | None,
    tmp_path: Path,
    app_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """``streamlit run app.py -- [--results DIR] APP_ARGS`` on a free port; yields the base URL.
    ``env`` is added to the server's environment (its cache folder is ``tmp_path/cache``)."""
    need_browser()
    port = free_port()
    server_env = {**os.environ, "SEMDEDUP_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    server_env.pop("SEMDEDUP_RESULTS", None)
    server_env.update(env or {})
    args = (["--results", str(results_dir)] if results_dir is not None else []) + list(app_args)
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.headless=true",
            f"--server.port={port}",
            "--server.address=127.0.0.1",
            "--browser.gatherUsageStats=false",
            "--server.fileWatcherType=none",
            "--",
            *args,
        ],
        cwd=ROOT,
        env=server_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "server.log").read_text())
        else:
            raise AssertionError("the app did not become healthy in 30 s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextlib.contextmanager
def open_page(width: int = 1280, height: int = 860) -> Iterator[object]:
    """A chromium page (Playwright) with this project's launch flags; the browser closes afterwards."""
    from playwright.sync_api import sync_playwright

    need_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def removed_metric(page) -> int:
    """The number in the metric labelled 'removed'."""
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="removed").first
    value = metric.locator('[data-testid="stMetricValue"]').inner_text()
    return int(value.replace(",", ""))


def wait_idle(page) -> None:
    """Wait until the script has finished (Streamlit shows a 'running' status widget while it works)."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=30_000,
    )
    page.wait_for_timeout(300)


def move_slider(page, slider, steps: int) -> float:
    """Press the arrow key ``abs(steps)`` times on ``slider`` (right for positive) and return its value once
    the app is idle (presses made while the app reruns may be merged, so the move can fall short)."""
    slider.focus()
    for _ in range(abs(steps)):
        page.keyboard.press("ArrowRight" if steps > 0 else "ArrowLeft")
    wait_idle(page)
    return float(slider.get_attribute("aria-valuetext"))


def wait_metric(page, label: str, value: int) -> None:
    """Wait until a metric whose text holds ``label`` shows ``value`` (formatted with thousands commas)."""
    page.wait_for_function(
        "([label, n]) => [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
        ".some(m => m.innerText.includes(label) && m.innerText.includes(n))",
        arg=[label, f"{value:,}"],
        timeout=15_000,
    )


def wait_count(locator, n: int, timeout_ms: int = 15_000) -> int:
    """Wait until ``locator`` matches ``n`` elements (a page renders its rows one after another: a count
    taken as soon as the first shows can be short); returns the last count."""
    page = locator.page
    waited = 0
    while (count := locator.count()) != n and waited < timeout_ms:
        page.wait_for_timeout(150)
        waited += 150
    return count
