"""The semdedup explorer's app side: what ``app.py`` and ``pages/`` import (``import semdedup_app as sa``).

- :mod:`~semdedup_app.state` — session keys, navigation, what opens at start;
- :mod:`~semdedup_app.data` — cached views of the open results folder (one decorator, :mod:`~semdedup_app.cache`);
- :mod:`~semdedup_app.widgets` — the sidebar, the ε slider, items and pairs;
- :mod:`~semdedup_app.markdown` — dataset text shown literally;
- :mod:`~semdedup_app.jobs` — runs started from the app, in background processes;
- :mod:`~semdedup_app.audit` — the review sample, the labels store and the precision estimate.
- :mod:`~semdedup_app.access` — the sharing policy: read-only mode, allowed roots, who may write what;
- :mod:`~semdedup_app.gate` — the one gate every path a page opens and every write passes through;
- :mod:`~semdedup_app.identity` and :mod:`~semdedup_app.reviewer` — who judges, and where verdicts go.

Everything heavy lives in ``semdedup_core``, which never imports Streamlit.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every page imports this package first: never reach a model hub

from . import access, audit, gate, identity, jobs, runs  # noqa: E402
from .data import (  # noqa: E402
    DOWNLOAD_ROWS,
    MAX_CLUSTER_OPTIONS,
    centroid_map,
    cluster_table,
    clusters_with_removals,
    comparison,
    comparison_items,
    eps_max,
    export_bytes,
    groups,
    item_map,
    kept_curve,
    leak_clusters,
    leak_pairs,
    load,
    map_job,
    map_labels,
    map_lines,
    n_cross_cluster,
    n_removed_kept_only,
    pairs_frame,
    pairs_page,
    parse_clusters,
    ref_sim_histogram,
    removed_mask,
    report_file,
    score_histogram,
    showcase,
)
from .identity import Reviewer  # noqa: E402
from .markdown import error, escape_markdown, isolate  # noqa: E402
from .reviewer import labels_store_input, reviewer_input  # noqa: E402
from .state import (  # noqa: E402
    DEFAULTS,
    EPS_DEFAULT,
    NAV,
    PAGES,
    build_demo,
    cli_demo,
    cli_results_dir,
    demo_entries,
    demo_eps,
    demo_folder,
    demo_kinds,
    ensure_session_state,
    eps,
    first_look_of,
    open_awaited_demo,
    open_folder,
    open_or_build_demo,
    open_startup_folder,
    page_setup,
    read_only,
    set_eps,
    shared_folders,
    switch_to_full_run,
)
from .widgets import (  # noqa: E402
    current_results,
    eps_slider,
    fmt_int,
    image,
    image_bytes,
    item_rows,
    require_results,
    show_compare,
    show_item,
    show_pair,
    show_pairs,
    show_record,
    sidebar,
)

__all__ = [
    "DOWNLOAD_ROWS",
    "audit",
    "access",
    "build_demo",
    "demo_entries",
    "gate",
    "identity",
    "isolate",
    "labels_store_input",
    "Reviewer",
    "reviewer_input",
    "runs",
    "centroid_map",
    "cli_demo",
    "cli_results_dir",
    "cluster_table",
    "clusters_with_removals",
    "comparison",
    "comparison_items",
    "current_results",
    "DEFAULTS",
    "demo_eps",
    "demo_folder",
    "demo_kinds",
    "ensure_session_state",
    "eps",
    "EPS_DEFAULT",
    "eps_max",
    "eps_slider",
    "first_look_of",
    "error",
    "escape_markdown",
    "export_bytes",
    "fmt_int",
    "groups",
    "image",
    "image_bytes",
    "item_map",
    "item_rows",
    "jobs",
    "kept_curve",
    "leak_clusters",
    "leak_pairs",
    "load",
    "map_job",
    "map_labels",
    "map_lines",
    "MAX_CLUSTER_OPTIONS",
    "n_cross_cluster",
    "n_removed_kept_only",
    "NAV",
    "open_awaited_demo",
    "open_folder",
    "open_or_build_demo",
    "open_startup_folder",
    "page_setup",
    "PAGES",
    "pairs_frame",
    "pairs_page",
    "read_only",
    "parse_clusters",
    "ref_sim_histogram",
    "removed_mask",
    "report_file",
    "require_results",
    "score_histogram",
    "set_eps",
    "shared_folders",
    "show_compare",
    "show_item",
    "show_pair",
    "show_pairs",
    "show_record",
    "showcase",
    "sidebar",
    "switch_to_full_run",
]
