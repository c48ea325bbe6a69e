"""User-facing errors.

Every problem a user can fix (bad input, bad parameter, a results folder that does not fit) raises
:class:`SemDedupError` with a message that names the value and the fix. The CLI prints it as one line
on stderr; the app shows it with ``st.error``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class SemDedupError(ValueError):
    """A problem with the user's input or parameters, with a message that says how to fix it."""
