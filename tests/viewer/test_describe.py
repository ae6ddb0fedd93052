"""Trace labels from configs, as written by `noisescope sample`, `demo` and `train`."""

from __future__ import annotations

import numpy as np

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


def test_the_code_panel_says_when_a_trace_was_not_made_by_noisescope() -> None:
    from viewer.describe import CODE_PANEL_NOTE, TRAINING_CODE_PANEL_NOTE, code_panel_note

    own = {"sampler": {"sampler": "ddim", "steps": 50, "eta": 0.0}, "seed": 0}
    assert code_panel_note(own) is None
    assert CODE_PANEL_NOTE == ("This trace was not recorded by noisescope's samplers: the code shown is noisescope's reference "
                               "implementation of each equation, not the code that made the trace.")
    assert code_panel_note({**own, "integration": {"library": "diffusers"}}) == CODE_PANEL_NOTE  # diffusers' scheduler made it
    assert code_panel_note({}) == CODE_PANEL_NOTE  # by hand
    assert code_panel_note({"sampler": "ddim"}) == CODE_PANEL_NOTE  # someone else's loop: no noisescope sampler settings
    assert code_panel_note([]) == CODE_PANEL_NOTE  # type: ignore[arg-type]  # a config that is not even a mapping
    assert code_panel_note({"train": {"steps": 300}, "model": {"name": "unet"}}, kind="training") is None
    assert code_panel_note({"loss": "mse"}, kind="training") == TRAINING_CODE_PANEL_NOTE
    assert code_panel_note({"train": {"steps": 3}, "integration": {}}, kind="training") == TRAINING_CODE_PANEL_NOTE


def test_compare_names_samples_traces_and_clipping() -> None:
    from viewer.panels.compare import clipped, sample_label

    labels = np.array([3, -1])
    assert sample_label(0, labels) == "0 · class 3" and sample_label(1, labels) == "1 · unconditional"
    assert sample_label(2, labels) == "2" and sample_label(0, None) == "0"
    assert clipped({"sampler": {"sampler": "ddpm", "clip": True}}, ()) is True
    assert clipped({"sampler": {"sampler": "ddim", "clip": False}}, ("x0_pred",)) is False
    assert clipped({}, ("x0_pred", "x0_pred_raw")) is True and clipped({}, ("x0_pred",)) is None


def test_training_rows_and_the_forward_explorer_at_t_0_are_labelled_plainly() -> None:
    from viewer.forward_view import forward_panel_title, forward_values_latex
    from viewer.panels.training import rows_explained

    assert rows_explained(np.arange(10, 310, 10)) == ("The header's 30 logged training rows: one row (loss, and loss by timestep "
                                                     "bucket) per logged training step, every 10 training steps, training steps 10 to 300.")
    assert rows_explained(np.array([5])).endswith("training step 5.") and rows_explained(np.array([])) == "No training rows logged yet."
    at_0 = forward_values_latex(0, 0.99999)
    assert at_0.startswith(r"x_t\big|_{t=0} = ") and "x_{0}" not in at_0
    assert "{0.99999}" in at_0 and "0.003162" in at_0  # sqrt(0.99999) keeps the digits that tell it from 1
    assert forward_panel_title(0) == "x<sub>t</sub> at t = 0"
