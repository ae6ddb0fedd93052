"""The viewer's server process: Streamlit's own command line, after importing what a page's first run needs.

Streamlit runs the app's script in this process, so modules imported here are imported once,
before any browser connects, instead of during the first session's first run while its page
waits for its first frame (h5py, plotly's figure classes, the trace reader, the equation
registry: about a third of a second on 2 cores; pandas, which Streamlit imports on the first call
of a custom component, to check whether its arguments are a data frame: another 0.6 s, paid by
the first player page of a fresh server); Streamlit's emoji table (read for the page icon) and its
plotly element: another 0.3 s. Nothing here touches Streamlit's runtime: the app declares its
components itself when it runs, and the modules that cache (st.cache_data) are imported there too.

Before anything is imported, glibc's mmap threshold is pinned at 1 MiB (``pin_mmap_threshold``). By
default glibc raises it, up to 32 MiB, each time a mapped block is freed; from then on the rows the
viewer reads and frees (one step of one tensor: megabytes for a batch of images), allocated by several
threads (Streamlit's script runs, the player's frame writer), come from per-thread heaps that keep
the freed memory. Pinned, every block of 1 MiB or more is mapped and given back when freed: the
server's peak RSS on a 1 GB trace of 3x64x64 images (benchmarks/bench_scale.py) fell from 466 to
341 MB. ``MALLOC_MMAP_THRESHOLD_`` in the environment, glibc's own setting, is left to rule.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 1 << 20  # bytes: blocks this large or larger are mapped, and unmapped when freed
M_MMAP_THRESHOLD = -3  # mallopt's parameter number (glibc's malloc.h)


def pin_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes (which also stops glibc from raising it); False where
    there is no glibc ``mallopt`` (macOS, musl without it) or the environment sets ``MALLOC_MMAP_THRESHOLD_``."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def main() -> None:
    pin_mmap_threshold()
    import pandas  # noqa: F401 - Streamlit's (see the module's doc)
    import plotly.graph_objects  # noqa: F401
    import streamlit.elements.plotly_chart  # noqa: F401
    import streamlit.emojis  # noqa: F401

    import tracer.equations.registry  # noqa: F401
    import tracer.trace.reader  # noqa: F401 - and h5py with it (the reader is the one module that imports h5py)
    from streamlit.web.cli import main as streamlit_cli

    streamlit_cli(args=sys.argv[1:], prog_name="streamlit")


if __name__ == "__main__":
    main()
