"""Trace names and the symbols they stand for: LaTeX for st.latex/markdown, HTML for plotly labels.

The same name everywhere: the code says ``x0_pred``, the trace holds
``steps/x0_pred``, and the screen shows \\(\\hat x_0\\) with the name beside it.
"""

from __future__ import annotations

from typing import Final

from viewer.text import plain, plotly_text

LATEX: Final[dict[str, str]] = {
    "x_t": r"x_t",
    "eps": r"\epsilon_\theta",
    "eps_cond": r"\epsilon_\theta(x_t, c)",
    "eps_uncond": r"\epsilon_\theta(x_t, \varnothing)",
    "x0_pred": r"\hat x_0",
    "x0_pred_raw": r"\hat x_0^{\mathrm{raw}}",
    "noise": r"z",
    "samples": r"x_0",
    "x0": r"x_0",
    "eps_pred": r"\epsilon_\theta",
    "t": r"t",
    "t_prev": r"t_{\mathrm{prev}}",
    "alpha_bar_t": r"\bar\alpha_t",
    "alpha_bar_prev": r"\bar\alpha_{t_{\mathrm{prev}}}",
    "alpha_t": r"\alpha_t",
    "beta_t": r"\beta_t",
    "sigma": r"\sigma_t",
    "beta": r"\beta_t",
    "alpha_bar": r"\bar\alpha_t",
    "log_snr": r"\log \mathrm{SNR}(t)",
    "std_x_t": r"\mathrm{std}(x_t)",
    "rms_eps": r"\lVert \epsilon_\theta \rVert / \sqrt{d}",
    "loss": r"\mathcal{L}",
}

HTML: Final[dict[str, str]] = {
    "x_t": "x<sub>t</sub>",
    "eps": "ε<sub>θ</sub>",
    "eps_cond": "ε<sub>θ</sub>(x<sub>t</sub>, c)",
    "eps_uncond": "ε<sub>θ</sub>(x<sub>t</sub>, ∅)",
    "x0_pred": "x̂<sub>0</sub>",
    "x0_pred_raw": "x̂<sub>0</sub> raw",
    "noise": "z",
    "samples": "x<sub>0</sub>",
    "x0": "x<sub>0</sub>",
    "eps_pred": "ε<sub>θ</sub>",
    "t": "t",
    "t_prev": "t<sub>prev</sub>",
    "alpha_bar_t": "ᾱ<sub>t</sub>",
    "alpha_bar_prev": "ᾱ<sub>prev</sub>",
    "alpha_t": "α<sub>t</sub>",
    "beta_t": "β<sub>t</sub>",
    "sigma": "σ<sub>t</sub>",
    "beta": "β<sub>t</sub>",
    "alpha_bar": "ᾱ<sub>t</sub>",
    "log_snr": "log SNR(t)",
    "std_x_t": "std(x<sub>t</sub>)",
    "rms_eps": "‖ε<sub>θ</sub>‖/√d",
    "loss": "loss",
}


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
