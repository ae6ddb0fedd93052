"""The frozen record a sampler yields at every step.

Field names are the paper symbols and the trace names (docs/trace-format.md):
``x_t``, ``eps``, ``x0_pred``... become ``steps/x_t``, ``steps/eps``, ``steps/x0_pred``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class StepRecord:
    """What one reverse step read, computed and produced.

    Scalars are those the update actually used. ``alpha_t`` and ``beta_t`` are the
    step's effective values, alpha_t = alpha_bar_t / alpha_bar_prev and
    beta_t = 1 - alpha_t (the schedule's own alpha and beta when a step spans one
    timestep, as every DDPM step does).
    """

    index: int  # i, 0-based position in the sampling loop
    t: int  # model timestep of this step (0-based schedule index)
    t_prev: int  # timestep the step moves to; -1 for the clean end
    alpha_bar_t: float
    alpha_bar_prev: float
    alpha_t: float
    beta_t: float
    sigma: float  # std of the noise the step adds
    x_t: torch.Tensor  # [B, *D] input of the step
    eps: torch.Tensor  # [B, *D] noise prediction used by the update (after guidance)
    x0_pred: torch.Tensor  # [B, *D] predicted clean sample used by the update
    noise: torch.Tensor  # [B, *D] the z drawn (zeros where sigma == 0)
    x_prev: torch.Tensor  # [B, *D] output of the step: x_t of the next step
    eps_cond: torch.Tensor | None = None  # [B, *D] when guidance is on
    eps_uncond: torch.Tensor | None = None  # [B, *D] when guidance is on
    x0_pred_raw: torch.Tensor | None = None  # [B, *D] before clipping, when clipping is on
    # The network's raw output in its prediction space (x0 or v), when it does not predict eps:
    model_output: torch.Tensor | None = None  # [B, *D] after guidance and its rescale
    model_output_cond: torch.Tensor | None = None  # [B, *D] with guidance
    model_output_uncond: torch.Tensor | None = None  # [B, *D] with guidance
    model_output_cfg: torch.Tensor | None = None  # [B, *D] the guided output before the rescale, when rescaled
    # Sigma-space samplers (tracer/samplers/karras.py; x_t = x0 + sigma_t eps): None for the others.
    sigma_t: float | None = None  # the step's noise level sigma_i
    sigma_next: float | None = None  # the noise level it moves to, sigma_{i+1} (0: the clean end)
    t_model: float | None = None  # the (fractional) timestep the network was called with
    sigma_hat: float | None = None  # the churned noise level, when churn is on
    sigma_up: float | None = None  # Euler ancestral: std of the fresh noise (before S_noise)
    sigma_down: float | None = None  # Euler ancestral: the level the Euler move goes down to
    h: float | None = None  # DPM-Solver++(2M): log(sigma_t / sigma_next)
    r: float | None = None  # DPM-Solver++(2M): h_last / h, 0 where the step is first order
    x_hat: torch.Tensor | None = None  # [B, *D] x_t with churn noise added, when churn is on
    x_euler: torch.Tensor | None = None  # [B, *D] Heun: the Euler predictor's output
    eps_2: torch.Tensor | None = None  # [B, *D] Heun: the corrector's noise prediction
    x0_pred_2: torch.Tensor | None = None  # [B, *D] Heun: the corrector's predicted clean sample
    x0_pred_prev: torch.Tensor | None = None  # [B, *D] DPM-Solver++(2M): the previous step's x0_pred
    # Flow samplers (tracer/samplers/flow.py; x_t = (1 - t) x0 + t eps): None for the others. Heun's corrector is
    # x_euler, eps_2 and x0_pred_2 above; t_model is t_flow T.
    t_flow: float | None = None  # the step's flow time t_i (1: pure noise)
    t_flow_next: float | None = None  # the flow time it moves to, t_{i+1} (0: the clean end)
