"""The step scrubber: a slider labelled with t, step back and forward, play and pause, and a speed setting.

The current step of each scrubber lives in session state under ``<key>.index``; the
slider, the buttons and the play timer all write there, so the step survives a live
trace growing (the slider is recreated when the number of steps changes) and is what
the URL mirrors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import streamlit as st

SPEEDS: Final = (1, 2, 5, 10, 20, 50)  # steps a second while playing
DEFAULT_SPEED: Final = 5


@dataclass(frozen=True)
class PlayState:
    """What the play controls say: playing or not, at how many steps a second, following a live trace or not."""

    playing: bool
    speed: int
    follow: bool

    @property
    def interval(self) -> float:
        return 1.0 / self.speed


def _set(key: str, value: int) -> None:
    st.session_state[f"{key}.index"] = value


def _shift(key: str, delta: int, count: int) -> None:
    current = int(st.session_state.get(f"{key}.index", 0))
    _set(key, min(max(current + delta, 0), count - 1))


def _from_slider(key: str, slider_key: str) -> None:
    _set(key, int(st.session_state[slider_key]))


def _toggle(flag: str) -> None:
    st.session_state[flag] = not st.session_state.get(flag, False)


def current_index(key: str, count: int) -> int:
    """The scrubber's step, clamped to the steps that exist now."""
    value = int(st.session_state.get(f"{key}.index", 0))
    return min(max(value, 0), max(count - 1, 0))


def play_controls_ui(key: str, live: bool) -> PlayState:
    """Play or pause, speed, and (for a trace still being written) follow new steps."""
    playing_key = f"{key}.playing"
    cols = st.columns([1.1, 1.6, 2.2], vertical_alignment="bottom")
    playing = bool(st.session_state.get(playing_key, False))
    cols[0].button("Pause" if playing else "Play", icon=":material/pause:" if playing else ":material/play_arrow:", key=f"{key}.play",
                   on_click=_toggle, args=(playing_key,), help="Play the steps one after another at the speed set")
    speed = cols[1].select_slider("Speed (steps/s)", options=SPEEDS, value=DEFAULT_SPEED, key=f"{key}.speed")
    follow = False
    if live:
        follow = cols[2].toggle("Follow new steps", value=True, key=f"{key}.follow", help="Jump to the newest step as the writer commits it")
    return PlayState(playing=bool(st.session_state.get(playing_key, False)), speed=int(speed), follow=follow)


def advance(key: str, count: int, play: PlayState) -> bool:
    """One tick of playback: move one step on; at the last step stop playing. Returns True if it stopped."""
    if not play.playing or count == 0:
        return False
    index = current_index(key, count)
    if index >= count - 1:
        st.session_state[f"{key}.playing"] = False
        return True
    _set(key, index + 1)
    return False


def scrubber_ui(key: str, t: Sequence[int] | np.ndarray, follow: bool = False, label: str = "Step", tick: str = "t = {}") -> int:
    """Draw the scrubber over ``len(t)`` steps, each labelled ``tick.format(t[k])``; return the current step index."""
    count = len(t)
    if count == 0:
        st.info("No steps recorded yet.")
        return 0
    if follow:
        _set(key, count - 1)
    index = current_index(key, count)
    _set(key, index)
    t_values = [int(v) for v in t]
    cols = st.columns([1.1, 1.1, 5, 1.1, 1.1], vertical_alignment="bottom")
    # Every button has a word for its label: an icon alone would be announced by its ligature name ("first_page icon").
    cols[0].button("First", icon=":material/first_page:", key=f"{key}.first", on_click=_set, args=(key, 0), help="First step")
    cols[1].button("Back", icon=":material/chevron_left:", key=f"{key}.back", on_click=_shift, args=(key, -1, count), help="Step back")
    slider_key = f"{key}.slider.{count}"  # a new widget when the step count changes (a live trace grows)
    st.session_state[slider_key] = index
    with cols[2]:
        st.select_slider(
            label,
            options=list(range(count)),
            format_func=lambda k: tick.format(t_values[k]),
            key=slider_key,
            on_change=_from_slider,
            args=(key, slider_key),
            label_visibility="collapsed",
        )
    cols[3].button("Next", icon=":material/chevron_right:", icon_position="right", key=f"{key}.next", on_click=_shift, args=(key, 1, count),
                   help="Step forward")
    cols[4].button("Last", icon=":material/last_page:", icon_position="right", key=f"{key}.last", on_click=_set, args=(key, count - 1),
                   help="Last step")
    return index
