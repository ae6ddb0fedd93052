"""Reading markdown the way CommonMark does, as far as the viewer's tests need: where the code spans are.

The viewer shows a trace's strings as inline code spans (viewer.text.plain), whose content
markdown shows literally; what lies outside them is markup.
"""

from __future__ import annotations

import re

_RUN = re.compile(r"`+")


def code_spans(markdown: str) -> tuple[list[str], str]:
    """The contents of the inline code spans of ``markdown`` (as shown), and the rest with each span replaced by a space.

    A run of n backticks opens a span that the next run of exactly n backticks closes; one
    without a closing run is literal. A content that begins and ends with a space, and is not
    all spaces, loses one space at each end.
    """
    contents: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(markdown):
        opening = _RUN.search(markdown, i)
        if opening is None:
            rest.append(markdown[i:])
            break
        rest.append(markdown[i : opening.start()])
        closing = next((m for m in _RUN.finditer(markdown, opening.end()) if len(m.group()) == len(opening.group())), None)
        if closing is None:
            rest.append(opening.group())
            i = opening.end()
            continue
        content = markdown[opening.end() : closing.start()]
        if len(content) >= 2 and content[0] == content[-1] == " " and content.strip(" "):
            content = content[1:-1]
        contents.append(content)
        rest.append(" ")
        i = closing.end()
    return contents, "".join(rest)
