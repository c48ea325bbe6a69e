"""Runs started from the app: a background process per run that writes a results folder and a JSON
progress file, described by a small job file so a browser refresh (or an app restart) finds it again;
and the app's list of recently opened results folders.

``python -m semdedup_app.jobs JOBFILE`` is the child process; it holds the results folder's write lock
for the whole job. :func:`start` launches it — at most :data:`MAX_RUNNING` at a time, never in
read-only mode nor outside the allowed roots (:mod:`semdedup_app.access`), never into a folder another
process is writing — and :func:`list_jobs` reports each job's state (``running``, ``complete``,
``failed``, ``stopped``).
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

from semdedup_core import SemDedupError
from semdedup_core.results import io
from semdedup_core.results.folder import FolderState, ResultsFolder
from semdedup_core.results.names import RUN

from . import gate

APP_ROOT = Path(__file__).resolve().parents[1]  # the folder holding semdedup_app (and app.py)

KINDS = ("cli", "demo")
MAX_RUNNING = 2  # background runs at a time: each embeds or clusters with every core it can get


def home() -> Path:
    """Where the app keeps its runs, jobs and recent list — the same place the offline demos use
    (:func:`semdedup_core.results.io.cache_dir`). Demo runs live in ``runs/demo-<kind>``."""
    return io.cache_dir()


def jobs_dir() -> Path:
    return home() / "jobs"


def start(kind: str, args: list[str], out: str | Path, label: str = "") -> dict[str, Any]:
    """Start a background run. ``kind`` ``cli``: ``args`` are the CLI's (``["run", "--embeddings", ...]``,
    without ``--out``); ``demo``: ``args`` is ``[demo_name]``. Returns the job record."""
    if kind not in KINDS:
        raise SemDedupError(f"job kind must be one of {', '.join(KINDS)}, got {kind!r}")
    out = Path(out).expanduser().resolve()
    gate.check("run", out)
    folder = ResultsFolder(out)
    folder.check_writable()
    running = [job for job in list_jobs() if job["state"] == "running"]
    for job in running:
        if Path(job["out"]) == out:
            raise SemDedupError(f"a run into {str(out)!r} is already going (job {job['id']}); wait for it")
    if len(running) >= MAX_RUNNING:
        names = ", ".join(repr(j["label"]) for j in running)
        raise SemDedupError(
            f"{len(running)} runs are already going ({names}); at most {MAX_RUNNING} run at a time, "
            "so wait for one to finish"
        )
    pid = folder.holder()
    if pid is not None:
        raise SemDedupError(
            f"results folder {str(out)!r} is being written by another run (pid {pid}); wait for it to finish, "
            "or choose another folder"
        )
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
            [sys.executable, "-m", "semdedup_app.jobs", str(job_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={
                **os.environ,
                "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                "PYTHONPATH": os.pathsep.join(filter(None, [str(APP_ROOT), os.environ.get("PYTHONPATH")])),
            },
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


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """The last progress a run's ``--progress-file`` holds, or ``None`` when there is none yet."""
    try:
        return io.read_json(path)
    except (FileNotFoundError, ValueError):
        return None


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
                if ResultsFolder(d).state() in (FolderState.RUNNING, FolderState.COMPLETE):
                    found.append(d)
                    continue
                with contextlib.suppress(OSError):
                    nxt.extend(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
            level = nxt
    uniq = {p.resolve(): None for p in found}
    return sorted(uniq, key=lambda p: _mtime(ResultsFolder(p).file(RUN)), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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
    seen: dict[Path, None] = {
        p: None for p in recent if ResultsFolder(p).state() in (FolderState.RUNNING, FolderState.COMPLETE)
    }
    for p in find_runs([home() / "runs"]):
        seen.setdefault(p, None)
    return [p for p in seen if gate.allowed("open", p)]


def start_run(source: str, encoder: str, k: int, keep: str, seed: int, out: str) -> dict[str, Any]:
    """Start a run from Home's form: ``source`` an ``.npy`` matrix (deduplicated as it is) or raw data (embedded
    with ``encoder``), into ``out`` (default ``runs/<name>`` in :func:`home`). The gate checks the input and
    the results folder (:mod:`semdedup_app.gate`); raises :class:`SemDedupError` with the reason."""
    if not source.strip():
        raise SemDedupError("give the embeddings file or data to deduplicate")
    src = Path(source.strip()).expanduser()
    gate.check("run", src)  # an input outside the allowed roots is not read either
    if not src.exists():
        raise SemDedupError(f"input {str(src)!r} does not exist; give an existing file or folder")
    if src.suffix == ".npy":
        args = ["run", "--embeddings", str(src)]
    else:
        args = ["run", "--input", str(src)] + (["--encoder", encoder.strip()] if encoder.strip() else [])
    args += ["--clusters", str(int(k)), "--keep", keep, "--seed", str(int(seed))]
    dest = Path(out.strip()).expanduser() if out.strip() else home() / "runs" / src.stem
    return start("cli", args, dest)


def running_into(folder: str | Path) -> bool:
    """Whether a job started here is writing ``folder`` now."""
    real = Path(folder).expanduser().resolve()
    return any(j["state"] == "running" and Path(j["out"]) == real for j in list_jobs())


def _child(job_file: str) -> int:
    job = io.read_json(job_file)
    rc_path = Path(job["progress"]).with_suffix(".rc")
    rc = 1
    try:
        with ResultsFolder(job["out"]).lock():  # the job's folder is this process's, start to end
            if job["kind"] == "demo":
                from semdedup_core import run_demo
                from semdedup_core.run.progress import JsonFileProgress

                # a first look at part of the text demo opens while the rest is embedded
                run_demo(job["args"][0], job["out"], progress=JsonFileProgress(job["progress"]), first_look=True)
                rc = 0
            else:
                from semdedup_core.cli import main

                rc = main([*job["args"], "--out", job["out"], "--progress-file", job["progress"], "--quiet"])
    except SemDedupError as exc:
        print(f"error: {exc}", file=sys.stderr)
    finally:
        rc_path.write_text(str(rc))
    return rc


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
