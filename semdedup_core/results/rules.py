"""The rules at ε, as one table: what each rule selects, in plain words, and how a :class:`Results` answers it.

Every place that offers or applies a rule — :class:`~semdedup_core.results.results.Results`, exports, the
report, comparisons, the CLI's ``--rule`` choices and the explorer's pages — reads :data:`RULES` and
dispatches through :func:`mask` and :func:`count`. Adding a rule is one entry here. ε is checked in one
place, :func:`check_eps`.

- ``paper`` (default): SemDeDup's rule, ``max_sim > 1 − ε``; chains included;
- ``kept-only``: removed only when similar to an earlier *kept* item;
- ``audited``: the paper's rule with the pairs reviewers judged ``not_duplicate`` taken out of the
  comparison; it takes those pairs as an argument (``labels``: anything with ``not_duplicate_pairs()``,
  ``path`` and ``stamp()``, such as :class:`semdedup_core.audit.labels.LabelStore`);
- ``leaked`` (runs with a reference set): ``ref_sim > 1 − ε``.

The array arithmetic of each rule lives in :mod:`semdedup_core.kernels.rules`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SemDedupError
from ..kernels.rules import n_above, removed_by_score, removed_kept_only


def check_eps(eps: Any) -> Any:
    """``eps`` as a float (or a float64 array of them) between 0 and 2; raise naming the value otherwise.
    The one check of ε: the CLI, the pages, exports and every count go through it."""
    if np.ndim(eps):
        values = np.asarray(eps, dtype=np.float64)
        bad = ~((values >= 0.0) & (values <= 2.0))
        if bad.any():
            check_eps(float(values.ravel()[np.flatnonzero(bad.ravel())[0]]))
        return values
    try:
        value = float(eps)
    except (TypeError, ValueError):
        raise SemDedupError(f"eps must be a number between 0 and 2, got {eps!r}") from None
    if not 0.0 <= value <= 2.0:
        raise SemDedupError(f"eps must be between 0 and 2 (similarity threshold 1 - eps), got {eps}")
    return value


@dataclass(frozen=True)
class Rule:
    """One rule at ε: ``name`` (the CLI's and the pages' word), ``kind`` (``removed`` or ``leaked``: what it
    selects), ``words`` (the rule in plain words), ``needs`` (``verdicts`` or ``reference``: what it takes
    besides the run's scores), and how a :class:`Results` answers it: ``mask(results, eps, labels)`` (one
    bool per item) and ``count(results, eps, labels)`` (a number or an array of numbers for an array of ε)."""

    name: str
    kind: str
    words: str
    mask: Callable[[Any, float, Any], np.ndarray]
    count: Callable[[Any, Any, Any], Any]
    needs: str | None = None


def _paper_mask(res: Any, eps: float, labels: Any) -> np.ndarray:
    return removed_by_score(res.scores, eps)


def _paper_count(res: Any, eps: Any, labels: Any) -> Any:
    return n_above(res.sorted_scores, eps)


def _kept_only_mask(res: Any, eps: float, labels: Any) -> np.ndarray:
    rank = np.asarray(res.column("rank"), dtype=np.int64)
    probed = {"probes": np.asarray(res.probes), "position": res.global_position} if res.probe else {}
    return removed_kept_only(res.scores, res.dup_rows, res.clusters, rank, res.embeddings, eps, **probed)


def _kept_only_count(res: Any, eps: Any, labels: Any) -> Any:
    counts = [int(_kept_only_mask(res, float(e), labels).sum()) for e in np.ravel(eps)]
    return counts[0] if np.ndim(eps) == 0 else np.array(counts)


def _audited_mask(res: Any, eps: float, labels: Any) -> np.ndarray:
    return res.audited(labels).removed(eps)


def _audited_count(res: Any, eps: Any, labels: Any) -> Any:
    return res.audited(labels).n_removed(eps)


def _leaked_mask(res: Any, eps: float, labels: Any) -> np.ndarray:
    return removed_by_score(res.ref_scores, eps)


def _leaked_count(res: Any, eps: Any, labels: Any) -> Any:
    return n_above(res.sorted_ref_scores, eps)


RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule(
            "paper",
            "removed",
            "SemDeDup's rule: an item goes when it is more similar than 1 − ε to an earlier item of its cluster, "
            "kept or not (chains A≈B≈C remove B and C)",
            _paper_mask,
            _paper_count,
        ),
        Rule(
            "kept-only",
            "removed",
            "conservative: an item goes only when it is more similar than 1 − ε to an earlier item that is kept",
            _kept_only_mask,
            _kept_only_count,
        ),
        Rule(
            "audited",
            "removed",
            "the paper's rule with the pairs reviewers judged not duplicates taken out; each removal names the "
            "partner that justifies it",
            _audited_mask,
            _audited_count,
            needs="verdicts",
        ),
        Rule(
            "leaked",
            "leaked",
            "an item is leaked when it is more similar than 1 − ε to an item of the held-out reference set",
            _leaked_mask,
            _leaked_count,
            needs="reference",
        ),
    )
}
REMOVAL_RULES = tuple(name for name, rule in RULES.items() if rule.kind == "removed")
"""The rules that decide removals (the choices of ``--rule`` and the pages' rule pickers)."""


def check_rule(name: Any, kind: str | None = "removed") -> Rule:
    """The rule called ``name`` (of ``kind`` when given); raise naming the choices otherwise."""
    choices = [n for n, r in RULES.items() if kind is None or r.kind == kind]
    if name not in choices:
        raise SemDedupError(f"rule must be one of {', '.join(choices)}, got {name!r}")
    return RULES[name]


def mask(res: Any, eps: float, rule: str = "paper", labels: Any = None, kind: str | None = None) -> np.ndarray:
    """The items ``rule`` selects at ``eps`` (one bool per item, input order)."""
    r = check_rule(rule, kind)
    _needs(res, r)
    return r.mask(res, check_eps(eps), labels)


def count(res: Any, eps: Any, rule: str = "paper", labels: Any = None, kind: str | None = None) -> Any:
    """How many items ``rule`` selects at ``eps`` (a number, or an array for an array of ε)."""
    r = check_rule(rule, kind)
    _needs(res, r)
    return r.count(res, check_eps(eps), labels)


def _needs(res: Any, rule: Rule) -> None:
    if rule.needs == "reference" and not res.has_reference:
        raise SemDedupError(
            f"the run in {str(res.path)!r} has no reference set; run it with --reference HELD_OUT "
            "(embeddings or raw data) to look for leaks"
        )
