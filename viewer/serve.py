"""The viewer's server process: Streamlit's own command line, after importing what a page's first run needs.

Streamlit runs the app's script in this process, so modules imported here are imported once,
before any browser connects, instead of during the first session's first run while its page
waits for its first frame (h5py, plotly's figure classes, the trace reader, the equation
registry: about a third of a second on 2 cores; pandas, which Streamlit imports on the first call
of a custom component, to check whether its arguments are a data frame: another 0.6 s, paid by
the first player page of a fresh server); Streamlit's emoji table (read for the page icon) and its
plotly element: another 0.3 s. Nothing here touches Streamlit's runtime: the app declares its
components itself when it runs, and the modules that cache (st.cache_data) are imported there too.
"""

from __future__ import annotations

import sys


def main() -> None:
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
