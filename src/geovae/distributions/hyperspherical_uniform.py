"""Uniform distribution on the unit sphere S^{m-1} in R^m, and shared sphere helpers."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints


def log_sphere_area(m: int) -> float:
    """log of the surface area of S^{m-1}: log(2 pi^(m/2) / Gamma(m/2))."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def uniform_direction(shape: torch.Size, m: int, like: Tensor) -> Tensor:
    """Uniform samples on S^{m-1}, shape (*shape, m), with like's dtype and device."""
    x = torch.randn(*shape, m, dtype=like.dtype, device=like.device)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)


def rotate_e1_to(x: Tensor, loc: Tensor) -> Tensor:
    """Apply the Householder reflection that maps e_1 = (1, 0, ..., 0) to the unit vector loc."""
    u = -loc.clone()
    u[..., 0] += 1
    n = u.norm(dim=-1, keepdim=True)
    u = torch.where(n > 0, u / torch.where(n > 0, n, 1.0), 0.0)  # loc = e_1: identity
    return x - 2 * (x * u).sum(-1, keepdim=True) * u


def tangent_sample(w: Tensor, one_minus_w: Tensor, loc: Tensor) -> Tensor:
    """Point with mu^T x = w and a uniform direction orthogonal to mu = loc.

    ``one_minus_w`` = 1 - w is passed separately so sqrt(1 - w^2) stays accurate near w = 1.
    """
    m = loc.shape[-1]
    v = uniform_direction(w.shape, m - 1, loc)
    radial = torch.sqrt((one_minus_w * (2 - one_minus_w)).clamp_min(torch.finfo(w.dtype).tiny))
    x = torch.cat([w.unsqueeze(-1), radial.unsqueeze(-1) * v], -1)
    return rotate_e1_to(x, loc)


class HypersphericalUniform(Distribution):
    """Uniform distribution on S^{dim-1}; ``dim`` is the ambient dimension (event size)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(
        self,
        dim: int,
        batch_shape: torch.Size | tuple = (),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        validate_args: bool | None = None,
    ) -> None:
        self.dim = int(dim)
        self._like = torch.empty(0, device=device, dtype=dtype or torch.get_default_dtype())
        super().__init__(torch.Size(batch_shape), torch.Size([self.dim]), validate_args)

    def sample(self, sample_shape: torch.Size | tuple = ()) -> Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        return uniform_direction(shape, self.dim, self._like)

    def log_prob(self, value: Tensor) -> Tensor:
        return torch.full_like(value[..., 0], -log_sphere_area(self.dim))

    def entropy(self) -> Tensor:
        return torch.full(self.batch_shape, log_sphere_area(self.dim),
                          dtype=self._like.dtype, device=self._like.device)
