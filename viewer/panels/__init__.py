"""Panels: ``*_ui()`` functions that draw widgets and return plain selections, and the page bodies that use them.

Each page reads through viewer/loaders.py and draws figures from viewer/figures; any
error a file can cause is shown by ``errors.guard`` as one ``st.error`` line.
"""
