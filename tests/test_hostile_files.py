"""An image folder with files that must not hurt: a FIFO named like a JPEG, a decompression bomb, a
zero-byte file and a symbolic link to a file outside the folder. The run finishes, each is an error row
in errors.parquet, and peak memory stays under 2 GB (measured with getrusage in a wrapper process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import _scene, brute_force_scores, write_png_bomb

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# runs the CLI as a child and reports the largest resident set of it and its descendants (the
# DataLoader's decoding workers included), in KiB
WRAPPER = (
    "import json, resource, subprocess, sys\n"
    "rc = subprocess.call([sys.executable, '-m', 'semdedup_core', *sys.argv[1:]])\n"
    "print(json.dumps({'rc': rc, 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def test_fifo_bomb_empty_file_and_link_out_are_error_rows_and_memory_stays_bounded(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    rng = np.random.default_rng(9)
    for i in range(6):
        Image.fromarray(_scene(rng)).save(root / f"good{i}.png")
    os.mkfifo(root / "x.jpg")  # a read of it would block forever
    write_png_bomb(root / "bomb.png")  # ~150 KB on disk, 144 megapixels decoded
    (root / "zero.jpg").write_bytes(b"")
    Image.fromarray(_scene(rng)).save(tmp_path / "private.png")
    os.symlink(tmp_path / "private.png", root / "link.png")

    out = tmp_path / "out"
    args = ["run", "--input", str(root), "--out", str(out), "--clusters", "2", "--quiet", "--workers", "1"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    p = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0, p.stderr
    assert report["maxrss_kib"] < 2 * 1024 * 1024, report  # under 2 GB
    errors = pd.read_parquet(out / "errors.parquet").set_index("id")["reason"].to_dict()
    assert errors == {
        "x.jpg": "unreadable image (not a regular file (a FIFO))",
        "bomb.png": "unreadable image (12000 × 12000 pixels (144 megapixels) is more than the limit of 40 megapixels)",
        "zero.jpg": "unreadable image (an empty file (0 bytes))",
        "link.png": "unreadable image (a symbolic link to a file outside the input folder (not followed))",
    }
    items = pd.read_parquet(out / "items.parquet")
    assert sorted(items["id"]) == [f"good{i}.png" for i in range(6)]
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["errors"] == 4 and run["counts"]["input_items"] == 10
    emb = np.load(out / "embeddings.npy")
    max_sim, dup_of = brute_force_scores(emb, items)
    np.testing.assert_allclose(items["max_sim"].to_numpy(), max_sim, atol=1e-5)
    assert sorted(p.name for p in root.iterdir()) == ["bomb.png", "good0.png", "good1.png", "good2.png"] + [
        "good3.png",
        "good4.png",
        "good5.png",
        "link.png",
        "x.jpg",
        "zero.jpg",
    ]  # the user's folder is only read
