"""The Review page's two sharing controls: who judges (:func:`reviewer_input`) and where verdicts go
(:func:`labels_store_input`). The rules are :mod:`semdedup_app.identity`'s and :mod:`semdedup_app.gate`'s;
these functions only draw the fields and ask them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from semdedup_core import Results, SemDedupError

from . import access, gate
from .identity import Reviewer, identify, login_name, reviewer_keys
from .markdown import error, escape_markdown


def _secrets() -> dict[str, Any]:
    try:
        return st.secrets.to_dict()
    except Exception:  # no secrets file, or one Streamlit cannot parse: no keys
        return {}


def _user() -> dict[str, Any]:
    try:
        return st.user.to_dict()
    except Exception:  # outside a session
        return {}


def reviewer_input(where: Any = st) -> tuple[Reviewer | None, str | None]:
    """Draw the reviewer's fields in ``where`` and return ``(reviewer, None)``, or ``(None, why not)``.

    With Streamlit's login the reviewer is the logged-in user (shown, not typed; a login button when
    nobody is); otherwise a name and, when the operator gave reviewers keys (or the explorer is
    read-only), the reviewer's key."""
    user, keys, ro = _user(), reviewer_keys(_secrets()), access.read_only()
    logged = login_name(user)
    if logged is None:
        where.text_input("Your name", key="rev_reviewer", placeholder="recorded with each verdict")
        if keys or ro:
            where.text_input(
                "Your reviewer key",
                key="rev_key",
                type="password",
                help="The key whoever runs this explorer gave you: it shows that the verdicts are yours.",
            )
    elif logged:
        where.caption(f"Judging as **{escape_markdown(logged)}** (logged in)")
    else:
        where.button("Log in to judge", key="rev_login", on_click=st.login)
    try:
        return (
            identify(
                user=user,
                typed=str(st.session_state.get("rev_reviewer") or ""),
                key=str(st.session_state.get("rev_key") or ""),
                keys=keys,
                listed=access.reviewers(),
                read_only=ro,
            ),
            None,
        )
    except SemDedupError as exc:
        return None, str(exc)


def labels_store_input(where: Any, res: Results) -> None:
    """Draw the choice of the verdict store: in read-only mode one of the stores named at start (never a
    typed path), otherwise a path box (empty: the first store named at start, else the folder's
    ``labels.parquet``). A choice the gate sets aside is named in an ``st.error``."""
    named = access.labels_stores()
    if access.read_only():
        if len(named) > 1:
            if st.session_state.get("sd_labels") not in [str(p) for p in named]:
                st.session_state["sd_labels"] = str(named[0])
            where.selectbox(
                "Labels store", [str(p) for p in named], key="sd_labels", format_func=lambda p: Path(p).name
            )
        else:
            where.caption(
                f"Verdicts are kept in {escape_markdown(named[0].name)}."
                if named
                else "No labels store was named when this explorer was started (`--labels STORE`): verdicts "
                "cannot be recorded here."
            )
    else:
        default = named[0] if named else res.path / "labels.parquet"
        where.text_input(
            "Labels store",
            key="sd_labels",
            placeholder=str(default),
            help=f"Where verdicts are kept (a parquet file). Empty: {default}. A store elsewhere can be shared by "
            "several runs over the same ids.",
        )
    refused = gate.labels_choice_problem(res)
    if refused is not None:
        error(refused)
