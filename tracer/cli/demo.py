"""``noisescope demo``: the whole story on a laptop: train, sample with every sampler, open the viewer.

Trains the default model on scikit-learn's digits (or a 2-D toy set), then
samples from ONE shared x_T with labels covering every class: DDPM over all T
steps, DDIM with 50 steps at eta 0 and at eta 1, and DDIM with classifier-free
guidance at scales 0, 1, 3 and 5; each run is one trace in DIR. It also trains a small
flow-matching network (DIR/flow: --objective flow, narrower, for a third of the steps) and samples it
with 50 Euler steps of the flow ODE from the same x_T (flow_euler.h5).
A second run reuses the model and the traces already in DIR (nothing is
overwritten without --overwrite).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracer.cli.common import (
    MAX_SEED,
    check_fits_memory,
    check_output,
    check_port_free,
    dataset_spec,
    int_in,
    nonempty_path,
    port,
    refuse_inapplicable,
    resolve_device,
    seed,
)
from tracer.cli.sample import MAX_BATCH
from tracer.config import DEFAULT_TRAIN_STEPS, MAX_TRAIN_STEPS, DataConfig, ModelConfig, ScheduleConfig, TrainConfig
from tracer.samplers.config import SamplerConfig

GUIDANCE_SCALES = (0.0, 1.0, 3.0, 5.0)
DDIM_STEPS = 50
FLOW_DIR = "flow"  # the flow-matching model's run directory inside DIR
FLOW_STEPS = 50  # Euler steps of the flow ODE
FLOW_TRAIN_FRACTION = 3  # the flow model trains for 1/3 of the diffusion model's steps,
FLOW_CHANNELS = {"unet": (8, 16, 16), "mlp": (64, 64)}  # at about a quarter of its width: the demo stays under 5 minutes


@dataclass(frozen=True)
class DemoRun:
    file: str
    config: SamplerConfig
    what: str


def demo_runs() -> list[DemoRun]:
    runs = [
        DemoRun("ddpm.h5", SamplerConfig(sampler="ddpm"), "DDPM, all T steps (Ho et al. 2020, Alg. 2)"),
        DemoRun("ddim_eta0.h5", SamplerConfig(sampler="ddim", steps=DDIM_STEPS, eta=0.0), f"DDIM, {DDIM_STEPS} steps, eta 0"),
        DemoRun("ddim_eta1.h5", SamplerConfig(sampler="ddim", steps=DDIM_STEPS, eta=1.0), f"DDIM, {DDIM_STEPS} steps, eta 1"),
    ]
    for s in GUIDANCE_SCALES:
        runs.append(DemoRun(f"guidance_{s:g}.h5", SamplerConfig(sampler="ddim", steps=DDIM_STEPS, guidance=s),
                            f"DDIM {DDIM_STEPS} steps with classifier-free guidance s = {s:g}"))
    return runs


# The shape of one sample of each data set (tracer/data.py; the sets read from files in their standard size),
# for the up-front memory check of --batch before anything is trained.
SAMPLE_SHAPES = {"digits": (1, 16, 16), "mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
POINT_SHAPE = (2,)  # the 2-D toys
DEFAULT_PORT = 8501


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train on digits, record DDPM, DDIM and guidance traces, open the viewer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=nonempty_path, default=Path("runs/demo"), help="directory for the model and traces (default runs/demo)")
    p.add_argument("--dataset", type=dataset_spec, default="digits",
                   help="digits (default) or a 2-D toy: moons, swissroll, gaussians8, checkerboard")
    p.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), help=f"training steps (default {DEFAULT_TRAIN_STEPS}, as train; "
                   "the flow model trains for a third as many)")
    p.add_argument("--batch", type=int_in(1, MAX_BATCH), default=20, help="samples per trace (default 20: two of every class)")
    p.add_argument("--seed", type=seed, default=0, help=f"seed for training, x_T and every step's noise, 0..{MAX_SEED} (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--overwrite", action="store_true", help="retrain and re-record even if DIR has them")
    p.add_argument("--no-view", action="store_true", help="do not start the viewer at the end")
    p.add_argument("--port", type=port, help=f"viewer port, 1..65535 (default {DEFAULT_PORT}; checked free before training)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def check_args(args: argparse.Namespace) -> None:
    """Everything the demo can refuse, refused before it trains: the output folder, the batch's size, the port."""
    check_output(args.out, directory=True)
    name = args.dataset.partition(":")[0].strip().lower()
    check_fits_memory(args.batch, SAMPLE_SHAPES.get(name, POINT_SHAPE))
    if args.no_view:
        refuse_inapplicable(args, ["port"], "with --no-view (no viewer is started)")
    else:
        check_port_free("127.0.0.1", args.port or DEFAULT_PORT)


def _model(args: argparse.Namespace, device: str, objective: str = "diffusion") -> Any:
    """The demo's diffusion model in DIR, or its flow-matching model in DIR/flow: the one there, else trained."""
    from tracer.checkpoints import MODEL_FILE, load_checkpoint
    from tracer.cli.train import default_model
    from tracer.training import STATE_FILE, train

    flow = objective == "flow"
    out = args.out / FLOW_DIR if flow else args.out
    checkpoint = out / MODEL_FILE
    if checkpoint.exists() and not args.overwrite:
        print(f"using the model already in {checkpoint} (--overwrite retrains)")
        return load_checkpoint(checkpoint, device=device)
    # An interrupted demo left a resume state: continue that training rather than discard it.
    resume = (out / STATE_FILE).is_file() and not args.overwrite
    if resume:
        print(f"resuming the interrupted training in {out} (--overwrite starts over)")
    data = DataConfig(dataset=args.dataset, seed=args.seed)
    name = default_model(args.dataset)
    model = ModelConfig(name=name, channels=FLOW_CHANNELS[name] if flow else (), prediction="v" if flow else "eps", objective=objective)
    steps = args.steps or DEFAULT_TRAIN_STEPS
    result = train(
        out, data=data, model=model, schedule=ScheduleConfig("flow") if flow else ScheduleConfig(),
        config=TrainConfig(steps=max(1, steps // FLOW_TRAIN_FRACTION) if flow else steps, seed=args.seed),
        device=device, overwrite=args.overwrite, resume=resume, progress=not args.quiet,
    )
    print(f"trained {result.steps} steps in {result.seconds:.0f} s (last loss {result.loss:.4f}): {result.checkpoint}, {result.trace}")
    return load_checkpoint(result.checkpoint, device=device)


def run(args: argparse.Namespace) -> int:
    import torch

    from tracer.models import num_classes, null_label
    from tracer.recording import record_run
    from tracer.samplers.loop import initial_noise

    device = resolve_device(args.device)
    check_args(args)
    start = time.perf_counter()
    checkpoint = _model(args, device)
    model, schedule = checkpoint.model, checkpoint.schedule
    check_fits_memory(args.batch, checkpoint.sample_shape)  # the model found in DIR may differ from --dataset
    classes = num_classes(model)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    x_T = initial_noise((args.batch, *checkpoint.sample_shape), generator=generator, device=device)  # noqa: N806
    labels = torch.arange(args.batch, device=device) % classes if classes else None
    written = []
    for demo in demo_runs():
        path = args.out / demo.file
        if demo.config.guidance is not None and (labels is None or null_label(model) is None):
            print(f"skipping {demo.file}: the model has no classes to guide")
            continue
        if path.exists() and not args.overwrite:
            print(f"keeping {path} (--overwrite re-records)")
            written.append(path)
            continue
        # The same x_T and the same seed for every run: the traces differ only by the sampler.
        run_generator = torch.Generator(device=device).manual_seed(args.seed + 1)
        record_run(
            model, schedule, demo.config, x_T=x_T, labels=labels, generator=run_generator, out=path, overwrite=args.overwrite,
            extra_config={**checkpoint.provenance(args.out), "seed": args.seed, "batch": args.batch, "labels": None if labels is None else labels.tolist(),
                          "device": device, "demo": demo.what},
            progress=not args.quiet,
        )
        print(f"wrote {path}: {demo.what}")
        written.append(path)
    flow_path = args.out / "flow_euler.h5"
    if flow_path.exists() and not args.overwrite:
        print(f"keeping {flow_path} (--overwrite re-records)")
    else:
        flow_checkpoint = _model(args, device, "flow")
        what = f"flow matching, {FLOW_STEPS} Euler steps of the flow ODE (Liu et al. 2023), from the same x_T"
        record_run(
            flow_checkpoint.model, flow_checkpoint.schedule, SamplerConfig(sampler="flow_euler", steps=FLOW_STEPS), x_T=x_T, labels=labels,
            generator=torch.Generator(device=device).manual_seed(args.seed + 1), out=flow_path, overwrite=args.overwrite,
            extra_config={**flow_checkpoint.provenance(args.out / FLOW_DIR), "seed": args.seed, "batch": args.batch,
                          "labels": None if labels is None else labels.tolist(), "device": device, "demo": what},
            progress=not args.quiet,
        )
        print(f"wrote {flow_path}: {what}")
    written.append(flow_path)
    print(f"demo ready in {time.perf_counter() - start:.0f} s: {len(written)} sampling traces and the training trace in {args.out}")
    if args.no_view:
        print(f"open them with: noisescope view {args.out}")
        return 0
    from tracer.cli.view import launch

    code = launch([args.out], port=args.port or DEFAULT_PORT, wait=True)
    return int(code) if isinstance(code, int) else 0
