"""Leakage from raw data end to end with the offline encoders: a JSONL training set against a JSONL
held-out set with planted rewordings (MiniLM), and an image folder against a folder (EfficientNet-Lite0)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import _scene

from semdedup_core import ClusterConfig, Results
from semdedup_core.cli import main
from semdedup_core.ingest.embed import EmbedConfig
from semdedup_core.ingest.raw import run_input

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytestmark = pytest.mark.slow

SYNONYMS = {"a": "one", "never": "not ever", "people": "folks", "man": "person", "good": "fine", "life": "existence"}


def reword(text: str) -> str:
    """A held-out rewording: lower case, no punctuation, a few words swapped, a phrase in front."""
    words = [SYNONYMS.get(w.lower(), w.lower()) for w in re.findall(r"[A-Za-z0-9']+", text)]
    return "As the saying goes: " + " ".join(words)


@pytest.fixture(scope="module")
def text_sets(tmp_path_factory):
    """80 fortunes for training; held out: rewordings of 14 of them, 10 fortunes not in training, and an
    empty row (left out, listed in errors.parquet)."""
    from semdedup_core.ingest.demo import FORTUNE_FILES, fortune_dir, parse_fortunes

    quotes = [
        q for q in parse_fortunes((fortune_dir() / FORTUNE_FILES[0]).read_text(encoding="latin-1")) if len(q) > 40
    ]
    rng = np.random.default_rng(0)
    pick = rng.choice(len(quotes), 90, replace=False)
    train = pd.DataFrame({"id": [f"q{i}" for i in pick[:80]], "text": [quotes[i] for i in pick[:80]]})
    src = rng.choice(80, 14, replace=False)
    held = pd.DataFrame(
        {
            "id": [f"held{j}" for j in range(14)] + [f"other{j}" for j in range(10)] + ["blank"],
            "text": [reword(train["text"][s]) for s in src] + [quotes[i] for i in pick[80:]] + ["  "],
        }
    )
    root = tmp_path_factory.mktemp("text-leak")
    train.to_json(root / "train.jsonl", orient="records", lines=True)
    held.to_json(root / "heldout.jsonl", orient="records", lines=True)
    return root, train, held, {train["id"][s]: f"held{j}" for j, s in enumerate(src)}


def test_jsonl_against_jsonl_with_minilm(text_sets, capsys):
    root, train, held, planted = text_sets
    out = root / "run"
    args = ["run", "--input", str(root / "train.jsonl"), "--text-column", "text", "--id-column", "id"]
    args += ["--out", str(out), "--clusters", "4", "--quiet", "--reference"]
    assert main([*args, str(root / "heldout.jsonl")]) == 0
    assert "leaked (similarity to one of 24 reference items" in capsys.readouterr().out
    res = Results.load(out)
    items = res.items.set_index("id")
    assert res.reference["id"].tolist() == held["id"][:24].tolist()
    assert res.reference["text"].tolist() == held["text"][:24].tolist()
    errors = pd.read_parquet(out / "errors.parquet")
    assert errors["reason"].tolist() == ["reference set: empty text"] and errors["id"].tolist() == ["blank"]
    # the true cosines, from the same encoder
    emb, ref = res.embeddings, res.reference_embeddings
    cos = np.asarray(emb) @ np.asarray(ref).T
    best = cos.max(axis=1)
    # every planted rewording is found as its source's nearest held-out item, with the pair's cosine
    for source, copy in planted.items():
        assert items.at[source, "ref_id"] == copy, source
    np.testing.assert_allclose(res.items["ref_sim"], best, atol=1e-5)
    # at eps = 0.3 the rewordings that stayed close (cosine > 0.7) leak, and nothing else does
    leaked = set(res.leaked(0.3)["id"])
    close = {s for s, c in planted.items() if cos[res.items.index[res.items["id"] == s][0], int(c[4:])] > 0.7}
    assert len(close) >= 10 and close <= leaked <= set(planted)
    assert main(["export", str(out), "--eps", "0.3", "--which", "leaked"]) == 0
    csv = pd.read_csv(out / "exports" / "leaked-eps0.3000.csv", dtype=str)
    assert list(csv.columns) == ["id", "cluster", "ref_sim", "ref_id"]
    assert {(i, r) for i, r in zip(csv["id"], csv["ref_id"], strict=True)} == {(s, planted[s]) for s in leaked}
    # the same command again finds the finished run; another reference set is refused
    assert main([*args, str(root / "heldout.jsonl")]) == 0
    capsys.readouterr()
    assert main([*args, str(root / "train.jsonl")]) == 2
    assert "another input, encoder or parameters" in capsys.readouterr().err


def test_raw_reference_must_match_the_input(text_sets, tmp_path, capsys):
    root, *_ = text_sets
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray(_scene(np.random.default_rng(0))).save(tmp_path / "imgs" / "a.png")
    np.save(tmp_path / "ref.npy", np.ones((3, 384), dtype=np.float32))
    base = ["run", "--input", str(root / "train.jsonl"), "--text-column", "text", "--id-column", "id", "--quiet"]
    base += ["--out", str(tmp_path / "o"), "--clusters", "3"]
    cases = [
        (str(tmp_path / "ref.npy"), "holds embeddings from an unknown encoder, but this run embeds its input with"),
        (str(tmp_path / "imgs"), "reference set: --text-column/--image-column/--id-column apply to tables"),
        (str(tmp_path / "missing.jsonl"), "reference set: input"),
    ]
    for ref, message in cases:
        assert main([*base, "--reference", ref]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


def test_image_folder_against_a_folder(tmp_path):
    """Training: 16 of the photographs scikit-image and scikit-learn ship (downsized). Held out: 5 of them
    re-encoded (three-quarter size, JPEG quality 85), 4 photographs not in training, and a truncated file (left out
    and listed in errors.parquet)."""
    from PIL import Image

    from semdedup_core.ingest.demo import _photo_files, _rgb

    photos = sorted(_photo_files().items())
    assert len(photos) >= 20, "the pinned scikit-image/scikit-learn ship these photographs"
    train, held = tmp_path / "train", tmp_path / "heldout"
    train.mkdir()
    (held / "sub").mkdir(parents=True)
    images = {}
    for name, path in photos[:20]:
        with Image.open(path) as im:
            im = _rgb(im)
            im.thumbnail((256, 256))
            images[name] = im
    names = list(images)
    for name in names[:16]:
        images[name].save(train / f"{name}.png")
    planted = {}
    for j, name in enumerate(names[:16:3]):  # 6 copies
        im = images[name]
        copy = f"sub/copy{j}.jpg"
        im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.Resampling.LANCZOS).save(held / copy, quality=85)
        planted[f"{name}.png"] = copy
    for name in names[16:]:
        images[name].save(held / f"{name}.png")
    (held / "broken.png").write_bytes((train / f"{names[0]}.png").read_bytes()[:300])
    res = run_input(
        train,
        tmp_path / "run",
        embed=EmbedConfig(batch_size=8, workers=0),
        cluster=ClusterConfig(4),
        reference=held,
    )
    items = res.items.set_index("id")
    assert sorted(res.reference["id"]) == sorted([*planted.values(), *(f"{n}.png" for n in names[16:])])
    assert res.reference["path"].map(lambda p: Path(p).is_file()).all()
    errors = pd.read_parquet(tmp_path / "run" / "errors.parquet")
    assert errors["id"].tolist() == ["broken.png"] and errors["reason"][0].startswith("reference set: unreadable image")
    cos = np.asarray(res.embeddings) @ np.asarray(res.reference_embeddings).T
    np.testing.assert_allclose(res.items["ref_sim"], cos.max(axis=1), atol=1e-5)
    for source, copy in planted.items():
        assert items.at[source, "ref_id"] == copy
    copies = items.loc[list(planted), "ref_sim"]
    others = items.drop(index=list(planted))["ref_sim"]
    # the motion-blurred clock survives re-encoding worst (~0.77), the rest > 0.9; no other photo > 0.6
    assert copies.min() > 0.7 and others.max() < 0.65, (copies.min(), others.max())
    assert set(res.leaked(0.3)["id"]) == set(planted)
