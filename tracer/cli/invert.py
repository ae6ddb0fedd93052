"""``noisescope invert``: DDIM inversion of one input (Song et al. 2021, Sec. 4.3), recorded both ways.

The input (an image file, a sample of a trace, or an item of the checkpoint's data set) is run
with the ``ddim-inversion`` sampler from t = 0 up to the largest DDIM timestep, every step
recorded into ``--out``; then DDIM with eta 0 samples back from the x_T it found over the same
timesteps into ``--out-resample``. Each trace's config names the other (``linked``), and the
round-trip error (resample - input) is printed. docs/inversion.md has the conventions.

Every input is checked before any work: the input's shape and channels against the model's,
the outputs against the inputs and each other, ``--sample`` and ``--index`` against what exists.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tracer.cli.common import (
    MAX_SEED,
    check_output,
    checkpoint_file,
    int_in,
    nonempty_path,
    nonnegative_int,
    refuse_inapplicable,
    resolve_device,
    seed,
)
from tracer.config import ConfigError
from tracer.samplers import ddim_inversion
from tracer.samplers.config import SamplerConfig

EPILOG = """examples (runs/digits: the run directory 'noisescope train --dataset digits --out runs/digits' writes):
  noisescope invert --checkpoint runs/digits --index 0 --out inv.h5
  noisescope invert --checkpoint runs/digits --from-trace ddim.h5 --sample 3 --steps 100 --out inv.h5
  noisescope invert --checkpoint runs/digits --image digit.png --spacing trailing --out inv.h5 --out-resample back.h5
then 'noisescope check inv.h5', and 'noisescope view .' (Compare: inv.h5 with inv.resample.h5) for the round trip.
"""

INPUTS = ("image", "from_trace", "index")
EIGHT_BIT = 255.0
SIXTEEN_BIT = 65535.0


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "invert",
        help="DDIM inversion: data to x_T and back, both ways recorded",
        description=f"Invert one input with DDIM at eta 0 ({ddim_inversion.REFERENCE}): from the data at t = 0 up through "
        "DDIM's timesteps to the largest, recording every step (checked like any other by 'noisescope check'); then sample "
        "back from the x_T it found with DDIM (eta 0) over the same timesteps. The two traces name each other, and the "
        "viewer's Compare shows the round trip and its error per step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, type=nonempty_path,
                   help="a run directory written by 'noisescope train' (or demo), its model.safetensors, or a report .pth")
    p.add_argument("--image", type=nonempty_path, help="an image file (PNG, or any PIL reads) with the model's channel count; "
                   "resized to the model's height and width and scaled to [-1, 1]")
    p.add_argument("--from-trace", type=nonempty_path, metavar="TRACE", help="a sampling trace whose samples to invert (see --sample)")
    p.add_argument("--sample", type=nonnegative_int, help="which sample of --from-trace (default 0)")
    p.add_argument("--index", type=nonnegative_int, help="an item of the data set the checkpoint was trained on (its config names it)")
    p.add_argument("--steps", type=int_in(1, 10**9), help="DDIM's steps whose timesteps the inversion climbs through (default 50, or T)")
    p.add_argument("--spacing", default="leading", help="which timesteps: leading, trailing or linspace (default leading)")
    p.add_argument("--labels", help="the class label for a class-conditional model (default: the input's own, where it has one)")
    p.add_argument("--seed", type=seed, default=0, help=f"random seed, 0..{MAX_SEED} (recorded; both ways are deterministic)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="tensor dtype in the traces (default float32)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda if available)")
    p.add_argument("--out", required=True, type=nonempty_path, help="the inversion trace to write (.h5)")
    p.add_argument("--out-resample", type=nonempty_path, help="the re-sampling trace to write (default: OUT's stem + .resample.h5)")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs if they exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


# -- the inputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    """One input, read and checked: x0 [*D] float32 in the model's data scale, its label (-1: none), and what it was."""

    x0: np.ndarray
    label: int
    described: dict[str, Any]


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


def chosen_input(args: argparse.Namespace) -> str:
    """The one input option given; refuses none and more than one."""
    given = [name for name in INPUTS if getattr(args, name) is not None]
    flags = ", ".join("--" + name.replace("_", "-") for name in INPUTS)
    if not given:
        raise ConfigError(f"give one input to invert: {flags}")
    if len(given) > 1:
        raise ConfigError(f"give one input to invert, not {' and '.join('--' + n.replace('_', '-') for n in given)}")
    if given[0] != "from_trace":
        refuse_inapplicable(args, ["sample"], "without --from-trace")
    return given[0]


def read_image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The image at ``path`` as [C, H, W] float32 in [-1, 1]: its channels must be the model's, its size is resized (bilinear)."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3:
        raise ConfigError(f"this model's samples have shape {_shape(shape)}, not channels x height x width: --image applies to "
                          "image models; use --from-trace or --index")
    channels, height, width = shape
    if not path.is_file():
        raise ConfigError(f"--image {path}: no such file")
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened.convert("RGBA" if "transparency" in opened.info else "RGB") if opened.mode == "P" else opened.copy()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ConfigError(f"--image {path} cannot be read as an image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    if image.mode == "1":
        image = image.convert("L")
    bands = image.getbands()
    if len(bands) != channels:
        raise ConfigError(f"--image {path} has {len(bands)} channel{'s' if len(bands) != 1 else ''} ({image.mode}); this model takes "
                          f"{channels} ({_shape(shape)})")
    if image.mode.startswith("I;16"):
        top = SIXTEEN_BIT
    elif image.mode in ("I", "F"):
        raise ConfigError(f"--image {path} has {image.mode} pixels (32-bit), whose range is unknown; give an 8- or 16-bit image")
    else:
        top = EIGHT_BIT
    pixels = np.asarray(image, dtype=np.float32).reshape(image.height, image.width, len(bands))
    planes = []
    for c in range(len(bands)):
        plane = Image.fromarray(np.ascontiguousarray(pixels[:, :, c]), mode="F")
        if plane.size != (width, height):
            plane = plane.resize((width, height), Image.Resampling.BILINEAR)
        planes.append(np.asarray(plane, dtype=np.float32))
    scaled = np.stack(planes) / top * 2.0 - 1.0  # 0..top -> [-1, 1], as tracer/data.py scales its images
    return np.clip(scaled, -1.0, 1.0).astype(np.float32)


def read_trace_sample(path: Path, k: int, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    """Sample ``k`` of the trace's ``samples`` and its label, checked against the model's sample shape."""
    from tracer.trace.reader import open_trace
    from tracer.trace.schema import LABELS, SAMPLES

    with open_trace(path) as trace:
        if trace.kind != "sampling":
            raise ConfigError(f"--from-trace {path} is a {trace.kind} trace; give a sampling trace, whose samples are inverted")
        samples = trace.final(SAMPLES)
        if samples is None:
            raise ConfigError(f"--from-trace {path} has no samples: its run did not finish")
        labels = trace.final(LABELS)
    if samples.ndim < 2 or samples.shape[0] == 0:
        raise ConfigError(f"--from-trace {path} holds no samples")
    if tuple(samples.shape[1:]) != tuple(shape):
        raise ConfigError(f"the samples of --from-trace {path} have shape {_shape(samples.shape[1:])}; this model takes {_shape(shape)}")
    if k >= samples.shape[0]:
        count = samples.shape[0]
        raise ConfigError(f"--sample {k} is out of range: {path} holds {count} sample{'s' if count != 1 else ''} (0..{count - 1})")
    label = int(labels[k]) if labels is not None and labels.ndim == 1 and k < labels.shape[0] else -1
    return np.asarray(samples[k], dtype=np.float32), label


def read_data_item(checkpoint: Any, k: int, shape: tuple[int, ...]) -> tuple[np.ndarray, int, str]:
    """Item ``k`` of the data set the checkpoint's config names (the whole set, before any held-out split), and its label."""
    from tracer.data import load_dataset

    data = checkpoint.extra.get("data") if isinstance(checkpoint.extra, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("dataset"), str):
        raise ConfigError("--index: this checkpoint does not name the data set it was trained on; use --image or --from-trace")
    spec = str(data["dataset"])
    size = data.get("size") if isinstance(data.get("size"), int) else None
    dataset = load_dataset(spec, seed=int(data.get("seed", 0) or 0), size=size)
    if k >= len(dataset):
        raise ConfigError(f"--index {k} is out of range: the data set {spec} has {len(dataset)} items (0..{len(dataset) - 1})")
    if dataset.shape != tuple(shape):
        raise ConfigError(f"the data set {spec} has items of shape {_shape(dataset.shape)}; this model takes {_shape(shape)}")
    return dataset.x[k].numpy().astype(np.float32), int(dataset.labels[k]), spec


def read_input(args: argparse.Namespace, which: str, checkpoint: Any) -> Input:
    shape = tuple(checkpoint.sample_shape)
    if which == "image":
        return Input(read_image(args.image, shape), -1, {"kind": "image", "file": str(args.image)})
    if which == "from_trace":
        k = args.sample or 0
        x0, label = read_trace_sample(args.from_trace, k, shape)
        return Input(x0, label, {"kind": "trace", "file": str(args.from_trace), "sample": k})
    x0, label, spec = read_data_item(checkpoint, args.index, shape)
    return Input(x0, label, {"kind": "dataset", "dataset": spec, "index": args.index})


def label_for(text: str | None, classes: int, own: int) -> int | None:
    """The label to condition on: ``--labels`` (one class), else the input's own for a class-conditional model, else none."""
    if text is None:
        return own if classes and 0 <= own < classes else None
    if classes == 0:
        raise ConfigError("--labels given but this model is unconditional (it has no classes)")
    try:
        label = int(text.strip())
    except ValueError:
        raise ConfigError(f"--labels takes one class for the one input, got {text!r}") from None
    if not 0 <= label < classes:
        raise ConfigError(f"label {label} is outside this model's classes 0..{classes - 1}")
    return label


def run(args: argparse.Namespace) -> int:
    which = chosen_input(args)
    config = SamplerConfig(ddim_inversion.NAME, steps=args.steps, spacing=args.spacing)
    device = resolve_device(args.device)
    source = checkpoint_file(args.checkpoint)
    from tracer.inversion import default_resample_path

    back = args.out_resample if args.out_resample is not None else default_resample_path(args.out)
    inputs = {
        "the checkpoint": source,
        "the checkpoint's run directory": source.parent if args.checkpoint.is_dir() else None,
        "the --image input": args.image,
        "the --from-trace input": args.from_trace,
    }
    check_output(args.out, inputs)
    check_output(back, {**inputs, "--out": args.out}, option="--out-resample")
    for path in (args.out, back):
        if path.exists() and not args.overwrite:
            raise ConfigError(f"{path} exists; pass --overwrite to replace it")

    import torch

    from tracer.checkpoints import load_checkpoint
    from tracer.inversion import check_round_trip, record_round_trip
    from tracer.models import num_classes

    checkpoint = load_checkpoint(source, device=device)
    model, schedule = checkpoint.model, checkpoint.schedule
    check_round_trip(model, schedule, config)  # both ways' options against this model's T
    given = read_input(args, which, checkpoint)
    label = label_for(args.labels, num_classes(model), given.label)
    x0 = torch.from_numpy(given.x0).unsqueeze(0).to(device)
    labels = None if label is None else torch.tensor([label], dtype=torch.int64, device=device)
    torch.manual_seed(args.seed)
    result = record_round_trip(
        model, schedule, config, x0=x0, labels=labels, out=args.out, out_resample=back, tensor_dtype=args.dtype,
        overwrite=args.overwrite, progress=not args.quiet,
        extra_config={**checkpoint.provenance(args.checkpoint), "input": given.described, "seed": args.seed, "batch": 1,
                      "labels": None if label is None else [label], "device": device},
    )
    print(f"wrote {args.out} (inversion: {result.steps} steps, t = 0 up to {result.t_end})")
    print(f"wrote {back} (DDIM, eta 0: {result.steps} steps back from t = {result.t_end} to 0)")
    print(f"round trip, resample - input: max |error| {result.max_error:.4g}, RMS {result.rms_error:.4g}")
    return 0
