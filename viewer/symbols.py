"""Trace names and the symbols they stand for: LaTeX for st.latex/markdown, HTML for plotly labels.

The symbols of trace fields come from the schema (tracer/trace/schema.py, FIELDS); the
names only the viewer computes (log_snr, std_x_t, rms_eps) have theirs here, and so do
the tensors it derives from a trace's step tensors and scalars (``DERIVED``: guidance_delta,
x_t_scaled, which viewer/loaders.py computes) and which names are noise-like (``is_noise_like``).

The same name everywhere: the code says ``x0_pred``, the trace holds
``steps/x0_pred``, and the screen shows \\(\\hat x_0\\) with the name beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from tracer.trace import schema
from viewer.text import plain, plotly_text


DerivedOp = Literal["difference", "vp_input"]


@dataclass(frozen=True)
class Derived:
    """A step tensor the viewer derives from what a trace records (viewer/loaders.py ``read_step`` computes it, nowhere else).

    ``op`` says how: ``difference`` is ``terms[0] - terms[1]``; ``vp_input`` is ``terms[0] / sqrt(1 + scalars[0]^2)``.
    ``terms`` are step tensors, ``scalars`` per-step scalars; a trace lacking any of them is not offered it.
    """

    terms: tuple[str, ...]
    latex: str
    html: str
    text: str  # the symbol in plain text, for the picker
    meaning: str
    op: DerivedOp = "difference"
    scalars: tuple[str, ...] = ()
    noise_like: bool = True  # drawn on a diverging scale of its own symmetric range; else image-like (grey, data range)


# The viewer's derived step tensors.
DERIVED: Final[dict[str, Derived]] = {
    "guidance_delta": Derived(("eps_cond", "eps_uncond"), r"\epsilon_{\mathrm{cond}} - \epsilon_{\mathrm{uncond}}",
                              "ε<sub>cond</sub> − ε<sub>uncond</sub>", "ε_cond − ε_uncond",
                              "what guidance scales: ε = ε_uncond + s (ε_cond − ε_uncond)"),
    # A sigma-space state x = x0 + sigma eps reaches |x| ~ 150 at the first step; divided by sqrt(1 + sigma^2) it is the
    # VP x_t the network sees (Karras et al. 2022, Table 1, VP), on the data scale.
    "x_t_scaled": Derived(("x_t",), r"x_t / \sqrt{1 + \sigma_t^2}", "x<sub>t</sub>/√(1 + σ<sub>t</sub><sup>2</sup>)",
                          "x_t / √(1 + σ_t²)",
                          "the network's input, the VP state: x_t = x0 + σ_t ε scaled onto the data range",
                          op="vp_input", scalars=("sigma_t",), noise_like=False),
}

# Names the viewer computes and labels that are not trace fields.
VIEWER_LATEX: Final[dict[str, str]] = {
    "log_snr": r"\log \mathrm{SNR}(t)",
    "std_x_t": r"\mathrm{std}(x_t)",
    "rms_eps": r"\lVert \epsilon_\theta \rVert / \sqrt{d}",
    **{name: d.latex for name, d in DERIVED.items()},
}
VIEWER_HTML: Final[dict[str, str]] = {
    "log_snr": "log SNR(t)",
    "std_x_t": "std(x<sub>t</sub>)",
    "rms_eps": "‖ε<sub>θ</sub>‖/√d",
    **{name: d.html for name, d in DERIVED.items()},
}

# Every trace field's symbol from the schema (a name in several series, as x_t, takes its first row's), then the viewer's own.
LATEX: Final[dict[str, str]] = {**{name: schema.symbol(name) for name in schema.names()}, **VIEWER_LATEX}
HTML: Final[dict[str, str]] = {**{f.name: f.html for f in map(schema.named, schema.names()) if f is not None}, **VIEWER_HTML}


def is_noise_like(name: str) -> bool:
    """Whether ``name`` is drawn as noise (a diverging scale on a symmetric range): the schema's display class "noise",
    and the noise-like derived tensors (guidance_delta, a difference of two noise-like ones; not x_t_scaled)."""
    return schema.display_class(name) == "noise" or (name in DERIVED and DERIVED[name].noise_like)


def latex(name: str) -> str:
    """The LaTeX symbol of a trace name (the name itself, escaped, if it has none)."""
    return LATEX.get(name, r"\mathrm{" + name.replace("_", r"\_") + "}")


def html(name: str, with_name: bool = True) -> str:
    """A plotly-safe label: the symbol, followed by the trace name in grey when they differ (a name without a symbol, as text)."""
    symbol = HTML.get(name, plotly_text(name))
    if not with_name or name not in HTML or symbol == name:
        return symbol
    return f"{symbol} <span style='color:#888'>({plotly_text(name)})</span>"


def markdown(name: str) -> str:
    """Inline markdown for Streamlit: the symbol in math, then the trace name (as text)."""
    return f"${latex(name)}$ {plain(name)}"
