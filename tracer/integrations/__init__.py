"""Adapters that record other libraries' samplers into noisescope traces, so ``noisescope check`` and
the viewer work on them as on our own.

- ``diffusers``: ``TracedScheduler`` wraps a diffusers scheduler; ``PipelineRecorder`` is a
  ``callback_on_step_end`` for diffusers pipelines (docs/diffusers.md). Needs the optional
  extra ``noisescope[diffusers]``; importing the module without diffusers installed works,
  using it raises a one-line error.
"""
