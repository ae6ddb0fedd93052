"""``python -m tracer.cli``: the ``noisescope`` command, as ``torchrun -m tracer.cli train ...`` starts each rank."""

from tracer.cli import main

raise SystemExit(main())
