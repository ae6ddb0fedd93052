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
from typing import Any, Final

_LINE_BREAKS: Final = re.compile(r"[\r\n\v\f\x85\u2028\u2029]+")
_BACKTICKS: Final = re.compile(r"`+")
WORD_JOINER: Final = "\u2060"  # invisible; keeps Streamlit from reading ':material/' inside the code span as an icon


def one_line(value: Any) -> str:
    """``str(value)`` on one line: line breaks become spaces (a new line could start a markdown block)."""
    return _LINE_BREAKS.sub(" ", str(value))


def plain(value: Any) -> str:
    """Markdown that shows exactly ``str(value)`` (on one line), in code style: no link, image, HTML, math, badge or emoji.

    The text becomes an inline code span, whose content CommonMark shows literally and which
    Streamlit's markdown plugins (autolinks, emoji, icons, arrows, KaTeX) leave alone: the fence
    is one backtick longer than any run of backticks in the text, and a space inside each end
    (which markdown removes) lets the text itself begin or end with a backtick.
    """
    text = one_line(value).replace(":material/", f":{WORD_JOINER}material/")  # Streamlit rewrites that before parsing
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    return f"{fence} {text} {fence}"


def plotly_text(value: Any) -> str:
    """Text for a plotly title, legend or hover label that shows as exactly ``str(value)`` (plotly reads a subset of HTML)."""
    return html.escape(one_line(value), quote=False)
