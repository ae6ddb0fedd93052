"""viewer/text.py: a trace's strings, escaped so that markdown and plotly show them as they are."""

from __future__ import annotations

import pytest

from viewer.text import plain, plotly_text

HOSTILE = [
    "![x](http://127.0.0.1:9/steal)",
    "[link](http://127.0.0.1:9/click)",
    "<img src=http://127.0.0.1:9/img.png>",
    "$\\href{http://127.0.0.1:9}{x}$",
    ":red-badge[fake] :material/home: **bold** _it_ ~strike~ `code` # head | a | b |",
    "1. list",
    "- bullet",
    "> quote",
    "www.example.org and http://127.0.0.1:9/bare and me@example.org",
    "a\n\n# heading\r\n---\n",
    "&lt;img&gt; & \\*",
]


def unescape_markdown(text: str) -> str:
    """What CommonMark renders for text made only of literal characters, backslash escapes and the three entities."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&")):
            if text.startswith(entity, i):
                out.append(char)
                i += len(entity)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_escapes_every_markdown_and_html_special(text: str) -> None:
    escaped = plain(text)
    for markup in ("![", "](", "<", ">", "[", "$", "*", "`", "~", "|", "http://", "www.", "\n", "\r"):
        assert markup not in escaped.replace("\\" + markup[0], "\0"), (markup, escaped)
    assert not escaped.lstrip()[:1].isdigit() or "\\." in escaped  # '1.' at a line start is no list
    assert unescape_markdown(escaped).split() == text.split()  # it renders as the same words


def test_plain_leaves_ordinary_names_readable() -> None:
    assert plain("doomed.h5") == "doomed.h5"
    assert plain("ddim · 10 steps") == "ddim · 10 steps"
    assert plain("images_ddim.h5") == "images\\_ddim.h5"
    assert plain(3) == "3"


def test_plotly_text_escapes_html_only() -> None:
    assert plotly_text("<a href='http://x'>x</a> & <br>") == "&lt;a href='http://x'&gt;x&lt;/a&gt; &amp; &lt;br&gt;"
    assert plotly_text("a\nb") == "a b"
    assert plotly_text("t = 3, s=0") == "t = 3, s=0"
