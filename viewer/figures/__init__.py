"""Pure figure builders: arrays in, ``plotly.graph_objects.Figure`` out; no Streamlit, no file access.

Each is tested without Streamlit in tests/viewer/test_figures.py: the data passed in
must be the data the figure's traces carry.
"""
