"""The results folder's names: its files, its format version and the columns of ``items.parquet``.

The engine writes what this module names; :class:`~semdedup_core.results.results.Results` reads it;
:mod:`.folder` owns who may write a folder and what state it is in, :mod:`.checks` what ``items.parquet``
must hold to be read."""

from __future__ import annotations

FORMAT_VERSION = 1

ITEMS = "items.parquet"
ITEMS_ARROW = "items.arrow"  # the explorer's uncompressed copy of items.parquet (results/items.py), or a folder
CENTROIDS = "centroids.npy"
EMBEDDINGS = "embeddings.npy"
EMBEDDINGS_DIR = "embeddings"  # a sharded run's unit vectors, one .npy per part (listed in run.json)
RUN = "run.json"
ERRORS = "errors.parquet"
WORK = ".work"  # scratch space of an unfinished run; removed when the run completes
LOCK = ".lock"  # the writer's lock (fcntl.flock) with its pid, removed when the writer is done
EXPORTS = "exports"
LABELS = "labels.parquet"  # the default verdict store (engine/labels.py); a store elsewhere may be shared by runs
AUDIT = "audit"  # the audit's recorded sample design: audit/sample.parquet (semdedup_core/audit)
PROBES = "probes.npy"  # runs with probe P > 0: n × (1 + P) int32, the clusters each item was compared in
PROBES_DIR = "probes"  # a run of several parts: one probes file per part (listed in run.json)
REFERENCE = "reference.parquet"  # with a reference set: its ids, nearest cluster and carried text/path
REFERENCE_EMBEDDINGS = "reference_embeddings.npy"  # m × d float32 unit rows, in reference.parquet's order

REQUIRED_COLUMNS = ("id", "cluster", "dist_to_centroid", "rank", "max_sim", "dup_of")
"""The engine's columns of ``items.parquet``, first and in this order."""
DUP_ROW = "dup_row"
"""Right after :data:`REQUIRED_COLUMNS`: the row (0-based, in ``items.parquet``'s order) of each item's
``dup_of``, -1 where it has none (int64). Folders written before it existed are read without it."""
STRING_CHECK_ROWS = 2_000_000
"""Up to this many items, :func:`check_strings` runs when a folder is loaded; beyond it, on the first bulk
use of the ids (an export, the CLI, an id lookup) or in the background (the app)."""
REFERENCE_ITEM_COLUMNS = ("ref_sim", "ref_id")
"""With a reference set, right after the engine's columns (``dup_row`` included): the similarity to the most
similar reference item compared (−1.0 where none was) and its id (null where none)."""
REFERENCE_CARRIED = ("text", "path")
"""The carried columns of a reference set kept in ``reference.parquet`` (after ``id`` and ``cluster``)."""
RESERVED_COLUMNS = (*REQUIRED_COLUMNS, DUP_ROW, "path", "text", *REFERENCE_ITEM_COLUMNS)
"""Column names with a meaning in a results folder: a carried input column of one of these names
is renamed (``text_input``) so that it cannot be mistaken for them."""
