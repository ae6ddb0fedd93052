"""Trace labels from configs, as written by `noisescope sample`, `demo` and `train`."""

from __future__ import annotations

from viewer.describe import distinguishing_labels, short_label, trace_label


def test_sampling_labels_name_the_sampler_and_its_settings() -> None:
    config = {"sampler": {"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": 3.0, "preset": "none"}, "seed": 1}
    assert trace_label(config) == "ddim · 50 steps · η=0 · s=3 · seed 1"
    assert trace_label({"sampler": {"sampler": "ddpm", "steps": None, "eta": 0.0, "preset": "seed-report"}}, steps=300) == "ddpm · 300 steps · seed-report"
    assert short_label("a.h5", {}) == "a.h5"


def test_training_labels_name_data_model_and_length() -> None:
    config = {"data": {"dataset": "digits"}, "model": {"name": "unet"}, "parameters": 123456, "total_steps": 1500}
    assert trace_label(config) == "digits · unet · 123,456 parameters · 1500 steps"
    assert trace_label({"sampler": "not a mapping"}) == ""


def test_a_sweep_is_labelled_by_what_differs() -> None:
    configs = [{"sampler": {"sampler": "ddim", "steps": 50, "eta": 0.0, "guidance": g}, "seed": 0} for g in (0.0, 1.0, 3.0)]
    assert distinguishing_labels(["a", "b", "c"], configs) == ["s=0", "s=1", "s=3"]
    assert distinguishing_labels(["a", "b"], [{}, {}]) == ["a", "b"]
    assert distinguishing_labels(["a", "b"], [configs[0], configs[0]]) == ["a", "b"]  # nothing differs: the names
