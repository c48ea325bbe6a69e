"""The audit at scale, structurally: drawing, recording, reading and growing a review sample, its queue and
its estimate read the score column, ``dup_row``, the sorted scores and the sampled rows — never the whole
items table nor the index of every id (what a 20,000,000-item run cannot afford in the app). The 20M
figures are bench/bench_audit_scale.py's."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from semdedup_core import Results
from semdedup_core.audit import Plan, draw_sample, estimate, load_design, next_batch, queue_frame, save_design
from semdedup_core.audit.labels import LabelStore, make_rows, resolve


class Watched(Results):
    """A results folder that refuses to build its items table or its id index, and counts the rows read."""

    read: list[int]

    @property
    def items(self):  # type: ignore[override]
        raise AssertionError("the audit built the whole items table")

    @property
    def row_of_id(self):  # type: ignore[override]
        raise AssertionError("the audit indexed every id of the run")

    def rows(self, indices, columns=None):
        self.read.append(len(np.atleast_1d(indices)))
        return super().rows(indices, columns)


@pytest.fixture
def watched(oracle_results, tmp_path):
    dest = tmp_path / "run"
    shutil.copytree(oracle_results[0].path, dest)
    res = Results.load(dest, strings=True)
    res.__class__ = Watched
    res.read = []
    return res


def test_the_sample_reads_the_scores_and_the_sampled_rows_only(watched):
    res = watched
    design = draw_sample(res, 300, 0.3, seed=0)
    assert sum(res.read) == 2 * design.n  # the ids of the sampled items and of their dup_of, once
    save_design(design, res.path)
    res.read.clear()
    loaded = load_design(res)
    assert loaded.n == 300 and sum(res.read) == 2 * 300
    res.read.clear()
    none = resolve(make_rows([], [], [], "x"))
    queue = queue_frame(res, loaded, none)
    assert len(queue) == 300 and sum(res.read) == 0  # the oracle run has no text/path: nothing more to read
    u = loaded.units.iloc[:200]
    judged = resolve(make_rows(u["id"], u["dup_of"], ["duplicate"] * 200, "r"))
    rep = estimate(loaded, judged)
    assert rep.sample["judged"] == 200 and sum(res.read) == 0
    # a sequential sample and its next batch, recorded under the lock, the same way
    seq = draw_sample(res, 20, 0.3, seed=1, plan=Plan(sequential=True, budget=400))
    save_design(seq, res.path)
    store = LabelStore(res.path / "labels.parquet")
    store.add(make_rows(seq.units["id"], seq.units["dup_of"], ["duplicate"] * seq.n, "r"))
    res.read.clear()
    grown, what = next_batch(res, store)
    assert grown.n == 40 and "batch 1" in what
    assert sum(res.read) <= 2 * 20 + 2 * 40  # the check of the recorded pairs, and the new batch's ids
    assert "items" not in res.__dict__
