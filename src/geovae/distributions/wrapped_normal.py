"""Wrapped normal on the hyperboloid H^n (Nagano et al. 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from geovae.geometry.manifolds import Lorentz, _cap, log_sinhc, safe_norm, widen

_H = Lorentz()


class WrappedNormal(Distribution):
    """z = exp_mu(PT_{mu0 -> mu}(v)), v ~ N(0, diag(scale^2)) in T_{mu0} H^n = R^n.

    ``loc``: points on H^n, shape (..., n+1); ``scale``: (..., n), positive.
    log q(z) = log N(v; 0, diag(scale^2)) - (n - 1) log(sinh r / r), with r = |log_mu z|_L.
    There is no closed-form KL: estimate it by Monte Carlo, log q(z) - log p(z).
    """

    arg_constraints = {"loc": constraints.real_vector, "scale": constraints.positive}
    support = constraints.real_vector
    has_rsample = True

    def __init__(self, loc: Tensor, scale: Tensor, validate_args: bool | None = None) -> None:
        n = loc.shape[-1] - 1
        batch = torch.broadcast_shapes(loc.shape[:-1], scale.shape[:-1])
        self.loc = loc.expand(*batch, n + 1)
        self.scale = scale.expand(*batch, n)
        self.n = n
        super().__init__(batch, torch.Size([n + 1]), validate_args)

    @property
    def mean(self) -> Tensor:
        """The Frechet mean, loc (the tangent law is centrally symmetric)."""
        return self.loc

    def rsample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        return self.rsample_with_log_prob(sample_shape)[0]

    def rsample_with_log_prob(self, sample_shape: torch.Size | tuple = ()) -> tuple[Tensor, Tensor]:
        """Sample z and log q(z), the latter from v directly (r = |v| as PT is an isometry)."""
        shape = torch.Size(sample_shape) + self.batch_shape
        v = self.scale * torch.randn(*shape, self.n, dtype=self.loc.dtype, device=self.loc.device)
        z = self.push(v, self.loc.expand(*shape, self.n + 1))
        return z, self._log_density(v, safe_norm(v, keepdim=False))

    @staticmethod
    def push(v: Tensor, loc: Tensor) -> Tensor:
        """Tangent coordinates v at the origin -> point exp_loc(PT_{mu0 -> loc}(v)).

        In float64 for lower-precision inputs, end to end: PT(v) has coordinates ~cosh|loc| |v|,
        and rounding them to float32 on the way would move z by ~eps cosh|loc| |v|.
        """
        v = _cap(safe_norm(v), v)[1]  # |v| capped for the caller's dtype, not for float64
        dtype, (v, loc) = widen(v, loc)
        return _H.expmap(loc, _H.transp0(loc, _H.tangent0(v))).to(dtype)

    @staticmethod
    def pull(z: Tensor, loc: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of ``push``: v = PT_{loc -> mu0}(log_loc z)[1:] and r = |v| = d(loc, z)
        (in float64 for lower-precision inputs, like ``push``)."""
        dtype, (z, loc) = widen(z, loc)
        v, r = WrappedNormal._pull(z, loc)
        return v.to(dtype), r.to(dtype)

    @staticmethod
    def _pull(z: Tensor, loc: Tensor) -> tuple[Tensor, Tensor]:
        v = _H.transp0back(loc, _H.logmap(loc, z))[..., 1:]
        return v, safe_norm(v, keepdim=False)

    def log_prob(self, value: Tensor) -> Tensor:
        dtype, (z, loc, scale) = widen(value, self.loc, self.scale)
        return self._log_density(*self._pull(z, loc), scale).to(dtype)

    def _log_density(self, v: Tensor, r: Tensor, scale: Tensor | None = None) -> Tensor:
        scale = self.scale if scale is None else scale
        normal = -0.5 * (v / scale) ** 2 - torch.log(scale) - 0.5 * math.log(2 * math.pi)
        return normal.sum(-1) - (self.n - 1) * log_sinhc(r)
