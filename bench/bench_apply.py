"""``apply`` against the bare libraries doing the same job, in this process:

- a Parquet table of ``--rows`` rows (default 1,000,000: string id, text, ints, floats, a list column, in
  row groups of 100,000): ``apply_run`` (the kept rows at ε, found from the results folder's scores, the
  ids joined, written row group by row group) against a bare pyarrow filter (read the table, keep the rows
  whose id is in the kept ids with ``pyarrow.compute.is_in``, write it);
- the same rows as JSONL: ``apply_run`` (kept lines copied byte for byte) for reference;
- webdataset shards (``--shards`` × ``--per-shard`` samples, a ``--member-kb`` KB ``jpg``, a ``txt`` and
  a ``json`` each): ``apply_run`` against a bare ``tarfile`` copy of the kept samples' members.

    python bench/bench_apply.py                       # 1,000,000 rows; 20 × 1,000 samples of 20 KB
    python bench/bench_apply.py --rows 100000 --shards 4

The results folders come from the real readers and engine with planted embeddings (one random vector per
group of near-copies, 10 % of the rows copies), so ε = 0.05 removes about 9 % of the items. Times are best
of ``--repeat``.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from semdedup_core import ClusterConfig, dedup  # noqa: E402
from semdedup_core.ingest.apply import apply_run  # noqa: E402
from semdedup_core.ingest.inputs import input_fingerprint, load_input  # noqa: E402

EPS = 0.05


def planted_results(path: str, out: Path, groups: np.ndarray, k: int, **options):
    """A results folder over ``path`` read by its reader, with one vector per group (plus a little noise)."""
    items = load_input(path, **options)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(int(groups.max()) + 1, 16)).astype(np.float32)
    x = base[groups[: len(items)]] + 0.01 * rng.normal(size=(len(items), 16)).astype(np.float32)
    source = {**items.source, "fingerprint": input_fingerprint(path)}
    return dedup(x, items.ids, cluster=ClusterConfig(k, seed=0), out=out, columns=None, extra={"input": source})


def groups_for(n: int) -> np.ndarray:
    """Every tenth item a near-copy of the one before it."""
    g = np.arange(n)
    g[1::10] = g[0::10][: len(g[1::10])]
    return g


def best(fn, repeat: int, clean) -> float:
    times = []
    for _ in range(repeat):
        clean()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_table(work: Path, rows: int, repeat: int) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    ids = pa.array([f"row-{i:08d}" for i in range(rows)])
    table = pa.table(
        {
            "id": ids,
            "text": pa.array([f"text number {i} with some words in it" for i in range(rows)]),
            "n": pa.array(np.arange(rows)),
            "score": pa.array(rng.random(rows)),
            "tags": pa.array([["a", "b"]] * rows),
        }
    )
    src = work / "rows.parquet"
    pq.write_table(table, src, row_group_size=100_000)
    with open(work / "rows.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    t0 = time.perf_counter()
    res = planted_results(str(src), work / "run-parquet", groups_for(rows), 1000, text_column="text", id_column="id")
    made = time.perf_counter() - t0
    out, bare_out = work / "kept.parquet", work / "bare.parquet"
    kept = res.rows(np.flatnonzero(~res.removed_mask(EPS)), ["id"])["id"].to_numpy(dtype=object)

    def bare() -> None:
        t = pq.read_table(src)
        pq.write_table(t.filter(pc.is_in(t["id"], value_set=pa.array(kept))), bare_out)

    def ours() -> None:
        apply_run(res, EPS, out)

    t_bare = best(bare, repeat, lambda: bare_out.unlink(missing_ok=True))
    t_ours = best(ours, repeat, lambda: out.unlink(missing_ok=True))
    assert pq.read_table(out).equals(pq.read_table(bare_out))
    res_j = planted_results(
        str(work / "rows.jsonl"), work / "run-jsonl", groups_for(rows), 1000, text_column="text", id_column="id"
    )
    t_jsonl = best(
        lambda: apply_run(res_j, EPS, work / "kept.jsonl"),
        repeat,
        lambda: (work / "kept.jsonl").unlink(missing_ok=True),
    )
    return {
        "rows": rows,
        "kept": len(kept),
        "results_folder_s": round(made, 2),
        "bare_pyarrow_filter_s": round(t_bare, 3),
        "apply_parquet_s": round(t_ours, 3),
        "ratio_parquet": round(t_ours / t_bare, 2),
        "apply_jsonl_s": round(t_jsonl, 3),
    }


def make_shards(root: Path, shards: int, per_shard: int, member_kb: int) -> None:
    rng = np.random.default_rng(2)
    root.mkdir(parents=True)
    for s in range(shards):
        with tarfile.open(root / f"{s:05d}.tar", "w") as tf:
            for j in range(per_shard):
                key = f"{s:05d}{j:05d}"
                for ext, data in (
                    ("jpg", b"\xff\xd8\xff" + rng.bytes(member_kb * 1024)),
                    ("txt", f"caption {key}".encode()),
                    ("json", json.dumps({"key": key, "w": 640}).encode()),
                ):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))


def bare_tar_copy(root: Path, kept: set[str], out: Path, size: int) -> None:
    """The kept samples' members into new shards of ``size`` samples: tarfile only."""
    out.mkdir()
    n, dest = 0, None
    for shard in sorted(root.glob("*.tar")):
        with tarfile.open(shard) as tf:
            last = None
            for m in tf:
                key = m.name.split(".")[0]
                if key not in kept:
                    continue
                if key != last:
                    if n % size == 0:
                        if dest is not None:
                            dest.close()
                        dest = tarfile.open(out / f"shard-{n // size:06d}.tar", "w")
                    n, last = n + 1, key
                dest.addfile(m, tf.extractfile(m))
    if dest is not None:
        dest.close()


def bench_wds(work: Path, shards: int, per_shard: int, member_kb: int, repeat: int) -> dict:
    root = work / "shards"
    make_shards(root, shards, per_shard, member_kb)
    res = planted_results(str(root), work / "run-wds", groups_for(shards * per_shard), 100)
    kept = set(res.rows(np.flatnonzero(~res.removed_mask(EPS)), ["id"])["id"])
    out, bare_out = work / "kept-shards", work / "bare-shards"
    t_bare = best(lambda: bare_tar_copy(root, kept, bare_out, 1000), repeat, lambda: shutil.rmtree(bare_out, True))
    t_ours = best(lambda: apply_run(res, EPS, out, shard_size=1000), repeat, lambda: shutil.rmtree(out, True))
    size = sum(p.stat().st_size for p in root.glob("*.tar"))
    return {
        "samples": shards * per_shard,
        "kept": len(kept),
        "input_mb": round(size / 2**20, 1),
        "bare_tar_copy_s": round(t_bare, 3),
        "apply_s": round(t_ours, 3),
        "ratio": round(t_ours / t_bare, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--member-kb", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-apply-"))
    work.mkdir(parents=True, exist_ok=True)
    figures = {
        "table": bench_table(work, args.rows, args.repeat),
        "webdataset": bench_wds(work, args.shards, args.per_shard, args.member_kb, args.repeat),
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
