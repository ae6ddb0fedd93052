"""The reference implementations the sigma-space samplers are compared with: k-diffusion's sampling module, loaded
without its package __init__ (which imports clip, kornia, wandb, torchvision...).

k-diffusion 0.1.1.post1 is installed without its dependencies (Makefile, after the test extra, which brings
torchsde and torchdiffeq, the two that k_diffusion/sampling.py imports). ``sampling.py`` and ``external.py`` are
the real files; their ``from . import utils`` is given a stand-in holding the one function they call,
``append_dims``, because the real utils module imports torchvision.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

import torch


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """k_diffusion.utils.append_dims: x with singleton dimensions appended up to ``target_dims``."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def load_k_diffusion() -> tuple[Any, Any] | None:
    """(k_diffusion.sampling, k_diffusion.external), or None where k-diffusion or what sampling.py imports is missing."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or spec.origin is None:
        return None
    if importlib.util.find_spec("torchsde") is None or importlib.util.find_spec("torchdiffeq") is None:
        return None
    folder = Path(spec.origin).parent
    saved = {name: sys.modules.get(name) for name in ("k_diffusion", "k_diffusion.utils", "k_diffusion.sampling", "k_diffusion.external")}
    package = types.ModuleType("k_diffusion")
    package.__path__ = [str(folder)]
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = _append_dims  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils})
    try:
        loaded = []
        for name in ("sampling", "external"):
            module_spec = importlib.util.spec_from_file_location(f"k_diffusion.{name}", folder / f"{name}.py")
            assert module_spec is not None and module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[f"k_diffusion.{name}"] = module
            setattr(package, name, module)
            module_spec.loader.exec_module(module)
            loaded.append(module)
        return loaded[0], loaded[1]
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
