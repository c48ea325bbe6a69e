"""First-view benchmark: the seconds from the README's first command to real near-duplicates on screen.

    python bench/bench_first_view.py                 # fresh clone of HEAD, empty cache, text demo
    python bench/bench_first_view.py --until-full    # also wait until the whole demo replaces the first look

It clones this repository's committed HEAD into a temporary folder (a fresh clone: no caches, no
``__pycache__``), points ``$SEMDEDUP_CACHE`` at an empty folder, starts
``python -m streamlit run app.py -- --demo text`` there with ``HF_HUB_OFFLINE=1`` (as the README's first
command does, with this interpreter's packages), and drives Debian's chromium (Playwright) at it like a
newcomer: it opens the page as soon as the server answers and waits, without clicking anything, until
Home shows a pair (the "similarity" metric beside two quotes). It prints the seconds from starting
``streamlit run`` to the server answering, to the first pair visible, and (``--until-full``) to the whole
demo being open; then it stops the server and the background build. Run it on an otherwise idle
machine: everything here is CPU-bound.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_builds(cache: Path) -> None:
    """Stop the background builds the app started (their pids are in the job files it wrote)."""
    for job in (cache / "jobs").glob("*.json"):
        if job.name.endswith(".progress.json"):
            continue
        try:
            pid = json.loads(job.read_text()).get("pid")
            if pid:
                os.killpg(pid, signal.SIGTERM)  # each build runs in its own session (process group)
        except (OSError, ValueError):
            pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", default="text")
    ap.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    ap.add_argument("--until-full", action="store_true", help="also wait for the whole demo to open")
    ap.add_argument("--screenshot", type=Path, help="save a screenshot of the first view here")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="first-view-") as tmp:
        clone, cache = Path(tmp) / "clone", Path(tmp) / "cache"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True)
        port = free_port()
        env = {**os.environ, "SEMDEDUP_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        env.pop("SEMDEDUP_RESULTS", None)
        env.pop("PYTHONPATH", None)
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        t0 = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless=true", f"--server.port={port}"]
            + ["--server.address=127.0.0.1", "--browser.gatherUsageStats=false", "--", "--demo", args.demo],
            cwd=clone,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        marks: dict[str, float] = {}
        try:
            while time.perf_counter() - t0 < args.timeout:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.1)
            marks["server answers"] = time.perf_counter() - t0
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url, wait_until="domcontentloaded")
                marks["page opened"] = time.perf_counter() - t0
                pair = page.locator('[data-testid="stMetric"]').filter(has_text="similarity").first
                pair.wait_for(timeout=args.timeout * 1000)
                marks["first pair visible"] = time.perf_counter() - t0
                first = page.locator('[data-testid="stSidebar"]').inner_text()
                if args.screenshot:
                    page.screenshot(path=str(args.screenshot), full_page=False)
                if args.until_full:
                    page.wait_for_function(
                        "() => !document.querySelector('[data-testid=\"stSidebar\"]').innerText.includes('First look')",
                        timeout=args.timeout * 1000,
                    )
                    page.locator('[data-testid="stMetric"]').filter(has_text="similarity").first.wait_for()
                    marks["whole demo open"] = time.perf_counter() - t0
                browser.close()
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
            stop_builds(cache)
        print(f"fresh clone of {head.stdout.strip()}, empty cache, {os.cpu_count()} cores, demo {args.demo}")
        for what, seconds in marks.items():
            print(f"  {what:<20} {seconds:7.1f} s")
        shown = [line for line in first.splitlines() if "items" in line][:2]
        print("  sidebar at the first view: " + " | ".join(shown))


if __name__ == "__main__":
    main()
