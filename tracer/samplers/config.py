"""How to sample: the sampler's name, its options (its own module's ``Options``), and what every sampler shares.

``SamplerConfig("ddim", steps=50, eta=0.5, guidance=3.0)`` builds the ``Options`` of the
sampler it names (tracer/samplers/base.py: validated there, once) from the keywords that
sampler declares; a keyword it does not declare is refused in one line. Guidance
(Ho and Salimans 2022) and its rescale (Lin et al. 2023, Sec. 3.4) belong to every sampler,
as does a preset (``seed-report``: the report's conventions, each sampler's ``PRESETS``).

``resolved(T, prediction)`` is what a trace's config records under ``sampler``: every option
with its default filled in (the visited timesteps, ``clip``, the steps), flat, so that
``check`` and the viewer read what was done instead of re-deriving it (docs/trace-format.md).
Torch-free: the command line builds it before torch is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tracer.config import ConfigError
from tracer.samplers.base import SamplerModule, make_options, resolved_dict

PRESET_NAMES: tuple[str, ...] = ("none", "seed-report")


def sampler_module(name: object) -> SamplerModule:
    """The module ``SAMPLERS`` maps ``name`` to; an unknown name is refused in one line."""
    from tracer.samplers import SAMPLERS

    if name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[str(name)]


@dataclass(frozen=True, init=False)
class SamplerConfig:
    """A sampler, its validated options, and the options every sampler shares."""

    sampler: str
    options: Any
    guidance: float | None
    guidance_rescale: float
    preset: str

    def __init__(self, sampler: str = "ddim", *, guidance: float | None = None, guidance_rescale: float = 0.0,
                 preset: str = "none", **options: Any) -> None:
        module = sampler_module(sampler)
        if preset not in PRESET_NAMES:
            raise ConfigError(f"unknown preset {preset!r}; choose one of {', '.join(PRESET_NAMES)}")
        if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, (int, float))
                                     or not math.isfinite(guidance) or guidance < 0):
            raise ConfigError(f"--guidance must be a finite number >= 0, got {guidance}")
        if isinstance(guidance_rescale, bool) or not isinstance(guidance_rescale, (int, float)) or not 0.0 <= guidance_rescale <= 1.0:
            raise ConfigError(f"--guidance-rescale must lie in [0, 1], got {guidance_rescale}")
        if guidance_rescale and guidance is None:
            raise ConfigError("--guidance-rescale rescales classifier-free guidance; give --guidance too")
        object.__setattr__(self, "sampler", str(sampler))
        given = {name: value for name, value in options.items() if value is not None}  # None: the sampler's default
        object.__setattr__(self, "options", make_options(module, given, preset))
        object.__setattr__(self, "guidance", None if guidance is None else float(guidance))
        object.__setattr__(self, "guidance_rescale", float(guidance_rescale))
        object.__setattr__(self, "preset", preset)

    @property
    def module(self) -> SamplerModule:
        return sampler_module(self.sampler)

    def resolve(self, T: int, alpha_bar: Any = None) -> Any:  # noqa: N803
        """The sampler's options with every default filled in for a T-step schedule (raises if they do not fit T);
        ``alpha_bar``, the schedule's, for a sampler whose plan depends on its values (the sigma-space ones)."""
        return self.module.resolve(self.options, T, alpha_bar)

    def plan(self, T: int, alpha_bar: Any = None) -> list[tuple[int, int]]:  # noqa: N803
        """(t, t_prev) of every step a run on a T-step schedule makes."""
        return self.module.plan(self.resolve(T, alpha_bar), T)

    def planned_steps(self, T: int, alpha_bar: Any = None) -> int:  # noqa: N803
        return len(self.plan(T, alpha_bar))

    def resolved(self, T: int, prediction: str = "eps", alpha_bar: Any = None) -> dict[str, Any]:  # noqa: N803
        """The trace config's ``sampler`` entry: the name, every resolved option, and the shared options."""
        return {
            "sampler": self.sampler,
            **resolved_dict(self.resolve(T, alpha_bar)),
            "guidance": self.guidance,
            "guidance_rescale": self.guidance_rescale,
            "preset": self.preset,
            "prediction": prediction,
        }

    def __getattr__(self, name: str) -> Any:
        """The sampler's own options read as attributes (``config.eta``)."""
        if name.startswith("_") or name == "options":
            raise AttributeError(name)
        try:
            return getattr(self.options, name)
        except AttributeError:
            raise AttributeError(f"the {self.sampler} sampler has no option {name!r}") from None
