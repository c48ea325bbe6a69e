"""One cache decorator for everything the app derives from a results folder.

``@per_run()`` on ``def f(res, *args)`` caches ``f`` with Streamlit per results folder: the key is the
folder, the modification time of its ``run.json`` (a rewritten folder is a new key) and ``args``; the
:class:`~semdedup_core.Results` object itself is never hashed. ``resource=True`` keeps the returned
object as it is (large arrays, frames the caller must not mutate); the default copies it per call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from semdedup_core.results.names import RUN

F = TypeVar("F", bound=Callable[..., Any])


def stamp(path: str | Path) -> int:
    """The modification time of ``run.json`` in ``path`` (0 when there is none): part of every cache key."""
    try:
        return (Path(path) / RUN).stat().st_mtime_ns
    except OSError:
        return 0


def run_key(res: Any) -> tuple[str, int]:
    return str(res.path), stamp(res.path)


def per_run(*, resource: bool = False, max_entries: int = 8, show_spinner: bool | str = False) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        def keyed(path: str, stamp: int, _res: Any, *args: Any) -> Any:
            return fn(_res, *args)

        # Streamlit names a cache by the function's module and qualified name: give each its own.
        # (No __wrapped__: Streamlit would then read fn's signature and try to hash ``res``.)
        keyed.__module__, keyed.__qualname__, keyed.__name__ = fn.__module__, fn.__qualname__, fn.__name__
        cache = st.cache_resource if resource else st.cache_data
        cached = cache(max_entries=max_entries, show_spinner=show_spinner)(keyed)

        @functools.wraps(fn)
        def wrapper(res: Any, *args: Any) -> Any:
            return cached(*run_key(res), res, *args)

        wrapper.clear = cached.clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
