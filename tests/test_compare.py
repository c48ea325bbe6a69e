"""Two runs side by side: counts against set arithmetic on the removed ids, partners, reasons, the CLI
and the Compare page (AppTest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import planted_text_data
from streamlit.testing.v1 import AppTest

import semdedup_app as sa
from semdedup_core import ClusterConfig, DedupConfig, Results, SemDedupError, dedup
from semdedup_core.cli import main
from semdedup_core.explore.compare import REASONS, compare, matching_eps

APP = str(Path(__file__).resolve().parents[1] / "app.py")


@pytest.fixture(scope="module")
def run_b(tmp_path_factory):
    """The planted text data of ``text_results`` in another order, with another k, keep policy and seed."""
    x, ids, cols = planted_text_data()
    perm = np.random.default_rng(3).permutation(len(ids))
    return dedup(
        x[perm],
        [ids[i] for i in perm],
        cluster=ClusterConfig(3, seed=1),
        config=DedupConfig(keep="easy", seed=1),
        out=tmp_path_factory.mktemp("compare") / "run-b",
        columns=cols.iloc[perm].reset_index(drop=True),
    )


def removed_ids(res: Results, eps: float, rule: str = "paper") -> set[str]:
    return set(res.removed(eps, rule)["id"].astype(str))


@pytest.mark.parametrize(("eps", "eps_b"), [(0.05, None), (0.1, 0.2), (0.3, 0.02), (0.0, 0.0)])
def test_counts_are_set_arithmetic(text_results, run_b, eps, eps_b):
    a, b = text_results, run_b
    cmp = compare(a, b, eps, eps_b)
    ra, rb = removed_ids(a, eps), removed_ids(b, eps if eps_b is None else eps_b)
    assert cmp.both == len(ra & rb)
    assert cmp.only_a == len(ra - rb)
    assert cmp.only_b == len(rb - ra)
    assert cmp.neither == a.n_items - len(ra | rb)
    assert cmp.jaccard == (pytest.approx(len(ra & rb) / len(ra | rb)) if ra | rb else 1.0)
    for which, expected in (("only_a", ra - rb), ("only_b", rb - ra), ("both", ra & rb)):
        assert set(cmp.items(which)["id"]) == expected
    s = cmp.summary()
    assert {k: s[k] for k in ("both", "only_a", "only_b")} == {
        "both": len(ra & rb),
        "only_a": len(ra - rb),
        "only_b": len(rb - ra),
    }
    assert s["a"]["removed"] == len(ra) and s["b"]["removed"] == len(rb)
    assert (s["a"]["clusters"], s["a"]["keep"], s["b"]["clusters"], s["b"]["keep"]) == (5, "hard", 3, "easy")


def test_each_item_comes_with_its_partner_in_each_run(text_results, run_b):
    a, b = text_results, run_b
    cmp = compare(a, b, 0.1)
    dup_a = dict(zip(a.items["id"], a.items["dup_of"], strict=True))
    dup_b = dict(zip(b.items["id"], b.items["dup_of"], strict=True))
    sim_b = dict(zip(b.items["id"], b.items["max_sim"], strict=True))
    ids_b = b.items["id"].to_numpy()
    n = 0
    for which in ("only_a", "only_b", "both"):
        frame = cmp.items(which)
        key = frame["max_sim_b" if which == "only_b" else "max_sim_a"].to_numpy()
        assert np.all(np.diff(key) <= 0)  # most similar first in the run that removes it
        for rec in frame.itertuples():
            assert a.items["id"].iat[rec.row_a] == rec.id == ids_b[rec.row_b]
            assert rec.dup_of_a == dup_a[rec.id] and rec.dup_of_b == dup_b[rec.id]
            assert rec.max_sim_b == pytest.approx(sim_b[rec.id])
            if rec.dup_row_b >= 0:
                assert ids_b[rec.dup_row_b] == dup_b[rec.id]
            assert (rec.removed_a, rec.removed_b) == (which != "only_b", which != "only_a")
            n += 1
    assert n == cmp.both + cmp.only_a + cmp.only_b > 0


def test_reasons_say_why_the_other_run_keeps_an_item(text_results, run_b):
    a, b = text_results, run_b
    cmp = compare(a, b, 0.1)
    info = {
        side: res.items.set_index(res.items["id"].astype(str))[["cluster", "rank", "dup_of", "max_sim"]]
        for side, res in (("a", a), ("b", b))
    }
    seen = set()
    for which, remover, keeper in (("only_a", "a", "b"), ("only_b", "b", "a")):
        frame = cmp.items(which)
        for item, reason in zip(frame["id"], frame["reason"], strict=True):
            partner = info[remover].at[item, "dup_of"]
            k_item, k_partner = info[keeper].loc[item], info[keeper].loc[partner]
            same = k_item["cluster"] == k_partner["cluster"]
            assert reason == (
                "clusters" if not same else "order" if k_partner["rank"] > k_item["rank"] else "threshold"
            )
            if reason == "threshold":  # compared, and the keeper's score stays at or below its threshold
                assert k_item["max_sim"] <= 1 - 0.1 + 1e-7
            seen.add(reason)
        counts = cmp.summary()[f"reasons_{which}"]
        assert sum(counts.values()) == len(frame) and set(counts) == set(REASONS)
    assert "order" in seen  # hard against easy keep: the same pair, kept the other way round


def test_matching_eps_and_cluster_disagreement(text_results, run_b):
    a, b = text_results, run_b
    cmp = compare(a, b, 0.1)
    n_a = a.n_removed(0.1)
    assert b.n_removed(cmp.eps_b_matching) == n_a  # no ties among these scores: exactly as many
    assert b.n_removed(cmp.eps_b_matching + 1e-6) > n_a
    assert matching_eps(b, n_a) == cmp.eps_b_matching
    assert compare(a, b, 0.1, cmp.eps_b_matching).summary()["b"]["removed"] == n_a
    for side, res in (("a", a), ("b", b)):
        table = cmp.cluster_table(side)
        assert table["size"].sum() == a.n_items and len(table) == res.n_clusters
        for col in ("both", "only_a", "only_b"):
            assert table[col].sum() == getattr(cmp, col)
        assert table["removed_a"].sum() == n_a and table["removed_b"].sum() == cmp.removed_b.sum()
        assert list(table["disagree"]) == sorted(table["disagree"], reverse=True)
        # one cluster by hand: the ids of that cluster in run `side`
        c = int(table["cluster"].iloc[0])
        members = set(res.items.loc[res.items["cluster"] == c, "id"].astype(str))
        ra, rb = removed_ids(a, 0.1), removed_ids(b, 0.1)
        assert table["only_a"].iloc[0] == len((ra - rb) & members)
        assert table["only_b"].iloc[0] == len((rb - ra) & members)


def test_the_conservative_rule(text_results, run_b):
    cmp = compare(text_results, run_b, 0.2, rule="kept-only")
    ra, rb = removed_ids(text_results, 0.2, "kept-only"), removed_ids(run_b, 0.2, "kept-only")
    assert (cmp.both, cmp.only_a, cmp.only_b) == (len(ra & rb), len(ra - rb), len(rb - ra))
    assert cmp.eps_b_matching is None and cmp.summary()["rule"] == "kept-only"


def test_runs_over_other_items_are_refused_with_examples(text_results, tmp_path):
    x, ids, cols = planted_text_data()
    ids = ids[:-2] + ["zz-new"]
    other = dedup(x[:-1], ids, cluster=ClusterConfig(3), out=tmp_path / "other", columns=cols.iloc[:-1])
    with pytest.raises(SemDedupError) as exc:
        compare(text_results, other, 0.1)
    msg = str(exc.value)
    assert f"has {text_results.n_items:,} ids" in msg and f"has {other.n_items:,}" in msg
    assert "2 only in A (e.g. 't0160', 't0161')" in msg and "1 only in B (e.g. 'zz-new')" in msg
    with pytest.raises(SemDedupError, match="eps must be between 0 and 2"):
        compare(text_results, text_results, 0.1, eps_b=-1)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        rc = main(list(args))
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_compare(text_results, run_b, capsys, tmp_path):
    a, b = str(text_results.path), str(run_b.path)
    rc, out, err = run_cli(capsys, "compare", a, b, "--eps", "0.1", "--eps-b", "0.15", "--json")
    assert rc == 0, err
    got = json.loads(out)
    cmp = compare(text_results, run_b, 0.1, 0.15)
    assert {k: got[k] for k in ("both", "only_a", "only_b", "neither")} == {
        "both": cmp.both,
        "only_a": cmp.only_a,
        "only_b": cmp.only_b,
        "neither": cmp.neither,
    }
    assert got["jaccard"] == pytest.approx(cmp.jaccard)
    assert got["eps_b_matching"] == cmp.eps_b_matching and got["b"]["eps"] == 0.15
    assert got["clusters_a"] == json.loads(json.dumps(cmp.summary()["clusters_a"]))
    rc, out, _ = run_cli(capsys, "compare", a, b, "--eps", "0.1")
    assert rc == 0
    cmp = compare(text_results, run_b, 0.1)
    for label, n in (("both", cmp.both), ("A only", cmp.only_a), ("B only", cmp.only_b), ("neither", cmp.neither)):
        assert re.search(rf"^removed by {label}: +{n:,}$", out, re.M), label
    for line in (
        f"agreement (Jaccard): {cmp.jaccard:.3f}",
        f"B removes as many as A ({text_results.n_removed(0.1):,}) at eps {cmp.eps_b_matching:.6g}",
        "clusters of A with most disagreement:",
    ):
        assert line in out, line
    for args, message in (
        ([a, str(tmp_path / "nope"), "--eps", "0.1"], "does not exist"),
        ([a, str(text_results.path.parent.parent), "--eps", "0.1"], "not a semdedup results folder"),
        ([a, b], "the following arguments are required: --eps"),
        ([a, b, "--eps", "0.1", "--rule", "audited"], "invalid choice"),
    ):
        rc, _, err = run_cli(capsys, "compare", *args)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


# -- the Compare page ----------------------------------------------------------------------------------
@pytest.fixture
def app(tmp_path, monkeypatch, text_results):
    monkeypatch.setenv("SEMDEDUP_CACHE", str(tmp_path / "home"))
    monkeypatch.setenv("SEMDEDUP_RESULTS", str(text_results.path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(sa.PAGES["compare"]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_compare_page(app, text_results, run_b, image_results):
    at = app
    assert sa.NAV["compare"][:2] == ("pages/8_compare.py", "Compare")
    assert at.info and "Choose run B" in at.info[0].value
    at.text_input(key="cmp_typed").set_value(str(run_b.path)).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    cmp = compare(text_results, run_b, 0.05)
    assert metrics(at) == {
        "removed by both": f"{cmp.both:,}",
        "removed by A only": f"{cmp.only_a:,}",
        "removed by B only": f"{cmp.only_b:,}",
        "agreement (Jaccard)": f"{cmp.jaccard:.3f}",
    }
    # the items removed by A only, each with its partner in each run
    captions = [c.value for c in at.caption]
    assert f"{cmp.only_a:,} items removed by A only · page 1 of {max(1, -(-cmp.only_a // 10))}" in captions
    first = cmp.items("only_a").iloc[0]
    assert any(c.startswith("the item") and f"· {first['id']} ·" in c for c in captions)
    assert any(c.startswith("partner in A") and f"· {first['dup_of_a']} ·" in c for c in captions)
    assert any(c.startswith("partner in B") and f"· {first['dup_of_b']} ·" in c for c in captions)
    assert any(f"A: **removed** — similarity {first['max_sim_a']:.4f}" in m.value for m in at.markdown)
    at.segmented_control(key="cmp_which").set_value("only_b").run()
    first_b = cmp.items("only_b").iloc[0]
    assert any(c.value.startswith("the item") and f"· {first_b['id']} ·" in c.value for c in at.caption)
    # B at its own ε, and at the ε that removes as many as A
    at.radio(key="cmp_eps_mode").set_value("other").run()
    at.number_input(key="cmp_eps_b").set_value(0.2).run()
    assert metrics(at)["removed by B only"] == f"{compare(text_results, run_b, 0.05, 0.2).only_b:,}"
    at.radio(key="cmp_eps_mode").set_value("match").run()
    m = compare(text_results, run_b, 0.05, cmp.eps_b_matching)
    assert metrics(at)["removed by both"] == f"{m.both:,}"
    # ε of A comes from the shared sidebar slider
    at.sidebar.slider(key="sb_eps").set_value(0.1).run()
    m = compare(text_results, run_b, 0.1, matching_eps(run_b, text_results.n_removed(0.1)))
    assert metrics(at)["removed by A only"] == f"{m.only_a:,}"
    # bad choices: one clear message, no traceback
    at.text_input(key="cmp_typed").set_value(str(image_results.path)).run()
    assert not at.exception and "not over the same items" in at.error[0].value
    at.text_input(key="cmp_typed").set_value("/no/such/run").run()
    assert not at.exception and "does not exist" in at.error[0].value
    at.text_input(key="cmp_typed").set_value(str(run_b.path)).run()
    assert not at.error


def test_recent_runs_are_offered_and_the_stakeholder_page_offers_the_report(app, run_b, text_results):
    at = app
    sa.jobs.remember(run_b.path)
    at.run()
    box = at.selectbox(key="cmp_recent")
    assert str(run_b.path.resolve()) in box.options and str(text_results.path.resolve()) not in box.options
    box.set_value(str(run_b.path.resolve())).run()
    assert not at.error and metrics(at)["removed by both"] == f"{compare(text_results, run_b, 0.05).both:,}"
    at.switch_page(sa.PAGES["stakeholder"]).run()
    assert not at.exception
    button = at.get("download_button")[0]
    assert button.label == "Download the report (HTML)"
