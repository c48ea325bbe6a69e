"""Who judges: the reviewer a verdict is recorded for, and how they proved it. Nothing here imports Streamlit
(the Review page passes in what it read: ``st.user``, the typed name and key, ``st.secrets``).

- **With Streamlit's login** (``[auth]`` in ``.streamlit/secrets.toml``; ``st.user`` then has
  ``is_logged_in``): the reviewer is the logged-in user — their e-mail, else their name — and no name can
  be typed. A viewer who is not logged in records nothing.
- **Without login**, a reviewer proves who they are with a **key** the operator gave them at start:
  ``[semdedup.reviewer_keys]`` in ``.streamlit/secrets.toml`` maps each name to its key (or to
  ``"sha256:<hex>"`` of it). A name that has a key needs it, in every mode.
- **Read-only mode** records verdicts only for the reviewers named at start (``--reviewer NAME``,
  ``$SEMDEDUP_REVIEWERS``) who proved it (login or key): a typed name alone is never enough. Outside read-only mode a name without a key is taken as typed (the explorer on one's
  own machine).

Names follow :func:`semdedup_core.results.text.check_reviewer` (no line break, control character or
formula).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from semdedup_core import SemDedupError
from semdedup_core.results.text import check_reviewer

SECRETS_SECTION = "semdedup"
KEYS_ENTRY = "reviewer_keys"


@dataclass(frozen=True)
class Reviewer:
    """A reviewer and how they proved who they are: ``login`` (Streamlit's OpenID Connect login), ``key``
    (the key given to them at start) or ``typed`` (a name typed outside read-only mode, unproven)."""

    name: str
    proof: str

    @property
    def proven(self) -> bool:
        return self.proof in ("login", "key")


def reviewer_keys(secrets: Mapping[str, Any] | None) -> dict[str, str]:
    """The reviewers' keys from Streamlit's secrets (``[semdedup.reviewer_keys]``: name = key)."""
    try:
        section = (secrets or {}).get(SECRETS_SECTION) or {}
        keys = section.get(KEYS_ENTRY) or {}
        return {str(name).strip(): str(value) for name, value in dict(keys).items()}
    except (AttributeError, TypeError, ValueError):  # a secrets file of another shape: no keys
        return {}


def key_matches(given: str, stored: str) -> bool:
    """Whether the typed key ``given`` is the ``stored`` one (plain, or ``sha256:<hex>`` of it), compared in
    constant time."""
    if not given:
        return False
    if stored.startswith("sha256:"):
        digest = hashlib.sha256(given.encode("utf-8")).hexdigest()
        return hmac.compare_digest(digest, stored.removeprefix("sha256:").strip().lower())
    return hmac.compare_digest(given.encode("utf-8"), stored.encode("utf-8"))


def login_name(user: Mapping[str, Any] | None) -> str | None:
    """The logged-in user's name for verdicts (e-mail, else name), ``""`` when login is configured but
    nobody is logged in, ``None`` when login is not configured (``st.user`` has no ``is_logged_in``)."""
    user = dict(user or {})
    if "is_logged_in" not in user:
        return None
    if not user.get("is_logged_in"):
        return ""
    return str(user.get("email") or user.get("name") or "").strip()


def identify(
    *,
    user: Mapping[str, Any] | None,
    typed: str,
    key: str,
    keys: Mapping[str, str],
    listed: frozenset[str],
    read_only: bool,
) -> Reviewer:
    """The reviewer verdicts are recorded for (see the module's docstring), or raise :class:`SemDedupError`
    with the one-line reason: not logged in, a wrong key, an unlisted or unproven name in read-only mode,
    an unusable name."""
    logged = login_name(user)
    if logged is not None:  # login configured: the login decides, the typed name is ignored
        if not logged:
            raise SemDedupError("log in to record verdicts: this explorer takes the reviewer from the login")
        name = check_reviewer(logged, "the logged-in user's name")
        if read_only and name not in listed:
            raise SemDedupError(
                f"{name!r} is not one of the reviewers this read-only explorer was started with; ask whoever "
                "runs it to add --reviewer for you"
            )
        return Reviewer(name, "login")
    if not str(typed or "").strip():
        raise SemDedupError("enter your name to judge: every verdict records who gave it")
    name = check_reviewer(typed, "your name")
    stored = keys.get(name)
    if stored is not None:
        if not key_matches(str(key or ""), stored):
            raise SemDedupError(f"the key for reviewer {name!r} is missing or wrong; type the key you were given")
        proof = "key"
    else:
        proof = "typed"
    if read_only and (name not in listed or proof != "key"):
        raise SemDedupError(
            "this explorer is read-only: only the reviewers named when it was started, each with their key "
            "(or a login), may record verdicts"
        )
    return Reviewer(name, proof)
