"""Shared pieces of the manifolds: safe norms and square roots, Taylor-branch special
functions, float64 widening for low-precision inputs, tangent-norm caps, and the `Manifold`
interface (with what the tools ask of a latent's geometry: its neighbour search, its flat
coordinates and its chart)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

_TAYLOR = 1e-2  # below this, use series: the closed forms' gradients cancel catastrophically


def safe_norm(x: Tensor, keepdim: bool = True) -> Tensor:
    """Euclidean norm over the last dim, with a zero (not NaN) gradient at x = 0."""
    return _safe_sqrt((x * x).sum(-1, keepdim=keepdim))


def _safe_sqrt(sq: Tensor) -> Tensor:
    """sqrt(max(sq, 0)) whose gradient is 0, not inf/NaN, where sq <= 0."""
    pos = sq > 0
    return torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), 0.0 * sq)


def _series(x: Tensor, exact, c2: float, c4: float) -> Tensor:
    """exact(x) away from 0, else 1 + c2 x^2 + c4 x^4 (double-where keeps gradients finite)."""
    small = x.abs() < _TAYLOR
    xs = torch.where(small, torch.ones_like(x), x)
    x2 = x * x
    return torch.where(small, 1 + x2 * (c2 + c4 * x2), exact(xs))


def sinc(x: Tensor) -> Tensor:
    """sin(x) / x."""
    return _series(x, lambda t: torch.sin(t) / t, -1 / 6, 1 / 120)


def sinhc(x: Tensor) -> Tensor:
    """sinh(x) / x."""
    return _series(x, lambda t: torch.sinh(t) / t, 1 / 6, 1 / 120)


def asinhc(x: Tensor) -> Tensor:
    """asinh(x) / x."""
    return _series(x, lambda t: torch.asinh(t) / t, -1 / 6, 3 / 40)


def log_sinhc(r: Tensor) -> Tensor:
    """log(sinh(r) / r) for r >= 0, finite for r = 0 and for large r (no overflow)."""
    small = r < _TAYLOR
    rs = torch.where(small, torch.ones_like(r), r)
    big = rs + torch.log1p(-torch.exp(-2 * rs)) - math.log(2.0) - torch.log(rs)
    r2 = r * r
    return torch.where(small, r2 / 6 - r2 * r2 / 180, big)


_LOW = (torch.float16, torch.bfloat16, torch.float32)


def widen(*tensors: Tensor) -> tuple[torch.dtype, list[Tensor]]:
    """The tensors' common dtype, and the tensors in the dtype to compute in: float64 for half
    and single precision (a differentiable cast), otherwise that dtype (float64: no copy)."""
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensors))
    work = torch.float64 if dtype in _LOW else dtype
    return dtype, [t.to(work) for t in tensors]


def _max_norm(dtype: torch.dtype) -> float:
    """Largest tangent norm whose cosh/sinh stays far from overflow in ``dtype``."""
    return 40.0 if dtype in _LOW else 300.0


def _cap(n: Tensor, u: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Shrink tangent vectors longer than _max_norm (of ``dtype``, default u's) so that
    cosh/sinh cannot overflow."""
    m = _max_norm(u.dtype if dtype is None else dtype)
    big = n > m
    scale = torch.where(big, m / torch.where(big, n, 1.0), 1.0)
    return n * scale, u * scale


class Manifold:
    """Common interface. Subclasses implement the geometry on ambient coordinates, and say
    how tools outside the geometry handle their points: `ann_space` (approximate kNN),
    `exact_metric` (exact kNN), `flat_coordinates` (silhouettes, k-means), `chart` and
    `chart_coordinates` (pictures)."""

    name = "manifold"
    #: a scikit-learn metric equal to the geodesic distance (exact kNN by scikit-learn's
    #: trees), or None: exact kNN from `cdist` in blocks
    exact_metric: str | None = None
    #: the picture of the latent the report draws: "plane" (none of its own: the UMAP),
    #: "hammer" (an equal-area map of the sphere), "poincare" (the Poincaré disk)
    chart = "plane"

    def ann_space(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """The data and the metric (a pynndescent name or a numba function) with which an
        approximate kNN search ranks neighbours as the geodesic distance does."""
        raise NotImplementedError

    def flat_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        """Coordinates and a scikit-learn metric for tools that work in flat space
        (silhouettes, k-means)."""
        raise NotImplementedError

    def chart_coordinates(self, x: Tensor) -> Tensor | None:
        """The chart's coordinates, where a model stores them beside the latent; None where
        the chart is drawn from the points themselves."""
        return None

    def embed_dim(self, dim: int) -> int:
        """Ambient dimension for an intrinsic dimension ``dim``."""
        return dim + 1

    def origin(self, dim: int, like: Tensor) -> Tensor:
        """The base point e_0 = (1, 0, ..., 0) of a ``dim``-dimensional manifold."""
        o = torch.zeros(self.embed_dim(dim), dtype=like.dtype, device=like.device)
        o[0] = 1.0
        return o

    def tangent0(self, v: Tensor) -> Tensor:
        """Intrinsic coordinates (..., d) -> ambient tangent vector at the origin."""
        return torch.cat([torch.zeros_like(v[..., :1]), v], -1)

    def inner(self, x: Tensor, u: Tensor, v: Tensor, keepdim: bool = False) -> Tensor:
        """Riemannian inner product of tangent vectors u, v at x."""
        return (u * v).sum(-1, keepdim=keepdim)

    def norm(self, x: Tensor, u: Tensor, keepdim: bool = False) -> Tensor:
        """Riemannian norm of a tangent vector."""
        return _safe_sqrt(self.inner(x, u, u, keepdim=keepdim))

    def expmap0(self, u: Tensor) -> Tensor:
        """exp at the origin of an ambient tangent vector u (u_0 = 0; see ``tangent0``)."""
        return self.expmap(self.origin(u.shape[-1] - 1, u).expand_as(u), u)

    def logmap0(self, y: Tensor) -> Tensor:
        """log at the origin, as an ambient tangent vector with first coordinate 0."""
        return self.logmap(self.origin(y.shape[-1] - 1, y).expand_as(y), y)

    def check_point(self, x: Tensor, atol: float | None = None) -> tuple[bool, str | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
