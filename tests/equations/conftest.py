"""Fixtures of the equation tests: one torch thread (tiny models are many times faster so on 2 busy cores), and the tiny
random diffusers UNet2DModel the diffusers tracing tests sample with (built here, nothing downloaded)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tiny_unet import tiny_unet


@pytest.fixture(autouse=True)
def one_torch_thread(one_thread: None) -> None:
    """tests/conftest.py's one_thread, for every equation test."""


@pytest.fixture(scope="module")
def unet() -> Any:
    """A UNet2DModel with random weights for 1x8x8 samples (skips where diffusers is not installed)."""
    pytest.importorskip("diffusers")
    return tiny_unet()
