"""Latent manifolds with one interface: Euclidean space, the unit sphere and the hyperboloid.

Points are stored in ambient coordinates (``embed_dim`` = d for R^d, d + 1 for S^d and H^d);
the last tensor dimension is the coordinate dimension. Every tensor is created with the
input's device and dtype. Small-norm limits (sin r / r, sinh r / r, asinh s / s) use Taylor
branches, and norms are taken with a safe square root, so values and gradients stay finite at
and near zero without clamping the gradient of the main term to zero. We write these few
formulas ourselves (after geoopt's sphere.py and lorentz/math.py) rather than depend on geoopt.
"""

from __future__ import annotations

import math

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


def _max_norm(x: Tensor) -> float:
    """Largest tangent norm whose cosh/sinh stays far from overflow in x's dtype."""
    return 40.0 if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else 300.0


def _cap(n: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
    """Shrink tangent vectors longer than _max_norm so that cosh/sinh cannot overflow."""
    m = _max_norm(u)
    big = n > m
    scale = torch.where(big, m / torch.where(big, n, 1.0), 1.0)
    return n * scale, u * scale


class Manifold:
    """Common interface. Subclasses implement the geometry on ambient coordinates."""

    name = "manifold"

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

    def tangent0_coords(self, u: Tensor) -> Tensor:
        """Ambient tangent vector at the origin -> intrinsic coordinates (inverse of tangent0)."""
        return u[..., 1:]

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


class Euclidean(Manifold):
    """Flat R^d."""

    name = "euclidean"

    def embed_dim(self, dim: int) -> int:
        return dim

    def origin(self, dim: int, like: Tensor) -> Tensor:
        return torch.zeros(dim, dtype=like.dtype, device=like.device)

    def tangent0(self, v: Tensor) -> Tensor:
        return v

    def tangent0_coords(self, u: Tensor) -> Tensor:
        return u

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


class Sphere(Manifold):
    """Unit hypersphere S^d = {x in R^{d+1} : |x| = 1}."""

    name = "sphere"

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


class Lorentz(Manifold):
    """Hyperboloid H^d = {x in R^{d+1} : <x, x>_L = -1, x_0 > 0}, curvature -1."""

    name = "lorentz"

    @staticmethod
    def ldot(u: Tensor, v: Tensor, keepdim: bool = False) -> Tensor:
        """Minkowski product -u_0 v_0 + sum_i u_i v_i."""
        uv = u * v
        p = uv[..., 1:].sum(-1) - uv[..., 0]
        return p.unsqueeze(-1) if keepdim else p

    def inner(self, x: Tensor, u: Tensor, v: Tensor, keepdim: bool = False) -> Tensor:
        return self.ldot(u, v, keepdim=keepdim)

    def projx(self, x: Tensor) -> Tensor:
        """Recompute x_0 = sqrt(1 + |x_{1:}|^2) from the spatial part."""
        s = x[..., 1:]
        return torch.cat([torch.sqrt(1 + (s * s).sum(-1, keepdim=True)), s], -1)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        return u + self.ldot(x, u, keepdim=True) * x

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        n, u = _cap(self.norm(x, u, keepdim=True), u)
        return self.projx(torch.cosh(n) * x + sinhc(n) * u)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """d / sinh(d) * (y - cosh(d) x), with d = asinh |v|_L: no acosh near 1."""
        v = y + self.ldot(x, y, keepdim=True) * x
        return asinhc(self.norm(x, v, keepdim=True)) * v

    def expmap0(self, u: Tensor) -> Tensor:
        """(cosh |u_s|, sinh|u_s| / |u_s| u_s) from the spatial part u_s = u[1:] (u_0 ignored)."""
        n, s = _cap(safe_norm(u[..., 1:]), u[..., 1:])
        return self.projx(torch.cat([torch.cosh(n), sinhc(n) * s], -1))

    def logmap0(self, y: Tensor) -> Tensor:
        s = y[..., 1:]
        return torch.cat([torch.zeros_like(y[..., :1]), asinhc(safe_norm(s)) * s], -1)

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Parallel transport v + <y, v>_L / (1 - <x, y>_L) (x + y)."""
        return v + self.ldot(y, v, keepdim=True) / (1 - self.ldot(x, y, keepdim=True)) * (x + y)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """acosh(-<x, y>_L) computed as 2 asinh(|x - y|_L / 2): accurate for nearby points."""
        d = x - y
        return 2 * torch.asinh(_safe_sqrt(self.ldot(d, d)) / 2)

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise distances acosh(-<x_i, y_j>_L) between rows of x (n, d+1) and y (k, d+1)."""
        xs = torch.cat([-x[..., :1], x[..., 1:]], -1)
        return torch.acosh((-(xs @ y.transpose(-1, -2))).clamp_min(1.0))

    def to_plot(self, x: Tensor) -> Tensor:
        """Poincare-ball coordinates x_{1:} / (1 + x_0)."""
        return x[..., 1:] / (1 + x[..., :1])

    def tangent_basis(self, x: Tensor) -> Tensor:
        """Lorentz-orthonormal basis of T_x H^d (columns, (..., d+1, d)): e_1..e_d moved from
        the origin by parallel transport, e_i + x_i / (1 + x_0) (e_0 + x)."""
        m = x.shape[-1]
        eye = torch.eye(m, dtype=x.dtype, device=x.device)[:, 1:]
        o_plus_x = x + self.origin(m - 1, x)
        coef = x[..., 1:] / (1 + x[..., :1])  # (..., d)
        return eye + o_plus_x.unsqueeze(-1) * coef.unsqueeze(-2)

    def check_point(self, x: Tensor, atol: float | None = None) -> tuple[bool, str | None]:
        atol = atol if atol is not None else 100 * torch.finfo(x.dtype).eps
        if bool((x[..., 0] <= 0).any()):
            return False, "x_0 <= 0: on the lower sheet"
        err = ((self.ldot(x, x) + 1).abs() / x[..., 0] ** 2).max().item()
        ok = err <= atol
        return ok, None if ok else f"|<x,x>_L + 1| / x_0^2 = {err:.3g} > {atol:.1g}"


MANIFOLDS: dict[str, type[Manifold]] = {"euclidean": Euclidean, "sphere": Sphere,
                                        "lorentz": Lorentz, "hyperbolic": Lorentz}


def get_manifold(name: str) -> Manifold:
    """Instantiate a manifold by name."""
    try:
        return MANIFOLDS[name]()
    except KeyError:
        raise ValueError(f"unknown manifold {name!r}; choose from {sorted(MANIFOLDS)}") from None


def pairwise_dist(manifold: Manifold, x: Tensor, y: Tensor | None = None) -> Tensor:
    """Pairwise geodesic distances between rows (for kNN on a latent embedding)."""
    return manifold.cdist(x, x if y is None else y)
