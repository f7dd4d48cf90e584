"""Power Spherical distribution (De Cao & Aziz 2020): density C(kappa) (1 + mu^T x)^kappa."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Beta, Distribution, constraints, register_kl

from geovae.distributions._common import broadcast_loc_scale

from .hyperspherical_uniform import HypersphericalUniform, tangent_sample


class PowerSpherical(Distribution):
    """On S^{m-1} in R^m. (mu^T x + 1) / 2 ~ Beta(alpha, beta), alpha = (m-1)/2 + kappa,
    beta = (m-1)/2: reparameterised sampling with no rejection and no Bessel functions.

    ``loc``: unit vectors (..., m); ``scale``: kappa > 0, shape (...) or (..., 1).
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, validate_args: bool | None = None) -> None:
        self.loc, self.scale, batch = broadcast_loc_scale(loc, scale)
        self.dim = loc.shape[-1]
        super().__init__(batch, torch.Size([self.dim]), validate_args)

    @property
    def _alpha_beta(self) -> tuple[Tensor, float]:
        beta = 0.5 * (self.dim - 1)
        return self.scale + beta, beta

    def log_normalizer(self) -> Tensor:
        """log C(kappa) = -[(a+b) log 2 + b log pi + lgamma(a) - lgamma(a+b)]."""
        a, b = self._alpha_beta
        return -((a + b) * math.log(2) + b * math.log(math.pi) + torch.lgamma(a)
                 - torch.lgamma(a + b))

    def log_prob(self, value: Tensor) -> Tensor:
        cos = (self.loc * value).sum(-1)
        return self.log_normalizer() + self.scale * torch.log1p(cos)

    def entropy(self) -> Tensor:
        a, b = self._alpha_beta
        return -(self.log_normalizer() + self.scale
                 * (math.log(2) + torch.digamma(a) - torch.digamma(a + b)))

    @property
    def mean(self) -> Tensor:
        a, b = self._alpha_beta
        return ((a - b) / (a + b)).unsqueeze(-1) * self.loc

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        a, b = self._alpha_beta
        y = Beta(a, torch.full_like(a, b)).rsample(torch.Size(sample_shape))
        w, one_minus_w = 2 * y - 1, 2 * (1 - y)
        return tangent_sample(w, one_minus_w, self.loc.expand(*shape, self.dim))


@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_ps_uniform(q: PowerSpherical, p: HypersphericalUniform) -> Tensor:
    return -q.entropy() + p.entropy()
