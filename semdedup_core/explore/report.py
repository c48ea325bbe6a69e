"""A one-file HTML report of a run at one ε, for people who will never open the explorer.

The file is self-contained: no script at all, styles inline, system fonts, images embedded as small
JPEG thumbnails in ``data:`` URIs and the chart drawn here as inline SVG — it opens offline in any
browser and fetches nothing. It shows what the Stakeholder view shows (the dataset's size, the share
removed at ε, the kept-vs-ε curve, convincing example pairs) plus the borderline pairs, the biggest
groups of duplicates, the clusters with most removals and the run's parameters; with an audit summary
(see :func:`build_report`) also the audited precision and its interval.

Every string from the dataset or the run (ids, texts, paths, names) goes through :func:`escape`, which
also encodes ``:``, ``=`` and ``(``: dataset text can never form markup, a URL, an attribute or a CSS
``url(...)``, even to a tool that searches the raw file. The same inputs give the same bytes: the only
date is the run's own (``run.json``), and every list has a fixed order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._version import __version__
from ..errors import SemDedupError
from ..media.images import data_uri, thumbnail
from ..results import io
from ..results.rules import check_eps
from ..results.text import isolate, needs_isolation
from . import clusters, curve, groups, pairs

if TYPE_CHECKING:
    from ..results.results import Results

THUMB_SIZE = 160  # px: the longer side of an embedded thumbnail
THUMB_QUALITY = 80  # JPEG quality of the thumbnails
TEXT_LIMIT = 600  # characters of an item's text shown in the report
GROUP_MEMBERS = 8  # removed items shown per group of duplicates
GENERATOR = '<meta name="generator" content="semdedup report">'
"""In every report's head: how ``report --out`` knows a file it may replace."""

_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&#x27;",
        ":": "&#58;",
        "=": "&#61;",
        "(": "&#40;",
    }
)


def bdi(value: Any) -> str:
    """:func:`escape` of ``value``, inside a ``<bdi>`` element when it holds bidirectional controls or
    right-to-left letters: a right-to-left override in an id reverses nothing outside it."""
    text = str(value)
    return f"<bdi>{escape(text)}</bdi>" if needs_isolation(text) else escape(text)


def escape(value: Any) -> str:
    """``value`` as HTML text that displays literally: ``& < > " '`` escaped like :func:`html.escape`,
    and ``: = (`` as character references too, so that no dataset string can spell a URL
    (``http://``), an attribute (``src=``) or ``url(`` in the file."""
    return str(value).translate(_ESCAPES)


# -- the run's parameters -------------------------------------------------------------------------------
def run_parameters(results: Results) -> dict[str, Any]:
    """What a reader needs to know about how the run was made: ``encoder``, ``clusters`` (k), ``keep``
    (policy), ``seed``, ``niter``, ``items``, ``dim``, ``errors``, ``input``, ``created`` (the run's own
    date), ``device``, ``executor``, ``fingerprint`` and ``versions`` (library → version), from ``run.json``."""
    run = results.run
    params = run.get("params", {})
    cluster, dedup = params.get("cluster", {}), params.get("dedup", {})
    counts = run.get("counts", {})
    embed = run.get("embed") or {}
    enc = embed.get("encoder") or {}
    if enc:
        encoder = str(enc.get("name", "?"))
        pretrained = (embed.get("identity") or {}).get("pretrained")
        if pretrained:
            encoder += f" ({pretrained})"
        if enc.get("weights"):
            encoder += f" — {enc['weights']}"
    else:
        encoder = f"embeddings given to the run (d = {counts.get('dim', '?')})"
    source = run.get("input") or {}
    device = run.get("device") or {}
    return {
        "encoder": encoder,
        "clusters": results.n_clusters,
        "keep": str(dedup.get("keep", "hard")),
        "seed": dedup.get("seed", cluster.get("seed")),
        "niter": cluster.get("niter"),
        "items": results.n_items,
        "dim": counts.get("dim"),
        "errors": int(counts.get("errors", 0) or 0),
        "input": str(source.get("path", "")) if source else "",
        "created": str(run.get("created", "")).replace("T", " "),
        "device": ", ".join(f"{k} {v}" for k, v in device.items()),
        "executor": str(run.get("executor", "local")),
        "fingerprint": str(run.get("input_fingerprint", "")),
        "versions": {str(k): str(v) for k, v in (run.get("versions") or {}).items()},
    }


# -- the audit hook -------------------------------------------------------------------------------------
AUDIT_KEYS = ("precision", "ci_low", "ci_high", "labelled")


def check_audit(audit: Mapping[str, Any]) -> dict[str, Any]:
    """An audit summary for the report, checked: ``precision`` (share of removed items that are true
    duplicates, 0..1), ``ci_low`` ≤ precision ≤ ``ci_high`` (its interval), ``labelled`` (judged pairs
    behind it); optional ``eps`` (the ε it is for), ``confidence`` (of the interval, default 0.95),
    ``unsure`` (verdicts left out), ``removed``, ``target`` and ``recommended_eps``, ``guarantee`` (the
    recommendation's guarantee in words), ``skipped``, ``disputed``, ``sensitivity_low`` /
    ``sensitivity_high`` and ``agreement`` (Cohen's κ per two reviewers). The keys match a row of ``audit
    report --json`` plus its ``target``, ``recommended_eps`` and ``agreement``."""
    missing = [k for k in AUDIT_KEYS if audit.get(k) is None]
    if missing:
        raise SemDedupError(f"the audit summary lacks {', '.join(missing)}; pass a row of the audit report")
    out = dict(audit)
    for k in ("precision", "ci_low", "ci_high"):
        v = float(out[k])
        if not 0.0 <= v <= 1.0:
            raise SemDedupError(f"audit {k} must be between 0 and 1, got {out[k]!r}")
        out[k] = v
    if not out["ci_low"] <= out["precision"] <= out["ci_high"]:
        raise SemDedupError(
            f"audit interval [{out['ci_low']}, {out['ci_high']}] must contain the precision {out['precision']}"
        )
    out["labelled"] = int(out["labelled"])
    out["confidence"] = float(out.get("confidence") or 0.95)
    return out


# -- drawing -------------------------------------------------------------------------------------------
def _pct(x: float, digits: int = 1) -> str:
    return f"{100.0 * x:.{digits}f} %"


def _nice_step(span: float) -> float:
    """A round tick step giving four to ten ticks over ``span``."""
    raw = span / 6
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def curve_svg(grid: np.ndarray, kept: np.ndarray, eps: float, kept_at: float, width: int = 960) -> str:
    """The kept-vs-ε curve as inline SVG: kept share (0–100 %) against ε over ``grid``, the chosen ``eps``
    marked with the share it keeps (``kept_at``)."""
    height, left, right, top, bottom = 280, 66, 20, 16, 44
    pw, ph = width - left - right, height - top - bottom
    x_max = float(grid[-1]) if len(grid) and grid[-1] > 0 else 1.0

    def x(e: float) -> float:
        return left + pw * min(max(e, 0.0), x_max) / x_max

    def y(k: float) -> float:
        return top + ph * (1.0 - k)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-labelledby="curve-title">',
        '<title id="curve-title">Share of items kept at each ε</title>',
    ]
    for k in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{y(k):.1f}" y2="{y(k):.1f}"/>')
        parts.append(f'<text class="tick" x="{left - 8}" y="{y(k) + 4:.1f}" text-anchor="end">{k * 100:.0f} %</text>')
    step = _nice_step(x_max)
    for i in range(int(x_max / step + 1e-9) + 1):
        e = i * step
        parts.append(f'<line class="axis" x1="{x(e):.1f}" x2="{x(e):.1f}" y1="{top + ph}" y2="{top + ph + 5}"/>')
        parts.append(f'<text class="tick" x="{x(e):.1f}" y="{top + ph + 18}" text-anchor="middle">{e:g}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}"/>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}"/>')
    points = " ".join(f"{x(float(e)):.1f},{y(float(k)):.1f}" for e, k in zip(grid, kept, strict=True))
    parts.append(f'<polyline class="curve" points="{points}"/>')
    cx, cy = x(eps), y(kept_at)
    parts.append(f'<line class="chosen" x1="{cx:.1f}" x2="{cx:.1f}" y1="{top}" y2="{top + ph}"/>')
    parts.append(f'<circle class="chosen" cx="{cx:.1f}" cy="{cy:.1f}" r="5"/>')
    anchor = "end" if cx > left + pw * 0.7 else "start"
    dx = -9 if anchor == "end" else 9
    parts.append(
        f'<text class="note" x="{cx + dx:.1f}" y="{max(top + 12, cy - 10):.1f}" text-anchor="{anchor}">'
        f"ε = {eps:.4f}: {_pct(kept_at)} kept</text>"
    )
    parts.append(
        f'<text class="label" x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle">'
        "ε (larger = looser: more items count as duplicates)</text>"
    )
    parts.append(
        f'<text class="label" transform="rotate(-90)" x="{-(top + ph / 2):.1f}" y="14" text-anchor="middle">kept</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def interval_svg(audit: Mapping[str, Any], width: int = 960) -> str:
    """The audited precision on a 0–100 % bar, its interval drawn as a band."""
    height, left, right = 54, 20, 20
    pw = width - left - right

    def x(v: float) -> float:
        return left + pw * v

    lo, hi, p = audit["ci_low"], audit["ci_high"], audit["precision"]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        'aria-labelledby="audit-title">',
        f'<title id="audit-title">Audited precision {_pct(p)}, interval {_pct(lo)} to {_pct(hi)}</title>',
        f'<rect class="track" x="{left}" y="14" width="{pw}" height="12"/>',
        f'<rect class="band" x="{x(lo):.1f}" y="10" width="{max(1.0, x(hi) - x(lo)):.1f}" height="20"/>',
        f'<line class="estimate" x1="{x(p):.1f}" x2="{x(p):.1f}" y1="6" y2="34"/>',
    ]
    for v in (0.0, 0.5, 1.0):
        anchor = {0.0: "start", 0.5: "middle", 1.0: "end"}[v]
        parts.append(f'<text class="tick" x="{x(v):.1f}" y="48" text-anchor="{anchor}">{v * 100:.0f} %</text>')
    parts.append("</svg>")
    return "\n".join(parts)


class _Items:
    """HTML for the items of one run: thumbnails (each encoded once) and texts, all escaped."""

    def __init__(self, results: Results, thumb_size: int, image_problem: Callable[[Any], str | None] | None = None):
        import pandas as pd

        self._isna = pd.isna
        items = results.items
        self.ids = items["id"].astype(str).to_numpy()
        self.cluster = items["cluster"].to_numpy()
        self.paths = items["path"].to_numpy() if "path" in items.columns else None
        self.texts = items["text"].to_numpy() if "text" in items.columns else None
        self.thumb_size = thumb_size
        self._thumbs: dict[int, str | None] = {}
        self._problem = image_problem
        self.hidden: dict[int, str | None] = {}  # why an image is not embedded, when a rule says so

    def text(self, row: int) -> str:
        value = self.texts[row] if self.texts is not None else None
        text = "" if value is None or (not isinstance(value, str) and self._isna(value)) else str(value)
        return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "…"

    def image(self, row: int) -> str:
        if row not in self._thumbs:
            self.hidden[row] = self._problem(self.paths[row]) if self._problem is not None else None
            data = None if self.hidden[row] else thumbnail(self.paths[row], self.thumb_size, "JPEG", THUMB_QUALITY)
            self._thumbs[row] = None if data is None else data_uri(data, "JPEG")
        uri = self._thumbs[row]
        if uri is None:
            why = self.hidden.get(row) or "image not found or unreadable"
            return f'<div class="missing">{escape(why)}<br>{bdi(self.paths[row])}</div>'
        return f'<img src="{uri}" alt="{escape(self.ids[row])}">'

    def body(self, row: int, tokens: list[tuple[str, bool]] | None = None, mark: str = "") -> str:
        """The item's picture and/or text (differing words marked when ``tokens`` are given), or its id."""
        out = []
        if self.paths is not None:
            out.append(self.image(row))
        if self.texts is not None:
            if tokens is not None:
                words = "".join(
                    f'<mark class="{mark}">{bdi(t)}</mark>' if d and not t.isspace() else bdi(t) for t, d in tokens
                )
            else:
                words = bdi(self.text(row))
            out.append(f'<p class="text">{words}</p>')
        return "".join(out)

    def caption(self, row: int, label: str) -> str:
        return (
            f'<div class="caption"><span class="badge {label.split()[0]}">{escape(label)}</span> '
            f"<code>{bdi(self.ids[row])}</code> · cluster {int(self.cluster[row])}</div>"
        )


def _pair_html(items: _Items, row: int, dup: int, sim: float, eps: float, chained: bool) -> str:
    tok_kept = tok_removed = None
    if items.texts is not None:
        tok_kept, tok_removed = pairs.word_diff(items.text(dup), items.text(row))
    kept_label = "earlier (also removed)" if chained else "kept"
    return (
        '<div class="pair">'
        f'<figure class="item">{items.caption(dup, kept_label)}{items.body(dup, tok_kept, "kept")}</figure>'
        f'<div class="sim"><div class="value">{sim:.4f}</div><div class="small">similarity</div>'
        f'<div class="small">{sim - (1.0 - eps):+.4f} over 1 − ε</div></div>'
        f'<figure class="item">{items.caption(row, "removed")}{items.body(row, tok_removed, "removed")}</figure>'
        "</div>"
    )


def _pairs_section(items: _Items, frame: Any, eps: float) -> str:
    if frame.empty:
        return '<p class="empty">Nothing is a duplicate at this threshold.</p>'
    return "\n".join(
        _pair_html(items, int(r), int(d), float(s), eps, bool(c))
        for r, d, s, c in zip(frame["row"], frame["dup_row"], frame["max_sim"], frame["dup_removed"], strict=True)
    )


def _groups_section(results: Results, items: _Items, eps: float, n_groups: int) -> str:
    found = groups.removal_groups(results, eps, limit=n_groups)
    table = found.table
    if table.empty:
        return '<p class="empty">Nothing is a duplicate at this threshold.</p>'
    rank = results.column("rank")
    out = []
    for root, count in zip(table["row"], table["removed"], strict=True):
        tree = found.tree(int(root), results.dup_rows, rank)
        members = tree[1 : 1 + GROUP_MEMBERS]
        cells = [f'<figure class="member root">{items.caption(int(root), "kept")}{items.body(int(root))}</figure>']
        for row, depth in members:
            label = "removed" if depth == 1 else f"removed (chain, step {depth})"
            cells.append(f'<figure class="member">{items.caption(row, label)}{items.body(row)}</figure>')
        more = int(count) - len(members)
        tail = f'<p class="small">… and {more:,} more removed items of this group.</p>' if more > 0 else ""
        out.append(
            f'<div class="group"><h3>{int(count):,} removed as duplicates of <code>{bdi(items.ids[int(root)])}'
            f'</code></h3><div class="members">{"".join(cells)}</div>{tail}</div>'
        )
    return "\n".join(out)


def _clusters_section(results: Results, eps: float, n_clusters: int) -> str:
    table = clusters.cluster_table(results, eps)
    table = table.iloc[np.lexsort((table["cluster"].to_numpy(), -table["removed"].to_numpy()))].head(n_clusters)
    table = table[table["removed"] > 0]
    if table.empty:
        return '<p class="empty">No cluster has a removed item at this threshold.</p>'
    rows = "".join(
        f"<tr><td>{int(c)}</td><td>{int(s):,}</td><td>{int(r):,}</td><td>{_pct(r / s)}</td>"
        f"<td>{'' if math.isnan(m) else f'{m:.3f}'}</td></tr>"
        for c, s, r, m in zip(table["cluster"], table["size"], table["removed"], table["mean_score"], strict=True)
    )
    return (
        '<table class="numbers"><thead><tr><th>cluster</th><th>items</th><th>removed</th><th>share removed</th>'
        f"<th>mean similarity</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _params_section(results: Results, eps: float) -> str:
    p = run_parameters(results)
    rows = [
        ("encoder", p["encoder"]),
        ("items", f"{p['items']:,}" + (f" ({p['errors']:,} unreadable items left out)" if p["errors"] else "")),
        ("clusters (k)", f"{p['clusters']:,}"),
        ("keep policy", p["keep"]),
        ("k-means iterations", p["niter"]),
        ("seed", p["seed"]),
        ("ε", f"{eps:.4f} (removed when similarity > {1.0 - eps:.4f}; the paper's rule, chains included)"),
        ("run made", p["created"]),
        ("input", p["input"]),
        ("input fingerprint", p["fingerprint"]),
        ("device", p["device"]),
        ("executor", p["executor"]),
        ("results folder", results.path.name if results.path is not None else ""),
        ("versions", ", ".join(f"{k} {v}" for k, v in p["versions"].items())),
        ("report made with", f"semdedup {__version__}"),
    ]
    body = "".join(f"<tr><th>{escape(k)}</th><td>{bdi(v)}</td></tr>" for k, v in rows if v not in (None, ""))
    return f'<table class="params"><tbody>{body}</tbody></table>'


def _audit_section(audit: Mapping[str, Any], eps: float) -> str:
    a = check_audit(audit)
    at = a.get("eps")
    where = f" at ε = {float(at):.4f}" if at is not None else ""
    if at is not None and abs(float(at) - eps) > 1e-9:
        where += f" (this report is at ε = {eps:.4f})"
    lines = [
        f'<p class="lead">Of <b>{a["labelled"]:,}</b> removed pairs checked by people{where}, the estimated share '
        f'that are true duplicates is <b id="audit-precision">{_pct(a["precision"])}</b> '
        f"({a['confidence'] * 100:.0f} % interval {_pct(a['ci_low'])} – {_pct(a['ci_high'])}).</p>",
        interval_svg(a),
    ]
    extra = []
    if a.get("unsure"):
        extra.append(f"{int(a['unsure']):,} pairs judged unsure are not counted")
    left_out = sum(int(a.get(k) or 0) for k in ("unsure", "skipped", "disputed"))
    low, high = a.get("sensitivity_low"), a.get("sensitivity_high")
    if left_out and low is not None and high is not None and low == low and high == high:
        extra.append(
            f"were the {left_out:,} unsure, skipped or disputed pairs all duplicates or none, the share would be "
            f"{_pct(float(high))} or {_pct(float(low))}"
        )
    if a.get("target") is not None:
        extra.append(_recommendation(a))
    if extra:
        text = "; ".join(extra)
        lines.append(f'<p class="small" id="audit-guarantee">{escape(text[0].upper() + text[1:])}.</p>')
    agreement = [g for g in a.get("agreement") or [] if g.get("pairs")]
    if agreement:
        pairs = "; ".join(
            f"{g['reviewer_a']} and {g['reviewer_b']}: {int(g['pairs']):,} pairs, Cohen's κ "
            + ("–" if g.get("kappa") is None or g["kappa"] != g["kappa"] else f"{float(g['kappa']):.2f}")
            for g in agreement
        )
        lines.append(f'<p class="small" id="audit-agreement">{escape("Reviewers agree — " + pairs)}.</p>')
    return "\n".join(lines)


def _recommendation(a: Mapping[str, Any]) -> str:
    """The recommended ε and its guarantee in words (an audit summary with ``target``)."""
    rec = a.get("recommended_eps")
    target = _pct(float(a["target"]), 0)
    if rec is None:
        return f"no ε reaches a lower bound of {target}"
    said = a.get("guarantee")
    if said:
        return f"the recommended ε is {float(rec):.4f}: {said}"
    return f"the largest ε whose lower bound reaches {target} is {float(rec):.4f}"


_CSS = """
:root { color-scheme: light; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --kept: #1a7f37;
  --removed: #cf222e; --accent: #0969da; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--ink); margin: 0 auto; max-width: 1040px; padding: 24px; line-height: 1.45; }
h1 { font-size: 1.9rem; margin: 0 0 4px; } h2 { margin-top: 36px; border-bottom: 1px solid var(--line);
  padding-bottom: 4px; } h3 { font-size: 1rem; margin: 0 0 8px; }
.sub, .small, .caption, .tick, .label { color: var(--muted); } .small { font-size: .85rem; }
.metrics { display: flex; gap: 16px; margin: 20px 0; flex-wrap: wrap; }
.metric { flex: 1 1 200px; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
.metric .value { font-size: 2rem; font-weight: 600; } .metric .what { color: var(--muted); }
.lead { font-size: 1.05rem; }
.chart { max-width: 100%; height: auto; font-size: 12px; }
.chart .grid { stroke: #eaeef2; } .chart .axis { stroke: var(--muted); }
.chart .curve { fill: none; stroke: var(--accent); stroke-width: 2.5; }
.chart line.chosen { stroke: var(--removed); stroke-dasharray: 4 3; } .chart circle.chosen { fill: var(--removed); }
.chart .note { fill: var(--removed); font-weight: 600; } .chart .tick, .chart .label { fill: var(--muted); }
.chart .track { fill: #eaeef2; } .chart .band { fill: #9ec5fe; } .chart .estimate { stroke: var(--accent);
  stroke-width: 3; }
.pair { display: grid; grid-template-columns: 1fr 150px 1fr; gap: 12px; align-items: start;
  border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin: 10px 0; break-inside: avoid; }
.sim { text-align: center; padding-top: 24px; }
.pair .sim .small { white-space: nowrap; } .sim .value { font-size: 1.4rem; font-weight: 600; }
figure { margin: 0; } figure img { display: block; max-width: 100%; max-height: 170px; margin-top: 6px;
  border-radius: 4px; }
.text { white-space: pre-wrap; overflow-wrap: anywhere; margin: 6px 0 0; }
mark.kept { background: #dafbe1; } mark.removed { background: #ffebe9; }
.caption { font-size: .8rem; overflow-wrap: anywhere; }
.badge { font-weight: 600; } .badge.kept { color: var(--kept); } .badge.removed { color: var(--removed); }
.badge.earlier { color: #9a6700; }
.group { border: 1px solid var(--line); border-radius: 8px; padding: 12px; margin: 10px 0; break-inside: avoid; }
.members { display: flex; flex-wrap: wrap; gap: 12px; }
.member { flex: 0 1 180px; } .member .text { font-size: .85rem; max-height: 9em; overflow: hidden; }
.member.root { border-right: 2px solid var(--kept); padding-right: 12px; }
.missing { width: 160px; height: 100px; background: var(--soft); color: var(--muted); font-size: .75rem;
  padding: 8px; overflow-wrap: anywhere; margin-top: 6px; }
table { border-collapse: collapse; } td, th { padding: 4px 10px; border-bottom: 1px solid var(--line);
  text-align: left; vertical-align: top; }
table.numbers td { text-align: right; } table.params th { color: var(--muted); font-weight: 500;
  white-space: nowrap; } table.params td { overflow-wrap: anywhere; }
code { font-size: .85em; } bdi, code, mark { unicode-bidi: isolate; } .empty { color: var(--muted); font-style: italic; }
footer { margin-top: 40px; color: var(--muted); font-size: .85rem; border-top: 1px solid var(--line);
  padding-top: 8px; }
@media print { body { padding: 0; } h2 { break-after: avoid; } }
"""


def _summary_sections(name: str, params: Mapping[str, Any], n: int, n_rem: int, eps: float, svg: str) -> list[str]:
    """The report's header, its three figures with the lead paragraph, and the kept-vs-ε curve."""
    share = n_rem / n if n else 0.0
    return [
        f"<header><h1>Semantic duplicates in {bdi(name)}</h1>"
        f'<p class="sub">SemDeDup report at ε = {eps:.4f} · run made {bdi(params["created"] or "(date unknown)")} '
        f"· encoder {bdi(params['encoder'])} · k = {params['clusters']:,} · keep {bdi(params['keep'])}</p></header>",
        '<section id="summary"><div class="metrics">'
        f'<div class="metric"><div class="value" id="n-items">{n:,}</div><div class="what">items in the dataset</div></div>'
        f'<div class="metric"><div class="value" id="share-removed">{_pct(share)}</div>'
        f'<div class="what">semantic duplicates: <span id="n-removed">{n_rem:,}</span> items</div></div>'
        f'<div class="metric"><div class="value" id="n-kept">{n - n_rem:,}</div>'
        '<div class="what">kept after deduplication</div></div></div>'
        f'<p class="lead">Every item was compared with the similar items around it (the same cluster of meaning). '
        f"<b>{_pct(share)} of the items are near-copies of another item</b> — cosine similarity above "
        f"{1.0 - eps:.4f} (ε = {eps:.4f}) with an earlier item of their cluster. Removing them keeps the "
        "information while training on less, less repetitive data; the SemDeDup paper removed half of LAION "
        "this way at a cost of under half a point of ImageNet zero-shot accuracy. Nothing has been deleted: "
        "this is a list of what would go.</p></section>",
        '<section id="curve"><h2>How much is kept at each threshold</h2>'
        f"{svg}"
        '<p class="small">Each item has one score, its similarity to the most similar earlier item of its '
        "cluster, so the whole curve comes from the same run: a looser ε removes more.</p></section>",
    ]


def build_report(
    results: Results,
    eps: float,
    *,
    audit: Mapping[str, Any] | None = None,
    examples: int = 6,
    borderline: int = 6,
    groups: int = 4,
    clusters: int = 10,
    thumb_size: int = THUMB_SIZE,
    image_problem: Callable[[Any], str | None] | None = None,
) -> str:
    """The report of ``results`` at ``eps`` as one self-contained HTML document (a string).

    ``examples`` convincing pairs (:func:`~semdedup_core.explore.pairs.showcase_pairs`), ``borderline``
    pairs closest above the threshold (not repeating those), the ``groups`` kept items that caused most
    removals with what they removed, the ``clusters`` clusters with most removals, and the run's
    parameters. ``audit``: an audit summary (see :func:`check_audit`) — its section appears only when one
    is given. ``image_problem(path)``: why an image must not be embedded (the explorer's read-only rule),
    or ``None``; such an image is a notice in the file, never decoded. Deterministic: the same results, ε and options give the same string.
    """
    eps = check_eps(eps)
    for name, value in (("examples", examples), ("borderline", borderline), ("groups", groups)):
        if int(value) < 0:
            raise SemDedupError(f"{name} must be 0 or more, got {value}")
    n = results.n_items
    n_rem = int(results.n_removed(eps))
    share = n_rem / n if n else 0.0
    name = results.path.name if results.path is not None else "a dataset"
    params = run_parameters(results)
    items = _Items(results, thumb_size, image_problem)

    grid, kept = curve.kept_curve(results)
    best = pairs.showcase_pairs(results, eps, n=examples) if examples else None
    near = pairs.pairs_frame(results, eps, sort="borderline")
    if best is not None and not best.empty:
        near = near[~near["row"].isin(best["row"])]
    near = near.head(borderline)

    sections = _summary_sections(name, params, n, n_rem, eps, curve_svg(grid, kept, eps, 1.0 - share))
    first_look = results.run.get("first_look")
    if first_look:  # a part chosen to hold likely duplicates: its share says nothing about the collection
        sections.insert(
            1,
            f'<p class="lead" id="first-look"><b>A first look:</b> {n:,} of the '
            f"{int(first_look.get('items_total', 0)):,} items, chosen so that it holds likely duplicates; its "
            "share of duplicates overstates the whole collection's.</p>",
        )
    if audit is not None:
        sections.append(f'<section id="audit"><h2>Checked by people</h2>{_audit_section(audit, eps)}</section>')
    if examples:
        sections.append(
            '<section id="examples"><h2>Examples of duplicates</h2><p class="small">The most similar removals, '
            "one per cluster: on the left the item that stays, on the right the one that would go.</p>"
            f"{_pairs_section(items, best, eps)}</section>"
        )
    if borderline:
        sections.append(
            '<section id="borderline"><h2>Borderline pairs</h2><p class="small">The removals closest to the '
            "threshold: where a stricter ε would keep the item. These are the pairs worth checking.</p>"
            f"{_pairs_section(items, near, eps)}</section>"
        )
    if groups:
        sections.append(
            '<section id="groups"><h2>The biggest groups of duplicates</h2><p class="small">Kept items and '
            "everything removed because of them (a removed item can itself be the partner of another: a "
            "chain).</p>"
            f"{_groups_section(results, items, eps, groups)}</section>"
        )
    if clusters:
        sections.append(
            '<section id="clusters"><h2>Clusters with most duplicates</h2>'
            f"{_clusters_section(results, eps, clusters)}</section>"
        )
    sections.append(f'<section id="run"><h2>How this was computed</h2>{_params_section(results, eps)}</section>')
    sections.append(
        "<footer>SemDeDup (Abbas et al., 2023): every item is embedded with a pretrained model, the "
        "embeddings are clustered with spherical k-means, and within a cluster an item is removed when its "
        f"cosine similarity to an earlier item exceeds 1 − ε. Report made by semdedup {__version__}.</footer>"
    )
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{GENERATOR}\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Semantic duplicates in {escape(isolate(name))} · ε {eps:.4f}</title>\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def write_report(results: Results, eps: float, out: str | Path, **options: Any) -> Path:
    """Write :func:`build_report` to the file ``out`` atomically (UTF-8; its folder is created when
    needed) and return its path. ``options`` go to :func:`build_report`."""
    out = Path(out).expanduser()
    if out.is_dir():
        raise SemDedupError(f"--out {str(out)!r} is a folder; give a file name such as {str(out / 'report.html')!r}")
    text = build_report(results, eps, **options)
    with io.atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
