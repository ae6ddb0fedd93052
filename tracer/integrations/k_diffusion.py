"""Tracing k-diffusion: ``sample_euler``, ``sample_heun``, ``sample_euler_ancestral`` and ``sample_dpmpp_2m`` runs recorded
into noisescope traces in the names of the matching family (tracer/samplers/euler.py, heun.py, euler_ancestral.py,
dpmpp_2m.py; Karras et al. 2022, Alg. 1 and 2, and Lu et al. 2022, Alg. 2), so ``noisescope check`` verifies every
step of k-diffusion's own run with the same equations::

    recorder = KDiffusionRecorder("euler.h5", "euler", sigmas)
    with recorder:
        x = sample_euler(recorder.wrap(denoiser), x_T * sigmas[0], sigmas, callback=recorder.callback)
        recorder.result(x)

What is recorded comes from k-diffusion's run, not from a computation of ours: the sampler's callback gives, at
every step, the state x_i the step starts from, sigma_i and the denoised D(x_i; sigma_i) (x0_pred); the state the
step ends at is the next callback's x (the last step's, the sampler's result, handed to ``result``). The wrapper
``wrap`` puts around the denoiser sees every evaluation (Heun's corrector at x_euler and sigma_{i+1} among them)
and, inside a k-diffusion discrete-schedule denoiser (``DiscreteEpsDDPMDenoiser``, ``DiscreteVDDPMDenoiser`` and
their CompVis and OpenAI subclasses), the network's own timestep t(sigma) and output (eps, or v). Euler
ancestral's noise comes through ``noise_sampler(x)``, passed as the sampler's ``noise_sampler``. The levels' own
quantities (h and r of DPM-Solver++(2M), sigma_up and sigma_down of the ancestral step, t and t_prev, alpha_bar)
follow from the sigmas and the options given here, as they do in k-diffusion.

Not recorded, refused with one line: churn (``s_churn`` above 0: k-diffusion draws its noise inside the sampler,
where no hook reaches it), a denoiser that rounds its timestep (``quantize=True``), and a denoiser that is not a
k-diffusion discrete-schedule wrapper (its timestep and output are out of reach). Every step is written as soon
as the next begins, so a crash keeps the steps before it; the trace is complete when ``with`` exits normally.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import numpy as np
import torch

from tracer.samplers import SamplerConfig, karras
from tracer.samplers.dpmpp_2m import step_sizes
from tracer.samplers.euler_ancestral import ancestral_sigmas
from tracer.samplers.records import StepRecord
from tracer.schedules import Schedule
from tracer.trace import schema
from tracer.trace.sampling import SamplingRecorder

SAMPLERS: Final = {"euler": "sample_euler", "heun": "sample_heun", "euler_ancestral": "sample_euler_ancestral",
                   "dpmpp_2m": "sample_dpmpp_2m"}  # noisescope's family: k-diffusion's function


@dataclass
class _Call:
    """One evaluation of the denoiser: its input x at sigma, D(x; sigma), and the network's timestep and output."""

    x: torch.Tensor
    sigma: float
    denoised: torch.Tensor
    t_model: float | None
    output: torch.Tensor | None


def _scalar(value: Any, what: str) -> float:
    """One float from a k-diffusion sigma or timestep (a 0-d tensor, or a batch of equal values)."""
    flat = torch.as_tensor(value).detach().flatten().double()
    if flat.numel() == 0 or not bool((flat == flat[0]).all()):
        raise ValueError(f"{what} differs across the batch: a k-diffusion sampler evaluates every sample at one level")
    return float(flat[0])


def _prediction(denoiser: Any) -> str:
    names = {cls.__name__ for cls in type(denoiser).__mro__}
    if "DiscreteEpsDDPMDenoiser" in names:
        return "eps"
    if "DiscreteVDDPMDenoiser" in names:
        return "v"
    raise ValueError(f"{type(denoiser).__name__} is not a k-diffusion discrete-schedule denoiser (DiscreteEpsDDPMDenoiser, "
                     "DiscreteVDDPMDenoiser or a subclass): its network's timestep and output cannot be recorded")


def schedule_of(denoiser: Any) -> Schedule:
    """The denoiser's training schedule: alpha_bar = 1 / (1 + sigma^2) of its discrete sigmas (float64)."""
    sigmas = denoiser.sigmas.detach().cpu().double().numpy()
    alpha_bar = 1.0 / (1.0 + sigmas**2)
    alpha = np.concatenate([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
    return Schedule(name="k-diffusion", beta=1.0 - alpha, alpha=alpha, alpha_bar=alpha_bar)


class KDiffusionRecorder:
    """Records one k-diffusion sampler run into a trace at ``path`` (see the module's doc).

    ``sampler``: euler, heun, euler_ancestral or dpmpp_2m (the k-diffusion function is ``SAMPLERS[sampler]``);
    ``sigmas``: the levels handed to the sampler (decreasing, ending at 0); ``eta`` and ``s_noise``: those given to
    ``sample_euler_ancestral``. ``overwrite``, ``tensor_dtype`` and ``config`` as for ``TracedScheduler``.
    """

    def __init__(self, path: str | os.PathLike[str], sampler: str, sigmas: Sequence[float] | torch.Tensor, *, eta: float = 1.0,
                 s_noise: float = 1.0, overwrite: bool = False, tensor_dtype: str = "float32",
                 config: Mapping[str, Any] | None = None) -> None:
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        levels = [float(s) for s in (sigmas.detach().cpu().double().tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
        if len(levels) < 2 or levels[-1] != 0.0 or any(not b < a for a, b in zip(levels, levels[1:])) or levels[-2] <= 0:
            raise ValueError("sigmas must decrease strictly and end at 0, as k-diffusion's get_sigmas_* give them")
        if sampler == "euler_ancestral" and not (0.0 <= eta <= 1.0 and s_noise > 0):
            raise ValueError(f"eta must be in [0, 1] and s_noise above 0, got eta={eta}, s_noise={s_noise}")
        if tensor_dtype not in schema.TENSOR_DTYPES:
            raise ValueError(f"unknown tensor dtype {tensor_dtype!r}; choose float32 or float16")
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        self.path, self.sampler, self.levels, self.eta, self.s_noise = path, sampler, levels, float(eta), float(s_noise)
        self.overwrite, self.tensor_dtype, self.extra_config = overwrite, tensor_dtype, dict(config or {})
        self.calls: list[_Call] = []
        self.noise: list[torch.Tensor] = []
        self.current: tuple[int, torch.Tensor, _Call] | None = None  # the step whose end state is not known yet
        self.denoiser: Any = None
        self.prediction = "eps"
        self.recorder: SamplingRecorder | None = None
        self.plan: list[tuple[int, int]] = []
        self.previous_x0: torch.Tensor | None = None
        self.done = False

    # -- what the user hands to k-diffusion -------------------------------------------------------------------
    def wrap(self, denoiser: Any) -> Callable[..., torch.Tensor]:
        """The denoiser, recorded: pass the result to the sampler as its model."""
        if self.denoiser is not None:
            raise RuntimeError("wrap() is called once per recorder: one run, one denoiser")
        self.prediction = _prediction(denoiser)
        if getattr(denoiser, "quantize", False):
            raise ValueError("the denoiser rounds its timestep (quantize=True): construct it with quantize=False to record it")
        self.denoiser = denoiser
        name = "get_eps" if self.prediction == "eps" else "get_v"
        inner = getattr(denoiser, name)
        seen: list[tuple[float, torch.Tensor]] = []

        def network(x_in: torch.Tensor, t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            output = inner(x_in, t, *args, **kwargs)
            seen.append((_scalar(t, "the network's timestep"), output.detach()))
            return output  # type: ignore[no-any-return]

        setattr(denoiser, name, network)  # on the instance: the class's method is untouched

        def recorded(x: torch.Tensor, sigma: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            seen.clear()
            denoised = denoiser(x, sigma, *args, **kwargs)
            if len(seen) != 1:
                raise ValueError(f"the network ran {len(seen)} times in one denoiser call: one evaluation a call is recorded")
            t_model, output = seen[0]
            self.calls.append(_Call(x.detach().clone(), _scalar(sigma, "sigma"), denoised.detach().clone(), t_model, output.clone()))
            return denoised  # type: ignore[no-any-return]

        return recorded

    def noise_sampler(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Callable[[Any, Any], torch.Tensor]:
        """k-diffusion's default noise sampler (a standard normal like x), recorded: pass it as ``noise_sampler``."""

        def draw(sigma: Any, sigma_next: Any) -> torch.Tensor:
            z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            self.noise.append(z.clone())
            return z

        return draw

    def callback(self, info: Mapping[str, Any]) -> None:
        """k-diffusion's ``callback``: a step begins (the one before it ends at this x)."""
        i, x = int(info["i"]), info["x"].detach().clone()
        if _scalar(info["sigma_hat"], "sigma_hat") != _scalar(info["sigma"], "sigma"):
            raise ValueError("churn (s_churn above 0) is not recorded: k-diffusion draws its noise where no hook reaches it")
        if self.denoiser is None:
            raise RuntimeError("pass recorder.wrap(denoiser) to the sampler as its model")
        if not self.calls or not torch.equal(self.calls[-1].x, x):
            raise RuntimeError("the callback's x is not the denoiser's last input: run the sampler on recorder.wrap(denoiser)")
        if i != (self.current[0] + 1 if self.current is not None else 0):
            raise RuntimeError(f"step {i} came out of order")
        first = self.calls.pop()
        if self.current is not None:
            self._write(x)
        self.current = (i, x, first)

    def result(self, x: torch.Tensor) -> None:
        """The sampler's output: the last step's end state."""
        if self.current is None:
            raise RuntimeError("no step was recorded: call result() with the output of a sampler run on recorder.wrap(denoiser)")
        self._write(x.detach().clone())
        self.current = None
        self.done = True

    # -- the trace ------------------------------------------------------------------------------------------------
    def _begin(self) -> None:
        schedule = schedule_of(self.denoiser)
        options: dict[str, Any] = {"sigmas": tuple(self.levels), "start": "sigma"}
        if self.sampler == "euler_ancestral":
            options.update(eta=self.eta, s_noise=self.s_noise)
        config = SamplerConfig(self.sampler, **options)
        resolved = config.resolve(schedule.T, schedule.alpha_bar)
        self.plan = config.module.plan(resolved, schedule.T)
        trace_config = {"sampler": config.resolved(schedule.T, self.prediction, schedule.alpha_bar),
                        "source": {"library": "k-diffusion", "function": SAMPLERS[self.sampler]}, **self.extra_config}
        self.recorder = SamplingRecorder(self.path, schedule=schedule, config=trace_config, planned=len(self.levels) - 1,
                                         tensor_dtype=self.tensor_dtype, overwrite=self.overwrite)

    def _write(self, x_next: torch.Tensor) -> None:
        assert self.current is not None
        i, x, first = self.current
        if self.recorder is None:
            self._begin()
        assert self.recorder is not None
        if i >= len(self.plan):
            raise ValueError(f"the run has more steps than the {len(self.plan)} its sigmas give")
        sigma, sigma_next = self.levels[i], self.levels[i + 1]
        if abs(first.sigma - sigma) > 1e-6 * sigma:
            raise ValueError(f"step {i} evaluated the denoiser at sigma {first.sigma:.6g}, not at the level {sigma:.6g} given here")
        eps = (x - first.denoised) / sigma  # k-diffusion's to_d: the eps the step used
        fields: dict[str, Any] = {}
        noise, added = torch.zeros_like(x), 0.0
        corrector = self.calls
        if self.sampler == "heun":
            if sigma_next > 0:
                if len(corrector) != 1:
                    raise ValueError(f"Heun's step {i} evaluated the denoiser {len(corrector) + 1} times, not twice")
                second = corrector[0]
                eps_2 = second.output if self.prediction == "eps" and second.output is not None else (second.x - second.denoised) / sigma_next
                fields.update(x_euler=second.x, eps_2=eps_2, x0_pred_2=second.denoised)
            else:  # Euler's step onto 0: no corrector (the two are zeros, as noisescope's Heun records them)
                fields.update(x_euler=x + (sigma_next - sigma) * eps, eps_2=torch.zeros_like(x), x0_pred_2=torch.zeros_like(x))
        elif corrector:
            raise ValueError(f"step {i} evaluated the denoiser {len(corrector) + 1} times; {SAMPLERS[self.sampler]} evaluates it once")
        if self.sampler == "euler_ancestral":
            sigma_down, sigma_up = ancestral_sigmas(sigma, sigma_next, self.eta)
            fields.update(sigma_up=sigma_up, sigma_down=sigma_down)
            if sigma_next > 0:
                if not self.noise:
                    raise ValueError("Euler ancestral's noise is not recorded: pass noise_sampler=recorder.noise_sampler(x) to the sampler")
                noise, added = self.noise.pop(0), self.s_noise * sigma_up
        if self.sampler == "dpmpp_2m":
            h, r = step_sizes(sigma, sigma_next, self.levels[i - 1] if i else None)
            fields.update(h=h, r=r, x0_pred_prev=self.previous_x0 if self.previous_x0 is not None else torch.zeros_like(x))
        self.calls = []
        t, t_prev = self.plan[i]
        alpha_bar_t, alpha_bar_prev = karras.alpha_bar_of_sigma(sigma), karras.alpha_bar_of_sigma(sigma_next)
        record = StepRecord(
            index=i, t=t, t_prev=t_prev, alpha_bar_t=alpha_bar_t, alpha_bar_prev=alpha_bar_prev,
            alpha_t=alpha_bar_t / alpha_bar_prev, beta_t=1.0 - alpha_bar_t / alpha_bar_prev, sigma=added,
            x_t=x, eps=first.output if self.prediction == "eps" and first.output is not None else eps, x0_pred=first.denoised,
            noise=noise, x_prev=x_next, model_output=first.output if self.prediction != "eps" else None,
            sigma_t=sigma, sigma_next=sigma_next, t_model=first.t_model, **fields,
        )
        self.previous_x0 = first.denoised
        self.recorder.append(record)

    def close(self, status: schema.Status = "complete") -> None:
        """Finish the trace (complete only after ``result``); restore the denoiser. Nothing is written if no step ran."""
        if self.denoiser is not None:
            for name in ("get_eps", "get_v"):
                self.denoiser.__dict__.pop(name, None)
        if status == "complete" and not self.done and self.recorder is not None:
            status = "failed"  # the run's end state never came: the last step cannot be written
        if self.recorder is not None:
            self.recorder.close(status)

    def __enter__(self) -> KDiffusionRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("failed" if exc_type is not None else "complete")

