"""Choosing where work runs. Imports torch lazily so that a Ray task pickles cheaply."""

from __future__ import annotations

from ..errors import SemDedupError


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """``auto`` becomes ``cuda`` when a GPU is present, else ``cpu``; ``cuda`` without one is an error."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        raise SemDedupError("device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise SemDedupError(f"device must be auto, cpu or cuda, got {device!r}")
    return device


def faiss_gpu_available() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU (False without faiss)."""
    try:
        import faiss
    except ImportError:
        return False

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
