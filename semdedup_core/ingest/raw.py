"""From raw data to a results folder: the ``embed`` stage over the input's parts, then the engine's
pipeline over the same parts (:mod:`semdedup_core.run.pipeline`), on any executor.

``run_input`` plans the parts from listings and metadata (:mod:`.parts`), embeds each part where the
executor runs it (this process, or Ray actors that load the model once), embeds a held-out reference set
the same way when there is one, and hands the parts to the engine. Every part is resumable on its own.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.device import resolve_device
from ..results import io
from ..results.folder import ResultsFolder
from ..results.names import ERRORS, REFERENCE_CARRIED, WORK
from ..run.config import ClusterConfig, DedupConfig, ReferenceConfig
from ..run.executors import Executor, get_executor
from ..run.layout import Layout
from ..run.meta import Progress, RunRecord, engine_params, no_progress, params_match
from ..run.pipeline import Job, run
from ..run.reference import Reference
from ..run.sources import PARTS, parts_source
from .embed import EmbedConfig, default_workers
from .encoders import get_encoder
from .inputs import check_options, input_fingerprint, reader_for
from .parts import PartEmbedder, PartSpec, claim, fingerprint, plan_parts, specs_json

if TYPE_CHECKING:
    from ..results.results import Results

REF_ERROR = "reference set: "  # how errors.parquet marks the reference set's unusable items
REF_PARTS = "ref-parts"


def run_input(
    input_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    embed: EmbedConfig | None = None,
    cluster: ClusterConfig,
    config: DedupConfig | None = None,
    progress: Progress | None = None,
    reuse: str | os.PathLike[str] | None = None,
    extra: dict[str, Any] | None = None,
    reference: str | os.PathLike[str] | None = None,
    reference_ids: Any = None,
    reference_config: ReferenceConfig | None = None,
    executor: str | Executor | None = None,
    part_rows: int | None = None,
    actors: int | None = None,
    num_gpus: float = 0,
) -> Results:
    """Embed the items of ``input_path`` (image folder, table, webdataset shards, Hugging Face dataset or
    embedding shards) and deduplicate them into the results folder ``out``.

    Writes the same folder as :func:`semdedup_core.dedup` plus ``errors.parquet`` (every item left out, with
    the reason); ``run.json`` records the input, the encoder and its parameters under ``embed``. Running
    again with the same arguments resumes (each part from its last finished chunk) or returns the finished
    results. ``reuse``: a finished results folder made with the same encoder; its items (same id and text
    or image path) are copied, not embedded again (``run.json``: ``embed.reused``). ``extra``: more facts
    for ``run.json``. ``executor``: where each unit runs (``"local"``, ``"ray"`` or an executor; on Ray the
    parts are embedded by ``actors`` model actors, with ``num_gpus`` each); ``part_rows``: rows (or files)
    per part of a table or an image folder (shards are one part each). The results are the same for every
    executor and every ``part_rows``.

    ``reference``: a held-out set to look for leaks of: raw data of the same kind as the input, read with
    the same column options and embedded with the same encoder (its unusable items are listed in
    ``errors.parquet`` with a reason starting ``reference set:``), or, for a run over precomputed embedding
    shards, shards of the same kind or an ``.npy`` file with ``reference_ids``.
    """
    embed = embed or EmbedConfig()
    config = config or DedupConfig()
    check_options(input_path, text_column=embed.text_column, image_column=embed.image_column, id_column=embed.id_column)
    plan = plan_parts(input_path, embed, part_rows)
    specs, modality = plan.specs, plan.modality
    precomputed = specs[0].kind == "emb" if specs else False
    if precomputed and (embed.encoder is not None or embed.pretrained is not None):
        raise SemDedupError("--encoder/--pretrained do not apply to precomputed embedding shards; drop them")
    _check_count(specs, cluster, input_path)
    ref_specs = _reference_specs(reference, reference_ids, reference_config, embed, precomputed, modality)
    reference_config = (reference_config or ReferenceConfig()) if reference is not None else None
    out = Path(out)
    with ResultsFolder(out).lock():  # one writer per folder, from the first part to the last file
        enc = (
            None
            if precomputed
            else get_encoder(embed.encoder, modality=modality, pretrained=embed.pretrained, device="cpu")
        )
        enc_params = {"name": "precomputed", "source": modality} if enc is None else enc.params()
        identity = {
            "input": str(input_path),
            "embed": embed.identity(),
            "encoder": enc_params,
            "parts": specs_json(specs),
        }
        ref_identity = None if reference is None else {"input": str(reference), "parts": specs_json(ref_specs or [])}
        params = engine_params(cluster, config, reference_config)
        if ResultsFolder(out).is_complete():
            return _finished(out, identity, ref_identity, params)
        work = out / WORK
        claim(work, identity)
        ex = get_executor(executor)
        embedder = (embed, "" if precomputed else modality, reuse, actors, num_gpus)
        t0 = time.perf_counter()
        summaries = _embed_parts(ex, specs, work / PARTS, embedder, progress or no_progress, "embed")
        ref, ref_errors, ref_facts = _reference(
            ex, reference, reference_ids, ref_specs, work, embedder, progress, summaries
        )
        seconds = round(time.perf_counter() - t0, 4)
        _check_usable(out, input_path, summaries, work, ref_errors)
        facts = _facts(input_path, specs, summaries, identity, ref_identity, enc, enc_params, embed, reuse, seconds)
        facts["counts"].update(
            skipped=plan.skipped + facts["counts"]["skipped"], input_items=sum(s["n_input"] for s in summaries)
        )
        facts["counts"].update(ref_facts.pop("counts", {}))
        facts.update(ref_facts)
        facts.update(extra or {})
        source = parts_source(work, [s["rows"] for s in summaries], _carried(summaries))
        dims = {s["dim"] for s in summaries if s["rows"]}
        if len(dims) > 1:
            raise SemDedupError(
                f"the parts hold vectors of different sizes {sorted(dims)}; use one encoder for all shards"
            )
        fp = fingerprint(identity, specs) + ("" if ref is None else f"+reference:{ref.fingerprint}")
        record = RunRecord(out, params, fp, source.n_rows, dims.pop() if dims else 0)
        if record.complete:
            return _finished(out, identity, ref_identity, params)
        job = Job(record, source, Layout(str(out), str(record.work), source.n_parts), cluster, config, ex,
                  progress or no_progress, ref, reference_config, ref_errors)  # fmt: skip
        return run(job, facts)


def _check_count(specs: list[PartSpec], cluster: ClusterConfig, path: Any) -> None:
    """Refuse, before anything is embedded, a ``--clusters`` larger than the input's rows where they are
    known from the listing (tables and image folders)."""
    if specs and all(s.kind in ("table", "files") for s in specs):
        n = sum(s.stop - s.start for s in specs)
        if 0 < n < cluster.n_clusters:
            raise SemDedupError(
                f"n_clusters must be between 1 and the number of usable items ({n} of {n} in {str(path)!r}), got "
                f"{cluster.n_clusters}; pass a smaller --clusters"
            )


def _finished(out: Path, identity: dict, ref_identity: Any, params: dict) -> Results:
    """The finished run in ``out`` when it is this one; refused otherwise."""
    from ..results.results import Results

    meta = ResultsFolder(out).finished_run()
    embed = meta.get("embed", {})
    same = embed.get("identity") == identity and embed.get("reference_identity") == ref_identity
    if not (same and params_match(meta.get("params"), params)):
        raise SemDedupError(
            f"results folder {str(out)!r} holds a run with another input, encoder or parameters; "
            "choose another --out folder (or delete that folder yourself)"
        )
    return Results.load(out)


def _embed_parts(ex: Executor, specs: list[PartSpec], folder: Path, embedder: tuple, progress: Any, stage: str) -> list:
    """The ``embed`` stage: every part not embedded yet into ``folder/NNNNN``, where the executor runs it;
    returns one summary per part."""
    embed, modality, reuse, actors, num_gpus = embedder
    workers = default_workers(resolve_device(embed.device)) if embed.workers is None else embed.workers
    init = (embed.__dict__.copy(), modality, str(folder), embed.device, workers, None if reuse is None else str(reuse))
    done_file = [folder / f"{p:05d}" / "done.json" for p in range(len(specs))]
    todo = [(p, (p, specs_json([s])[0])) for p, s in enumerate(specs) if not done_file[p].is_file()]
    done = len(specs) - len(todo)
    if ex.name == "local":  # in this process: one part's progress is counted in items
        unit = PartEmbedder(*init)
        within = (lambda _s, d, t: progress(stage, d, t)) if len(specs) == 1 else None
        if within is None:
            progress(stage, done, len(specs))
        for p, (_, spec) in todo:
            unit.run(p, spec, progress=within)
            done += 1
            if within is None:
                progress(stage, done, len(specs))
    else:
        progress(stage, done, len(specs))
        for _ in ex.imap_actors(PartEmbedder, init, todo, actors=actors, num_gpus=num_gpus):
            done += 1
            progress(stage, done, len(specs))
    return [io.read_json(f) for f in done_file]


def _reference_specs(reference: Any, ids: Any, config: Any, embed: EmbedConfig, precomputed: bool, modality: str):
    """The parts of a raw reference set (``None`` for an ``.npy`` of reference embeddings, or no set), checked
    to come from the same encoder and modality as the input."""
    if reference is None:
        if ids is not None or config is not None:
            raise SemDedupError("--reference-ids and --reference-probe/--exact-reference need --reference HELD_OUT")
        return None
    p = Path(reference)
    if p.suffix.lower() == ".npy":
        if not precomputed:
            raise SemDedupError(
                f"--reference {str(p)!r} holds embeddings from an unknown encoder, but this run embeds its input "
                f"with {embed.encoder or 'the default ' + modality + ' encoder'}; pass the held-out raw data "
                "(a folder or table like --input) so that both sides are embedded by the same encoder"
            )
        return None
    if ids is not None:
        raise SemDedupError("--reference-ids applies to a reference .npy file; raw reference data has its own ids")
    try:
        check_options(p, text_column=embed.text_column, image_column=embed.image_column, id_column=embed.id_column)
        ref_plan = plan_parts(p, embed)
        specs, ref_modality = ref_plan.specs, ref_plan.modality
    except SemDedupError as exc:
        raise SemDedupError(f"reference set: {exc}") from None
    if (specs[0].kind == "emb") != precomputed:
        what = "precomputed embeddings" if specs[0].kind == "emb" else "raw data"
        run_kind = "precomputed embeddings" if precomputed else "raw data embedded by the run's encoder"
        raise SemDedupError(
            f"--reference {str(p)!r} is {what} but the run's input is {run_kind}: the two would come from different "
            "encoders; pass a reference of the same kind as --input"
        )
    if ref_modality != modality:
        raise SemDedupError(
            f"--reference {str(p)!r} holds {ref_modality} items but the run embeds {modality} items; "
            "pass a held-out set of the same kind as --input"
        )
    return specs


def _reference(ex, reference, ids, specs, work: Path, embedder: tuple, progress: Any, summaries: list):
    """The checked reference set (embedded like the input when raw), its unusable items (for
    ``errors.parquet``) and its facts for ``run.json``; ``(None, [], {})`` without one."""
    if reference is None:
        return None, [], {}
    d = next((s["dim"] for s in summaries if s["rows"]), 0)
    if specs is None:  # an .npy of reference embeddings
        ref_ids = io.read_ids(ids, io.load_embeddings(reference).shape[0], what="reference ids") if ids else None
        return Reference.check(reference, ref_ids, None, d), [], {}
    claim(work, {"reference": str(reference), "parts": specs_json(specs)}, REF_PARTS)
    embed, modality, _reuse, actors, num_gpus = embedder
    labelled = progress or no_progress
    ref_summaries = _embed_parts(
        ex, specs, work / REF_PARTS, (embed, modality, None, actors, num_gpus), labelled, "embed ref"
    )
    emb, ids_, columns, errors = _load_reference_parts(work / REF_PARTS, len(specs))
    errors = [{**e, "reason": f"{REF_ERROR}{e['reason']}"} for e in errors]
    if len(ids_) == 0:
        reasons = sorted({str(e["reason"])[len(REF_ERROR) :].split(" (")[0] for e in errors})[:3]
        io.write_errors(work.parent / ERRORS, errors)
        raise SemDedupError(
            f"nothing usable in {REF_ERROR}{str(reference)!r}: all {sum(s['n_input'] for s in ref_summaries)} items "
            f"failed ({'; '.join(reasons)}); see {str(work.parent / ERRORS)!r}"
        )
    facts = {
        "reference_input": {"kind": reader_for(reference).name, "path": str(Path(reference).resolve())},
        "counts": {"reference_input_items": sum(s["n_input"] for s in ref_summaries)},
    }
    return Reference.check(emb, ids_, columns, d), errors, facts


def _load_reference_parts(folder: Path, n_parts: int) -> tuple[np.ndarray, np.ndarray, Any, list[dict]]:
    """The usable rows of a reference set's parts: vectors, ids, carried text/path, and its errors."""
    import pandas as pd

    vecs, ids, cols, errors = [], [], [], []
    for p in range(n_parts):
        d = folder / f"{p:05d}"
        meta = pd.read_parquet(d / "meta.parquet")
        errs = pd.read_parquet(d / "errors.parquet").to_dict("records")
        ok = np.ones(len(meta), dtype=bool)
        ok[np.load(d / "failed.npy")] = False
        vecs.append(np.load(d / "emb.npy")[ok] if ok.any() else np.zeros((0, 0), np.float32))
        ids.extend(meta["id"].astype(str)[ok])
        cols.append(meta.loc[ok, [c for c in REFERENCE_CARRIED if c in meta.columns]])
        errors.extend(errs)
    emb = np.concatenate([v for v in vecs if v.size]) if any(v.size for v in vecs) else np.zeros((0, 1), np.float32)
    return emb, np.asarray(ids, dtype=object), pd.concat(cols, ignore_index=True), errors


def _check_usable(out: Path, src: Any, summaries: list[dict], work: Path, more: list) -> None:
    """Raise, with ``errors.parquet`` written, when no item of the input could be embedded."""
    if sum(s["rows"] - s.get("failed", 0) for s in summaries) > 0:
        return
    import pandas as pd

    errors = [
        e
        for p in range(len(summaries))
        for e in pd.read_parquet(work / PARTS / f"{p:05d}" / "errors.parquet").to_dict("records")
    ]
    io.write_errors(out / ERRORS, errors + more)
    reasons = sorted({str(e["reason"]).split(" (")[0] for e in errors})[:3]
    n_input = sum(s["n_input"] for s in summaries)
    raise SemDedupError(
        f"nothing usable in {str(src)!r}: all {n_input} items failed ({'; '.join(reasons)}); see {str(out / ERRORS)!r}"
    )


def _carried(summaries: list[dict]) -> tuple[str, ...]:
    return tuple(summaries[0].get("columns", ())) if summaries else ()


def _facts(path, specs, summaries, identity, ref_identity, enc, enc_params, embed, reuse, seconds) -> dict[str, Any]:
    """What ``run.json`` records of the input and the embedding."""
    source = dict(summaries[0].get("input", {})) if summaries else {}
    for key in ("shards", "files"):
        source.pop(key, None)
    runtime = enc.runtime() if enc is not None else {"backend": "precomputed"}
    reused = sum(s.get("reused", 0) for s in summaries)
    kind = reader_for(path).name
    source.update(kind=kind, path=_input_root(path), parts=len(specs), fingerprint=input_fingerprint(path))
    if kind == "webdataset":  # the shards themselves: a pattern's folder may hold others
        source["shards"] = [s.source for s in specs]
    return {
        "input": source,
        "embed": {
            "identity": identity,
            "reference_identity": ref_identity,
            "encoder": enc_params,
            "batch_size": embed.batch_size,
            "device": resolve_device(embed.device),
            **runtime,
            "reused": reused,
            "reused_from": None if reuse is None else str(Path(reuse).resolve()),
            "seconds": seconds,
        },
        "counts": {"skipped": sum(s.get("skipped", 0) for s in summaries)},
        "stages": {"embed": {"done": True, "seconds": seconds, "backend": runtime["backend"]}},
    }


def _input_root(path: Any) -> str:
    """The folder (or file) an input's items lie under: a brace pattern of shards is its folder."""
    text = str(path)
    if "{" in text:
        head = text.split("{", 1)[0]
        return str(Path(head).resolve() if head.endswith("/") else Path(head).resolve().parent)
    return str(Path(text).resolve())
