"""``noisescope check``: does a trace follow the equations? Exit 0 PASS, 1 FAIL, 3 INCOMPLETE, 4 NOISE LEFT (tracer/check.py).

Bad input (not a trace, missing datasets, an unknown id in --only, a negative --tol) is one
line on stderr and exit code 2, like every command (tracer/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracer.cli.common import finite_float, nonempty_path, nonnegative_int


EPILOG = """examples:
  noisescope check ddim.h5
  noisescope check ddim.h5 --json > report.json
  noisescope check ddim.h5 --only ddim.step,chain.t_prev --tol 1e-4
exit codes: 0 PASS (every check passes and nothing was left unchecked), 1 FAIL (a check fails),
  2 bad input, 3 INCOMPLETE (nothing fails, but part of the trace's math could not be verified:
  no step equation for its sampler, a guidance scale not declared, tensors not recorded, no rows,
  a run that did not finish (crashed, killed, or still being written);
  the report lists each under "not checked" with the reason), 4 NOISE LEFT (every check passes, but
  a sigma-space run ends above sigma = 0, --final-sigma sigma_min, or a run's last step ends at t = 0,
  alpha_bar_0 < 1, as the report's DDIM and --preset seed-report do: its samples keep that noise)
after the table come the findings: diagnoses with the step and the numbers (noise left at the end, a non-zero
  terminal SNR, a t_prev that is not visited, an output unlike its declared prediction type, x0_pred clipped on a
  large share, the first NaN or Inf, a guidance scale other than the declared one); they change no exit code
"""


def tolerance(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="check a trace against the equations: residuals per step, pass or fail",
        description="Recompute every equation that applies to the trace (schedule products, forward closed form and "
        "loss, x0 from eps, clipping, guidance, DDPM posterior and step, DDIM sigma and step, and in sigma space the "
        "denoiser, churn, Euler, Heun, Euler ancestral and DPM-Solver++(2M) steps) in float64 from the "
        "recorded tensors, and the structural checks (t_prev of step i is t of step i + 1; alpha_bar_t and "
        "alpha_bar_prev are the schedule's; x_t of step i + 1 is the output of step i; samples that of the last "
        "step). Tolerances follow the trace's tensor dtype (docs/equations.md). A trace that does not name its sampler "
        "is identified by the step equation its rows satisfy (DDIM's Eq. 12 or DDPM's posterior step), and the report "
        "says so; what cannot be verified is listed under 'not checked' and the verdict is INCOMPLETE, never PASS. "
        "After the table, the findings: what the recorded numbers show about the run, each a sentence with its step.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace", type=nonempty_path, help="the trace file (.h5), sampling or training")
    p.add_argument("--json", action="store_true", help="print the report as JSON: every check at every step, and the findings")
    p.add_argument("--tol", type=tolerance, help="relative tolerance for every check (default: 1e-5 for float32 tensors, "
                   "1e-2 for float16, 1e-6 for scalars)")
    p.add_argument("--only", help="check only these ids, separated by commas (e.g. ddim.step,chain.t_prev)")
    p.add_argument("--first", type=nonnegative_int, default=5, help="failing steps shown per failed check (default 5)")
    p.add_argument("--steps", action="store_true", help="also print every step's residuals, a column per check")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tracer.check import check_trace, format_report, format_steps, parse_only, report_dict
    from tracer.trace.reader import open_trace

    only = parse_only(args.only)  # an unknown id is bad input whatever the trace
    with open_trace(args.trace) as trace:
        report = check_trace(trace, tol=args.tol, only=only)
    if args.json:
        print(json.dumps(report_dict(report), indent=1))
    else:
        print(format_report(report, first=args.first))
        if args.steps:
            print()
            print(format_steps(report))
    return report.exit_code
