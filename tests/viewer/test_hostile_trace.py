"""A hostile trace on every page under AppTest: whatever its file says reaches the page as text, never as markup.

Every element the app sends is read from its protobuf: the bodies and labels Streamlit
renders as markdown, the raw HTML of st.html, and every string of each plotly figure.
Outside inline code spans (whose content markdown shows literally: viewer.text.plain) no
markdown may hold a markdown image or link, an <img> or <a> tag, or a hostile URL; no
plotly text or st.html may hold a tag from the file unescaped. The hostile strings must be
there, as text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

from tests.viewer.conftest import player_step
from tests.viewer.hostile import FILE_NAME, RECOVERED_FROM, URL, Hostile, make_hostile
from tests.viewer.markdown_text import code_spans
from tracer.trace.reader import open_trace
from viewer.describe import distinguishing_labels
from viewer.panels.playback import DRAWN_WHOLE
from viewer.paths import ROOTS_ENV
from viewer.text import plain, plotly_text

APP = Path(__file__).resolve().parents[2] / "viewer" / "app.py"
MARKDOWN_FIELDS = {"body", "label", "help", "placeholder", "captions", "caption", "text"}  # what Streamlit renders as markdown
MARKUP = ("![", "](", "<img", "<a ", "<a>", "<b>", "<script", URL, "127.0.0.1:9", "hostile-")  # none may be markdown outside code
HTML_MARKUP = ("<img", "<a ", "<a>", "<b>", "<script", "<iframe")  # no tag from the file in a plotly text or st.html (escaped: &lt;img)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return make_hostile(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def app(hostile: Hostile, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ROOTS_ENV, str(hostile.root))

    def run(**query: str) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state[DRAWN_WHOLE] = True  # the playback page whole from the first run (not the player alone, then the rest)
        for key, value in query.items():
            at.query_params[key] = value
        return at.run()

    return run


def strings(value: object, fields: set[str] | None = None, inside: bool = False) -> Iterator[str]:
    """The strings of a protobuf dict: all of them, or only those under the keys in ``fields``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, fields, inside or fields is None or key in fields)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item, fields, inside)
    elif isinstance(value, str) and inside:
        yield value


def rendered(at: AppTest) -> dict[str, list[str]]:
    """Every string the page shows, by how the browser renders it: markdown, raw HTML (st.html), plotly text."""
    out: dict[str, list[str]] = {"markdown": [], "html": [], "plotly": []}
    for node in at._tree:  # noqa: SLF001 - every element, main area and sidebar, inside every container
        proto = getattr(node, "proto", None)
        if proto is None or not hasattr(proto, "DESCRIPTOR"):
            continue
        fields = MessageToDict(proto, preserving_proto_field_name=True)
        kind = getattr(node, "type", "")
        if kind == "plotly_chart":
            out["plotly"].extend(strings(json.loads(fields.get("spec", "{}"))))
        elif kind == "html":
            out["html"].extend(strings(fields, {"body"}))
        else:
            out["markdown"].extend(strings(fields, MARKDOWN_FIELDS))
    return out


def assert_text_only(at: AppTest) -> dict[str, list[str]]:
    assert not at.exception, [e.value for e in at.exception]
    shown = rendered(at)
    for text in shown["markdown"]:
        _, markup_part = code_spans(text)
        for markup in MARKUP:
            assert markup not in markup_part, (markup, text)
    for text in shown["plotly"] + shown["html"]:
        for markup in HTML_MARKUP:
            assert markup not in text, (markup, text)
    return shown


def assert_shown(shown: dict[str, list[str]], kind: str, text: str) -> None:
    assert any(text in s for s in shown[kind]), (text, shown[kind])


def assert_literal(shown: dict[str, list[str]], text: str) -> None:
    """``text`` is shown as it is: inside a code span of some markdown."""
    assert any(text in content for body in shown["markdown"] for content in code_spans(body)[0]), (text, shown["markdown"])


def test_playback_shows_a_hostile_traces_strings_as_text(app, hostile: Hostile) -> None:
    at = app(view="playback", trace=hostile.name(hostile.sampling))
    shown = assert_text_only(at)
    assert not at.error, [e.value for e in at.error]
    assert_shown(shown, "markdown", f"##### {plain(FILE_NAME)}")  # the header names the file, as text
    assert_shown(shown, "markdown", f"Recovered copy of {plain(RECOVERED_FROM)}.")
    assert_literal(shown, f"ddim · ![s]({URL}/steps) steps")  # the settings line, as text
    player_step(at, hostile.name(hostile.sampling), 1)
    assert_text_only(at)


def test_playback_of_a_hand_made_trace_shows_its_strings_as_text(app, hostile: Hostile) -> None:
    at = app(view="playback", trace=hostile.name(hostile.hand_made))
    shown = assert_text_only(at)
    assert_literal(shown, f"<b>bold</b> [link]({URL}/click)")


def test_compare_shows_hostile_names_and_labels_as_text(app, hostile: Hostile) -> None:
    a, b = hostile.name(hostile.sampling), hostile.name(hostile.hand_made)
    at = app(view="compare", compare=f"{a},{b}")
    shown = assert_text_only(at)
    assert not at.error, [e.value for e in at.error]
    assert_shown(shown, "markdown", f"**A** {plain(a)}: step 1")
    configs = []
    for path in (hostile.sampling, hostile.hand_made):
        with open_trace(path) as trace:
            configs.append(trace.config)
    label_a, label_b = distinguishing_labels([a, b], configs)  # the legend names traces by their settings
    assert_shown(shown, "plotly", plotly_text(f"{label_b} − {label_a}"))  # the distance curve's legend, as text
    for tab in ("Side by side", "Sweep grid", "Distances over noise level"):
        assert any(t.label == tab for t in at.tabs)
    (player,) = [e for e in at.get("component_instance") if "player" in e.proto.component_name]
    titles = [track["title"] for track in json.loads(player.proto.json_args)["spec"]["tracks"]]
    assert titles == [f"A: {plotly_text(label_a)}", f"B: {plotly_text(label_b)}"]  # set as HTML in the page: escaped
    at.session_state[f"step:compare:{a}.player"] = {"step": 1, "seq": 1}  # the player paused on the next position
    at.run()
    assert_text_only(at)


def test_training_page_shows_a_hostile_training_trace_as_text(app, hostile: Hostile) -> None:
    at = app(view="training", trace=hostile.name(hostile.training))
    shown = assert_text_only(at)
    assert not at.error, [e.value for e in at.error]
    assert_shown(shown, "markdown", f"Recovered copy of {plain(RECOVERED_FROM)}.")
    assert_literal(shown, f"![d]({URL}/dataset) · <img src={URL}/img.png>")


@pytest.mark.parametrize("trace", ["sampling", "hand_made", "training"])
def test_schedule_page_shows_a_hostile_trace_as_text(app, hostile: Hostile, trace: str) -> None:
    at = app(view="schedule", trace=hostile.name(getattr(hostile, trace)))
    assert_text_only(at)
    assert not at.error, [e.value for e in at.error]


def test_an_unreadable_hostile_file_is_named_as_text_in_its_error(app, hostile: Hostile) -> None:
    at = app(view="playback", trace=hostile.name(hostile.corrupt))
    assert_text_only(at)
    assert len(at.error) == 1 and at.error[0].value.startswith(plain(hostile.name(hostile.corrupt)))
