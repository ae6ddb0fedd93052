"""Exact noise predictors for Gaussian data: oracles for tests, and a model for demos that needs no training.

Data x0 ~ N(mu_y, std^2 I). The forward process (Ho et al. 2020, Eq. 4) gives
x_t | y ~ N(sqrt(alpha_bar_t) mu_y, v_t I) with v_t = alpha_bar_t std^2 + 1 - alpha_bar_t, and
eps and x_t are jointly Gaussian with Cov(eps, x_t) = sqrt(1 - alpha_bar_t) I, so the minimiser
of the epsilon loss E||eps - eps_theta(x_t, t)||^2 is the regression

    E[eps | x_t, y] = sqrt(1 - alpha_bar_t) (x_t - sqrt(alpha_bar_t) mu_y) / v_t.

With K per-class means the model is class-conditional (``num_classes`` = K, ``null_label`` = K);
the null label, or ``labels=None``, gives the exact unconditional prediction of the
equal-weight mixture, sum_k p(k | x_t) E[eps | x_t, k], with the posterior
p(k | x_t) = softmax_k(-||x_t - sqrt(alpha_bar_t) mu_k||^2 / (2 v_t)).

With ``prediction="x0"`` or ``"v"`` it returns the exact E[x0 | x_t, y] = mu_y + sqrt(alpha_bar_t) std^2
(x_t - sqrt(alpha_bar_t) mu_y) / v_t, or v = sqrt(alpha_bar_t) E[eps] - sqrt(1 - alpha_bar_t) E[x0]
(Salimans and Ho 2022), mixed with the same weights: defined at alpha_bar_t = 0 too (zero terminal SNR).
"""

from __future__ import annotations

import torch
from torch import nn

from tracer.schedules import Schedule


class GaussianOracle(nn.Module):
    """eps_theta(x_t, t, labels) = E[eps | x_t (, y)] for data N(mu, std^2 I) or an equal-weight mixture of them.

    ``mean`` is one mean of the sample shape D, or, with ``per_class=True``, K means stacked as [K, *D].
    Computes in float64 and returns x_t's dtype.
    """

    alpha_bar: torch.Tensor
    means: torch.Tensor

    def __init__(self, schedule: Schedule, mean: torch.Tensor, std: float = 1.0, *, per_class: bool = False,
                 prediction: str = "eps") -> None:
        super().__init__()
        if prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction must be eps, x0 or v, got {prediction!r}")
        self.prediction = prediction
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        means = torch.as_tensor(mean, dtype=torch.float64)
        if per_class and (means.dim() < 2 or means.shape[0] < 1):
            raise ValueError("per-class means must be stacked as [K, *D] with K >= 1")
        self.register_buffer("alpha_bar", torch.tensor(schedule.alpha_bar.tolist(), dtype=torch.float64))
        self.register_buffer("means", means.clone() if per_class else means.unsqueeze(0).clone())
        self.std = float(std)
        self.num_classes = int(self.means.shape[0]) if per_class else 0
        self.null_label: int | None = self.num_classes if per_class else None

    def alpha_bar_of(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at timesteps t: the schedule's at an integer t; at a fractional t (a sigma-space sampler's,
        tracer/samplers/karras.py) that of sigma(t), log sigma interpolated between the neighbouring indices, so the
        prediction is exact at the noise level the sampler asked for."""
        t = t.to(self.alpha_bar.device)
        if not t.is_floating_point():
            return self.alpha_bar[t]
        log_sigma = 0.5 * (torch.log1p(-self.alpha_bar) - torch.log(self.alpha_bar))
        t = t.to(torch.float64)
        low = t.floor().long().clamp(0, len(self.alpha_bar) - 1)
        high = (low + 1).clamp(max=len(self.alpha_bar) - 1)
        w = t - low
        sigma2 = torch.exp(2.0 * ((1.0 - w) * log_sigma[low] + w * log_sigma[high]))
        return 1.0 / (1.0 + sigma2)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.means.shape[1:])

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x_t = x.to(torch.float64)
        view = (-1, *([1] * (x.dim() - 1)))
        alpha_bar_t = self.alpha_bar_of(t).reshape(view)
        v_t = alpha_bar_t * self.std**2 + 1.0 - alpha_bar_t  # Var(x_t | y) per coordinate
        # E[eps | x_t, k] for every class k: [B, K, *D]
        centred = x_t.unsqueeze(1) - alpha_bar_t.sqrt().unsqueeze(1) * self.means.unsqueeze(0)
        eps_k = (1.0 - alpha_bar_t).sqrt().unsqueeze(1) * centred / v_t.unsqueeze(1)
        if self.prediction != "eps":  # E[x0 | x_t, k], and v from both
            x0_k = self.means.unsqueeze(0) + alpha_bar_t.sqrt().unsqueeze(1) * self.std**2 * centred / v_t.unsqueeze(1)
            eps_k = x0_k if self.prediction == "x0" else alpha_bar_t.sqrt().unsqueeze(1) * eps_k - (1.0 - alpha_bar_t).sqrt().unsqueeze(1) * x0_k
        return mix(eps_k, centred, v_t, labels, self.num_classes).to(x.dtype)


class GaussianVelocity(nn.Module):
    """The exact flow-matching velocity v*(x, t) = E[eps - x0 | x_t = x] for data N(mu_y, std^2 I) (or an equal-weight mixture),
    on the path x_t = (1 - t) x0 + t eps (tracer/samplers/flow.py): a flow network's oracle, called at the time t T.

    x_t | y ~ N((1 - t) mu_y, V_t I) with V_t = (1 - t)^2 std^2 + t^2; Cov(eps, x_t) = t I and Cov(x0, x_t) = (1 - t) std^2 I, so

        E[eps | x_t, y] = t (x_t - (1 - t) mu_y) / V_t,   E[x0 | x_t, y] = mu_y + (1 - t) std^2 (x_t - (1 - t) mu_y) / V_t
        v*(x_t, t, y)   = (t - (1 - t) std^2) (x_t - (1 - t) mu_y) / V_t - mu_y

    defined on all of [0, 1] (v* = -x at t = 0, x - mu at t = 1). Mixed over classes with the posterior
    p(k | x_t) = softmax_k(-||x_t - (1 - t) mu_k||^2 / (2 V_t)); the null label, or ``labels=None``, is the mixture.
    Computes in float64 and returns x's dtype.
    """

    means: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: float = 1.0, *, T: int = 1000, per_class: bool = False) -> None:  # noqa: N803
        super().__init__()
        if not std > 0:
            raise ValueError(f"std must be positive, got {std}")
        means = torch.as_tensor(mean, dtype=torch.float64)
        if per_class and (means.dim() < 2 or means.shape[0] < 1):
            raise ValueError("per-class means must be stacked as [K, *D] with K >= 1")
        self.register_buffer("means", means.clone() if per_class else means.unsqueeze(0).clone())
        self.std = float(std)
        self.T = int(T)
        self.num_classes = int(self.means.shape[0]) if per_class else 0
        self.null_label: int | None = self.num_classes if per_class else None
        self.prediction = "v"
        self.objective = "flow"

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.means.shape[1:])

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x_t = x.to(torch.float64)
        view = (-1, *([1] * (x.dim() - 1)))
        time = (t.to(torch.float64) / self.T).reshape(view).to(x_t.device)  # the network is called at t T
        var = (1.0 - time) ** 2 * self.std**2 + time**2  # Var(x_t | y) per coordinate
        centred = x_t.unsqueeze(1) - (1.0 - time).unsqueeze(1) * self.means.unsqueeze(0)  # [B, K, *D]
        v_k = (time - (1.0 - time) * self.std**2).unsqueeze(1) * centred / var.unsqueeze(1) - self.means.unsqueeze(0)
        return mix(v_k, centred, var, labels, self.num_classes).to(x.dtype)


def mix(per_class: torch.Tensor, centred: torch.Tensor, var: torch.Tensor, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """The prediction of an equal-weight Gaussian mixture from each component's ([B, K, *D]): under a class label, that
    class's; unconditional (no labels, or the null label K), the posterior mean over k, weighted by p(k | x_t), the softmax
    of the components' log-likelihoods (``centred`` = x_t - its mean under k, ``var`` its variance per coordinate, [B, *1])."""
    if per_class.shape[1] == 1:  # one Gaussian: nothing to mix
        return per_class[:, 0]
    log_lik = -(centred**2).flatten(2).sum(-1) / (2.0 * var.reshape(-1, 1))
    weights = torch.softmax(log_lik, dim=1).reshape(*log_lik.shape, *([1] * (per_class.dim() - 2)))
    mixed = (weights * per_class).sum(1)
    if labels is None or num_classes == 0:
        return mixed
    if bool(((labels < 0) | (labels > num_classes)).any()):
        raise ValueError(f"labels must lie in 0..{num_classes} (the last is the null label)")
    rows = torch.arange(per_class.shape[0], device=per_class.device)
    conditional = labels.ne(num_classes).reshape(-1, *([1] * (per_class.dim() - 2)))  # the null label is K
    return torch.where(conditional, per_class[rows, labels.clamp(max=num_classes - 1)], mixed)
