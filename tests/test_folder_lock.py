"""One writer per results folder: a second run fails at once naming the holder's pid, a killed run's lock
never blocks a resume, and scratch shards are never reused across different parameters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import brute_force_scores, finished_buckets

from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.results.folder import ResultsFolder
from semdedup_core.results.names import LOCK
from semdedup_core.run import pipeline

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
HOLD = (
    "import sys, time\n"
    "from semdedup_core.results.folder import ResultsFolder\n"
    "with ResultsFolder(sys.argv[1]).lock():\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the folder's lock (until killed)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    folder = tmp_path / "out"
    holder = hold_lock(folder)
    try:
        assert ResultsFolder(folder).holder() == holder.pid
        x = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
        t0 = time.monotonic()
        with pytest.raises(SemDedupError) as info:
            dedup(x, cluster=ClusterConfig(2), out=folder)
        assert time.monotonic() - t0 < 2
        msg = str(info.value)
        assert str(folder) in msg and f"pid {holder.pid}" in msg and "\n" not in msg
        assert not (folder / "run.json").exists()  # nothing of the refused run was written
    finally:
        holder.kill()
        holder.wait()
    # the kernel dropped the dead holder's lock: its stale .lock file blocks nobody
    assert (folder / LOCK).exists() and ResultsFolder(folder).holder() is None
    res = dedup(np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32), cluster=ClusterConfig(2), out=folder)
    assert res.n_items == 200 and not (folder / LOCK).exists()


def test_run_input_and_the_demo_builder_refuse_a_locked_folder_before_any_work(tmp_path):
    """Neither loads a model, builds demo data or embeds anything while another process writes the folder."""
    from PIL import Image

    from semdedup_core import run_demo, run_input

    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (i * 50, 9, 9)).save(tmp_path / "imgs" / f"{i}.png")
    folder = tmp_path / "out"
    holder = hold_lock(folder)
    try:
        for call in (
            lambda: run_input(tmp_path / "imgs", folder, cluster=ClusterConfig(1)),
            lambda: run_demo("text", folder),
        ):
            t0 = time.monotonic()
            with pytest.raises(SemDedupError, match=f"being written by another run \\(pid {holder.pid}\\)"):
                call()
            assert time.monotonic() - t0 < 3
        assert sorted(p.name for p in folder.iterdir()) == [LOCK]  # nothing embedded, nothing written
    finally:
        holder.kill()
        holder.wait()


def test_the_holder_may_take_its_lock_again_but_another_thread_may_not(tmp_path):
    folder = ResultsFolder(tmp_path / "out")
    errors: list[Exception] = []
    with folder.lock():
        with folder.lock():  # run_input holds it around dedup
            assert folder.holder() == os.getpid()

        def other() -> None:
            try:
                with folder.lock():
                    pass
            except SemDedupError as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert errors and f"pid {os.getpid()}" in str(errors[0])
    assert not folder.path.exists()  # created by the lock, left empty: removed again


def test_lock_never_writes_into_somebody_elses_folder(tmp_path):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    with pytest.raises(SemDedupError, match="not a semdedup results folder"):
        with ResultsFolder(tmp_path / "theirs").lock():
            pass
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(SemDedupError, match="is a file"):
        with ResultsFolder(tmp_path / "file" / "sub").lock():
            pass


def test_scratch_shards_of_other_parameters_are_never_reused(tmp_path, monkeypatch):
    """A run stopped while scoring with keep=hard leaves shards in .work; a run with keep=easy into the
    same folder (its visible files deleted) must score every cluster itself. Before, it merged the hard
    run's shards into its results."""
    monkeypatch.setattr(pipeline, "SHARD_ITEMS", 100)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 12)).astype(np.float32)
    cluster = ClusterConfig(12, seed=1)

    class Stop(Exception):
        pass

    def stop_in_score(stage: str, done: int, total: int) -> None:
        if stage == "score" and done >= 6:
            raise Stop

    with pytest.raises(Stop):
        dedup(x, cluster=cluster, config=DedupConfig(keep="hard"), out=tmp_path / "r", progress=stop_in_score)
    assert finished_buckets(tmp_path / "r")
    for f in (tmp_path / "r").iterdir():  # results deleted by hand, the hidden scratch folder left behind
        if f.name != ".work":
            shutil.rmtree(f) if f.is_dir() else f.unlink()

    res = dedup(x, cluster=cluster, config=DedupConfig(keep="easy"), out=tmp_path / "r")
    ref = dedup(x, cluster=cluster, config=DedupConfig(keep="easy"), out=tmp_path / "ref")
    pd.testing.assert_frame_equal(res.items, ref.items)
    assert res.run["stages"]["score"]["resumed_clusters"] == 0


def run_cli(out: Path, x: Path, keep: str, *extra: str) -> subprocess.Popen:
    args = ["run", "--embeddings", str(x), "--out", str(out), "--clusters", "4", "--keep", keep, "--quiet", *extra]
    return subprocess.Popen(
        [sys.executable, "-m", "semdedup_core", *args],
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def check_brute_force(folder: Path) -> None:
    res = Results.load(folder)
    emb = np.load(folder / "embeddings.npy")
    max_sim, dup_of = brute_force_scores(emb, res.items)
    np.testing.assert_allclose(res.items["max_sim"].to_numpy(), max_sim, atol=1e-5)
    assert [d if isinstance(d, str) else None for d in res.items["dup_of"]] == dup_of


@pytest.mark.slow
def test_two_concurrent_runs_into_one_folder(tmp_path):
    """Started together with different keep policies: exactly one succeeds, the other exits non-zero with
    one line (the lock, or — when it came after the winner had finished — the other parameters), and the
    winner's results are its own and pass the brute-force check. Before, both exited 0 with mixed results."""
    x = np.random.default_rng(5).normal(size=(6000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    procs = {keep: run_cli(out, tmp_path / "x.npy", keep) for keep in ("hard", "easy")}
    done = {keep: (p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for keep, p in procs.items()}
    winners = [k for k, (rc, _, _) in done.items() if rc == 0]
    assert len(winners) == 1, done
    loser = "easy" if winners == ["hard"] else "hard"
    rc, _, err = done[loser]
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(out) in err and ("being written by another run (pid" in err or "other parameters" in err), err
    run = json.loads((out / "run.json").read_text())
    assert run["params"]["dedup"]["keep"] == winners[0] and run["status"] == "complete"
    check_brute_force(out)
    dist = Results.load(out).items  # the ranks follow the winner's policy
    first = dist.sort_values(["cluster", "rank"]).groupby("cluster").head(2)
    for _, grp in first.groupby("cluster"):
        d = grp["dist_to_centroid"].to_numpy()
        assert (d[0] >= d[1]) if winners[0] == "hard" else (d[0] <= d[1])


@pytest.mark.slow
def test_a_writer_blocked_mid_run_turns_the_next_away_and_a_kill_frees_the_folder(tmp_path):
    """A run holds the lock (paused with SIGSTOP once it has it): a second run exits at once with one line
    naming the folder and the holder's pid; after the holder is killed with SIGKILL, the same command
    resumes and its results pass the brute-force check."""
    x = np.random.default_rng(6).normal(size=(4000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    first = run_cli(out, tmp_path / "x.npy", "hard")
    deadline = time.monotonic() + 120
    while ResultsFolder(out).holder() != first.pid:
        assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        second = run_cli(out, tmp_path / "x.npy", "hard")
        rc = second.wait(timeout=120)
        err = second.stderr.read()
        assert rc == 2, err
        assert err.strip().splitlines() == [
            f"python -m semdedup_core: error: results folder {str(out)!r} is being written by another run "
            f"(pid {first.pid}); wait for it to finish, or choose another --out folder"
        ]
        assert time.monotonic() - t0 < 60  # its own start-up only: it never waited for the lock
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    again = run_cli(out, tmp_path / "x.npy", "hard")
    assert again.wait(timeout=300) == 0, again.stderr.read()
    check_brute_force(out)
    assert not (out / LOCK).exists() and not (out / ".work").exists()
