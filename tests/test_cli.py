"""The command line: a clean run with a summary, one-line errors for every bad input, kill and resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import finished_buckets

from semdedup_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "semdedup_core", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


@pytest.fixture()
def emb(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 12)).astype(np.float32)
    x[500:] = x[:100] * 1.5 + 0.001 * rng.standard_normal((100, 12)).astype(np.float32)  # 100 near-copies
    path = tmp_path / "x.npy"
    np.save(path, x)
    return path


def test_run_prints_summary_and_writes_folder(tmp_path, emb):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"item-{i}\n" for i in range(600)))
    p = cli("run", "--embeddings", emb, "--ids", ids, "--out", tmp_path / "out", "--clusters", 6, "--quiet")
    assert p.returncode == 0, p.stderr
    assert "items: 600" in p.stdout and "clusters: 6" in p.stdout
    assert "eps 0.01" in p.stdout and "removes 100 (16.7%)" in p.stdout
    assert "seconds: prepare" in p.stdout and "normalize" in p.stdout
    items = pd.read_parquet(tmp_path / "out" / "items.parquet")
    assert items["id"].iloc[0] == "item-0"
    flagged = items[items["max_sim"] > 0.99]
    assert len(flagged) == 100
    # each flagged item is one of a planted pair and points at its partner
    pairs = {(f"item-{i}", f"item-{i + 500}") for i in range(100)}
    assert all((a, b) in pairs or (b, a) in pairs for a, b in zip(flagged["id"], flagged["dup_of"], strict=True))


def test_parquet_ids(tmp_path, emb):
    pd.DataFrame({"id": [f"p{i}" for i in range(600)], "other": 1}).to_parquet(tmp_path / "ids.parquet")
    assert (
        main(
            [
                "run",
                "--embeddings",
                str(emb),
                "--ids",
                str(tmp_path / "ids.parquet"),
                "--out",
                str(tmp_path / "o"),
                "--clusters",
                "3",
                "--quiet",
                "--keep",
                "easy",
            ]
        )
        == 0
    )
    assert pd.read_parquet(tmp_path / "o" / "items.parquet")["id"].iloc[-1] == "p599"


def bad_inputs(tmp_path, emb):
    def save(name, arr):
        np.save(tmp_path / name, arr)
        return tmp_path / name

    x = np.load(emb)
    nan = x.copy()
    nan[42, 3] = np.nan
    inf = x.copy()
    inf[7, 0] = np.inf
    zero = x.copy()
    zero[9] = 0
    (tmp_path / "short.txt").write_text("a\nb\n")
    (tmp_path / "dups.txt").write_text("".join(f"{i % 599}\n" for i in range(600)))
    (tmp_path / "noid.parquet").write_bytes(b"")
    pd.DataFrame({"name": range(600)}).to_parquet(tmp_path / "noid.parquet")
    (tmp_path / "text.npy").write_text("not an array")
    return [
        (["--embeddings", tmp_path / "missing.npy"], "does not exist"),
        (["--embeddings", tmp_path / "text.npy"], "not a readable .npy"),
        (["--embeddings", save("v.npy", x[:, 0])], "must be a 2-D array"),
        (["--embeddings", save("c.npy", x[:, :, None])], "must be a 2-D array"),
        (["--embeddings", save("i.npy", (x * 100).astype(np.int32))], "dtype int32"),
        (["--embeddings", save("n.npy", nan)], "rows 42 contain NaN or inf"),
        (["--embeddings", save("f.npy", inf)], "rows 7 contain NaN or inf"),
        (["--embeddings", save("z.npy", zero)], "rows 9 are all zeros"),
        (["--embeddings", emb, "--ids", tmp_path / "short.txt"], "holds 2 ids but the embeddings have 600 rows"),
        (["--embeddings", emb, "--ids", tmp_path / "dups.txt"], "duplicate ids, e.g. '0'"),
        (["--embeddings", emb, "--ids", tmp_path / "noid.parquet"], "has no 'id' column"),
        (["--embeddings", emb, "--clusters", "0"], "n_clusters must be at least 1, got 0"),
        (["--embeddings", emb, "--clusters", "601"], "between 1 and the number of items (600), got 601"),
        (["--embeddings", emb, "--keep", "medium"], "invalid choice: 'medium'"),
        (["--embeddings", emb, "--clusters", "x"], "invalid int value: 'x'"),
        (["--embeddings", emb, "--device", "cuda"], None),  # only an error where no GPU is visible
    ]


def test_every_bad_input_is_one_clear_line(tmp_path, emb, capsys):
    import torch

    for extra, message in bad_inputs(tmp_path, emb):
        if message is None:
            if torch.cuda.is_available():
                continue
            message = "no CUDA GPU is visible; use --device cpu or auto"
        args = ["run", "--out", str(tmp_path / "out"), "--clusters", "4", "--quiet", *map(str, extra)]
        try:
            rc = main(args)
        except SystemExit as exc:  # argparse's own errors
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2, (extra, err)
        assert message in err, (extra, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert not (tmp_path / "out" / "items.parquet").exists()


def test_dimension_mismatch_on_existing_folder(tmp_path, emb):
    assert main(["run", "--embeddings", str(emb), "--out", str(tmp_path / "o"), "--clusters", "3", "--quiet"]) == 0
    np.save(tmp_path / "y.npy", np.load(emb)[:, :6])
    p = cli("run", "--embeddings", tmp_path / "y.npy", "--out", tmp_path / "o", "--clusters", 3, "--quiet")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [
        f"python -m semdedup_core: error: results folder '{tmp_path / 'o'}' was made from 600 × 12 embeddings, "
        "these are 600 × 6 (dimension or count mismatch); choose another --out folder"
    ]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_files(tmp_path):
    """A real kill -9 in the middle of scoring, then the same command again."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200_000, 32)).astype(np.float32)  # 20 clusters of ~10,000: shards of ~5 clusters
    np.save(tmp_path / "x.npy", x)
    args = ["run", "--embeddings", tmp_path / "x.npy", "--clusters", 20, "--niter", 3, "--quiet", "--block-size", 64]
    ref = cli(*args, "--out", tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    prog = tmp_path / "progress.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "semdedup_core",
            *map(str, args),
            "--out",
            str(tmp_path / "r"),
            "--progress-file",
            str(prog),
        ],
        env=env,
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        if len(finished_buckets(tmp_path / "r")) >= 1:  # a bucket of clusters saved, three to go
            break
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "running"

    again = cli(*args, "--out", tmp_path / "r")
    assert again.returncode == 0, again.stderr
    a = pd.read_parquet(tmp_path / "ref" / "items.parquet")
    b = pd.read_parquet(tmp_path / "r" / "items.parquet")
    pd.testing.assert_frame_equal(a, b)
    for name in ("centroids.npy", "embeddings.npy"):
        assert (tmp_path / "r" / name).read_bytes() == (tmp_path / "ref" / name).read_bytes()
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["stages"]["kmeans"]["done"] and run["stages"]["score"]["resumed_clusters"] >= 4
    assert not list((tmp_path / "r").glob(".*.tmp"))


def test_export_lists_what_goes_and_never_touches_input(tmp_path, emb, capsys):
    from semdedup_core import Results

    before = emb.read_bytes()
    out = tmp_path / "out"
    assert main(["run", "--embeddings", str(emb), "--out", str(out), "--clusters", "6", "--quiet"]) == 0
    res = Results.load(out)
    assert main(["export", str(out), "--eps", "0.01"]) == 0
    assert "removed: 100 of 600 items at eps 0.01 (rule paper)" in capsys.readouterr().out
    csv = pd.read_csv(out / "exports" / "removed-eps0.0100.csv", dtype={"id": str, "dup_of": str})
    assert sorted(csv["id"]) == sorted(res.removed(0.01)["id"])
    assert list(csv.columns) == ["id", "cluster", "max_sim", "dup_of"]
    assert (csv["max_sim"] > 0.99).all()

    assert main(["export", str(out), "--keep-fraction", "0.9", "--which", "kept", "--format", "txt"]) == 0
    eps = res.eps_for_kept_fraction(0.9)
    lines = (out / "exports" / f"kept-eps{eps:.4f}.txt").read_text().splitlines()
    assert lines == res.kept(eps)["id"].tolist() and len(lines) >= 540

    assert main(["export", str(out), "--eps", "0.3", "--rule", "kept-only", "--format", "parquet"]) == 0
    pq = pd.read_parquet(out / "exports" / "removed-eps0.3000-kept-only.parquet")
    assert pq["id"].tolist() == res.removed(0.3, rule="kept-only")["id"].tolist()
    assert emb.read_bytes() == before  # the input is only ever read

    capsys.readouterr()
    assert main(["export", str(out), "--eps", "3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "python -m semdedup_core: error: eps must be between 0 and 2 (similarity threshold 1 - eps), got 3.0"
    )
