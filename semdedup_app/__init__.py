"""The semdedup explorer's app side: what ``app.py`` and ``pages/`` import (``import semdedup_app as sa``).

- :mod:`~semdedup_app.state` — session keys, navigation, what opens at start;
- :mod:`~semdedup_app.data` — cached views of the open results folder (one decorator, :mod:`~semdedup_app.cache`);
- :mod:`~semdedup_app.widgets` — the sidebar, the ε slider, items and pairs;
- :mod:`~semdedup_app.markdown` — dataset text shown literally;
- :mod:`~semdedup_app.jobs` — runs started from the app, in background processes.

Everything heavy lives in ``semdedup_core``, which never imports Streamlit.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every page imports this package first: never reach a model hub

from . import jobs  # noqa: E402
from .data import (  # noqa: E402
    MAX_CLUSTER_OPTIONS,
    centroid_map,
    cluster_table,
    clusters_with_removals,
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
    parse_clusters,
    ref_sim_histogram,
    removed_mask,
    score_histogram,
    showcase,
)
from .markdown import error, escape_markdown  # noqa: E402
from .state import (  # noqa: E402
    DEFAULTS,
    EPS_DEFAULT,
    NAV,
    PAGES,
    cli_demo,
    cli_results_dir,
    demo_eps,
    demo_folder,
    demo_kinds,
    ensure_session_state,
    eps,
    open_folder,
    open_or_build_demo,
    open_startup_folder,
    page_setup,
    set_eps,
)
from .widgets import (  # noqa: E402
    current_results,
    eps_slider,
    fmt_int,
    image_bytes,
    require_results,
    show_compare,
    show_item,
    show_pair,
    show_pairs,
    show_record,
    sidebar,
)

__all__ = [
    "centroid_map",
    "cli_demo",
    "cli_results_dir",
    "cluster_table",
    "clusters_with_removals",
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
    "error",
    "escape_markdown",
    "export_bytes",
    "fmt_int",
    "groups",
    "image_bytes",
    "item_map",
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
    "open_folder",
    "open_or_build_demo",
    "open_startup_folder",
    "page_setup",
    "PAGES",
    "pairs_frame",
    "parse_clusters",
    "ref_sim_histogram",
    "removed_mask",
    "require_results",
    "score_histogram",
    "set_eps",
    "show_compare",
    "show_item",
    "show_pair",
    "show_pairs",
    "show_record",
    "showcase",
    "sidebar",
]
