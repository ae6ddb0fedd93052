"""``noisescope train``: train a noise predictor and record the training itself as a trace."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tracer.cli.common import (
    MAX_SEED,
    check_output,
    dataset_spec,
    float_in,
    int_in,
    int_list,
    nonempty_path,
    positive_int,
    resolve_device,
    seed,
)
from tracer.config import (
    DEFAULT_TRAIN_STEPS,
    check_prediction_schedule,
    MAX_TIMESTEPS,
    MAX_TRAIN_STEPS,
    ConfigError,
    DataConfig,
    ModelConfig,
    ScheduleConfig,
    TrainConfig,
)
from tracer.schedules import SCHEDULE_NAMES

EPILOG = """examples:
  noisescope train --dataset digits --out runs/digits
  noisescope train --dataset moons --model mlp --steps 3000 --out runs/moons
  noisescope train --dataset mnist:data/mnist --schedule seed-report --epochs 5 --out runs/mnist
  noisescope train --dataset digits --out runs/digits --steps 3000 --resume   # continue to 3000 steps
  noisescope train --dataset moons --objective flow --out runs/moons-flow       # flow matching: sample with flow_euler, flow_heun
  noisescope train --dataset digits --out runs/digits2 --nproc 2 --batch 64     # 2 processes: global batch 128
  torchrun --nproc_per_node 4 -m tracer.cli train --dataset digits --device cuda --out runs/digits4   # or torchrun itself
"""


MAX_EPOCHS = 100_000
MAX_NPROC = 4096  # argparse's bound; check_nproc refuses what this machine cannot run
MAX_WIDTH = 4096  # channels of one U-Net level or one MLP layer
MAX_LEVELS = 16


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train a noise-prediction network; writes RUN_DIR/model.safetensors and RUN_DIR/train.h5",
        description="Train an epsilon-prediction network (Ho et al. 2020, Alg. 1) with label dropout for "
        "classifier-free guidance (Ho and Salimans 2022, Alg. 1), an EMA of the weights, and a training trace "
        "(loss, learning rate, gradient norm, loss by timestep, sample snapshots, worked examples).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataset", type=dataset_spec, default="digits", help="digits (default), moons, swissroll, gaussians8, "
                   "checkerboard, or from files: mnist:DIR, fashion-mnist:DIR or cifar10:DIR")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=int_in(1, MAX_EPOCHS), help="passes over the data")
    length.add_argument("--steps", type=int_in(1, MAX_TRAIN_STEPS), help=f"optimizer steps (default {DEFAULT_TRAIN_STEPS})")
    p.add_argument("--objective", default="diffusion", choices=("diffusion", "flow"),
                   help="what to train: diffusion (the default: the VP forward process of Ho et al. 2020) or flow (flow matching, "
                   "Lipman et al. 2023: the velocity v = eps - x0 on x_t = (1 - t) x0 + t eps; sample it with flow_euler or flow_heun)")
    p.add_argument("--schedule", default=None, help=f"beta schedule: {', '.join(n for n in SCHEDULE_NAMES if n != 'flow')} (default "
                   "linear); --objective flow trains on its own path, the flow schedule")
    p.add_argument("--timesteps", type=int_in(2, MAX_TIMESTEPS), help="T, the number of diffusion steps (default 1000; 300 for seed-report)")
    p.add_argument("--prediction", default=None, help="what the network predicts: eps (the noise, default), x0 (the clean "
                   "sample) or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans and Ho 2022); a flow network predicts "
                   "its velocity eps - x0 (v)")
    p.add_argument("--zero-terminal-snr", action="store_true", help="rescale the schedule so alpha_bar is 0 at the last "
                   "timestep (Lin et al. 2023, Alg. 1); needs --prediction v or x0")
    p.add_argument("--model", default=None, help="unet (images, default), mlp (2-D points, default for toys) or seed-unet")
    p.add_argument("--channels", type=int_list(1, MAX_WIDTH, MAX_LEVELS),
                   help="model widths, comma-separated (U-Net channels per level, MLP hidden widths; seed-unet: one number)")
    p.add_argument("--batch", type=positive_int, default=128, help="batch size of each process (default 128; the global batch is "
                   "--batch times the number of processes; more than the data set is all of it)")
    p.add_argument("--lr", type=float_in(0, low_open=True), default=2e-3, help="Adam learning rate > 0 (default 2e-3)")
    p.add_argument("--p-uncond", type=float_in(0, 1), help="label dropout probability in [0, 1] (default 0.1 with classes)")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights instead of their moving average")
    p.add_argument("--ema-decay", type=float_in(0, 1, high_open=True), default=0.995, help="EMA decay in [0, 1) (default 0.995)")
    p.add_argument("--grad-clip", type=float_in(0), default=1.0, help="clip the gradient norm to this (default 1.0; 0 = off)")
    p.add_argument("--seed", type=seed, default=0, help=f"random seed, 0..{MAX_SEED} (default 0)")
    p.add_argument("--log-every", type=int_in(1, MAX_TRAIN_STEPS), default=10, help="log a training-trace row every N steps (default 10)")
    p.add_argument("--snapshot-every", type=int_in(0, MAX_TRAIN_STEPS), default=250,
                   help="sample snapshot every N steps (default 250; 0 = off)")
    p.add_argument("--no-trace", action="store_true", help="do not write RUN_DIR/train.h5")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16"), help="tensor dtype in the trace")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--nproc", type=int_in(1, MAX_NPROC), default=1, metavar="N",
                   help="train on N processes of this machine with DistributedDataParallel (gloo on the CPU, NCCL with one GPU each "
                   "on CUDA), started through torch's own launcher (torchrun --standalone); N at --batch b is, in data and math, one "
                   "process at batch N b; rank 0 alone writes RUN_DIR. At most the usable CPU cores (the GPUs with --device cuda). "
                   "Default 1: this process. Several machines: torchrun -m tracer.cli train ... (docs/training.md)")
    p.add_argument("--out", required=True, type=nonempty_path, help="the run directory")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--overwrite", action="store_true", help="replace an existing run directory's model, trace and state once the new run is complete "
                       "(until then the previous run stays whole)")
    again.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def default_model(dataset: str) -> str:
    from tracer.data import TOY_SETS, parse_spec

    return "mlp" if parse_spec(dataset)[0] in TOY_SETS else "unet"


def configs_from_args(args: argparse.Namespace) -> tuple[DataConfig, ModelConfig, ScheduleConfig, TrainConfig]:
    data = DataConfig(dataset=args.dataset, seed=args.seed)
    flow = args.objective == "flow"
    if flow and args.prediction not in (None, "v"):
        raise ConfigError(f"--objective flow trains a velocity network (v = eps - x0); --prediction {args.prediction} does not apply")
    if flow and args.schedule not in (None, "flow"):
        raise ConfigError(f"--objective flow trains on the flow path x_t = (1 - t) x0 + t eps, not on a beta schedule; "
                          f"drop --schedule {args.schedule}")
    prediction = args.prediction or ("v" if flow else "eps")
    model = ModelConfig(name=args.model or default_model(args.dataset), channels=args.channels or (), prediction=prediction,
                        objective=args.objective)
    schedule_name = args.schedule or ("flow" if flow else "linear")
    schedule = ScheduleConfig(name=schedule_name, timesteps=args.timesteps, zero_terminal_snr=args.zero_terminal_snr)
    check_prediction_schedule(model, schedule)
    train = TrainConfig(
        steps=args.steps, epochs=args.epochs, batch=args.batch, lr=args.lr, p_uncond=args.p_uncond, ema=not args.no_ema,
        ema_decay=args.ema_decay, grad_clip=args.grad_clip or None, seed=args.seed, log_every=args.log_every,
        snapshot_every=args.snapshot_every,
    )
    return data, model, schedule, train


def data_directory(dataset: str) -> Path | None:
    """The folder a name:DIR data set is read from, None for the others."""
    directory = dataset.partition(":")[2]
    return Path(directory).expanduser() if directory else None


def check_run_dir(out: Path, dataset: str, resume: bool) -> None:
    """The run directory can be written (and resumed from), before the data is even loaded."""
    from tracer.training import STATE_FILE

    check_output(out, {"the data folder": data_directory(dataset)}, directory=True)
    if resume and not (out / STATE_FILE).is_file():
        raise ConfigError(f"nothing to resume: {out / STATE_FILE} does not exist")


def run(args: argparse.Namespace) -> int:
    from tracer import distributed
    from tracer.training import preflight, train

    data, model, schedule, config = configs_from_args(args)
    device = resolve_device(args.device)
    distributed.check_nproc(args.nproc, device)
    check_run_dir(args.out, args.dataset, args.resume)
    if args.nproc > 1:  # every check of the run here, once, before the processes start
        preflight(args.out, data=data, model=model, schedule=schedule, config=config, resume=args.resume, overwrite=args.overwrite,
                  world_size=args.nproc)
        return distributed.launch(args.argv, args.nproc)
    result = train(
        args.out, data=data, model=model, schedule=schedule, config=config, device=device,
        trace=not args.no_trace, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, tensor_dtype=args.dtype,
    )
    if not distributed.is_main():  # rank 0 reports
        return 0
    print(f"trained {result.steps} steps in {result.seconds:.0f} s, last loss {result.loss:.4f}")
    print(f"wrote {result.checkpoint}" + (f" and {result.trace}" if result.trace else ""))
    return 0
