"""Findings: diagnoses of a sampling trace, each a short sentence with the step and the numbers behind it.

``noisescope check`` verifies that every step obeys its equation; a trace can pass every check and
still be a run that went wrong, or fail one for a reason the residual does not name. The findings
say what the recorded numbers show (docs/equations.md, "Findings"):

- ``noise-left``: the last step lands at alpha_bar < 1 (sigma > 0 in sigma space, t > 0 on the flow
  path), so its output keeps part of eps: x = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (Ho et al.
  2020, Eq. 4), x = x0 + sigma eps (Karras et al. 2022), x = (1 - t) x0 + t eps (flow matching).
- ``terminal-snr``: the first step's alpha_bar_t is above 0 while x_T is pure noise: the start ignores
  the signal sqrt(alpha_bar_t) x0 that x_T should still hold (Lin et al. 2023, "Common Diffusion Noise
  Schedules and Sample Steps are Flawed", Sec. 3.1).
- ``t-prev``: the timestep a step moves to is not the one the next step starts from (the structural check
  chain.t_prev, worded as a diagnosis).
- ``prediction-type``: at the noisiest step an eps prediction nearly equals x_t (x_t = sqrt(a) x0 +
  sqrt(1 - a) eps with a small a), while a v output (sqrt(a) eps - sqrt(1 - a) x0, near -x0) or an x0
  output does not (Salimans and Ho 2022, App. D); a declared type whose output behaves like the other is named.
- ``clipping``: x0_pred was clipped to [-1, 1] on a large share of its values (Ho et al. 2020, Sec. 3.3).
- ``non-finite``: the first NaN or Inf of the trace, by step and name.
- ``guidance-scale``: the scale s that eps = eps_uncond + s (eps_cond - eps_uncond) (Ho and Salimans 2022,
  Eq. 6) implies, where it differs from the declared one (or none is declared).

``trace_findings(trace)`` reads the trace through the reader one row at a time (every tensor of a row,
then the next row: memory is a few rows whatever the trace's length), and never claims what it did not
measure: a finding whose tensors or scalars the trace does not record is left out (a trace that records
less by choice, tracer/trace/choice.py, too). A sentence names the run's step, which is the row unless the
trace keeps every K-th step (``steps/index``). Findings are diagnoses, not verdicts: they change no exit code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from tracer.equations.checks import _network_input, guidance_names
from tracer.equations.context import TraceFacts, TraceView, judge_row
from tracer.equations.registry import tolerance_for
from tracer.equations.structure import ascending, t_prev_chain
from tracer.trace import schema
from tracer.trace.reader import TraceError

# The kinds of finding, in the order a report lists them.
KINDS: Final = ("noise-left", "terminal-snr", "t-prev", "prediction-type", "clipping", "non-finite", "guidance-scale")
TITLES: Final[dict[str, str]] = {
    "noise-left": "noise left at the end",
    "terminal-snr": "non-zero terminal SNR",
    "t-prev": "previous timestep not visited",
    "prediction-type": "prediction type",
    "clipping": "x0_pred clipped",
    "non-finite": "NaN or Inf",
    "guidance-scale": "guidance scale",
}

# Terminal SNR: a first step whose alpha_bar_t is above this keeps a signal sqrt(alpha_bar_t) x0 of more than
# 1e-3 of x0 in x_T. Below it the signal is under a quarter of one 8-bit grey level of [-1, 1] (2/255 = 7.8e-3)
# and cannot show: the stand-in diffusers uses for an exact 0 (2^-24 = 6.0e-8) and the cosine schedule's
# 2.4e-9 fall below it; the linear schedule's 4.0e-5 (T = 1000; Lin et al. 2023, Table 1) lies above.
TERMINAL_ALPHA_BAR_MIN: Final = 1e-6
# x_T counts as pure noise when its values' mean and std lie within this many standard errors of N(0, 1)'s
# (standard error 1/sqrt(n) for the mean, 1/sqrt(2n) for the std of n values): 5 is never crossed by chance.
PURE_NOISE_Z: Final = 5.0

# Prediction type: probed at the noisiest step when its alpha_bar_t is at most this. There
# eps - x_t = (1 - sqrt(1 - a)) eps - sqrt(a) x0, so an eps prediction lies within about sqrt(a) = 0.1 of x_t
# (relative, for data of unit scale), while a v output (near -x0) or an x0 output (near x0) lies about 1 away.
PREDICTION_PROBE_ALPHA_BAR: Final = 1e-2
# rms(output - x_t) / rms(x_t) below this behaves like an eps prediction, above it like v or x0: halfway
# between the two (0.1 and 1), so data of up to about five times unit scale is still told apart.
EPS_LIKE_DISTANCE: Final = 0.5

# Clipping: a value counts as clipped when the clip moved it by more than one 8-bit grey level of the range
# (2/255 of [-r, r] per unit r): smaller moves cannot show in an image (data sitting at -1, as the digits'
# background, is clipped by rounding at every step without harm).
CLIP_MARGIN: Final = 2.0 / 255.0
# A finding when more than this share of all x0_pred values of the run were clipped: the update then follows
# the clip rather than the network over a large part of the run.
CLIP_SHARE: Final = 0.1

# Guidance scale: the scales fitted at the steps where the declared one fails are reported as one when they
# agree to this (relative); they are then listed as a range otherwise.
GUIDANCE_AGREE: Final = 1e-3


@dataclass(frozen=True)
class Finding:
    """One diagnosis: what kind, where (step, its t, the name it concerns), the sentence, and the numbers in it."""

    kind: str
    step: int | None
    t: int | None
    tensor: str | None
    sentence: str
    numbers: dict[str, float | int | None] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES.get(self.kind, self.kind)


def _g(x: float) -> str:
    """A number for a sentence: 4 significant digits."""
    return f"{x:.4g}"


def _t(view: TraceView, i: int) -> int | None:
    return view.t(i)


def _where(view: TraceView, i: int) -> str:
    """Row i as people read it: the run's step (its loop index, which is i unless the trace skips steps) and its t."""
    t = _t(view, i)
    return f"step {view.step_index(i)}" + ("" if t is None else f" (t {t})")


def trace_findings(trace: Any, facts: TraceFacts | None = None) -> list[Finding]:
    """Every finding of a sampling trace (none for a training trace or a trace with no committed step), in KINDS order."""
    facts = facts if facts is not None else TraceFacts.of(trace)
    if facts.kind != "sampling":
        return []
    view = TraceView(trace, schema.STEPS, facts)
    if view.rows == 0:
        return []
    found: list[Finding] = []
    for finder in (_noise_left, _terminal_snr, _t_prev, _prediction_type, _row_scan):
        found += _measured(finder, view)
    return sorted(found, key=lambda f: KINDS.index(f.kind))


def _measured(finder: Callable[[TraceView], list[Finding]], view: TraceView) -> list[Finding]:
    """``finder(view)``; where its arithmetic is undefined on this trace's values or shapes (a damaged or hand-made trace:
    tensors that do not broadcast, an index outside the schedule), nothing was measured and it finds nothing. A row the
    reader cannot read raises TraceError, as it does for the checks."""
    try:
        with np.errstate(all="ignore"):  # NaN and Inf compare False below; the non-finite finding names them
            return finder(view)
    except TraceError:
        raise
    except (ArithmeticError, ValueError, IndexError, KeyError, TypeError):
        return []


# -- noise left at the end -------------------------------------------------------------------------------


def remaining_noise(alpha_bar: float) -> tuple[float, float]:
    """(sqrt(1 - alpha_bar), sqrt((1 - alpha_bar) / alpha_bar)): the std of the eps an output at alpha_bar keeps,
    x = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps (Ho et al. 2020, Eq. 4), and the same relative to the
    signal, the sigma of x / sqrt(alpha_bar) = x0 + sigma eps (Karras et al. 2022, Table 1)."""
    eps_std = math.sqrt(max(1.0 - alpha_bar, 0.0))
    return eps_std, (eps_std / math.sqrt(alpha_bar) if alpha_bar > 0 else math.inf)


def _finished(view: TraceView) -> bool:
    return view.complete() and not ascending(view)  # an inversion's end is x_T: noise by design


def _noise_left(view: TraceView) -> list[Finding]:
    """The last step's output level: alpha_bar_prev < 1, sigma_next > 0 or t_flow_next > 0, as recorded."""
    if not _finished(view):
        return []
    k = view.rows - 1
    where = f"the last step, {_where(view, k)},"
    if view.facts.space == "sigma" and "sigma_next" in view.scalars:
        sigma = view.scalar("sigma_next", k)
        if not sigma > 0:
            return []
        alpha_bar = 1.0 / (1.0 + sigma * sigma)
        text = (f"{where} lands at sigma = {_g(sigma)}, not 0: its output keeps eps with std {_g(sigma)} "
                f"(x = x0 + sigma eps; alpha_bar {alpha_bar:.6g})")
        return [Finding("noise-left", k, _t(view, k), None, text,
                        {"sigma": sigma, "alpha_bar": alpha_bar, "eps_std": sigma})]
    if view.facts.space == "flow" and "t_flow_next" in view.scalars:
        time = view.scalar("t_flow_next", k)
        if not time > 0:
            return []
        text = (f"{where} lands at flow time t = {_g(time)}, not 0: its output keeps eps with std {_g(time)} "
                f"and x0 scaled by {_g(1.0 - time)} (x = (1 - t) x0 + t eps)")
        return [Finding("noise-left", k, _t(view, k), None, text, {"t_flow": time, "eps_std": time})]
    if "alpha_bar_prev" not in view.scalars:
        return []
    alpha_bar = view.scalar("alpha_bar_prev", k)
    if not alpha_bar < 1.0:
        return []
    eps_std, sigma = remaining_noise(alpha_bar)
    t_prev = int(view.scalars["t_prev"][k]) if "t_prev" in view.scalars else None
    to = "" if t_prev is None else f" to t_prev {t_prev}"
    text = (f"{where} moves{to} at alpha_bar_prev = {alpha_bar:.6g}, not 1: its output keeps eps with std "
            f"sqrt(1 - alpha_bar) = {_g(eps_std)} beside sqrt(alpha_bar) x0 (noise of std {_g(sigma)} relative to "
            "the signal)")
    return [Finding("noise-left", k, _t(view, k), None, text,
                    {"alpha_bar": alpha_bar, "eps_std": eps_std, "sigma": sigma, "t_prev": t_prev})]


# -- non-zero terminal SNR -------------------------------------------------------------------------------


def _vp_scale(view: TraceView, i: int, alpha_bar: float) -> float:
    """The factor that brings step i's x_t to the VP scale, sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps:
    1 in VP; 1 / sqrt(1 + sigma^2) = sqrt(alpha_bar) in sigma space; 1 / sqrt((1 - t)^2 + t^2) on the flow path."""
    if view.facts.space == "sigma":
        return math.sqrt(alpha_bar)
    if view.facts.space == "flow" and "t_flow" in view.scalars:
        time = view.scalar("t_flow", i)
        return 1.0 / math.sqrt((1.0 - time) ** 2 + time**2)
    return 1.0


def _terminal_snr(view: TraceView) -> list[Finding]:
    """The first step's alpha_bar_t > 0 while x_T looks like N(0, I) (Lin et al. 2023, Sec. 3.1)."""
    if ascending(view) or "alpha_bar_t" not in view.scalars or not view.has("x_t"):
        return []
    first = view.facts.option("first_step", 0)
    if isinstance(first, int) and first > 0:
        return []  # the run's start was not recorded (a pipeline callback without x_T: tracer/integrations/diffusers.py)
    alpha_bar = view.scalar("alpha_bar_t", 0)
    if not alpha_bar > TERMINAL_ALPHA_BAR_MIN:
        return []
    x = view.tensor("x_t", 0) * _vp_scale(view, 0, alpha_bar)
    n = x.size
    mean, std = float(np.mean(x)), float(np.std(x))
    pure = n > 1 and abs(mean) <= PURE_NOISE_Z / math.sqrt(n) and abs(std - 1.0) <= PURE_NOISE_Z / math.sqrt(2.0 * n)
    if not pure:
        return []
    snr = alpha_bar / (1.0 - alpha_bar)
    last = len(view.schedule.get("alpha_bar", ())) - 1
    t = _t(view, 0)
    late = f"; the run starts at t {t}, below the schedule's last timestep {last}" if t is not None and 0 <= t < last else ""
    text = (f"{_where(view, 0)} starts at alpha_bar_t = {alpha_bar:.4g} (SNR {snr:.4g}), not 0, from pure noise (x_T's {n} "
            f"values: mean {mean:.3g}, std {std:.4g}): the schedule says x_T still holds sqrt(alpha_bar_t) = "
            f"{_g(math.sqrt(alpha_bar))} of x0, a signal the start ignores (Lin et al. 2023, Sec. 3.1: rescale the schedule "
            f"to zero terminal SNR){late}")
    return [Finding("terminal-snr", 0, t, "x_t", text,
                    {"alpha_bar_t": alpha_bar, "snr": snr, "signal": math.sqrt(alpha_bar), "x_T_mean": mean, "x_T_std": std})]


# -- the previous timestep is not the next one visited ----------------------------------------------------------


def _t_prev(view: TraceView) -> list[Finding]:
    """chain.t_prev (tracer/equations/structure.py) at every step: where t_prev is not where the run goes next."""
    if "t" not in view.scalars or "t_prev" not in view.scalars:
        return []
    bad: list[tuple[int, str]] = []  # (step, what chain.t_prev found there)
    for i in range(view.rows):
        residual = judge_row(t_prev_chain, view, i)
        if residual is not None and not residual.passes(0.0):
            bad.append((i, residual.detail))
    if not bad:
        return []
    i, detail = bad[0]
    t_prev = int(view.scalars["t_prev"][i])
    numbers: dict[str, float | int | None] = {"t": _t(view, i), "t_prev": t_prev, "steps": len(bad)}
    if i + 1 < view.rows:
        following = int(view.scalars["t"][i + 1])
        numbers["next_t"] = following
        used = f" (alpha_bar_prev {view.scalar('alpha_bar_prev', i):.6g})" if "alpha_bar_prev" in view.scalars else ""
        taken = f" (alpha_bar_t {view.scalar('alpha_bar_t', i + 1):.6g})" if "alpha_bar_t" in view.scalars else ""
        what = f"updates x towards t_prev {t_prev}{used}, but step {view.step_index(i + 1)} takes its output as x at t {following}{taken}"
    else:
        what = f"is the last step and ends at t_prev {t_prev} ({detail})"
    listed = ", ".join(str(view.step_index(step)) for step, _ in bad[:12]) + (" ..." if len(bad) > 12 else "")
    text = (f"{_where(view, i)} {what}: the timestep an update moves to is not the one the run visits next, "
            f"at {len(bad)} of {view.rows} steps ({listed})")
    return [Finding("t-prev", i, _t(view, i), None, text, numbers)]


# -- the model output does not behave like its declared prediction type --------------------------------------


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else 0.0


def _prediction_type(view: TraceView) -> list[Finding]:
    """At the noisiest step (alpha_bar_t <= PREDICTION_PROBE_ALPHA_BAR): an eps output near x_t, a v or x0 output far from it."""
    facts = view.facts
    if facts.prediction not in ("eps", "x0", "v") or facts.space == "flow" or facts.objective == "flow":
        return []
    if "alpha_bar_t" not in view.scalars or not view.has("x_t"):
        return []
    alpha_bars = np.asarray(view.scalars["alpha_bar_t"][: view.rows], dtype=np.float64)
    if not np.isfinite(alpha_bars).any():
        return []
    i = int(np.nanargmin(alpha_bars))
    if facts.prediction == "eps":
        name = "eps_cond" if view.has("eps_cond") else "eps"
    else:
        name = "model_output_cond" if view.has("model_output_cond") else "model_output"
    if not view.has(name) or (facts.space == "sigma" and not view.has("sigma_t")):
        return []
    alpha_bar, x_t = _network_input(view, i)  # the network's input in the VP scale (x / sqrt(1 + sigma^2) in sigma space)
    if not 0.0 <= alpha_bar <= PREDICTION_PROBE_ALPHA_BAR:
        return []
    out = view.tensor(name, i)
    scale = _rms(x_t)
    if not scale > 0:
        return []
    distance = _rms(out - x_t) / scale
    if not math.isfinite(distance):
        return []
    eps_like = distance < EPS_LIKE_DISTANCE
    declared = facts.prediction
    if (declared == "eps") == eps_like:
        return []
    t = _t(view, i)
    head = f"at the noisiest step, step {i} ({'' if t is None else f't {t}, '}alpha_bar_t {alpha_bar:.4g}),"
    measure = f"rms({name} - x_t) / rms(x_t) = {_g(distance)}"
    if declared == "eps":
        text = (f"{head} the network's output {name}, declared an eps prediction, is far from x_t: {measure}, where an eps "
                f"prediction lies within about sqrt(alpha_bar_t) = {_g(math.sqrt(alpha_bar))} of x_t (data of unit scale) "
                "and a v output (near -x0) or an x0 output about 1 away: the network may not predict eps")
    else:
        text = (f"{head} the network's output {name}, declared a {declared} prediction, nearly equals x_t: {measure}, "
                f"as an eps prediction does there, where a {declared} output (near {'-x0' if declared == 'v' else 'x0'}) "
                "lies about 1 away: the network may predict eps")
    return [Finding("prediction-type", i, _t(view, i), name, text,
                    {"alpha_bar_t": alpha_bar, "distance": distance, "threshold": EPS_LIKE_DISTANCE})]


# -- one pass over the rows: NaN and Inf, clipping, the guidance scale ----------------------------------------------


@dataclass
class _Clip:
    """Values of x0_pred_raw outside [-r, r] by more than CLIP_MARGIN r, per step and over the run."""

    limit: float
    clipped: int = 0
    total: int = 0
    worst: tuple[float, int] = (-1.0, -1)  # (share, step)
    first: int = -1

    def add(self, i: int, raw: np.ndarray) -> None:
        moved = int(np.count_nonzero(np.abs(raw) > self.limit))
        self.clipped += moved
        self.total += raw.size
        share = moved / raw.size if raw.size else 0.0
        if share > self.worst[0]:
            self.worst = (share, i)
        if moved and self.first < 0:
            self.first = i


@dataclass
class _Guidance:
    """Per step, the scale s_i that fits guided = uncond + s_i (cond - uncond) best (least squares) and whether it, and the
    declared scale, reproduce the guided output to the check's tolerance (guidance.combine's, tracer/equations/checks.py)."""

    declared: float | None
    tol: float
    fitted: list[tuple[int, float, float, float]] = field(default_factory=list)  # (step, s_i, d.g, g.g) where s_i fits
    declared_fails: list[int] = field(default_factory=list)
    unfit: list[int] = field(default_factory=list)  # steps no scale reproduces

    def add(self, i: int, guided: np.ndarray, cond: np.ndarray, uncond: np.ndarray) -> None:
        g, d = cond - uncond, guided - uncond
        gg, dg = float(np.sum(g * g)), float(np.sum(d * g))
        if not (math.isfinite(gg) and math.isfinite(dg)):
            return
        if self.declared is not None and not self._fits(guided, cond, uncond, self.declared):
            self.declared_fails.append(i)
        if gg == 0.0:
            return  # cond = uncond: every scale gives the same output, none is implied
        s = dg / gg
        if self._fits(guided, cond, uncond, s):
            self.fitted.append((i, s, dg, gg))
        else:
            self.unfit.append(i)

    def _fits(self, guided: np.ndarray, cond: np.ndarray, uncond: np.ndarray, s: float) -> bool:
        """max |guided - (uncond + s (cond - uncond))| <= tol max(1, scale): the check guidance.combine, at scale s."""
        residual = float(np.max(np.abs(guided - (uncond + s * (cond - uncond))))) if guided.size else 0.0
        scale = float(np.max(np.abs(guided) + np.abs(uncond) + abs(s) * (np.abs(cond) + np.abs(uncond)))) if guided.size else 0.0
        return math.isfinite(residual) and residual <= self.tol * max(1.0, scale)


def _row_scan(view: TraceView) -> list[Finding]:
    """Read every committed row once, every tensor of it: the first non-finite value, the clipped share, the guidance fit."""
    trace, facts = view.trace, view.facts
    tensors = list(trace.tensor_names(schema.STEPS))
    # A scalar NaN at every row is a recorder's "not said" (diffusers' sigma of a learned variance, or of a pipeline callback:
    # tracer/integrations/diffusers.py), not a value gone bad: only the others are scanned.
    float_scalars = [name for name, values in view.scalars.items()
                     if np.issubdtype(np.asarray(values).dtype, np.floating) and not np.isnan(np.asarray(values)[: view.rows]).all()]
    # Dynamic thresholding (another library's option) clips to a range of its own per sample: not measured here.
    clip = _Clip(facts.clip_range * (1.0 + CLIP_MARGIN)) if "x0_pred_raw" in tensors and not facts.thresholding else None
    cond_name, uncond_name, guided_name = guidance_names(facts.prediction, facts.guidance_rescale > 0)
    guidance = (_Guidance(facts.guidance, tolerance_for(trace))
                if all(name in tensors for name in (cond_name, uncond_name, guided_name)) else None)
    bad: Finding | None = None
    for i in range(view.rows):
        if bad is None:
            bad = _non_finite_scalar(view, i, float_scalars)
        wanted = tensors if bad is None else [n for n in tensors if (clip and n == "x0_pred_raw")
                                                                 or (guidance and n in (cond_name, uncond_name, guided_name))]
        row = {name: trace.tensor(name, i, schema.STEPS, dtype=np.float64) for name in wanted}  # float32/16 convert exactly
        if bad is None:
            bad = _non_finite_row(view, i, row)
        if clip is not None:
            clip.add(i, row["x0_pred_raw"])
        if guidance is not None:
            guidance.add(i, row[guided_name], row[cond_name], row[uncond_name])
    if bad is None and view.complete():
        samples = view.samples()
        if samples is not None and not np.isfinite(samples).all():
            bad = _non_finite_finding(view, None, schema.SAMPLES, samples, [])
    found = [bad] if bad is not None else []
    if clip is not None:
        found += _clip_finding(view, clip)
    if guidance is not None:
        found += _guidance_finding(view, guidance, guided_name, cond_name, uncond_name)
    return found


# Scalars that are +inf by definition where another one is 0: DPM-Solver++'s h = log(sigma_t / sigma_next) at a last step
# to sigma_next = 0 (tracer/trace/schema.py).
INFINITE_WHERE_ZERO: Final[dict[str, str]] = {"h": "sigma_next"}


def _non_finite_scalar(view: TraceView, i: int, names: list[str]) -> Finding | None:
    for name in names:
        value = float(view.scalars[name][i])
        zero = INFINITE_WHERE_ZERO.get(name)
        if value == math.inf and zero in view.scalars and float(view.scalars[zero][i]) == 0.0:
            continue
        if not math.isfinite(value):
            text = f"{_where(view, i)} records the first non-finite value: {name} = {value}"
            return Finding("non-finite", i, _t(view, i), name, text, {"value": value})
    return None


def _non_finite_row(view: TraceView, i: int, row: dict[str, np.ndarray]) -> Finding | None:
    bad = [name for name, values in row.items() if not np.isfinite(values).all()]
    if not bad:
        return None
    return _non_finite_finding(view, i, bad[0], row[bad[0]], bad[1:])


def _non_finite_finding(view: TraceView, i: int | None, name: str, values: np.ndarray, others: list[str]) -> Finding:
    nans, infs = int(np.count_nonzero(np.isnan(values))), int(np.count_nonzero(np.isinf(values)))
    where = "the final samples" if i is None else _where(view, i)
    also = f" (at the same step also: {', '.join(others)})" if others else ""
    text = (f"{where}: {name} holds the first non-finite values of the trace, {nans} NaN and {infs} Inf of its "
            f"{values.size} values{also}")
    return Finding("non-finite", i, None if i is None else _t(view, i), name, text,
                   {"nan": nans, "inf": infs, "values": int(values.size)})


def _clip_finding(view: TraceView, clip: _Clip) -> list[Finding]:
    share = clip.clipped / clip.total if clip.total else 0.0
    if not share > CLIP_SHARE:
        return []
    worst_share, worst = clip.worst
    r = view.facts.clip_range
    text = (f"x0_pred is clipped to [-{_g(r)}, {_g(r)}] on {share:.1%} of its values over the run ({clip.clipped} of {clip.total} "
            f"moved by more than {CLIP_MARGIN * r:.2g}), most at {_where(view, worst)}: {worst_share:.1%}; the update follows "
            "the clip rather than the network there")
    return [Finding("clipping", worst, _t(view, worst), "x0_pred_raw", text,
                    {"share": share, "clipped": clip.clipped, "values": clip.total, "worst_share": worst_share,
                     "first_step": clip.first})]


def _guidance_finding(view: TraceView, fit: _Guidance, guided: str, cond: str, uncond: str) -> list[Finding]:
    declared = fit.declared
    steps = set(fit.declared_fails) if declared is not None else None
    fitted = [f for f in fit.fitted if steps is None or f[0] in steps]
    if not fitted or (declared is None and fit.unfit):
        return []  # nothing fails, or no single scale reproduces the steps: the residuals of check say the rest
    scale = sum(f[2] for f in fitted) / sum(f[3] for f in fitted)  # the least-squares scale over those steps
    low, high = min(f[1] for f in fitted), max(f[1] for f in fitted)
    first = fitted[0][0]
    agree = high - low <= GUIDANCE_AGREE * max(1.0, abs(scale))
    spread = "" if agree else f" (from {_g(low)} to {_g(high)} step by step)"
    relation = f"{guided} = {uncond} + s ({cond} - {uncond})"
    if declared is None:
        text = (f"the trace declares no guidance scale, but {relation} holds with s = {_g(scale)}{spread} at "
                f"{len(fitted)} of {view.rows} steps (first at {_where(view, first)})")
    else:
        text = (f"{relation} holds with s = {_g(scale)}{spread}, not the declared {_g(declared)}, at {len(fitted)} of "
                f"{view.rows} steps (first at {_where(view, first)}): the update was guided at another scale")
    return [Finding("guidance-scale", first, _t(view, first), guided, text,
                    {"implied": scale, "declared": declared, "steps": len(fitted), "low": low, "high": high})]
