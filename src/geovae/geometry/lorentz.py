"""The hyperboloid (Lorentz model) H^d of curvature -1, with float32-safe maps far from the
origin: low-precision inputs are computed in float64, the time coordinate is rebuilt from the
spatial part, and distances and logs use cancellation-reduced forms."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torch import Tensor

from geovae.geometry.base import (
    Manifold,
    _cap,
    asinhc,
    safe_norm,
    sinhc,
    widen,
)


class Lorentz(Manifold):
    """Hyperboloid H^d = {x in R^{d+1} : <x, x>_L = -1, x_0 > 0}, curvature -1."""

    name = "hyperbolic"
    chart = "poincare"

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

    @staticmethod
    def _time(s: Tensor) -> Tensor:
        """x_0 = sqrt(1 + |s|^2) of the point with spatial part s (last dim kept)."""
        return torch.sqrt(1 + (s * s).sum(-1, keepdim=True))

    @staticmethod
    def _chord(xs: Tensor, x0: Tensor, ys: Tensor, y0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """y - x as (y_0 - x_0, y_s - x_s), and c = |y - x|_L = sqrt(2 cosh d(x, y) - 2).

        y_0 - x_0 = <y_s - x_s, y_s + x_s> / (x_0 + y_0): no cancellation beyond y_s - x_s
        (exact for float32 numbers computed in float64). c comes from the Poincare-ball
        coordinates p = x_s / (1 + x_0): c^2 = (1 + x_0)(1 + y_0) |p_y - p_x|^2, and
        w = (1 + x_0)(1 + y_0)(p_y - p_x) = (1 + a_0)(y_s - x_s) - (y_0 - x_0) a_s for a = x and
        for a = y. With a the point nearer the origin, w cancels at worst by ~cosh of its radius
        (nearby points far out, radial offset): a relative error ~eps cosh r, against
        eps cosh(r)^2 for |y - x|_L^2 summed directly. Swapping x and y negates w exactly (so c
        is exactly symmetric) except at the tie x_0 = y_0, where it is symmetric to rounding.
        """
        ds, s0 = ys - xs, x0 + y0
        d0 = (ds * (xs + ys)).sum(-1, keepdim=True) / s0
        xa = x0 <= y0
        w = (1 + torch.where(xa, x0, y0)) * ds - d0 * torch.where(xa, xs, ys)
        return d0, ds, safe_norm(w / torch.sqrt((1 + x0) * (1 + y0)))

    def _to_origin(self, xs: Tensor, x0: Tensor, us: Tensor) -> Tensor:
        """Spatial part of the parallel transport to the origin of the tangent vector at x with
        spatial part u_s (u_0 = <x_s, u_s> / x_0): u_s - <x_s, u_s> / (x_0 (1 + x_0)) x_s. It
        cancels by ~cosh r (radial u), where |u_s|^2 - u_0^2 would cancel by cosh(r)^2."""
        return us - (xs * us).sum(-1, keepdim=True) / (x0 * (1 + x0)) * xs

    def transp0(self, x: Tensor, u: Tensor) -> Tensor:
        """Parallel transport from the origin to x of u (u_0 ignored; see ``tangent0``):
        (<x_s, u_s>, u_s + <x_s, u_s> / (1 + x_0) x_s)."""
        dtype, (x, u) = widen(x, u)
        xs, us = x[..., 1:], u[..., 1:]
        xu = (xs * us).sum(-1, keepdim=True)
        return torch.cat([xu, us + xu / (1 + self._time(xs)) * xs], -1).to(dtype)

    def transp0back(self, x: Tensor, u: Tensor) -> Tensor:
        """Parallel transport of u, tangent at x, to the origin (first coordinate 0)."""
        dtype, (x, u) = widen(x, u)
        xs = x[..., 1:]
        v = self._to_origin(xs, self._time(xs), u[..., 1:])
        return torch.cat([torch.zeros_like(v[..., :1]), v], -1).to(dtype)

    def norm(self, x: Tensor, u: Tensor, keepdim: bool = False) -> Tensor:
        """|u|_L of the tangent vector at x with spatial part u_s (u_0 = <x_s, u_s> / x_0), as
        the Euclidean norm of its transport to the origin."""
        dtype, (x, u) = widen(x, u)
        xs = x[..., 1:]
        return safe_norm(self._to_origin(xs, self._time(xs), u[..., 1:]), keepdim).to(dtype)

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """cosh|u| x + sinh|u| / |u| u, u read from its spatial part (see ``norm``)."""
        dtype, (x, u) = widen(x, u)
        xs, us = x[..., 1:], u[..., 1:]
        n, us = _cap(safe_norm(self._to_origin(xs, self._time(xs), us)), us, dtype)
        ys = torch.cosh(n) * xs + sinhc(n) * us
        return torch.cat([self._time(ys), ys], -1).to(dtype)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """d / sinh(d) * (y - cosh(d) x), with y - cosh(d) x = (y - x) - |y - x|_L^2 / 2 x and
        sinh(d) = c sqrt(1 + c^2 / 4), c = |y - x|_L: no acosh near 1, no cancellation."""
        dtype, (x, y) = widen(x, y)
        xs, ys = x[..., 1:], y[..., 1:]
        x0 = self._time(xs)
        d0, ds, c = self._chord(xs, x0, ys, self._time(ys))
        h = c * c / 2
        f = asinhc(c * torch.sqrt(1 + h / 2))
        return torch.cat([f * (d0 - h * x0), f * (ds - h * xs)], -1).to(dtype)

    def expmap0(self, u: Tensor) -> Tensor:
        """(cosh |u_s|, sinh|u_s| / |u_s| u_s) from the spatial part u_s = u[1:] (u_0 ignored)."""
        n, s = _cap(safe_norm(u[..., 1:]), u[..., 1:])
        return self.projx(torch.cat([torch.cosh(n), sinhc(n) * s], -1))

    def logmap0(self, y: Tensor) -> Tensor:
        s = y[..., 1:]
        return torch.cat([torch.zeros_like(y[..., :1]), asinhc(safe_norm(s)) * s], -1)

    def transp(self, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
        """Parallel transport v + <y, v>_L / (1 - <x, y>_L) (x + y), v read from its spatial part
        (v_0 = <x_s, v_s> / x_0), with 1 - <x, y>_L = 2 + c^2 / 2 (c from ``_chord``)."""
        dtype, (x, y, v) = widen(x, y, v)
        xs, ys, vs = x[..., 1:], y[..., 1:], v[..., 1:]
        x0, y0 = self._time(xs), self._time(ys)
        xv = (xs * vs).sum(-1, keepdim=True)
        d0, ds, c = self._chord(xs, x0, ys, y0)
        # <y, v>_L = <y_s, v_s> - y_0 v_0 = <(y - x)_s, v_s> - (y - x)_0 v_0: the first form
        # cancels less when y is nearer the origin than to x, the second otherwise
        nearer = (ds * ds).sum(-1, keepdim=True) < y0 * y0
        yv = (torch.where(nearer, ds, ys) * vs).sum(-1, keepdim=True)
        k = (yv - torch.where(nearer, d0, y0) * xv / x0) / (2 + c * c / 2)
        return torch.cat([xv / x0 + k * (x0 + y0), vs + k * (xs + ys)], -1).to(dtype)

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """acosh(-<x, y>_L) computed as 2 asinh(|x - y|_L / 2), |x - y|_L from ``_chord``."""
        dtype, (x, y) = widen(x, y)
        xs, ys = x[..., 1:], y[..., 1:]
        c = self._chord(xs, self._time(xs), ys, self._time(ys))[2]
        return (2 * torch.asinh(c.squeeze(-1) / 2)).to(dtype)

    def cdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Pairwise distances between rows of x (n, d+1) and y (k, d+1): 2 asinh(c / 2) with
        c = |x - y|_L = sqrt((1 + x_0)(1 + y_0)) |p_x - p_y| in Poincare-ball coordinates p,
        the differences taken directly (not |p|^2 + |q|^2 - 2 p.q, which cancels)."""
        dtype, (x, y) = widen(x, y)
        x1, y1 = 1 + self._time(x[..., 1:]), 1 + self._time(y[..., 1:])
        chord = torch.cdist(x[..., 1:] / x1, y[..., 1:] / y1,
                            compute_mode="donot_use_mm_for_euclid_dist")
        half_c = (x1.sqrt() / 2) * chord * y1.sqrt().transpose(-1, -2)
        return (2 * torch.asinh(half_c)).to(dtype)

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

    def ann_space(self, x: np.ndarray) -> tuple[np.ndarray, Any]:
        """The geodesic distance itself (`ann_metric`, a numba function: pynndescent < 0.7
        has no hyperbolic metric) on the spatial coordinates x_{1:}."""
        return np.ascontiguousarray(x[:, 1:]), ann_metric()

    def flat_coordinates(self, x: np.ndarray) -> tuple[np.ndarray, str]:
        """The tangent space at the origin (log map: exact distances to the origin)."""
        t = self.logmap0(torch.as_tensor(x, dtype=torch.float64))
        return t.numpy(), "euclidean"

    def chart_coordinates(self, x: Tensor) -> Tensor:
        """Poincaré-ball coordinates (`to_plot`)."""
        return self.to_plot(x)


@functools.cache
def ann_metric():  # noqa: ANN201 - a numba function
    """Geodesic distance on the hyperboloid for pynndescent, from the spatial parts x_{1:}
    alone (x_0 = sqrt(1 + |x_{1:}|^2)), with ``Lorentz._chord``'s cancellation-reduced
    |x - y|_L, accumulated in float64: 2 asinh(|x - y|_L / 2) = acosh(-<x, y>_L).
    One function per process: numba compiles NN-descent anew for each new metric function
    (tens of seconds)."""
    import numba

    @numba.njit(fastmath=False, cache=False)
    def lorentz(x, y):  # noqa: ANN001, ANN202
        xx = 0.0
        yy = 0.0
        dd = 0.0  # <y_s - x_s, y_s + x_s>
        for i in range(x.shape[0]):
            xi = np.float64(x[i])
            yi = np.float64(y[i])
            xx += xi * xi
            yy += yi * yi
            dd += (yi - xi) * (yi + xi)
        x0 = np.sqrt(1.0 + xx)
        y0 = np.sqrt(1.0 + yy)
        d0 = dd / (x0 + y0)
        a0 = x0 if x0 <= y0 else y0
        ww = 0.0
        for i in range(x.shape[0]):
            xi = np.float64(x[i])
            yi = np.float64(y[i])
            ai = xi if x0 <= y0 else yi
            w = (1.0 + a0) * (yi - xi) - d0 * ai
            ww += w * w
        c = np.sqrt(ww / ((1.0 + x0) * (1.0 + y0)))
        return 2.0 * np.arcsinh(c / 2.0)

    return lorentz
