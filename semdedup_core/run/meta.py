"""What a run records about itself in ``run.json``: its parameters, the identity of its input, each stage's
completion and seconds, and where scratch files live — written once, for every executor.

:class:`RunRecord` is the book-keeping of one results folder. A stage a previous (interrupted) run
finished is skipped; parameters or input that differ from a folder's recorded run are refused, so a
folder never mixes two runs. Scratch files live under ``DIR/.work/<key>`` where the key hashes the
parameters and the input (:func:`work_key`), so a file left by another run is never read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..results import io
from ..results.folder import ResultsFolder
from ..results.names import FORMAT_VERSION, RUN, WORK
from .config import ClusterConfig, DedupConfig, ReferenceConfig, to_dict

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called as each stage advances. Raising from it stops the run
cleanly (what is finished stays finished, and a rerun resumes)."""


def no_progress(stage: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""


def engine_params(
    cluster: ClusterConfig, config: DedupConfig, reference: ReferenceConfig | None = None
) -> dict[str, Any]:
    """The parameters a results folder records and a resumed run must match. Device, block size and memory
    budget change speed only, so they are left out (and may differ on resume); so is the arithmetic
    precision of the scoring products, which only nominates candidates (the kernels decide every partner
    on exact cosines). ``reference``: the reference search's settings, for a run with a reference set."""
    params = {"cluster": to_dict(cluster), "dedup": to_dict(config)}
    for key in ("device", "block_size", "max_block_bytes", "precision"):
        params["dedup"].pop(key)
    params["cluster"].pop("device")
    if not config.probe:  # the paper's rule: recorded as it always was
        params["dedup"].pop("probe")
    if reference is not None:
        params["reference"] = to_dict(reference)
    return params


def params_match(recorded: dict[str, Any] | None, params: dict[str, Any]) -> bool:
    """Whether a results folder's recorded parameters are ``params``. A parameter added after the folder
    was written counts as its default there (the k-means ``backend``: ``auto``)."""
    if not isinstance(recorded, dict):
        return False
    cluster = recorded.get("cluster")
    if isinstance(cluster, dict) and "backend" not in cluster:
        recorded = {**recorded, "cluster": {**cluster, "backend": "auto"}}
    dedup = recorded.get("dedup")
    if isinstance(dedup, dict) and "precision" in dedup:
        recorded = {**recorded, "dedup": {k: v for k, v in dedup.items() if k != "precision"}}
    return recorded == params


def array_fingerprint(x: np.ndarray, ids: Any) -> str:
    """A cheap identity of an in-memory input: shape, dtype, 1,024 evenly spaced rows and all ids."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.shape}|{x.dtype}".encode())
    rows = np.unique(np.linspace(0, x.shape[0] - 1, num=min(1024, x.shape[0])).astype(np.int64))
    h.update(np.ascontiguousarray(x[rows]).tobytes())
    if ids is not None:
        for i in ids:
            h.update(str(i).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
    return h.hexdigest()


def work_key(params: dict[str, Any], fp: str, n: int, d: int) -> str:
    """A short hash of what scratch results depend on: the parameters, the input fingerprint and shape."""
    blob = json.dumps({"params": params, "input": fp, "shape": [n, d]}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=6).hexdigest()


def library_versions() -> dict[str, str]:
    import pandas
    import pyarrow
    import torch

    from .._version import __version__

    try:  # the torch k-means backend runs without faiss
        import faiss

        faiss_version = getattr(faiss, "__version__", "unknown")
    except ImportError:
        faiss_version = "not installed"
    return {
        "semdedup": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss_version,
        "torch": torch.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
    }


def comparison_rule(config: DedupConfig) -> dict[str, Any]:
    """What an item's ``max_sim``/``dup_of`` was computed against, as ``run.json`` records it."""
    if not config.probe:
        return {
            "probe": 0,
            "rule": "paper",
            "description": "each item against the earlier items of its own cluster, in its cluster's keep order "
            "(SemDeDup's rule)",
        }
    return {
        "probe": int(config.probe),
        "rule": "paper+probe",
        "description": f"each item against the earlier items, in one global keep order, of its own cluster and "
        f"of the {config.probe} clusters whose centroids are nearest to it (per-item probing)",
    }


class RunRecord:
    """Book-keeping of one results folder: parameters, stage completion, timings (``run.json``)."""

    def __init__(self, out: Path, params: dict[str, Any], fp: str, n: int, d: int):
        self.out = out
        self.started = False  # run.json written (not before the input has been validated)
        self.key = work_key(params, fp, n, d)
        self.work = out / WORK / self.key
        folder = ResultsFolder(out)
        folder.check_writable()
        old = folder.read_run()
        if old is not None:
            counts = old.get("counts", {})
            old_shape = (counts.get("input_rows", counts.get("items")), counts.get("dim"))
            if old_shape != (n, d):
                raise SemDedupError(
                    f"results folder {str(out)!r} was made from {old_shape[0]} × {old_shape[1]} embeddings, "
                    f"these are {n} × {d} (dimension or count mismatch); choose another --out folder"
                )
            if not params_match(old.get("params"), params) or old.get("input_fingerprint") != fp:
                raise SemDedupError(
                    f"results folder {str(out)!r} holds a run with other parameters or input; "
                    "choose another --out folder (or delete that folder yourself)"
                )
            self.meta = old
            self.started = True
        else:  # nothing is written until the input has been validated
            self.meta = {
                "format_version": FORMAT_VERSION,
                "status": "running",
                "params": params,
                "input_fingerprint": fp,
                "counts": {"items": n, "dim": d, "input_rows": n},
                "stages": {},
                "device": {},
                "versions": library_versions(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }

    @property
    def complete(self) -> bool:
        return self.meta.get("status") == "complete"

    def done(self, stage: str) -> bool:
        return bool(self.meta["stages"].get(stage, {}).get("done"))

    def stage(self, name: str, compute: Callable[[], Any], load: Callable[[], Any] | None = None) -> Any:
        """Run stage ``name``: return ``load()`` when an earlier run finished it (and ``load`` can), else
        ``compute()`` timed and recorded. ``compute`` returns ``(value, info)``; ``info`` goes into
        ``run.json`` beside the stage's seconds. A stage stopped by an exception keeps its seconds."""
        if load is not None and self.done(name):
            try:
                return load()
            except FileNotFoundError:
                log.info("stage %s was recorded as done but its output is gone; running it again", name)
        t0 = time.perf_counter()
        try:
            value, info = compute()
        except BaseException:
            if self.started:
                self.add_seconds(name, time.perf_counter() - t0, done=False)
            raise
        self.add_seconds(name, time.perf_counter() - t0, done=True, **info)
        return value

    def add_seconds(self, stage: str, seconds: float, done: bool, **info: Any) -> None:
        prev = self.meta["stages"].get(stage, {})
        self.meta["stages"][stage] = {
            **prev,
            **info,
            "done": done,
            "seconds": round(prev.get("seconds", 0.0) + seconds, 4),
        }
        self.save()

    def stage_value(self, stage: str, key: str, default: Callable[[], Any]) -> Any:
        """``run.json``'s ``stages[stage][key]``, set to ``default()`` (and saved) the first time: a choice a
        stage makes once and keeps on resume (its arithmetic precision)."""
        recorded = self.meta["stages"].get(stage, {}).get(key)
        if recorded is not None:
            return recorded
        value = default()
        self.meta["stages"].setdefault(stage, {"done": False})[key] = value
        self.save()
        return value

    def merge(self, extra: dict[str, Any] | None) -> None:
        """Record ``extra`` facts: dicts (counts, stages) are merged, anything else replaced."""
        for key, value in (extra or {}).items():
            if isinstance(value, dict) and isinstance(self.meta.get(key), dict):
                self.meta[key].update(value)
            else:
                self.meta[key] = value

    def save(self) -> None:
        io.write_json(self.out / RUN, self.meta)
        self.started = True
