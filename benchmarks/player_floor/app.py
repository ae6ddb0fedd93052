"""The floor under the player's first frame (benchmarks/bench_player.py): a Streamlit page holding only a custom component
(Streamlit's v1 protocol, as the player's) that paints one 16x16 frame sent in its arguments, nothing else.

Served like the viewer (``python -m viewer.serve run`` with ``noisescope view``'s flags), it measures what any page of
this kind pays before its first frame: Streamlit's front end starting, its websocket, one script run, the iframe.
"""

from pathlib import Path

import streamlit as st
import streamlit.components.v1 as components

st.set_page_config(page_title="floor", layout="wide")
floor = components.declare_component("floor", path=str(Path(__file__).resolve().parent))
floor(pixels=[(7 * i) % 256 for i in range(16 * 16)], key="floor")
