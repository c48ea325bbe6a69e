"""Where each stage of a run keeps what it made: the results folder's final files and the scratch files of
every part and bucket. A :class:`Layout` is small and picklable, so every unit of work finds its files
wherever it runs.

Final files: one part writes ``embeddings.npy``, ``items.parquet``, ``items.arrow`` (and ``probes.npy``);
several parts write ``embeddings/part-NNNNN.npy``, ``items.parquet/part-NNNNN.parquet``,
``items.arrow/part-NNNNN.arrow`` (and ``probes/part-NNNNN.npy``), and ``run.json`` lists the shards. Scratch files live under ``DIR/.work/<key>/``: ``p/NNNNN/`` per part,
``shuffle/BBBBB/NNNNN.npz`` (part N's rows sent to bucket B), and the bucket's results sent back to the
parts (``scored``, ``visits``, ``leaks``: ``NNNNN/BBBBB.npz``). Every file is written atomically and a unit
whose output exists is not run again, so a run killed at any moment resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..results.names import EMBEDDINGS, EMBEDDINGS_DIR, ITEMS, ITEMS_ARROW, PROBES, PROBES_DIR


@dataclass(frozen=True)
class Layout:
    out: str
    work: str
    n_parts: int

    @property
    def single(self) -> bool:
        return self.n_parts == 1

    def embeddings(self, p: int) -> Path:
        if self.single:
            return Path(self.out) / EMBEDDINGS
        return Path(self.out) / EMBEDDINGS_DIR / f"part-{p:05d}.npy"

    def embeddings_name(self, p: int) -> str:
        return self.embeddings(p).relative_to(self.out).as_posix()

    def probes(self, p: int) -> Path:
        """Part ``p``'s probed clusters (runs with probing)."""
        if self.single:
            return Path(self.out) / PROBES
        return Path(self.out) / PROBES_DIR / f"part-{p:05d}.npy"

    def items(self, p: int) -> tuple[Path, Path]:
        """Part ``p``'s ``items.parquet`` file and its Arrow copy."""
        if self.single:
            return Path(self.out) / ITEMS, Path(self.out) / ITEMS_ARROW
        name = f"part-{p:05d}"
        return Path(self.out) / ITEMS / f"{name}.parquet", Path(self.out) / ITEMS_ARROW / f"{name}.arrow"

    def part(self, p: int) -> Path:
        return Path(self.work) / "p" / f"{p:05d}"

    def shuffle(self, b: int, p: int | None = None) -> Path:
        folder = Path(self.work) / "shuffle" / f"{b:05d}"
        return folder if p is None else folder / f"{p:05d}.npz"

    def back(self, kind: str, p: int, b: int | None = None) -> Path:
        """A bucket's results for part ``p`` (``kind``: ``scored``, ``visits`` or ``leaks``)."""
        folder = Path(self.work) / kind / f"{p:05d}"
        return folder if b is None else folder / f"{b:05d}.npz"

    def marker(self, stage: str, unit: int) -> Path:
        return Path(self.work) / "done" / stage / f"{unit:05d}"
