"""Reverse-process samplers, one module per algorithm, each a generator of StepRecords.

- ``ddpm``: Ho et al. 2020, Alg. 2 (``ddpm.sample``).
- ``ddim``: Song et al. 2021, Eq. 12 and 16 (``ddim.sample``).
- ``guidance``: classifier-free guidance, Ho and Salimans 2022, Eq. 6 (``predict``).
- ``timesteps``: which timesteps a run visits and where each step moves to.
- ``run``: from a SamplerConfig to the right sampler (``sample``), and ``initial_noise``.
"""

from tracer.samplers import ddim, ddpm
from tracer.samplers.guidance import Prediction, predict
from tracer.samplers.records import StepRecord
from tracer.samplers.run import initial_noise, planned_steps, sample
from tracer.samplers.timesteps import ddim_timesteps, plan, seed_report_timesteps

__all__ = [
    "Prediction",
    "StepRecord",
    "ddim",
    "ddim_timesteps",
    "ddpm",
    "initial_noise",
    "plan",
    "planned_steps",
    "predict",
    "sample",
    "seed_report_timesteps",
]
