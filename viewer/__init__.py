"""The noisescope viewer: a Streamlit app that replays traces step by step beside the equations.

It imports only the trace reader, the schema and the equation registry: it never runs a
model or a sampler and starts without torch. Split three ways: ``*_ui()``
functions draw widgets and return plain selections (``viewer/panels``), cached loaders
read traces (``viewer/loaders.py``), and pure figure builders return plotly figures
(``viewer/figures``). ``viewer/app.py`` only wires them.
"""
