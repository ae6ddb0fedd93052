"""viewer/text.py: a trace's strings, made into markdown and plotly text that show them as they are."""

from __future__ import annotations

import pytest

from tests.viewer.markdown_text import code_spans
from viewer.text import WORD_JOINER, one_line, plain, plotly_text

HOSTILE = [
    "![x](http://127.0.0.1:9/steal)",
    "[link](http://127.0.0.1:9/click)",
    "<img src=http://127.0.0.1:9/img.png>",
    "$\\href{http://127.0.0.1:9}{x}$",
    ":red-badge[fake] :streamlit: :smile: **bold** _it_ ~strike~ `code` # head | a | b | a -- b -> c",
    "1. list",
    "- bullet",
    "> quote",
    "www.example.org and http://127.0.0.1:9/bare and me@example.org",
    "a\n\n# heading\r\n---\n",
    "&lt;img&gt; & \\*",
    "``` fence",
    "`starts and ends with a backtick`",
    "a ``` b ` c",
    " padded ",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_is_one_code_span_showing_the_text(text: str) -> None:
    markdown = plain(text)
    contents, rest = code_spans(markdown)
    assert contents == [one_line(text)]  # shown literally, all of it
    assert rest.strip() == ""  # nothing outside the span
    assert "\n" not in markdown and "\r" not in markdown  # no new line: no new block


def test_plain_keeps_streamlits_material_icons_out() -> None:
    (content,), _ = code_spans(plain("icon :material/home: here"))
    assert content == f"icon :{WORD_JOINER}material/home: here"  # Streamlit rewrites ':material/' in the source, spans or not


def test_plain_of_ordinary_text() -> None:
    assert plain("doomed.h5") == "` doomed.h5 `"
    assert plain(3) == "` 3 `"
    assert plain("") == ""
    assert one_line("a\r\nb\nc") == "a b c"


def test_plotly_text_escapes_html_only() -> None:
    assert plotly_text("<a href='http://x'>x</a> & <br>") == "&lt;a href='http://x'&gt;x&lt;/a&gt; &amp; &lt;br&gt;"
    assert plotly_text("a\nb") == "a b"
    assert plotly_text("t = 3, s=0") == "t = 3, s=0"
