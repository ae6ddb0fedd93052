"""Text from a trace, shown as text: what a trace file says never renders as markdown, HTML or LaTeX.

Anything read from a file (its name, config, attributes, an error message naming it) can
hold ``![x](http://...)``, ``<img src=...>``, ``[link](...)`` or ``$math$``; rendered as
markdown, opening the trace would make the browser fetch arbitrary URLs. Every such
string goes through ``plain`` before it reaches ``st.markdown``, ``st.caption``,
``st.info``/``warning``/``error`` or a badge, and through ``plotly_text`` before it
reaches a plotly title, legend or hover label.
"""

from __future__ import annotations

import html
import re
import string
from typing import Any, Final

# Every ASCII punctuation character may be backslash-escaped in (GitHub) markdown, and then
# renders as itself. All are escaped except '.' (file names stay readable; the two places it
# is markup are handled below) and '&' / ';', which html.escape has turned into entities.
_SPECIAL: Final = re.compile("([" + re.escape("".join(c for c in string.punctuation if c not in ".&;")) + "])")
_LINE_BREAKS: Final = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
_ORDERED_LIST: Final = re.compile(r"^(\s*\d+)\.")  # '1. x' at the start of a line would be a list
_WWW: Final = re.compile(r"(www)\.", re.IGNORECASE)  # 'www.x.org' would be an autolink


def one_line(value: Any) -> str:
    """``str(value)`` on one line: line breaks become spaces (a new line could start a markdown block)."""
    return _LINE_BREAKS.sub(" ", str(value))


def plain(value: Any) -> str:
    """Markdown that renders as exactly ``str(value)`` (on one line): no link, image, HTML, math, emphasis or badge.

    HTML special characters become entities (``<`` is ``&lt;``), every other markdown special
    character is backslash-escaped (``![`` is ``\\!\\[``, ``$`` is ``\\$``, ``:`` is ``\\:`` so
    neither a bare ``http://`` autolink nor a ``:red[...]`` directive forms).
    """
    text = _SPECIAL.sub(r"\\\1", html.escape(one_line(value), quote=False))
    return _WWW.sub(r"\1\\.", _ORDERED_LIST.sub(r"\1\\.", text))


def plotly_text(value: Any) -> str:
    """Text for a plotly title, legend or hover label that shows as exactly ``str(value)`` (plotly reads a subset of HTML)."""
    return html.escape(one_line(value), quote=False)
