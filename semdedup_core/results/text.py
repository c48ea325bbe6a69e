"""Text that stays text: what every file and view the project writes does to dataset strings.

- **CSV cells a spreadsheet would run** (starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return: ``=HYPERLINK(…)``) get a single quote in front, and so does a cell that already starts with a
  quote, so that :func:`restore_formulas` (``audit import``) gives back every value exactly as it was.
  Every CSV the project writes goes through :func:`csv_bytes` (exports, the review queue).
- **Bidirectional controls** (a right-to-left override U+202E in an id) reverse the text around them
  where they are shown; :func:`isolate` wraps such a string in a first-strong isolate (U+2068 … U+2069),
  which confines every override inside it to the string itself. The report uses ``<bdi>`` elements.
- **Reviewer names** (:func:`check_reviewer`): letters and digits of any script, spaces and ``. _ ' @ + -``
  after the first character — never a line break, a control or formatting character, or a formula.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Any

from ..errors import SemDedupError

if TYPE_CHECKING:
    import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What a spreadsheet runs as a formula when a CSV cell starts with it."""
QUOTE = "'"
_ESCAPED_STARTS = (*FORMULA_STARTS, QUOTE)


def _text_cells(values: Any, starts: tuple[str, ...]) -> Any:
    """A boolean numpy mask of the cells of ``values`` (a pandas column) that are text starting with ``starts``."""
    import pandas as pd

    if values.dtype.kind in "biufcmM":  # numbers and dates: never a formula
        return None
    if pd.api.types.is_string_dtype(values.dtype):
        return values.str.startswith(starts, na=False).to_numpy(dtype=bool)
    return values.map(lambda v: isinstance(v, str) and v.startswith(starts)).to_numpy(dtype=bool)


def neutralize_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell that starts like a formula (:data:`FORMULA_STARTS`) or with a quote
    prefixed with a single quote, so a spreadsheet shows it as text; numbers and other cells are kept."""
    out = frame.copy()
    for col in out.columns:
        risky = _text_cells(out[col], _ESCAPED_STARTS)
        if risky is not None and risky.any():
            text = out[col].astype("object")
            text[risky] = QUOTE + text[risky].astype(str)
            out[col] = text
    return out


def restore_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralize_formulas`: one leading quote taken off every text cell that starts with one."""
    out = frame.copy()
    for col in out.columns:
        quoted = _text_cells(out[col], (QUOTE,))
        if quoted is not None and quoted.any():
            text = out[col].astype("object")
            text[quoted] = text[quoted].astype(str).str.slice(1)
            out[col] = text
    return out


def csv_bytes(frame: pd.DataFrame, header: bool = True) -> bytes:
    """``frame`` as CSV in UTF-8 with formulas neutralised; CRLF line ends (RFC 4180): the csv writer then
    quotes every cell holding a "\\r" or "\\n"."""
    return neutralize_formulas(frame).to_csv(index=False, header=header, lineterminator="\r\n").encode("utf-8")


# -- bidirectional text --------------------------------------------------------------------------------
_STRONG_RTL = {"R", "AL", "RLE", "RLO", "LRE", "LRO", "PDF", "RLI", "LRI", "FSI", "PDI"}
_OPENS, _CLOSES = {"\u2066", "\u2067", "\u2068"}, {"\u2069"}
FSI, PDI = "\u2068", "\u2069"
BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_MAX_DEPTH = 60  # the Unicode bidi algorithm honours 125 levels: past this, controls are shown as escapes


def needs_isolation(text: str) -> bool:
    """Whether ``text`` holds a bidirectional control or right-to-left letters (which reorder neutral
    characters next to them): ASCII text never does."""
    return not text.isascii() and any(unicodedata.bidirectional(c) in _STRONG_RTL for c in text)


def isolate(text: Any) -> str:
    """``text`` (as a string) wrapped in a first-strong isolate when :func:`needs_isolation`: whatever
    overrides, embeddings or isolates it opens end with it, so the text around it keeps its order. A
    closing isolate of its own that would end the wrapper early is matched by an extra opening one."""
    text = str(text)
    if not needs_isolation(text):
        return text
    depth = stray = 0
    for c in text:
        if c in _OPENS:
            depth += 1
        elif c in _CLOSES:
            if depth:
                depth -= 1
            else:
                stray += 1
    if depth + stray > _MAX_DEPTH:  # too deep to isolate reliably: show the controls instead
        text = "".join(f"<U+{ord(c):04X}>" if c in BIDI_CONTROLS else c for c in text)
        return FSI + text + PDI
    return FSI * (1 + stray) + text + PDI * (1 + depth)


# -- reviewer names ------------------------------------------------------------------------------------
_NAME = re.compile(r"[^\W_][\w .'@+-]{0,99}")


def check_reviewer(name: Any, where: str = "reviewer name") -> str:
    """``name`` without surrounding spaces when it is a usable reviewer name, else raise naming the rule:
    1–100 characters, the first a letter or digit, the others letters, digits, spaces or ``. _ ' @ + -``
    (an e-mail address is one); no line break, control or formatting character, nor a formula."""
    value = str(name).strip() if name is not None else ""
    if not _NAME.fullmatch(value):
        raise SemDedupError(
            f"{where} must start with a letter or digit and hold only letters, digits, spaces and . _ ' @ + - "
            f"(at most 100 characters), got {value!r}; give another name"
        )
    return value
