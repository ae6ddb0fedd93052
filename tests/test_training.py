"""Training: the loss goes down, label dropout has the asked rate, checkpoints sample like the model in memory,
resume continues exactly, the training trace holds what it claims, and bad configs fail with one line."""

from __future__ import annotations

import signal
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from tracer.checkpoints import load_checkpoint
from tracer.config import ConfigError, DataConfig, ModelConfig, ScheduleConfig, TrainConfig
from tracer.data import load_dataset
from tracer.models.mlp import MLP
from tracer.models.seed_unet import SeedUNet
from tracer.samplers import ddim
from tracer.schedules import make_schedule
from tracer.trace.reader import open_trace
from tracer.training import (
    SNAPSHOT_LABELS,
    SNAPSHOT_X_T,
    STATE_FILE,
    Trainer,
    bucket_of,
    drop_labels,
    resolve_p_uncond,
    train,
)

DATA = DataConfig("moons", seed=0, size=256)
MODEL = ModelConfig("mlp", channels=(32, 32))
SCHEDULE = ScheduleConfig("linear", 100)


def small(**changes: object) -> TrainConfig:
    base: dict[str, object] = {"steps": 25, "batch": 32, "log_every": 10, "snapshot_every": 10, "snapshot_batch": 6,
                               "snapshot_steps": 5, "examples": 4, "warmup": 5, "save_every": 0}
    base.update(changes)
    return TrainConfig(**base)  # type: ignore[arg-type]


def run(run_dir: Path, config: TrainConfig, **kwargs: object) -> object:
    return train(run_dir, data=DATA, model=MODEL, schedule=SCHEDULE, config=config, progress=False, **kwargs)  # type: ignore[arg-type]


def one_line(error: pytest.ExceptionInfo[BaseException]) -> None:
    assert str(error.value) and "\n" not in str(error.value)


# -- the step ------------------------------------------------------------------------------------


def test_a_few_steps_lower_the_loss_on_a_fixed_batch() -> None:
    data = load_dataset("moons", seed=0, size=64)
    torch.manual_seed(0)
    trainer = Trainer(MLP(2, (64, 64), 2), make_schedule("linear", 100), data, TrainConfig(steps=60, batch=64, lr=1e-2, warmup=0))

    def fixed_batch_loss() -> float:
        generator = torch.Generator().manual_seed(123)  # the same t, eps every time
        t = torch.randint(0, 100, (64,), generator=generator)
        eps = torch.randn(64, 2, generator=generator)
        ab = torch.as_tensor(trainer.schedule.alpha_bar[t.numpy()], dtype=torch.float32)[:, None]
        x_t = ab.sqrt() * data.x + (1 - ab).sqrt() * eps
        with torch.no_grad():
            return float((trainer.model(x_t, t, data.labels) - eps).pow(2).mean())

    before = fixed_batch_loss()
    records = list(trainer.run())
    assert trainer.step == 60 and [r.step for r in records] == [10, 20, 30, 40, 50, 60]
    assert fixed_batch_loss() < 0.7 * before


def test_drop_labels_rate_is_binomial() -> None:
    n, p = 40_000, 0.1
    labels = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(labels, p, 10, torch.Generator().manual_seed(1))
    is_null = dropped == 10
    assert abs(int(is_null.sum()) - n * p) < 5 * math.sqrt(n * p * (1 - p))
    assert torch.equal(dropped[~is_null], labels[~is_null])  # kept labels are untouched
    assert torch.equal(drop_labels(labels, 0.0, 10), labels)
    assert bool((drop_labels(labels, 1.0, 10) == 10).all())


class LabelSpy(MLP):
    """An MLP that remembers the labels it was trained on."""

    def __init__(self) -> None:
        super().__init__(2, (16,), 2)
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and labels is not None:
            self.seen.append(labels.clone())
        return super().forward(x, t, labels)


def test_training_drops_labels_at_the_asked_rate() -> None:
    p = 0.25
    data = load_dataset("moons", seed=0, size=512)
    spy = LabelSpy()
    trainer = Trainer(spy, make_schedule("linear", 100), data, TrainConfig(steps=40, batch=256, p_uncond=p, ema=False))
    list(trainer.run())
    seen = torch.cat(spy.seen)
    n = seen.numel()
    assert n == 40 * 256
    assert abs(int((seen == spy.null_label).sum()) - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_p_uncond_defaults_follow_the_null_label() -> None:
    assert resolve_p_uncond(TrainConfig(), MLP(2, (8,), 2)) == 0.1
    assert resolve_p_uncond(TrainConfig(), SeedUNet(channels=32, num_classes=10)) == 0.0
    with pytest.raises(ConfigError, match="null label") as error:
        resolve_p_uncond(TrainConfig(p_uncond=0.2), SeedUNet(channels=32, num_classes=10))
    one_line(error)


def test_bucket_of_splits_t_into_equal_ranges() -> None:
    t = torch.arange(100)
    buckets = bucket_of(t, 100, 10)
    assert torch.equal(buckets, t // 10)
    counts = torch.bincount(bucket_of(torch.arange(1000), 1000, 7), minlength=7)
    assert counts.sum() == 1000 and counts.max() - counts.min() <= 1


def test_epochs_count_passes_over_the_data() -> None:
    assert TrainConfig(epochs=2, batch=100).total_steps(250) == 6
    assert TrainConfig(steps=9).total_steps(250) == 9


# -- a whole run ---------------------------------------------------------------------------------


def test_checkpoint_samples_exactly_like_the_model_in_memory(tmp_path: Path) -> None:
    result = run(tmp_path / "run", small())
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.model_config == result.model_config  # type: ignore[attr-defined]
    x_T = torch.randn(8, 2, generator=torch.Generator().manual_seed(5))  # noqa: N806
    labels = torch.tensor([0, 1] * 4)

    def final(model: torch.nn.Module) -> torch.Tensor:
        *_, last = ddim.sample(model, loaded.schedule, x_T, steps=10, labels=labels, guidance=3.0)
        return last.x_prev

    assert torch.equal(final(result.model), final(loaded.model))  # type: ignore[attr-defined]


def test_training_trace_holds_rows_snapshots_and_worked_examples(tmp_path: Path) -> None:
    config = small()
    run(tmp_path / "run", config)
    checkpoint = load_checkpoint(tmp_path / "run")
    with open_trace(tmp_path / "run" / "train.h5") as trace:
        assert trace.kind == "training" and trace.status == "complete"
        rows = trace.series("train")
        assert rows["step"].tolist() == [10, 20, 25]
        assert rows["loss_by_bucket"].shape == (3, config.loss_buckets)
        assert np.all(rows["lr"] > 0) and np.all(rows["grad_norm"] > 0)
        snapshots = trace.series("snapshots")
        assert snapshots["step"].tolist() == [0, 10, 20, 25]
        # The last snapshot is a DDIM run of the saved (EMA) model from the stored x_T and labels.
        x_T, labels = torch.as_tensor(trace.final(SNAPSHOT_X_T)), torch.as_tensor(trace.final(SNAPSHOT_LABELS))  # noqa: N806
        assert labels.tolist() == [0, 1, 0, 1, 0, 1]
        *_, last = ddim.sample(checkpoint.model, checkpoint.schedule, x_T, steps=config.snapshot_steps, labels=labels)
        assert torch.allclose(torch.as_tensor(snapshots["samples"][-1]), last.x_prev, atol=1e-6)
        # Worked examples: x_t is Eq. 4 of the stored x0 and eps, eps_pred is the model's prediction.
        ex = trace.series("examples")
        alpha_bar = checkpoint.schedule.alpha_bar[ex["t"]][:, None]
        assert np.allclose(ex["x_t"], np.sqrt(alpha_bar) * ex["x0"] + np.sqrt(1 - alpha_bar) * ex["eps"], atol=1e-6)
        with torch.no_grad():
            eps_pred = checkpoint.model(torch.as_tensor(ex["x_t"]), torch.as_tensor(ex["t"]), torch.as_tensor(ex["label"]))
        assert np.allclose(ex["eps_pred"], eps_pred.numpy(), atol=1e-5)
        assert np.allclose(ex["loss"], ((ex["eps_pred"] - ex["eps"]) ** 2).mean(axis=1), atol=1e-6)
        assert ex["t"][0] == 0 and ex["t"][-1] == SCHEDULE.T - 1


def test_one_bucket_loss_is_the_loss(tmp_path: Path) -> None:
    result = run(tmp_path / "run", small(loss_buckets=1), trace=False)
    for record in result.records:  # type: ignore[attr-defined]
        assert record.loss_by_bucket[0] == pytest.approx(record.loss, rel=1e-12)
    assert not (tmp_path / "run" / "train.h5").exists() and (tmp_path / "run" / "model.safetensors").exists()


def state_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / STATE_FILE, weights_only=True)
    return {f"{part}.{k}": v for part in ("model", "ema") for k, v in state[part].items()} | {"step": torch.tensor(state["step"])}


def test_resume_continues_where_it_stopped(tmp_path: Path) -> None:
    run(tmp_path / "whole", small(steps=40))
    run(tmp_path / "split", small(steps=20))
    run(tmp_path / "split", small(steps=40), resume=True)
    whole, resumed = state_tensors(tmp_path / "whole"), state_tensors(tmp_path / "split")
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    with open_trace(tmp_path / "whole" / "train.h5") as a, open_trace(tmp_path / "split" / "train.h5") as b:
        assert a.series("train")["step"].tolist() == b.series("train")["step"].tolist() == [10, 20, 30, 40]
        assert np.array_equal(a.series("train")["loss"], b.series("train")["loss"])


def test_ctrl_c_leaves_a_run_that_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(tmp_path / "whole", small(steps=30))
    original = Trainer.train_step

    def interrupted(self: Trainer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.step == 20:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", small(steps=30))
    with open_trace(tmp_path / "split" / "train.h5") as trace:
        assert trace.status == "failed" and trace.series("train")["step"].tolist() == [10, 20]
    monkeypatch.setattr(Trainer, "train_step", original)
    run(tmp_path / "split", small(steps=30), resume=True)
    whole, resumed = state_tensors(tmp_path / "whole"), state_tensors(tmp_path / "split")
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


@pytest.mark.parametrize("where", ["loss_per_sample", "_update_ema"])
def test_a_real_ctrl_c_inside_a_step_waits_for_its_end_and_the_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                                     where: str) -> None:
    """SIGINT delivered for real in the middle of step 21: after its noise and timesteps are drawn (loss_per_sample), or
    after the weights are updated but before the EMA and the step counter (_update_ema). It takes effect once the step
    is done (tracer/interrupts.py ``whole``), so the state saved on Ctrl-C is that after step 21, and a resumed run
    ends where an uninterrupted one does. Raised where it arrives, it left a state a resume could not continue
    exactly (a mixed step)."""
    run(tmp_path / "whole", small(steps=30))
    original = getattr(Trainer, where)
    sent = []

    def then_ctrl_c(self: Trainer, *args: object, **kwargs: object) -> object:
        result = original(self, *args, **kwargs)
        if self.step == 20 and not sent:
            sent.append(True)
            signal.raise_signal(signal.SIGINT)  # Python's handler: KeyboardInterrupt, unless held
        return result

    monkeypatch.setattr(Trainer, where, then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "split", small(steps=30))
    monkeypatch.setattr(Trainer, where, original)
    assert sent and torch.load(tmp_path / "split" / STATE_FILE, weights_only=True)["step"] == 21
    run(tmp_path / "split", small(steps=30), resume=True)
    whole, resumed = state_tensors(tmp_path / "whole"), state_tensors(tmp_path / "split")
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


# -- bad configs ---------------------------------------------------------------------------------


def test_unknown_data_set_and_bad_numbers_raise_one_line() -> None:
    for make in (lambda: DataConfig("imagenet"), lambda: TrainConfig(epochs=0), lambda: TrainConfig(steps=-1),
                 lambda: TrainConfig(steps=5, epochs=5), lambda: TrainConfig(lr=0.0), lambda: TrainConfig(ema_decay=1.0)):
        with pytest.raises(ConfigError) as error:
            make()
        one_line(error)


def test_image_size_that_does_not_fit_the_model(tmp_path: Path) -> None:
    images = np.zeros((4, 30, 30), dtype=np.uint8)
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", np.zeros(4, np.uint8))):
        header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
        (tmp_path / name).write_bytes(header + array.tobytes())
    with pytest.raises(ConfigError, match="divisible by 4") as error:
        train(tmp_path / "run", data=DataConfig(f"mnist:{tmp_path}"), model=ModelConfig("unet"), config=small(), progress=False)
    one_line(error)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    with pytest.raises(ConfigError, match="shape"):
        train(tmp_path / "run", data=DATA, model=ModelConfig("mlp", sample_shape=(3,)), config=small(), progress=False)


def test_existing_run_dir_needs_overwrite_or_resume(tmp_path: Path) -> None:
    run(tmp_path / "run", small(steps=3))
    with pytest.raises(ConfigError, match="--overwrite") as error:
        run(tmp_path / "run", small(steps=3))
    one_line(error)
    run(tmp_path / "run", small(steps=3), overwrite=True)
    with pytest.raises(ConfigError, match="nothing to resume"):
        run(tmp_path / "fresh", small(steps=3), resume=True)
    other = DataConfig("moons", seed=1, size=256)
    with pytest.raises(ConfigError, match="data config differs"):
        train(tmp_path / "run", data=other, model=MODEL, schedule=SCHEDULE, config=small(steps=6), resume=True, progress=False)


# -- nothing lost: an overwriting or resumed run replaces a file only with a complete successor ----


def run_files(run_dir: Path) -> dict[str, bytes]:
    return {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "train.h5", STATE_FILE)}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_failed_overwrite_leaves_the_previous_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]) -> None:
    run(tmp_path / "run", small(steps=10))
    before = run_files(tmp_path / "run")
    original = Trainer.train_step

    def failing(self: Trainer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.step == 15:
            raise error("stop")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", failing)
    with pytest.raises(error):
        run(tmp_path / "run", small(steps=30, save_every=10), overwrite=True)
    assert run_files(tmp_path / "run") == before  # no periodic or Ctrl-C state either: the previous run stays whole
    assert load_checkpoint(tmp_path / "run").extra["step"] == 10
    with open_trace(tmp_path / "run" / ".train.h5.partial") as partial:  # the failed run's rows, beside
        assert partial.status == "failed" and partial.series("train")["step"].tolist() == [10]


def test_a_resume_failing_while_copying_keeps_the_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tracer.trace.writer import TraceWriter

    run(tmp_path / "run", small(steps=20))
    before = run_files(tmp_path / "run")
    append = TraceWriter.append

    def failing(self: TraceWriter, series: str, row: object) -> int:
        if series == "train" and self.rows["train"] == 1:
            raise OSError("lost the disk")
        return append(self, series, row)  # type: ignore[arg-type]

    monkeypatch.setattr(TraceWriter, "append", failing)
    with pytest.raises(OSError, match="lost the disk"):
        run(tmp_path / "run", small(steps=40), resume=True)
    assert run_files(tmp_path / "run") == before


def test_resume_refuses_a_history_it_cannot_read(tmp_path: Path) -> None:
    run(tmp_path / "run", small(steps=10))
    trace = tmp_path / "run" / "train.h5"
    trace.write_bytes(trace.read_bytes()[:2000])  # truncated
    before = run_files(tmp_path / "run")
    with pytest.raises(ConfigError, match="cannot resume: the training history") as error:
        run(tmp_path / "run", small(steps=20), resume=True)
    one_line(error)
    assert run_files(tmp_path / "run") == before


def test_overwrite_puts_nothing_at_the_previous_runs_names_until_done(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run(tmp_path / "run", small(steps=10), trace=False)  # a previous run without a trace
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("model.safetensors", STATE_FILE)}
    original = Trainer.train_step

    def failing(self: Trainer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.step == 15:
            raise RuntimeError("stop")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", failing)
    with pytest.raises(RuntimeError):
        run(tmp_path / "run", small(steps=30), overwrite=True)
    assert not (tmp_path / "run" / "train.h5").exists()  # the new run's trace waits beside, as .train.h5.partial
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    monkeypatch.setattr(Trainer, "train_step", original)
    run(tmp_path / "run", small(steps=10), overwrite=True)
    with open_trace(tmp_path / "run" / "train.h5") as trace:
        assert trace.status == "complete" and trace.series("train")["step"].tolist() == [10]


def test_overwrite_without_a_trace_removes_the_old_one_once_done(tmp_path: Path) -> None:
    run(tmp_path / "run", small(steps=10))
    run(tmp_path / "run", small(steps=5), overwrite=True, trace=False)
    assert not (tmp_path / "run" / "train.h5").exists()
    assert load_checkpoint(tmp_path / "run").extra["step"] == 5
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.safetensors", STATE_FILE]


def test_a_run_file_that_is_not_a_checkpoint_is_never_replaced(tmp_path: Path) -> None:
    import h5py

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with h5py.File(run_dir / "model.safetensors", "w") as f:  # a trace where the model belongs
        f["steps"] = [1, 2]
    before = (run_dir / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="not a safetensors checkpoint; refusing to replace it"):
        run(run_dir, small(steps=3), overwrite=True)
    assert (run_dir / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == ["model.safetensors"]


def test_a_run_resumed_twice_plans_every_row_it_holds(tmp_path: Path) -> None:
    """Each run ends on a train row and a snapshot of its own, off the cadence here (15, 27): the resumed trace plans
    the rows it carries and those to come, so it never holds more rows than it planned (inspect: 'N of P planned')."""
    for steps, resume in ((15, False), (27, True), (40, True)):
        run(tmp_path / "run", small(steps=steps), resume=resume)
        with open_trace(tmp_path / "run" / "train.h5") as trace:
            for series in ("train", "snapshots"):
                assert trace.rows(series) <= trace.planned(series), (steps, series, trace.rows(series), trace.planned(series))
    with open_trace(tmp_path / "run" / "train.h5") as trace:
        assert trace.series("snapshots")["step"].tolist() == [0, 10, 15, 20, 27, 30, 40]
        assert trace.series("train")["step"].tolist() == [10, 15, 20, 27, 30, 40]
