"""The audited rule: the paper's rule with the pairs judged not duplicates taken out, checked against a
brute-force greedy reference; exports under it name the partner that justifies each removal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from semdedup_core import ClusterConfig, dedup
from semdedup_core.audit.labels import LabelStore, make_rows
from semdedup_core.cli import main
from semdedup_core.explore.export import export_frame

EPS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.6)


def brute_force(emb: np.ndarray, items: pd.DataFrame, not_dup: set[frozenset]) -> tuple[np.ndarray, list]:
    """For every item, walking its cluster's earlier items one by one: the most similar one that no
    verdict says is not a duplicate of it (ties to the earlier position), and that similarity."""
    ids = items["id"].to_numpy()
    score = np.full(len(items), -1.0)
    partner: list = [None] * len(items)
    for _, grp in items.groupby("cluster"):
        rows = grp.sort_values("rank").index.to_numpy()
        for r in range(1, len(rows)):
            best, best_j = -np.inf, None
            for j in range(r):
                if frozenset((ids[rows[r]], ids[rows[j]])) in not_dup:
                    continue
                s = float(np.dot(emb[rows[r]].astype(np.float64), emb[rows[j]].astype(np.float64)))
                if s > best:
                    best, best_j = s, rows[j]
            if best_j is not None:
                score[rows[r]], partner[rows[r]] = best, ids[best_j]
    return score, partner


@pytest.fixture(scope="module")
def judged_run(tmp_path_factory):
    """A run with many near-copies (chains and groups), and a store in which a third of the (item, dup_of)
    pairs and some second-best partners are judged not duplicates, others duplicates or unsure."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((60, 16))
    x = [base]
    for _ in range(3):  # three generations of copies: groups, chains, competing partners
        x.append(x[-1][rng.integers(0, len(x[-1]), 50)] + 0.25 * rng.standard_normal((50, 16)))
    x = np.vstack(x).astype(np.float32)
    out = tmp_path_factory.mktemp("audited") / "run"
    res = dedup(x, [f"i{i:03d}" for i in range(len(x))], cluster=ClusterConfig(4, seed=0), out=out)
    items = res.items
    emb = np.asarray(res.embeddings)
    has = np.flatnonzero(items["dup_of"].notna().to_numpy())
    pick = rng.choice(has, len(has) // 3, replace=False)
    ids, others, verdicts = list(items["id"].to_numpy()[pick]), list(items["dup_of"].to_numpy()[pick]), []
    verdicts = ["not_duplicate"] * len(pick)
    # second-best partners judged not duplicates too, so that the rescored partner is excluded as well
    clusters = res.clusters
    for row in pick[:40]:
        members = clusters.members(int(items["cluster"].iat[row]))
        earlier = members[: int(items["rank"].iat[row])]
        if len(earlier) >= 2:
            sims = emb[earlier] @ emb[row]
            second = earlier[np.argsort(-sims)[1]]
            ids.append(items["id"].iat[row])
            others.append(items["id"].iat[second])
            verdicts.append("not_duplicate")
    rest = np.setdiff1d(has, pick)[:30]  # other verdicts change nothing under the rule
    ids += list(items["id"].to_numpy()[rest])
    others += list(items["dup_of"].to_numpy()[rest])
    verdicts += ["duplicate", "unsure"] * 15
    store = LabelStore(res.path / "labels.parquet")
    store.add(make_rows(ids, others, verdicts, "ann"))
    not_dup = {frozenset((a, b)) for a, b, v in zip(ids, others, verdicts, strict=True) if v == "not_duplicate"}
    return res, store, not_dup


def test_audited_rule_matches_brute_force(judged_run):
    res, store, not_dup = judged_run
    emb = np.asarray(res.embeddings)
    want_score, want_partner = brute_force(emb, res.items, not_dup)
    audited = res.audited(store)
    assert audited.rescored > 50 and audited.excluded == len(not_dup)
    assert np.allclose(audited.score, want_score, atol=1e-5)
    ids = res.items["id"].to_numpy()
    got_partner = [ids[p] if p >= 0 else None for p in audited.partner]
    assert got_partner == want_partner
    paper = res.items["max_sim"].to_numpy()
    for e in EPS:
        want = want_score > 1 - e
        mask = res.removed_mask(e, "audited", store)
        assert np.array_equal(mask, want), e
        assert res.n_removed(e, "audited", store) == want.sum()
        assert not np.any(mask & ~(paper > 1 - e))  # never removes what the paper's rule keeps
    assert res.n_removed(0.3, "audited", store) < res.n_removed(0.3)  # verdicts took removals back
    # an array of eps at once, as the curve asks
    assert np.array_equal(res.n_removed(np.array(EPS), "audited", store), [(want_score > 1 - e).sum() for e in EPS])


def test_audited_export_names_the_justifying_partner(judged_run, capsys):
    res, store, not_dup = judged_run
    frame = export_frame(res, 0.3, "removed", "audited", store)
    assert len(frame) == res.n_removed(0.3, "audited", store)
    for item, partner, score in zip(frame["id"], frame["dup_of"], frame["max_sim"], strict=True):
        assert frozenset((item, partner)) not in not_dup  # never a partner judged not a duplicate
        assert score > 0.7
    # the CLI writes it under the rule's name and says how many removals the verdicts took back
    assert main(["export", str(res.path), "--eps", "0.3", "--rule", "audited"]) == 0
    out = capsys.readouterr().out
    written = pd.read_csv(res.path / "exports" / "removed-eps0.3000-audited.csv", dtype={"id": str, "dup_of": str})
    assert written["id"].tolist() == frame["id"].tolist() and written["dup_of"].tolist() == frame["dup_of"].tolist()
    assert f"removed: {len(frame):,} of {res.n_items:,} items at eps 0.3 (rule audited)" in out
    assert f"{res.n_removed(0.3) - len(frame):,} fewer removals than the paper's rule" in out
    assert main(["export", str(res.path), "--eps", "0.3", "--labels", str(store.path)]) == 2
    assert "--labels applies to --rule audited" in capsys.readouterr().err


def test_without_verdicts_the_audited_rule_is_the_papers(text_results, tmp_path):
    store = LabelStore(tmp_path / "none.parquet")
    for e in EPS:
        assert np.array_equal(text_results.removed_mask(e, "audited", store), text_results.removed_mask(e))
    # a new verdict is a new state of the store: the rule follows it at once
    items = text_results.items
    row = int(np.flatnonzero(text_results.removed_mask(0.05))[0])
    store.record(items["id"].iat[row], items["dup_of"].iat[row], "not_duplicate", "ann")
    assert text_results.audited(store).rescored == 1


def test_audited_rule_on_a_probing_run_matches_the_definition(tmp_path):
    """With --probe, the audited rule scores an item again against the items earlier in the global keep
    order of its own and its probed clusters, without the partners judged not duplicates of it."""
    from topics import dedup_data

    from semdedup_core import DedupConfig
    from semdedup_core.kernels.order import global_order

    x, _ = dedup_data(700, 16, 6, copy_share=0.25, seed=3)
    res = dedup(x, cluster=ClusterConfig(8, seed=1), config=DedupConfig(probe=2), out=tmp_path / "r")
    items, emb = res.items, np.asarray(res.embeddings, dtype=np.float64)
    probes = np.load(tmp_path / "r" / "probes.npy")
    assert res.cross_cluster.any()
    rng = np.random.default_rng(0)
    has = np.flatnonzero(res.dup_rows >= 0)
    pick = rng.choice(has, len(has) // 3, replace=False)
    ids = items["id"].to_numpy()
    store = LabelStore(res.path / "labels.parquet")
    store.add(make_rows(list(ids[pick]), list(ids[res.dup_rows[pick]]), ["not_duplicate"] * len(pick), "ann"))
    vetoed = {(int(i), int(res.dup_rows[i])) for i in pick}
    pos = global_order(items["dist_to_centroid"].to_numpy(), "hard", 0)
    labels = items["cluster"].to_numpy()
    audited = res.audited(store)
    for i in pick:  # the definition, the slow way
        cand = np.flatnonzero(np.isin(labels, probes[i]) & (pos < pos[i]))
        cand = np.array([c for c in cand if (int(i), int(c)) not in vetoed], dtype=np.int64)
        if not len(cand):
            assert audited.score[i] == -1.0 and audited.partner[i] == -1
            continue
        sims = emb[cand] @ emb[i]
        best = sims.max()
        ties = cand[sims >= best - 1e-6]
        assert audited.score[i] == pytest.approx(best, abs=1e-5)
        assert audited.partner[i] == ties[np.argmin(pos[ties])]
    assert res.n_removed(0.1, "audited", store) <= res.n_removed(0.1)
