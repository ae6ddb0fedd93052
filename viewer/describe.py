"""What a trace's config says about it: short human labels ('ddim · 50 steps · η=0 · s=3'), and whether noisescope made it.

The labels are plain strings from the file: show them through viewer.text.plain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def sampler_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler part of a trace config (``{"sampler": {...}}``), or {} when absent or not a mapping."""
    sampler = config.get("sampler")
    return dict(sampler) if isinstance(sampler, Mapping) else {}


def training_label(config: Mapping[str, Any]) -> str:
    """'digits · unet · 1500 steps' for a training trace's config; '' when it says nothing."""
    parts: list[str] = []
    data, model = config.get("data"), config.get("model")
    if isinstance(data, Mapping) and data.get("dataset"):
        parts.append(str(data["dataset"]))
    if isinstance(model, Mapping) and model.get("name"):
        parts.append(str(model["name"]))
    if isinstance(config.get("parameters"), int):
        parts.append(f"{config['parameters']:,} parameters")
    if isinstance(config.get("total_steps"), int):
        parts.append(f"{config['total_steps']} steps")
    return " · ".join(parts)


def trace_label(config: Mapping[str, Any], steps: int | None = None) -> str:
    """A one-line summary of how a trace was made; '' when the config says nothing about it."""
    s = sampler_settings(config)
    if not s:
        return training_label(config)
    parts: list[str] = []
    if s.get("sampler"):
        parts.append(str(s["sampler"]))
    count = s.get("steps") or steps
    if count:
        parts.append(f"{count} steps")
    if s.get("sampler") == "ddim" and s.get("eta") is not None:
        parts.append(f"η={s['eta']:g}" if isinstance(s["eta"], (int, float)) else f"η={s['eta']}")
    if s.get("guidance") is not None:
        parts.append(f"s={s['guidance']:g}" if isinstance(s["guidance"], (int, float)) else f"s={s['guidance']}")
    if isinstance(s.get("guidance_rescale"), (int, float)) and s["guidance_rescale"]:
        parts.append(f"φ={s['guidance_rescale']:g}")
    if s.get("prediction") in ("x0", "v"):
        parts.append(f"{s['prediction']}-prediction")
    if s.get("preset") not in (None, "none"):
        parts.append(str(s["preset"]))
    seed = config.get("seed")
    if seed is not None:
        parts.append(f"seed {seed}")
    return " · ".join(parts)


def short_label(name: str, config: Mapping[str, Any]) -> str:
    """The file name, with the settings when the config has them: 'ddim.h5 (ddim · 50 steps · η=0)'."""
    settings = trace_label(config)
    return f"{name} ({settings})" if settings else name


def distinguishing_labels(names: Sequence[str], configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per trace, only the settings that differ across the traces ('s=0', 's=3' for a guidance sweep); the name if none do."""
    parts = [trace_label(c).split(" · ") if trace_label(c) else [] for c in configs]
    common = set.intersection(*(set(p) for p in parts)) if parts else set()
    labels = []
    for name, own in zip(names, parts, strict=True):
        differing = [p for p in own if p not in common]
        labels.append(" · ".join(differing) if differing else name)
    return labels


CODE_PANEL_NOTE = (
    "This trace was not recorded by noisescope's samplers: the code shown is noisescope's reference implementation "
    "of each equation, not the code that made the trace."
)
TRAINING_CODE_PANEL_NOTE = (
    "This trace was not recorded by noisescope's training loop: the code shown is noisescope's reference implementation "
    "of each equation, not the code that made the trace."
)


def code_panel_note(config: Mapping[str, Any], kind: str = "sampling") -> str | None:
    """What the code panel must say for a trace made by someone else's loop or by hand; None for noisescope's own traces.

    A sampling trace is noisescope's own when its config holds noisescope's ``sampler`` settings
    (a mapping) and no ``integration`` (diffusers and other recorders write one); a training
    trace, when it holds noisescope's ``train`` settings and no ``integration``.
    """
    training = kind == "training"
    settings = config.get("train" if training else "sampler") if isinstance(config, Mapping) else None
    if isinstance(settings, Mapping) and "integration" not in config:
        return None
    return TRAINING_CODE_PANEL_NOTE if training else CODE_PANEL_NOTE
