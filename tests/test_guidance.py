"""Classifier-free guidance (Ho and Salimans 2022, Eq. 6): the scale's end points, linearity, one batched call per step."""

from __future__ import annotations

import pytest
import torch

from tracer.config import ConfigError
from tracer.models.analytic import GaussianOracle
from tracer.samplers import ddim, ddpm, predict
from tracer.schedules import Schedule


class CountingModel:
    """Wraps a model and records the batch size of every forward call."""

    def __init__(self, model: GaussianOracle) -> None:
        self.model = model
        self.batches: list[int] = []
        self.num_classes, self.null_label = model.num_classes, model.null_label

    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        self.batches.append(x.shape[0])
        return self.model(x, t, labels)


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 2, generator=g), torch.tensor([0, 1, 0, 1, 1, 0])


@pytest.mark.parametrize("t", [0, 10, 49])
def test_scale_one_is_conditional_and_zero_is_unconditional(class_oracle50: GaussianOracle, t: int) -> None:
    x, labels = _inputs()
    t_batch = torch.full((6,), t)
    cond = class_oracle50(x, t_batch, labels)
    uncond = class_oracle50(x, t_batch, torch.full_like(labels, 2))
    assert not torch.allclose(cond, uncond)  # the two predictions differ, so the checks below mean something
    one, zero = predict(class_oracle50, x, t, labels, 1.0), predict(class_oracle50, x, t, labels, 0.0)
    torch.testing.assert_close(one.output, cond)
    torch.testing.assert_close(zero.output, uncond)
    for p in (one, zero):
        assert p.cond is not None and p.uncond is not None
        torch.testing.assert_close(p.cond, cond)  # the batched call gives what two separate calls give
        torch.testing.assert_close(p.uncond, uncond)


def test_guided_eps_is_affine_in_the_scale(class_oracle50: GaussianOracle) -> None:
    x, labels = _inputs(1)
    eps = {s: predict(class_oracle50, x, 20, labels, s).output for s in (0.0, 1.0, 2.0, 5.0)}
    torch.testing.assert_close(eps[2.0] - eps[1.0], eps[1.0] - eps[0.0])
    torch.testing.assert_close(eps[5.0] - eps[0.0], 5 * (eps[1.0] - eps[0.0]), rtol=1e-5, atol=1e-5)


def test_no_guidance_calls_the_model_once_with_the_labels(class_oracle50: GaussianOracle) -> None:
    x, labels = _inputs()
    counting = CountingModel(class_oracle50)
    p = predict(counting, x, 7, labels, None)
    assert counting.batches == [6] and p.cond is None and p.uncond is None
    torch.testing.assert_close(p.output, class_oracle50(x, torch.full((6,), 7), labels))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
@pytest.mark.parametrize("guidance", [None, 3.0])
def test_one_forward_call_per_step(class_oracle50: GaussianOracle, schedule50: Schedule, sampler: str, guidance: float | None) -> None:
    x_T, labels = _inputs()  # noqa: N806
    counting = CountingModel(class_oracle50)
    if sampler == "ddpm":
        records = list(ddpm.sample(counting, schedule50, x_T, labels=labels, guidance=guidance, generator=torch.Generator().manual_seed(0)))
    else:
        records = list(ddim.sample(counting, schedule50, x_T, steps=10, labels=labels, guidance=guidance))
    assert counting.batches == [6 if guidance is None else 12] * len(records)
    assert all((r.eps_cond is None) == (guidance is None) for r in records)


def test_guided_ddim_at_scale_one_matches_conditional_ddim(class_oracle50: GaussianOracle, schedule50: Schedule) -> None:
    x_T, labels = _inputs()  # noqa: N806
    x_T = x_T.double()  # noqa: N806
    guided = list(ddim.sample(class_oracle50, schedule50, x_T, steps=10, labels=labels, guidance=1.0))
    plain = list(ddim.sample(class_oracle50, schedule50, x_T, steps=10, labels=labels))
    torch.testing.assert_close(guided[-1].x_prev, plain[-1].x_prev, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("guidance", [-0.5, float("nan"), float("inf")])
def test_bad_scale_raises(class_oracle50: GaussianOracle, schedule50: Schedule, guidance: float) -> None:
    x_T, labels = _inputs()  # noqa: N806
    with pytest.raises(ConfigError, match="guidance"):
        ddim.sample(class_oracle50, schedule50, x_T, steps=5, labels=labels, guidance=guidance)
    with pytest.raises(ConfigError, match="guidance"):
        predict(class_oracle50, x_T, 3, labels, guidance)


def test_guidance_needs_a_null_label_and_labels(oracle50: GaussianOracle, class_oracle50: GaussianOracle, schedule50: Schedule) -> None:
    x_T, labels = _inputs()  # noqa: N806
    assert oracle50.null_label is None
    with pytest.raises(ConfigError, match="null label"):
        ddpm.sample(oracle50, schedule50, x_T, labels=labels, guidance=3.0)
    with pytest.raises(ConfigError, match="labels"):
        ddim.sample(class_oracle50, schedule50, x_T, steps=5, labels=None, guidance=3.0)
