"""Runs started from the app: a background process per run that writes a results folder and a JSON
progress file, described by a small job file so a browser refresh (or an app restart) finds it again.

``python -m semdedup_core.jobs JOBFILE`` is the child process; :func:`start` launches it and
:func:`list_jobs` reports each job's state (``running``, ``complete``, ``failed``, ``stopped``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from . import io
from .errors import SemDedupError
from .progress import read_progress

KINDS = ("cli", "demo")


def home() -> Path:
    """Where the app keeps its runs, jobs and recent list — the same place the offline demos use
    (:func:`semdedup_core.io.cache_dir`). Demo runs live in ``runs/demo-<kind>``."""
    return io.cache_dir()


def jobs_dir() -> Path:
    return home() / "jobs"


def start(kind: str, args: list[str], out: str | Path, label: str = "") -> dict[str, Any]:
    """Start a background run. ``kind`` ``cli``: ``args`` are the CLI's (``["run", "--embeddings", ...]``,
    without ``--out``); ``demo``: ``args`` is ``[demo_name]``. Returns the job record."""
    if kind not in KINDS:
        raise SemDedupError(f"job kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = Path(out).expanduser().resolve()
    if out.exists() and any(out.iterdir()) and not (out / io.RUN).exists():
        raise SemDedupError(f"output folder {str(out)!r} exists and is not a results folder; choose a new folder")
    for job in list_jobs():
        if job["state"] == "running" and Path(job["out"]) == out:
            raise SemDedupError(f"a run into {str(out)!r} is already going (job {job['id']}); wait for it")
    jid = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    d = jobs_dir()
    d.mkdir(parents=True, exist_ok=True)
    job = {
        "id": jid,
        "kind": kind,
        "args": [str(a) for a in args],
        "out": str(out),
        "label": label or out.name,
        "progress": str(d / f"{jid}.progress.json"),
        "log": str(d / f"{jid}.log"),
        "started": time.time(),
    }
    job_file = d / f"{jid}.json"
    io.write_json(job_file, job)
    with open(job["log"], "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "semdedup_core.jobs", str(job_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")},
        )
    job["pid"] = proc.pid
    io.write_json(job_file, job)
    threading.Thread(target=proc.wait, daemon=True).start()  # reap it, so a finished child is no zombie
    return {**job, "state": "running", "progress_info": None, "rc": None}


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie counts as finished
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def job_state(job: dict[str, Any]) -> dict[str, Any]:
    """``job`` with ``state``, ``rc``, ``progress_info`` (the last progress written) and ``log_tail``."""
    rc_path = Path(job["progress"]).with_suffix(".rc")
    rc = None
    if rc_path.exists():
        with contextlib.suppress(ValueError):
            rc = int(rc_path.read_text().strip() or "1")
    if rc is not None:
        state = "complete" if rc == 0 else "failed"
    elif _alive(job.get("pid")):
        state = "running"
    elif not job.get("pid") and time.time() - job.get("started", 0) < 10:
        state = "running"  # just being started
    else:
        state = "stopped"
    tail = ""
    if state in ("failed", "stopped"):
        with contextlib.suppress(OSError):
            tail = Path(job["log"]).read_text(errors="replace")[-2000:]
    return {**job, "state": state, "rc": rc, "progress_info": read_progress(job["progress"]), "log_tail": tail}


def list_jobs() -> list[dict[str, Any]]:
    """Every job the app started, newest first, with its current state."""
    d = jobs_dir()
    if not d.is_dir():
        return []
    jobs = []
    for p in d.glob("*.json"):
        if p.name.endswith(".progress.json"):
            continue
        with contextlib.suppress(ValueError, OSError, KeyError):
            jobs.append(job_state(io.read_json(p)))
    return sorted(jobs, key=lambda j: j.get("started", 0), reverse=True)


def find_runs(roots: list[Path], depth: int = 2) -> list[Path]:
    """Results folders (with a ``run.json``) at most ``depth`` levels below each of ``roots``."""
    found: list[Path] = []
    for root in roots:
        if not root.is_dir():
            continue
        level = [root]
        for _ in range(depth + 1):
            nxt = []
            for d in level:
                if (d / io.RUN).is_file():
                    found.append(d)
                    continue
                with contextlib.suppress(OSError):
                    nxt.extend(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            level = nxt
    uniq = {p.resolve(): None for p in found}
    return sorted(uniq, key=lambda p: (p / io.RUN).stat().st_mtime, reverse=True)


def remember(path: str | Path, limit: int = 20) -> None:
    """Put ``path`` first in the recent-runs list (``recent.json`` in :func:`home`)."""
    f = home() / "recent.json"
    try:
        recent = io.read_json(f)
    except (OSError, ValueError):
        recent = []
    path = str(Path(path).expanduser().resolve())
    recent = [path] + [p for p in recent if p != path]
    io.write_json(f, recent[:limit])


def recent_runs() -> list[Path]:
    """Recently opened results folders that still exist, then those under ``runs/`` in :func:`home`."""
    try:
        recent = [Path(p) for p in io.read_json(home() / "recent.json")]
    except (OSError, ValueError):
        recent = []
    seen: dict[Path, None] = {p: None for p in recent if (p / io.RUN).is_file()}
    for p in find_runs([home() / "runs"]):
        seen.setdefault(p, None)
    return list(seen)


def _child(job_file: str) -> int:
    job = io.read_json(job_file)
    rc_path = Path(job["progress"]).with_suffix(".rc")
    rc = 1
    try:
        if job["kind"] == "demo":
            from . import demo
            from .progress import JsonFileProgress

            demo.run_demo(job["args"][0], job["out"], progress=JsonFileProgress(job["progress"]))
            rc = 0
        else:
            from .cli import main

            rc = main([*job["args"], "--out", job["out"], "--progress-file", job["progress"], "--quiet"])
    except SemDedupError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        rc_path.write_text(str(rc))
    return rc


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
