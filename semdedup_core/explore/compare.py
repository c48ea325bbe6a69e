"""Two runs over the same items, side by side: what each removes at its ε, and where they disagree.

The runs may differ in anything (encoder, k, keep policy, seed); their ids must be the same set (the
order may differ: B is aligned to A by id). Which items each run removes comes from
``Results.removed_mask`` — nothing here re-implements the threshold. Like every ε question, a comparison
is a filter over stored scores: compute it once, ask it many things.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import SemDedupError
from ..results.rules import check_eps, check_rule

if TYPE_CHECKING:
    import pandas as pd

    from ..results.results import Results

WHICH = ("only_a", "only_b", "both")
"""The sets of removed items one can browse: removed by A only, by B only, by both."""

REASONS = {
    "order": "this run puts the item before its partner (another keep order): it keeps the item and judges the "
    "partner against it instead",
    "clusters": "this run puts the item and its partner in different clusters, so it never compares them",
    "threshold": "this run compares the two and keeps the item at its ε",
}
"""Why the run that keeps an item does not remove it, for an item only one run removes ("partner": the
item's partner in the run that removes it)."""
REASON_LABELS = {"order": "keep order", "clusters": "different clusters", "threshold": "kept at its eps"}

EXAMPLES = 3  # ids named in a message about ids that differ


def align(a: Results, b: Results) -> np.ndarray:
    """The row in ``b`` of each row of ``a`` (matched by id). Raises :class:`SemDedupError` saying how the
    ids differ (counts and a few examples of each side) when the two runs are not over the same items."""
    ids_a, ids_b = a.row_of_id, b.row_of_id  # the ids of each run, checked and indexed once per run
    rows = ids_b.get_indexer(ids_a)
    if len(ids_a) == len(ids_b) and (rows >= 0).all():
        return rows.astype(np.int64)
    only_a = sorted(set(ids_a) - set(ids_b))
    only_b = sorted(set(ids_b) - set(ids_a))

    def some(ids: list[str]) -> str:
        shown = ", ".join(repr(i) for i in ids[:EXAMPLES])
        return f"{len(ids):,} only in {{}} (e.g. {shown})" if ids else "none only in {}"

    raise SemDedupError(
        f"the two runs are not over the same items: A ({_where(a)}) has {len(ids_a):,} ids, "
        f"B ({_where(b)}) has {len(ids_b):,}; {some(only_a).format('A')}, {some(only_b).format('B')}; "
        "compare two runs of the same data"
    )


def matching_eps(b: Results, n_removed: int) -> float:
    """The ε at which run ``b`` removes ``n_removed`` items under the paper's rule: the largest ε that
    removes no more (items tied on a score go together, so it may remove fewer), exact from the scores."""
    n = b.n_items
    if not 0 <= n_removed <= n:
        raise SemDedupError(f"n_removed must be between 0 and the number of items ({n:,}), got {n_removed:,}")
    return b.eps_for_kept_fraction((n - n_removed) / n) if n else 0.0


def _where(res: Results) -> str:
    return str(res.path) if res.path is not None else "in memory"


@dataclass(frozen=True, eq=False)
class Comparison:
    """Runs ``a`` and ``b`` at ``eps_a`` and ``eps_b`` under ``rule``. Arrays are in A's row order;
    ``b_rows`` maps each to its row in B. Build one with :func:`compare`."""

    a: Results
    b: Results
    eps_a: float
    eps_b: float
    rule: str
    b_rows: np.ndarray
    removed_a: np.ndarray
    removed_b: np.ndarray

    # -- the counts --------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.b_rows)

    @property
    def both(self) -> int:
        return int(np.count_nonzero(self.removed_a & self.removed_b))

    @property
    def only_a(self) -> int:
        return int(np.count_nonzero(self.removed_a & ~self.removed_b))

    @property
    def only_b(self) -> int:
        return int(np.count_nonzero(~self.removed_a & self.removed_b))

    @property
    def neither(self) -> int:
        return self.n_items - self.both - self.only_a - self.only_b

    @property
    def jaccard(self) -> float:
        """Agreement on what to remove: |A ∩ B| / |A ∪ B| (1.0 when neither removes anything)."""
        union = self.both + self.only_a + self.only_b
        return self.both / union if union else 1.0

    @functools.cached_property
    def eps_b_matching(self) -> float | None:
        """The ε at which B removes as many items as A does at ``eps_a`` (the largest ε that removes no
        more; ties on a score can make it fewer), solved exactly from B's scores; ``None`` under a rule
        other than the paper's."""
        if self.rule != "paper":
            return None
        return matching_eps(self.b, int(np.count_nonzero(self.removed_a)))

    def mask(self, which: str) -> np.ndarray:
        """The items (A's row order) removed by A only, by B only, or by both."""
        if which not in WHICH:
            raise SemDedupError(f"which must be one of {', '.join(WHICH)}, got {which!r}")
        if which == "both":
            return self.removed_a & self.removed_b
        return self.removed_a & ~self.removed_b if which == "only_a" else ~self.removed_a & self.removed_b

    # -- per cluster -------------------------------------------------------------------------------
    def cluster_table(self, side: str = "a") -> pd.DataFrame:
        """Per cluster of run ``side`` (``"a"`` or ``"b"``; the runs' clusters differ): ``cluster``,
        ``size``, ``removed_a``, ``removed_b``, ``both``, ``only_a``, ``only_b``, ``disagree``
        (``only_a + only_b``) and ``jaccard``; the clusters with most disagreement first."""
        import pandas as pd

        if side not in ("a", "b"):
            raise SemDedupError(f"side must be 'a' or 'b', got {side!r}")
        if side == "a":
            labels = np.asarray(self.a.column("cluster"), dtype=np.int64)
        else:
            labels = np.asarray(self.b.column("cluster"), dtype=np.int64)[self.b_rows]
        k = int(labels.max()) + 1 if len(labels) else 0

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(labels[mask], minlength=k)

        table = pd.DataFrame(
            {
                "cluster": np.arange(k),
                "size": np.bincount(labels, minlength=k),
                "removed_a": count(self.removed_a),
                "removed_b": count(self.removed_b),
                "both": count(self.mask("both")),
                "only_a": count(self.mask("only_a")),
                "only_b": count(self.mask("only_b")),
            }
        )
        table["disagree"] = table["only_a"] + table["only_b"]
        union = table["both"] + table["disagree"]
        table["jaccard"] = np.where(union > 0, table["both"] / union.where(union > 0, 1), 1.0)
        table = table[table["size"] > 0]
        order = np.lexsort((table["cluster"].to_numpy(), -table["disagree"].to_numpy()))
        return table.iloc[order].reset_index(drop=True)

    # -- the items ---------------------------------------------------------------------------------
    def items(self, which: str = "only_a") -> pd.DataFrame:
        """One row per item removed by A only, B only or both (``which``), each with its partner in each
        run: ``id``, ``row_a``, ``row_b`` (its row in each run's items), then per run (suffix ``_a``,
        ``_b``) ``cluster``, ``rank``, ``max_sim``, ``dup_of`` (its partner: the most similar earlier item
        of its cluster in that run, null for a cluster's first item), ``dup_row`` (the partner's row in
        that run, −1 for none) and ``removed``; and ``reason`` (a key of :data:`REASONS`) for an item only
        one run removes. Most similar first in the run that removes it (A for ``both``), then by id."""
        import pandas as pd

        rows_a = np.flatnonzero(self.mask(which))
        rows_b = self.b_rows[rows_a]
        out: dict[str, Any] = {"id": self.a.rows(rows_a, ["id"])["id"].to_numpy().astype(str), "row_a": rows_a}
        out["row_b"] = rows_b
        for side, res, rows, removed in (
            ("a", self.a, rows_a, self.removed_a[rows_a]),
            ("b", self.b, rows_b, self.removed_b[rows_a]),
        ):
            out[f"cluster_{side}"] = res.column("cluster")[rows]
            out[f"rank_{side}"] = res.column("rank")[rows]
            out[f"max_sim_{side}"] = res.column("max_sim")[rows].astype(np.float64)
            out[f"dup_of_{side}"] = res.rows(rows, ["dup_of"])["dup_of"].to_numpy()
            out[f"dup_row_{side}"] = res.dup_rows[rows]
            out[f"removed_{side}"] = removed
        frame = pd.DataFrame(out)
        if which == "both":
            frame["reason"] = None
            key = -frame["max_sim_a"].to_numpy()
        else:
            frame["reason"] = self._reasons(which, rows_a)
            key = -frame["max_sim_a" if which == "only_a" else "max_sim_b"].to_numpy()
        order = np.lexsort((frame["id"].to_numpy(), key))
        return frame.iloc[order].reset_index(drop=True)

    def _reasons(self, which: str, rows_a: np.ndarray) -> np.ndarray:
        """For items one run removes (``remover``) and the other keeps (``keeper``): why the keeper does
        not remove the item, judged from the remover's partner of the item (see :data:`REASONS`)."""
        a_to_b = self.b_rows
        b_to_a = np.empty_like(a_to_b)
        b_to_a[a_to_b] = np.arange(len(a_to_b))
        if which == "only_a":
            remover, keeper, to_keeper, item_in = self.a, self.b, a_to_b, rows_a
        else:
            remover, keeper, to_keeper, item_in = self.b, self.a, b_to_a, a_to_b[rows_a]
        partner = remover.dup_rows[item_in]  # removed by the remover: always has a partner
        item_k, partner_k = to_keeper[item_in], to_keeper[partner]
        cluster = keeper.column("cluster")
        rank = keeper.column("rank")
        reason = np.full(len(rows_a), "threshold", dtype=object)
        reason[cluster[item_k] != cluster[partner_k]] = "clusters"
        reason[(cluster[item_k] == cluster[partner_k]) & (rank[partner_k] > rank[item_k])] = "order"
        return reason

    # -- one dictionary for --json and the app -----------------------------------------------------
    def summary(self, clusters: int = 10) -> dict[str, Any]:
        """The comparison as plain JSON types: ``both``, ``only_a``, ``only_b``, ``neither``, ``jaccard``,
        each run (``a``, ``b``: path, items, ε, removed, clusters, keep, encoder), ``rule``,
        ``eps_b_matching`` with ``removed_b_at_matching``, the reasons for the items only one run removes
        (``reasons_only_a``, ``reasons_only_b``) and the ``clusters`` most disagreeing clusters of each
        run (``clusters_a``, ``clusters_b``)."""
        from .report import run_parameters

        def run(res: Results, e: float, removed: np.ndarray) -> dict[str, Any]:
            params = run_parameters(res)
            return {
                "path": str(res.path) if res.path is not None else None,
                "items": res.n_items,
                "eps": e,
                "removed": int(np.count_nonzero(removed)),
                "clusters": res.n_clusters,
                "keep": params["keep"],
                "encoder": params["encoder"],
            }

        def reasons(which: str) -> dict[str, int]:
            r = self._reasons(which, np.flatnonzero(self.mask(which)))
            return {k: int(np.count_nonzero(r == k)) for k in REASONS}

        match = self.eps_b_matching
        out: dict[str, Any] = {
            "a": run(self.a, self.eps_a, self.removed_a),
            "b": run(self.b, self.eps_b, self.removed_b),
            "rule": self.rule,
            "items": self.n_items,
            "both": self.both,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "neither": self.neither,
            "jaccard": self.jaccard,
            "eps_b_matching": match,
            "removed_b_at_matching": None if match is None else int(self.b.n_removed(match)),
            "reasons_only_a": reasons("only_a"),
            "reasons_only_b": reasons("only_b"),
        }
        for side in ("a", "b"):
            table = self.cluster_table(side).head(clusters)
            out[f"clusters_{side}"] = [
                {k: (float(v) if k == "jaccard" else int(v)) for k, v in rec.items()}
                for rec in table.to_dict("records")
            ]
        return out


def compare(
    a: Results,
    b: Results,
    eps: float,
    eps_b: float | None = None,
    rule: str = "paper",
    *,
    match: bool = False,
) -> Comparison:
    """Compare run ``a`` at ``eps`` with run ``b`` at ``eps_b`` (default: the same ε) under ``rule``
    (``paper`` or ``kept-only``). ``match``: instead of ``eps_b``, the ε at which B removes as many items as A
    (:func:`matching_eps`; paper's rule only). Raises :class:`SemDedupError` when the runs are not over the
    same ids."""
    eps = check_eps(eps)
    eps_b = eps if eps_b is None else check_eps(eps_b)
    check_rule(rule)
    if match and rule != "paper":
        raise SemDedupError(f"matching B's removed count to A's needs the paper's rule, got rule {rule!r}")
    rows = align(a, b)
    removed_a = a.removed_mask(eps, rule)
    if match:
        eps_b = matching_eps(b, int(np.count_nonzero(removed_a)))
    return Comparison(
        a=a,
        b=b,
        eps_a=eps,
        eps_b=eps_b,
        rule=rule,
        b_rows=rows,
        removed_a=removed_a,
        removed_b=b.removed_mask(eps_b, rule)[rows],
    )
