"""Text shown literally in Streamlit: every Markdown/HTML/LaTeX character of dataset text (and of
paths and values in messages) escaped, bare URLs and e-mail addresses kept from becoming links, bidirectional
controls isolated (a right-to-left override in an id reverses nothing around it:
:func:`semdedup_core.results.text.isolate`), and word diffs drawn with ``:colour-background[...]``."""

from __future__ import annotations

import html
import re
from typing import Any

from semdedup_core.results.text import isolate

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&=\"'^])")
# GitHub-flavoured Markdown turns bare "http://…", "www.…" and "name@host.tld" into links after escapes are
# resolved, so escaping cannot stop it: an invisible WORD JOINER (U+2060) breaks each pattern instead
_WJ = "\u2060"
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(://)|\b(www)(?=\.)|(@)(?=[-\w])")


def escape_markdown(text: str) -> str:
    """``text`` as Markdown that displays it literally: every Markdown/HTML/LaTeX character escaped,
    line breaks kept, indentation and runs of spaces kept visible (no code blocks), each line holding
    bidirectional controls or right-to-left letters isolated."""
    lines = []
    for line in str(text).replace("\r\n", "\n").split("\n"):
        line = isolate(_AUTOLINK.sub(_break_link, line))
        esc = _MD_SPECIAL.sub(r"\\\1", line.replace("\t", "    "))
        esc = re.sub(r" {2,}", lambda m: " " + "\u00a0" * (len(m.group()) - 1), esc)
        if esc.startswith(" "):
            esc = "\u00a0" + esc[1:]
        lines.append(esc)
    return "  \n".join(lines)


def _break_link(m: re.Match[str]) -> str:
    if m.group(1):
        return ":" + _WJ + "//"
    if m.group(2):
        return m.group(2) + _WJ
    return "@" + _WJ


def diff_markdown(tokens: list[tuple[str, bool]], colour: str) -> str:
    """Markdown for :func:`semdedup_core.explore.pairs.word_diff` tokens with every differing word on a ``colour`` background
    (Streamlit's ``:colour-background[...]``); all dataset text is escaped."""
    parts: list[str] = []
    for token, differs in tokens:
        if token.isspace():
            parts.append("\n" if "\n" in token else token)
        elif differs:
            parts.append(f":{colour}-background[{escape_markdown(token)}]")
        else:
            parts.append(escape_markdown(token))
    return escape_lines("".join(parts))


def escape_lines(md: str) -> str:
    """Turn plain newlines of already-escaped Markdown into hard line breaks."""
    return "  \n".join(md.replace("\r\n", "\n").split("\n"))


def error(message: Any) -> None:
    """``st.error`` with the message shown literally (paths and values in it are not Markdown)."""
    import streamlit as st

    st.error(escape_markdown(str(message)))


def escape_html(value: Any) -> str:
    """Text for places that render HTML (plotly hover labels): ``&``, ``<``, ``>`` and quotes escaped."""
    return html.escape(isolate(value), quote=True)
