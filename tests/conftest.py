"""Shared fixtures: a short linear schedule and exact Gaussian noise predictors (tracer/models/analytic.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tracer.models.analytic import GaussianOracle
from tracer.schedules import Schedule, make_schedule


@pytest.fixture
def schedule50() -> Schedule:
    """Linear schedule over T = 50 steps (Ho et al. 2020 range scaled by 1000/T)."""
    return make_schedule("linear", 50)


@pytest.fixture
def oracle50(schedule50: Schedule) -> GaussianOracle:
    """Unconditional 2-D oracle: data N((0.5, -0.3), 0.4^2 I)."""
    return GaussianOracle(schedule50, torch.tensor([0.5, -0.3]), 0.4)


@pytest.fixture
def class_oracle50(schedule50: Schedule) -> GaussianOracle:
    """Class-conditional 2-D oracle, K = 2 (null label 2): data N(mu_y, 0.2^2 I)."""
    return GaussianOracle(schedule50, torch.tensor([[0.6, 0.4], [-0.5, -0.2]]), 0.2, per_class=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tensors in these tests are small: intra-op threads only add contention on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training, sampling, starting processes or a server fails the test: bad input must be refused before any of them."""

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("work started before the input was checked")

    monkeypatch.setattr("tracer.training.train", boom)
    monkeypatch.setattr("tracer.recording.record_run", boom)
    monkeypatch.setattr("tracer.distributed.launch", boom)
    monkeypatch.setattr("tracer.cli.view.subprocess.Popen", boom)
