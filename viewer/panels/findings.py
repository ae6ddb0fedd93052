"""The findings of a trace under its header: diagnoses with the step and the numbers (tracer/equations/findings.py).

The same findings ``noisescope check`` lists after its table (noise left at the end, a non-zero terminal
SNR, a previous timestep that is not visited, ...), computed once per finished trace file
(``loaders.findings``) and never while the trace is being written. Each is a badge with its title
and the sentence, shown as plain text.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from viewer import loaders
from viewer.text import plain


def trace_findings(registry: Any, info: loaders.TraceInfo) -> list[Any]:
    """The registry's findings of a finished trace (cached per file); [] while it is written or without a registry that has them."""
    if registry is None or not callable(getattr(registry, "trace_findings", None)) or info.status == "running" or info.rows == 0:
        return []
    return loaders.findings(info.path, info.inode, info.rows, str(getattr(registry, "__name__", id(registry))), registry)


def findings_ui(registry: Any, info: loaders.TraceInfo, compute: bool = True) -> None:
    """A short list: one line per finding, its title as an orange badge and its sentence. The container is drawn on every
    run, empty where ``compute`` is False (the player's first draw): the elements after it keep their place, so the
    player's iframe is not drawn again when the findings arrive."""
    with st.container(key="findings"):
        if not compute:
            return
        try:
            found = trace_findings(registry, info)
        except Exception as error:  # noqa: BLE001 - a finding that cannot be computed hides nothing else on the page
            st.caption(f"Findings not computed: {plain(error)}")
            return
        if not found:
            return
        st.markdown("**Findings** (diagnoses, as `noisescope check` lists them)")
        for finding in found:
            st.markdown(f":orange-badge[{finding.title}] {plain(finding.sentence)}")
