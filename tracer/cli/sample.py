"""``noisescope sample``: sample from a checkpoint with DDPM or DDIM and record every step into a trace."""

from __future__ import annotations

import argparse
from typing import Any

from tracer.cli.common import (
    MAX_SEED,
    check_fits_memory,
    check_output,
    checkpoint_file,
    float_in,
    int_in,
    nonempty_path,
    refuse_inapplicable,
    resolve_device,
    seed,
)
from tracer.config import MAX_TIMESTEPS, ConfigError, SamplerConfig

EPILOG = """examples (runs/demo: the run directory 'noisescope demo' writes; report.pth: a state_dict the report published):
  noisescope sample --checkpoint runs/demo --sampler ddpm --out ddpm.h5
  noisescope sample --checkpoint runs/demo/model.safetensors --sampler ddim --steps 50 --eta 0 --out ddim.h5
  noisescope sample --checkpoint runs/demo --sampler ddim --guidance 3 --labels all --out cfg3.h5
  noisescope sample --checkpoint report.pth --preset seed-report --sampler ddim --steps 10 --out report.h5
options for one sampler only: --steps, --eta, --spacing, --final-alpha-bar (ddim); --variance (ddpm)
"""

MAX_BATCH = 10**9  # beyond any machine; check_fits_memory refuses far less against this machine's memory


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="sample from a checkpoint and record a trace",
        description="Sample with DDPM (Ho et al. 2020, Alg. 2) or DDIM (Song et al. 2021, Eq. 12), optionally with "
        "classifier-free guidance (Ho and Salimans 2022), and record x_t, eps, x0_pred, the noise drawn and every "
        "scalar of every step into an HDF5 trace.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Options of one sampler default to None, so that giving one to the other sampler is refused (run()).
    p.add_argument("--checkpoint", required=True, type=nonempty_path,
                   help="a run directory written by 'noisescope train' (or demo), its model.safetensors, or a report .pth")
    p.add_argument("--sampler", required=True, help="ddpm or ddim")
    p.add_argument("--steps", type=int_in(1, MAX_TIMESTEPS), help="DDIM reverse steps, 1..T (default 50; not for DDPM, which runs all T)")
    p.add_argument("--eta", type=float_in(0, 1), help="DDIM noise level in [0, 1]: 0 deterministic, 1 DDPM-like (default 0)")
    p.add_argument("--spacing", help="DDIM timestep spacing: leading, trailing or linspace (default leading)")
    p.add_argument("--variance", help="DDPM variance: beta or beta_tilde (default beta_tilde)")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--clip", dest="clip", action="store_true", default=None, help="clip x0_pred to [-1, 1] (default for DDPM)")
    clip.add_argument("--no-clip", dest="clip", action="store_false", help="never clip x0_pred (default for DDIM)")
    p.add_argument("--final-alpha-bar", help="DDIM: alpha_bar_prev of the last step, one or alpha_bar_0 (default one)")
    p.add_argument("--preset", default="none", help="seed-report: the conventions of the report's program, which fix "
                   "--eta, --spacing, --final-alpha-bar and --variance (see docs)")
    p.add_argument("--guidance", type=float_in(0), help="classifier-free guidance scale s >= 0 (1 = conditional, 0 = unconditional)")
    p.add_argument("--labels", help="class labels: 'all' (cycle through every class) or a list like 0,1,2")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), help="number of samples (default: number of labels, else 16)")
    p.add_argument("--seed", type=seed, default=0, help=f"random seed for x_T and the noise of every step, 0..{MAX_SEED} (default 0)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="tensor dtype in the trace (default float32)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda if available)")
    p.add_argument("--out", required=True, type=nonempty_path, help="the trace file to write (.h5)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def parse_labels(text: str | None, num_classes: int, batch: int | None) -> list[int] | None:
    """'all' -> 0, 1, ..., K-1 repeated to fill the batch; '3,1' -> [3, 1] (tiled to the batch)."""
    if text is None:
        return None
    if num_classes == 0:
        raise ConfigError("--labels given but this model is unconditional (it has no classes)")
    if text.strip() == "all":
        size = batch or num_classes
        return [i % num_classes for i in range(size)]
    try:
        labels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--labels must be 'all' or integers separated by commas, got {text!r}") from None
    if not labels:
        raise ConfigError("--labels is empty")
    bad = [label for label in labels if not 0 <= label < num_classes]
    if bad:
        raise ConfigError(f"label {bad[0]} is outside this model's classes 0..{num_classes - 1}")
    size = batch or len(labels)
    return [labels[i % len(labels)] for i in range(size)]


def sampler_config(args: argparse.Namespace) -> SamplerConfig:
    """The sampler's config from the options given; an option the chosen sampler (or preset) does not use is refused."""
    if args.sampler in ("ddpm", "ddim"):
        other = "ddim" if args.sampler == "ddpm" else "ddpm"
        options = [dest for dest, sampler in SamplerConfig.ONLY_FOR.items() if sampler == other]
        refuse_inapplicable(args, options, f"to --sampler {args.sampler}; it is a {other} option (see --help)")
    if args.preset == "seed-report":
        refuse_inapplicable(args, SamplerConfig.PRESET_FIXED, "with --preset seed-report, which fixes it")
    given = {dest: getattr(args, dest) for dest in ("steps", "eta", "spacing", "variance", "final_alpha_bar") if getattr(args, dest) is not None}
    return SamplerConfig(sampler=args.sampler, clip=args.clip, guidance=args.guidance, preset=args.preset, **given)


def run(args: argparse.Namespace) -> int:
    config = sampler_config(args)
    device = resolve_device(args.device)
    source = checkpoint_file(args.checkpoint)
    check_output(args.out, {"the checkpoint": source, "the checkpoint's run directory": source.parent if args.checkpoint.is_dir() else None})
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} exists; pass --overwrite to replace it")

    import torch

    from tracer.checkpoints import load_checkpoint
    from tracer.models import num_classes, null_label
    from tracer.recording import record_run
    from tracer.samplers.run import initial_noise

    checkpoint = load_checkpoint(source, device=device)
    model, schedule = checkpoint.model, checkpoint.schedule
    config.steps_for(schedule.T)  # range check against this model's T before anything is written
    if args.batch is not None:
        check_fits_memory(args.batch, checkpoint.sample_shape)  # before 'all' labels are listed for every sample
    classes = num_classes(model)
    label_text = args.labels if args.labels is not None else ("all" if args.guidance is not None else None)
    labels_list = parse_labels(label_text, classes, args.batch)
    if args.guidance is not None and null_label(model) is None:
        raise ConfigError("--guidance needs a model trained with a null label (classifier-free guidance); this one has none")
    batch = len(labels_list) if labels_list is not None else (args.batch or 16)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x_T = initial_noise((batch, *checkpoint.sample_shape), generator=generator, device=device)  # noqa: N806
    labels = None if labels_list is None else torch.tensor(labels_list, dtype=torch.int64, device=device)
    record_run(
        model,
        schedule,
        config,
        x_T=x_T,
        labels=labels,
        generator=generator,
        out=args.out,
        tensor_dtype=args.dtype,
        overwrite=args.overwrite,
        extra_config={
            **checkpoint.provenance(args.checkpoint),
            "seed": args.seed,
            "batch": batch,
            "labels": labels_list,
            "device": device,
        },
        progress=not args.quiet,
    )
    print(f"wrote {args.out}")
    return 0
