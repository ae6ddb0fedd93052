"""``noisescope sample``: sample from a checkpoint with any registered sampler and record its steps into a trace.

The flags of a sampler's options come from its ``Options`` (tracer/samplers/base.py): one
flag per field, its help text and default from the field. ``--sampler NAME --help`` lists
that sampler's options; an option the chosen sampler does not take is refused in one line.
``--record``, ``--every`` and ``--samples`` choose what the trace keeps (tracer/trace/choice.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from tracer.cli.common import (
    MAX_SEED,
    check_fits_memory,
    check_output,
    checkpoint_file,
    finite_float,
    float_in,
    int_in,
    nonempty_path,
    resolve_device,
    seed,
)
from tracer.config import ConfigError
from tracer.samplers import SAMPLERS
from tracer.samplers.base import SamplerModule, option_fields
from tracer.samplers.config import PRESET_NAMES, SamplerConfig
from tracer.samplers.prediction import PREDICTION_TYPES
from tracer.trace.choice import RECORDABLE, RecordChoice

EPILOG = """examples (runs/demo: the run directory 'noisescope demo' writes; report.pth: a state_dict the report published):
  noisescope sample --checkpoint runs/demo --sampler ddpm --out ddpm.h5
  noisescope sample --checkpoint runs/demo/model.safetensors --sampler ddim --steps 50 --eta 0 --out ddim.h5
  noisescope sample --checkpoint runs/demo --sampler ddim --guidance 3 --labels all --out cfg3.h5
  noisescope sample --checkpoint report.pth --preset seed-report --sampler ddim --steps 10 --out report.h5
  noisescope sample --checkpoint runs/demo --sampler ddpm --batch 64 --record x_t,x0_pred --every 10 --samples 0:16 \
      --dtype float16 --out small.h5
    (x_t, x0_pred and each kept step's output x_prev at steps 0, 10, ..., 990 and the last, for samples 0 to 15
     of the 64, in float16: about 1/130 of the full trace's size; docs/scaling.md gives the formula)
'noisescope sample --sampler NAME --help' lists the options of that sampler.
"""

MAX_BATCH = 10**9  # beyond any machine; check_fits_memory refuses far less against this machine's memory
MAX_NPROC = 4096  # argparse's bound; tracer.distributed.check_nproc refuses what this machine cannot run


def _from_noise() -> dict[str, SamplerModule]:
    """The samplers that run from x_T towards data (an ascending one, DDIM inversion, runs in noisescope invert)."""
    return {name: m for name, m in SAMPLERS.items() if getattr(m, "DIRECTION", "descending") == "descending"}


def _cli_fields(module: SamplerModule) -> list[dataclasses.Field[Any]]:
    return [f for f in option_fields(module) if f.metadata.get("cli", True)]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _arg_type(module: SamplerModule, field: dataclasses.Field[Any]) -> Any:
    """The argparse type of an option: its annotation's int, float or str (bool is a --x/--no-x pair)."""
    hint = typing.get_type_hints(module.Options)[field.name]
    kinds = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
    if bool in kinds:
        return bool
    if int in kinds:
        return int_in(-(2**62), 2**62)  # an integer; its range is the sampler's own check
    if float in kinds:
        return finite_float
    return str


def _sampler_options() -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Every sampler's option flags, once each (samplers may share a name, e.g. --clip)."""
    flags: dict[str, tuple[dataclasses.Field[Any], Any]] = {}
    for module in SAMPLERS.values():
        for field in _cli_fields(module):
            flags.setdefault(field.name, (field, _arg_type(module, field)))
    return flags


def options_help(module: SamplerModule) -> str:
    """The ``--help`` section of one sampler's options, with their defaults."""
    lines = [f"options of the {module.NAME} sampler ({module.TITLE}: {module.REFERENCE}):"]
    for field in _cli_fields(module):
        kind = _arg_type(module, field)
        flag = f"{_flag(field.name)}, --no-{field.name.replace('_', '-')}" if kind is bool else f"{_flag(field.name)} {field.name.upper()}"
        text = field.metadata.get("help", "")
        if "default" not in text:
            text += f" (default {field.default})"
        lines.append(f"  {flag:<28} {text}" if len(flag) < 28 else f"  {flag}\n  {'':<28} {text}")
    if module.PRESETS:
        for preset, fixed in module.PRESETS.items():
            lines.append(f"  --preset {preset} sets " + ", ".join(f"{_flag(k)} {v}" for k, v in fixed.items()))
    return "\n".join(lines)


class SamplerHelp(argparse.Action):
    """--help: the command's options, then those of the sampler named before it (or of every sampler)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option_string: str | None = None) -> None:
        chosen = getattr(namespace, "sampler", None)
        modules = [SAMPLERS[chosen]] if chosen in SAMPLERS else list(_from_noise().values())
        parser.print_help()
        print()
        print("\n\n".join(options_help(module) for module in modules))
        parser.exit()


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="sample from a checkpoint and record a trace",
        description="Sample with a registered sampler (" + ", ".join(f"{m.NAME}: {m.REFERENCE}" for m in _from_noise().values())
        + "), optionally with classifier-free guidance (Ho and Salimans 2022) and its rescale (Lin et al. 2023), and record "
        "x_t, the network output, eps, x0_pred, the noise drawn and every scalar of every step into an HDF5 trace "
        "(or only the tensors, steps and samples chosen with --record, --every and --samples).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    p.add_argument("-h", "--help", action=SamplerHelp, help="show this help (with --sampler NAME before it: that sampler's options) and exit")
    p.add_argument("--checkpoint", required=True, type=nonempty_path,
                   help="a run directory written by 'noisescope train' (or demo), its model.safetensors, or a report .pth")
    p.add_argument("--sampler", required=True, help="which sampler: " + ", ".join(_from_noise()) + " (DDIM inversion: noisescope invert)")
    for name, (field, kind) in _sampler_options().items():
        if kind is bool:
            p.add_argument(_flag(name), dest=name, action="store_true", default=None, help=argparse.SUPPRESS)
            p.add_argument("--no-" + name.replace("_", "-"), dest="no_" + name, action="store_true", help=argparse.SUPPRESS)
        else:
            p.add_argument(_flag(name), dest=name, type=kind, default=None, help=argparse.SUPPRESS)
    p.add_argument("--preset", default="none", help=f"{' or '.join(PRESET_NAMES)}; seed-report: the conventions of the report's program "
                   "(each sampler's preset fixes some of its options; see --sampler NAME --help and docs/training.md)")
    p.add_argument("--guidance", type=float_in(0), help="classifier-free guidance scale s >= 0 (1 = conditional, 0 = unconditional)")
    p.add_argument("--guidance-rescale", type=finite_float, default=0.0, metavar="PHI",
                   help="rescale the guided output toward the conditional one's std, PHI in [0, 1] (Lin et al. 2023; default 0: off)")
    p.add_argument("--prediction", help=f"what the checkpoint's network predicts ({', '.join(PREDICTION_TYPES)}); "
                   "given, it must be the checkpoint's (default: the checkpoint's)")
    p.add_argument("--labels", help="class labels: 'all' (cycle through every class) or a list like 0,1,2")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), help="number of samples (default: number of labels, else 16)")
    p.add_argument("--seed", type=seed, default=0, help=f"random seed for x_T and the noise of every step, 0..{MAX_SEED} (default 0)")
    p.add_argument("--record", metavar="NAMES",
                   help="the step tensors to record, separated by commas, e.g. x_t,x0_pred (default: every tensor the sampler "
                   f"yields). Names: {', '.join(RECORDABLE)}. x_t, every step scalar, the samples and the labels are always "
                   "recorded; the equations whose tensors are left out are listed by 'noisescope check' as not checked")
    p.add_argument("--every", metavar="K",
                   help="record every K-th step, and the last (default 1: every step). With K > 1 each recorded step also keeps "
                   "its output x_prev and its step index, so that its update is still checked on its own")
    p.add_argument("--samples", metavar="START:STOP",
                   help="record only these samples of the batch, Python's slice syntax (0:16, 8:, ::4) or one index (5); "
                   "a range that starts with a minus sign takes '=' (--samples=-16:); the whole batch is still sampled "
                   "(default: every sample)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                   help="tensor dtype in the trace (default float32; float16 halves the tensors' size, and check's tolerance "
                   "follows it)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto: cuda if available)")
    p.add_argument("--nproc", type=int_in(1, MAX_NPROC), default=1, metavar="N",
                   help="sample on N processes of this machine, started through torch's own launcher (torchrun --standalone): "
                   "at most the usable CPU cores (the GPUs with --device cuda); default 1: this process")
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
    """The sampler's config from the options given; the sampler's Options refuses one it does not take."""
    given = {name: getattr(args, name) for name in _sampler_options() if getattr(args, name, None) is not None}
    for name, (_, kind) in _sampler_options().items():
        if kind is bool and getattr(args, "no_" + name, False):
            if given.get(name):
                raise ConfigError(f"argument --no-{name.replace('_', '-')}: not allowed with argument {_flag(name)}")
            given[name] = False
    return SamplerConfig(args.sampler, guidance=args.guidance, guidance_rescale=args.guidance_rescale, preset=args.preset, **given)


def check_prediction_matches(asked: str | None, actual: str) -> None:
    """``--prediction``, when given, must be what the checkpoint's network predicts."""
    if asked is None:
        return
    if asked not in PREDICTION_TYPES:
        raise ConfigError(f"unknown --prediction {asked!r}; choose one of {', '.join(PREDICTION_TYPES)}")
    if asked != actual:
        raise ConfigError(f"--prediction {asked} does not match the checkpoint, whose network predicts {actual}")


def run(args: argparse.Namespace) -> int:
    from tracer import distributed

    choice = RecordChoice.from_cli(args.record, args.every, args.samples)  # what to record: bad input before anything else
    config = sampler_config(args)
    if config.sampler not in _from_noise():
        raise ConfigError(f"the {config.sampler} sampler runs from data towards noise, not from x_T: use noisescope invert")
    device = resolve_device(args.device)
    distributed.check_nproc(args.nproc, device)
    source = checkpoint_file(args.checkpoint)
    check_output(args.out, {"the checkpoint": source, "the checkpoint's run directory": source.parent if args.checkpoint.is_dir() else None})
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"{args.out} exists; pass --overwrite to replace it")

    import torch

    from tracer.checkpoints import load_checkpoint
    from tracer.models import null_label, num_classes, objective, prediction_type
    from tracer.recording import record_run
    from tracer.samplers.base import space
    from tracer.samplers.loop import check_objective, initial_noise
    from tracer.distributed import rank_and_world
    from tracer.sharding import check_world, record_sharded

    checkpoint = load_checkpoint(source, device=device)
    model, schedule = checkpoint.model, checkpoint.schedule
    check_objective(config.sampler, space(config.module), objective(model))  # a flow sampler takes a flow network, and only it
    config.resolve(schedule.T, schedule.alpha_bar)  # the options against this model's schedule, before anything is written
    check_prediction_matches(args.prediction, prediction_type(model))
    if args.batch is not None:
        check_fits_memory(args.batch, checkpoint.sample_shape)  # before 'all' labels are listed for every sample
    classes = num_classes(model)
    label_text = args.labels if args.labels is not None else ("all" if args.guidance is not None else None)
    labels_list = parse_labels(label_text, classes, args.batch)
    if args.guidance is not None and null_label(model) is None:
        raise ConfigError("--guidance needs a model trained with a null label (classifier-free guidance); this one has none")
    batch = len(labels_list) if labels_list is not None else (args.batch or 16)
    choice.check_batch(batch)  # --samples inside this batch, before anything is sampled
    _, world = rank_and_world()  # many processes (torchrun, --nproc): each samples a slice, rank 0 writes the trace
    check_world(batch, world if args.nproc == 1 else args.nproc)
    if args.nproc > 1:  # every check above passed here, nothing written: now the processes
        return distributed.launch(args.argv, args.nproc)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x_T = initial_noise((batch, *checkpoint.sample_shape), generator=generator, device=device)  # noqa: N806
    labels = None if labels_list is None else torch.tensor(labels_list, dtype=torch.int64, device=device)
    samples = (record_run if world == 1 else record_sharded)(
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
            "world_size": world,
        },
        progress=not args.quiet,
        choice=choice,
    )
    if samples is not None:  # rank 0 wrote the trace
        print(f"wrote {args.out}")
    return 0
