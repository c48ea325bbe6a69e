"""A team of reviewers: who judges which pair, how well they agree, and the disagreements to settle.

- **Judged twice.** A share of the sample (``Plan.double``, 10 % by default; a hash of the pair chooses
  it) is asked of a second reviewer, who never sees the first verdict (:func:`reviewer_todo`).
- **Agreement** (:func:`kappa_table`): for every two reviewers who judged pairs in common, the share of
  those pairs they agree on and Cohen's κ over the three verdicts,
  ``κ = (p_o − p_e) / (1 − p_e)`` with ``p_o`` the observed agreement and ``p_e = Σ_v p_A(v) p_B(v)`` the
  agreement expected from each reviewer's own verdict shares.
- **Disagreements** (:func:`disputes`): pairs whose reviewers have no majority verdict (one against one,
  say). The estimate counts such a pair by its latest verdict and shows it in the sensitivity range; a
  further reviewer's verdict (or one of them changing theirs) settles it by majority.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .labels import VERDICTS, row_keys

if TYPE_CHECKING:
    import pandas as pd

    from .design import Design

KAPPA_COLUMNS = ("reviewer_a", "reviewer_b", "pairs", "agreement", "kappa")


def cohen_kappa(a: Any, b: Any, categories: tuple[str, ...] = VERDICTS) -> float:
    """Cohen's κ of two reviewers' verdicts on the same pairs (``a[i]`` and ``b[i]`` about pair ``i``);
    NaN when there is no pair, or when both gave one and the same verdict throughout (κ is undefined)."""
    a = np.asarray(a, dtype=object)
    b = np.asarray(b, dtype=object)
    n = len(a)
    if n == 0 or len(b) != n:
        return float("nan")
    p_o = float(np.mean(a == b))
    p_e = float(sum(np.mean(a == c) * np.mean(b == c) for c in categories))
    if p_e >= 1.0:
        return float("nan")
    return (p_o - p_e) / (1.0 - p_e)


def _by_pair(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pair key, reviewer code, verdict)`` per store row, and the reviewers' names via the codes."""
    key, _ = row_keys([rows["id_a"].to_numpy(dtype=object), rows["id_b"].to_numpy(dtype=object)])
    return key, rows["reviewer"].to_numpy(dtype=object), rows["verdict"].to_numpy(dtype=object)


def kappa_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per two reviewers who judged at least one pair in common (columns :data:`KAPPA_COLUMNS`):
    how many pairs, the share they agree on, and Cohen's κ. ``rows``: the store's rows (one per pair and
    reviewer, :meth:`~semdedup_core.audit.labels.LabelStore.read`)."""
    import pandas as pd

    out: list[dict[str, Any]] = []
    if not rows.empty:
        key, who, verdict = _by_pair(rows)
        names = sorted(set(who))
        table = {name: dict(zip(key[who == name], verdict[who == name], strict=True)) for name in names}
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                common = sorted(set(table[a]) & set(table[b]))
                if not common:
                    continue
                va = [table[a][k] for k in common]
                vb = [table[b][k] for k in common]
                agree = float(np.mean(np.asarray(va, dtype=object) == np.asarray(vb, dtype=object)))
                out.append(
                    {
                        "reviewer_a": a,
                        "reviewer_b": b,
                        "pairs": len(common),
                        "agreement": agree,
                        "kappa": cohen_kappa(va, vb),
                    }
                )
    frame = pd.DataFrame(out, columns=list(KAPPA_COLUMNS))
    return frame.astype({"pairs": np.int64, "agreement": np.float64, "kappa": np.float64})


def disputes(rows: pd.DataFrame) -> pd.DataFrame:
    """The pairs whose reviewers disagree without a majority: ``id_a``, ``id_b``, ``reviewers`` (how many
    judged it) and ``verdicts`` (``"ann: duplicate · bob: not_duplicate"``), oldest disagreement first."""
    import pandas as pd

    cols = {"id_a": object, "id_b": object, "reviewers": np.int64, "verdicts": object}
    if rows.empty:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in cols.items()})
    key, who, verdict = _by_pair(rows)
    codes = pd.Categorical(verdict, categories=VERDICTS).codes.astype(np.int64)
    uniq, first, pair = np.unique(key, return_index=True, return_inverse=True)
    votes = np.zeros((len(uniq), len(VERDICTS)), dtype=np.int64)
    np.add.at(votes, (pair, codes), 1)
    top = votes.max(axis=1)
    tied = ((votes == top[:, None]).sum(axis=1) > 1) & (votes.sum(axis=1) >= 2)
    when = pd.DatetimeIndex(rows["time"]).asi8
    found = []
    for p in np.flatnonzero(tied):
        mine = np.flatnonzero(pair == p)
        mine = mine[np.argsort(when[mine], kind="stable")]
        found.append(
            {
                "id_a": rows["id_a"].iat[first[p]],
                "id_b": rows["id_b"].iat[first[p]],
                "reviewers": len(mine),
                "verdicts": " · ".join(f"{who[i]}: {verdict[i]}" for i in mine),
                "_when": int(when[mine].max()),
            }
        )
    frame = pd.DataFrame(found, columns=[*cols, "_when"]).sort_values("_when", kind="stable")
    return frame.drop(columns="_when").reset_index(drop=True).astype(cols)


def unit_reviews(design: Design, rows: pd.DataFrame, reviewer: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each sampled pair (queue order): how many reviewers judged it, and whether ``reviewer`` did."""
    units = design.units
    count = np.zeros(design.n, dtype=np.int64)
    mine = np.zeros(design.n, dtype=bool)
    if rows.empty or not design.n:
        return count, mine
    unit_key, row_key = row_keys(
        [units["id_a"].to_numpy(dtype=object), units["id_b"].to_numpy(dtype=object)],
        [rows["id_a"].to_numpy(dtype=object), rows["id_b"].to_numpy(dtype=object)],
    )
    order = np.argsort(unit_key, kind="stable")
    pos = np.minimum(np.searchsorted(unit_key[order], row_key), len(order) - 1)
    hit = unit_key[order][pos] == row_key
    unit = order[pos][hit]
    np.add.at(count, unit, 1)
    if reviewer is not None:
        by_me = rows["reviewer"].to_numpy(dtype=object)[hit] == str(reviewer).strip()
        mine[unit[by_me]] = True
    return count, mine


def reviewer_todo(design: Design, rows: pd.DataFrame, reviewer: str | None) -> np.ndarray:
    """Which sampled pairs (queue order) are to judge for ``reviewer``: those nobody judged, and the pairs
    judged twice (``double``) that one other reviewer judged so far. Without a reviewer: those nobody
    judged."""
    count, mine = unit_reviews(design, rows, reviewer)
    todo = count == 0
    if reviewer and "double" in design.units.columns:
        double = design.units["double"].to_numpy(dtype=bool)
        todo |= double & (count == 1) & ~mine
    return todo
