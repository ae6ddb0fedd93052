"""One clear line for any error a trace can cause: ``st.error``, never a traceback, and the rest of the app goes on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from tracer.trace.reader import TraceError
from viewer.text import plain


def one_line(error: BaseException) -> str:
    """The first line of an error's message; its type when it has none."""
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(error, (TraceError, FileNotFoundError)) or not first:
        return first or type(error).__name__
    return f"{type(error).__name__}: {first}"


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Run a panel; an exception becomes ``st.error(f"{what}: {message}")`` (as plain text: both may name a file) and the script carries on.

    Streamlit's own control flow (rerun, stop) derives from BaseException and passes through.
    """
    try:
        yield
    except Exception as error:  # noqa: BLE001 - the point: no traceback reaches the user
        st.error(f"{plain(what)}: {plain(one_line(error))}", icon=":material/error:")
