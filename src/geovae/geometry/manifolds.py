"""Latent manifolds with one interface: Euclidean space, the unit sphere and the hyperboloid.

Points are stored in ambient coordinates (``embed_dim`` = d for R^d, d + 1 for S^d and H^d);
the last tensor dimension is the coordinate dimension. Every tensor is created with the
input's device and dtype. Small-norm limits (sin r / r, sinh r / r, asinh s / s) use Taylor
branches, and norms are taken with a safe square root, so values and gradients stay finite at
and near zero without clamping the gradient of the main term to zero. We write these few
formulas ourselves (after geoopt's sphere.py and lorentz/math.py) rather than depend on geoopt.

Far from the origin the hyperboloid's coordinates grow like e^r / 2, and Minkowski products of
them cancel: <x, y>_L = -cosh d comes out of terms ~cosh(r)^2 (1e8 at r = 10), beyond float32.
So the hyperboloid's maps (exp, log, transport, norm, dist, cdist) (1) read a point from its
spatial part alone (x_0 = sqrt(1 + |x_s|^2): the time coordinate adds nothing, and its rounding
error would be multiplied by cosh(r)^2) and a tangent vector u at x from its spatial part too
(u_0 = <x_s, u_s> / x_0), (2) take y - x, |y - x|_L and transports to and from the origin from
forms that cancel by ~cosh r at worst (``Lorentz._chord``, ``Lorentz._to_origin``), and (3)
compute half and single precision inputs in float64 and return the input dtype (the casts are
differentiable). float64 inputs are used as they are, not converted. float32 results are then
correctly rounded to a few ulps at radius 12 and beyond (tests/geometry/test_lorentz_float32.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from geovae.geometry.base import (  # noqa: F401 - re-exported
    _TAYLOR,
    Manifold,
    _cap,
    asinhc,
    log_sinhc,
    safe_norm,
    sinc,
    sinhc,
    widen,
)
from geovae.geometry.lorentz import Lorentz  # noqa: F401 - re-exported


class Euclidean(Manifold):
    """Flat R^d."""

    name = "euclidean"
    exact_metric = "euclidean"

    def embed_dim(self, dim: int) -> int:
        return dim

    def origin(self, dim: int, like: Tensor) -> Tensor:
        return torch.zeros(dim, dtype=like.dtype, device=like.device)

    def tangent0(self, v: Tensor) -> Tensor:
        return v

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        return x + u

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        return y - x

    def expmap0(self, u: Tensor) -> Tensor:
        return u

    def logmap0(self, y: Tensor) -> Tensor:
        return y

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        return v

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        return safe_norm(x - y, keepdim=False)

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise distances between rows of x (n, d) and y (k, d)."""
        return torch.cdist(x, y)

    def projx(self, x: Tensor) -> Tensor:
        return x

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return u

    def to_plot(self, x: Tensor) -> Tensor:
        return x

    def tangent_basis(self, x: Tensor) -> Tensor:
        """Orthonormal tangent basis at each row: the identity, shape (..., d, d)."""
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        return eye.expand(*x.shape, x.shape[-1])

    def check_point(self, x: Tensor, atol: float | None = None) -> tuple[bool, str | None]:
        ok = bool(torch.isfinite(x).all())
        return ok, None if ok else "non-finite coordinates"

    def ann_space(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        return x, "euclidean"

    def flat_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        return x, "euclidean"


class Sphere(Manifold):
    """Unit hypersphere S^d = {x in R^{d+1} : |x| = 1}."""

    name = "sphere"
    chart = "hammer"

    def projx(self, x: Tensor) -> Tensor:
        return x / safe_norm(x).clamp_min(torch.finfo(x.dtype).tiny)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return u - (x * u).sum(-1, keepdim=True) * x

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        n = safe_norm(u)
        return self.projx(torch.cos(n) * x + sinc(n) * u)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        v = y - (x * y).sum(-1, keepdim=True) * x  # tangent direction, |v| = sin(theta)
        theta = self.dist(x, y).unsqueeze(-1)
        s = safe_norm(v)
        small = (s < _TAYLOR) & ((x * y).sum(-1, keepdim=True) > 0)  # near x, not near -x
        factor = torch.where(small, 1 + s * s / 6, theta / torch.where(small, 1.0, s))
        return factor * v

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Parallel transport along the minimising geodesic (undefined for antipodes)."""
        c = 1 + (x * y).sum(-1, keepdim=True)
        return v - (y * v).sum(-1, keepdim=True) / c * (x + y)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Great-circle distance 2 atan2(|x - y|, |x + y|): accurate at 0 and at pi."""
        return 2 * torch.atan2(safe_norm(x - y, keepdim=False), safe_norm(x + y, keepdim=False))

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise great-circle distances (monotone in the chord, so exact kNN ranking)."""
        chord = torch.cdist(x, y)
        return 2 * torch.asin((chord / 2).clamp(max=1.0))

    def to_plot(self, x: Tensor) -> Tensor:
        return x

    def tangent_basis(self, x: Tensor) -> Tensor:
        """Orthonormal basis of T_x S^d as columns, shape (..., d+1, d).

        Columns 1..d of the Householder reflection that swaps e_0 and x.
        """
        e0 = torch.zeros_like(x)
        e0[..., 0] = 1
        diff = e0 - x
        n = safe_norm(diff)
        u = torch.where(n > 0, diff / torch.where(n > 0, n, 1.0), 0.0)  # u = 0 when x = e_0
        eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
        h = eye - 2 * u.unsqueeze(-1) * u.unsqueeze(-2)
        return h[..., 1:]

    def check_point(self, x: Tensor, atol: float | None = None) -> tuple[bool, str | None]:
        atol = atol if atol is not None else 100 * torch.finfo(x.dtype).eps
        err = ((x * x).sum(-1) - 1).abs().max().item()
        ok = err <= atol
        return ok, None if ok else f"|x|^2 - 1 = {err:.3g} > {atol:.1g}: not on the sphere"

    def ann_space(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        """Cosine distance of the unit vectors: 1 - cos θ is monotone in the angle θ, so the
        neighbours are the same."""
        return x, "cosine"

    def flat_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        """The unit vectors with cosine distance (monotone in the great-circle distance)."""
        return x, "cosine"


MANIFOLDS: dict[str, type[Manifold]] = {"euclidean": Euclidean, "sphere": Sphere,
                                        "hyperbolic": Lorentz}


def get_manifold(name: str) -> Manifold:
    """Instantiate a manifold by name."""
    try:
        return MANIFOLDS[name]()
    except KeyError:
        raise ValueError(f"unknown manifold {name!r}; choose from {sorted(MANIFOLDS)}") from None


def pairwise_dist(manifold: Manifold, x: Tensor, y: Tensor | None = None) -> Tensor:
    """Pairwise geodesic distances between rows (for kNN on a latent embedding)."""
    return manifold.cdist(x, x if y is None else y)
