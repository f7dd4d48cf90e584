"""RealNVP affine coupling flows (Dinh et al. 2017).

A coupling layer splits z into a conditioning half z_A and a transformed half z_B:
z_A' = z_A, z_B' = z_B * exp(s(z_A)) + t(z_A), so log|det dz'/dz| = sum s(z_A). The log-scale
is softly clamped, s = s_max tanh(raw / s_max), and the last layer of the conditioner is
zero-initialised, so every flow starts as the identity.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class AffineCoupling(nn.Module):
    """One affine coupling layer on R^dim.

    ``parity`` 0 conditions on the first dim // 2 coordinates and transforms the rest;
    parity 1 swaps the roles. With dim = 1 and parity 0 the conditioning half is empty and the
    layer is an elementwise affine map with learned constant scale and shift.
    """

    def __init__(self, dim: int, hidden: int = 64, parity: int = 0, s_max: float = 3.0) -> None:
        super().__init__()
        half = dim // 2
        self.dim, self.parity, self.s_max = dim, parity % 2, s_max
        self.n_a = half if self.parity == 0 else dim - half
        n_b = dim - self.n_a
        if self.n_a == 0:
            self.net = None
            self.const = nn.Parameter(torch.zeros(2 * n_b))
        else:
            self.net = nn.Sequential(
                nn.Linear(self.n_a, hidden), nn.SiLU(),
                nn.Linear(hidden, hidden), nn.SiLU(),
                nn.Linear(hidden, 2 * n_b),
            )
            nn.init.zeros_(self.net[-1].weight)
            nn.init.zeros_(self.net[-1].bias)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        a, b = z[..., : self.dim // 2], z[..., self.dim // 2:]
        return (a, b) if self.parity == 0 else (b, a)

    def _join(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.cat([a, b] if self.parity == 0 else [b, a], -1)

    def _s_t(self, a: Tensor) -> tuple[Tensor, Tensor]:
        if self.net is None:
            st = self.const.to(a).expand(*a.shape[:-1], -1)
        else:
            st = self.net(a)
        raw, t = st.chunk(2, -1)
        return self.s_max * torch.tanh(raw / self.s_max), t

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z -> (z', log|det dz'/dz|)."""
        a, b = self._split(z)
        s, t = self._s_t(a)
        return self._join(a, b * torch.exp(s) + t), s.sum(-1)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """z' -> (z, log|det dz/dz'|) = (z, -sum s)."""
        a, b = self._split(y)
        s, t = self._s_t(a)
        return self._join(a, (b - t) * torch.exp(-s)), -s.sum(-1)


class RealNVP(nn.Module):
    """A stack of ``n_layers`` coupling layers with alternating halves (any dim >= 1)."""

    def __init__(self, dim: int, n_layers: int = 4, hidden: int = 64) -> None:
        super().__init__()
        parities = [0] if dim == 1 else [i % 2 for i in range(n_layers)]  # dim 1: one affine
        self.layers = nn.ModuleList(AffineCoupling(dim, hidden, p) for p in parities)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros_like(z[..., 0])
        for layer in self.layers:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        logdet = torch.zeros_like(y[..., 0])
        for layer in reversed(self.layers):
            y, ld = layer.inverse(y)
            logdet = logdet + ld
        return y, logdet

    def log_prob(self, x: Tensor) -> Tensor:
        """Density of x = f(z), z ~ N(0, I): log N(f^-1(x)) + log|det df^-1/dx|."""
        z, logdet = self.inverse(x)
        return -0.5 * (z * z).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi) + logdet
