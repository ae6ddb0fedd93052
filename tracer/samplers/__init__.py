"""Reverse-process samplers as plug-ins: one module per algorithm, one shared loop, one registry.

- ``SAMPLERS``: name -> sampler module (the interface: tracer/samplers/base.py;
  docs/adding-a-sampler.md says how to add one).
- ``ddpm``: Ho et al. 2020, Alg. 2.  ``ddim``: Song et al. 2021, Eq. 12 and 16.
- ``ddim_inversion``: DDIM with eta 0 run from data towards noise (Song et al. 2021, Sec. 4.3);
  its plan ascends (``DIRECTION = "ascending"``), ``noisescope invert`` runs it.
- In sigma space (x = x0 + sigma eps; ``karras`` holds what they share: noise levels, the denoiser, churn):
  ``euler`` and ``heun``: Karras et al. 2022, Alg. 1 and 2; ``euler_ancestral``: Euler steps with
  k-diffusion's ancestral noise; ``dpmpp_2m``: DPM-Solver++(2M), Lu et al. 2022, Alg. 2.
- On the flow path of a flow-matching network (x_t = (1 - t) x0 + t eps; ``flow`` holds what they share: the time
  grid and its shift, the velocity's x0 and eps): ``flow_euler`` and ``flow_heun``, Euler and Heun steps of dx/dt = v.
- ``config``: ``SamplerConfig``, a sampler with its validated options and the shared ones.
- ``guidance``: classifier-free guidance (Ho and Salimans 2022, Eq. 6) and its rescale (Lin et al. 2023).
- ``prediction``: eps, x0 and v predictions and their conversions (Salimans and Ho 2022).
- ``timesteps``: which timesteps a run visits and where each step moves to.
- ``loop``: the one loop (``run``), ``initial_noise`` and ``planned_steps``.

Importing this package, or a sampler module, imports no torch (the viewer reads their
equations); ``loop`` and ``guidance`` do, and the names they export load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracer.samplers import ddim, ddim_inversion, ddpm, dpmpp_2m, euler, euler_ancestral, flow_euler, flow_heun, heun
from tracer.samplers.base import SamplerModule
from tracer.samplers.config import SamplerConfig
from tracer.samplers.records import StepRecord
from tracer.samplers.timesteps import ddim_timesteps, plan, seed_report_timesteps

SAMPLERS: dict[str, SamplerModule] = {module.NAME: module for module in (  # type: ignore[misc]
    ddpm, ddim, ddim_inversion, euler, heun, euler_ancestral, dpmpp_2m, flow_euler, flow_heun)}

if TYPE_CHECKING:
    from tracer.samplers.loop import initial_noise, planned_steps, run, sample

_LAZY = {"initial_noise": "tracer.samplers.loop", "planned_steps": "tracer.samplers.loop", "run": "tracer.samplers.loop",
         "sample": "tracer.samplers.loop", "predict": "tracer.samplers.guidance", "Guided": "tracer.samplers.guidance"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracer.samplers' has no attribute {name!r}")


__all__ = [
    "SAMPLERS",
    "SamplerConfig",
    "StepRecord",
    "ddim",
    "ddim_inversion",
    "ddim_timesteps",
    "ddpm",
    "dpmpp_2m",
    "euler",
    "euler_ancestral",
    "flow_euler",
    "flow_heun",
    "heun",
    "initial_noise",
    "plan",
    "planned_steps",
    "run",
    "sample",
    "seed_report_timesteps",
]
