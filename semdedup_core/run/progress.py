"""Progress callbacks: ``progress(stage, done, total)``. The CLI shows tqdm bars; with
``--progress-file`` it also writes a small JSON file that whoever started the run (the app) polls."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..results import io


class TqdmProgress:
    """One tqdm bar per stage on stderr."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self.bar: Any = None
        self.stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=f"{stage:>9}", file=sys.stderr, disable=self.disable, dynamic_ncols=True)
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonFileProgress:
    """Writes ``{"stage", "done", "total", "time"}`` atomically to ``path``, at most every ``interval`` s
    (and always when a stage starts or ends)."""

    def __init__(self, path: str | Path, interval: float = 0.5):
        self.path = Path(path)
        self.interval = interval
        self._last = 0.0
        self._stage: str | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == self._stage and done not in (0, total) and now - self._last < self.interval:
            return
        self._stage, self._last = stage, now
        io.write_json(self.path, {"stage": stage, "done": int(done), "total": int(total), "time": time.time()})


class Fanout:
    """Call several progress callbacks in turn."""

    def __init__(self, *callbacks: Any):
        self.callbacks = [c for c in callbacks if c is not None]

    def __call__(self, stage: str, done: int, total: int) -> None:
        for cb in self.callbacks:
            cb(stage, done, total)
