"""Float32 accuracy of the hyperboloid maps far from the origin, against 40-digit references.

A float32 point at hyperbolic radius r has coordinates ~e^r / 2; rounding them moves the point
by up to ~eps sinh(r) / 2 (7e-4 at r = 10): the resolution of the representation, which no
formula can beat. So every reference here is computed in mpmath (40 digits) from the very
float32 numbers the code receives, read as the code reads them: a point is its spatial part
(x_0 = sqrt(1 + |x_s|^2)) and a tangent vector at x is its spatial part too
(u_0 = <x_s, u_s> / x_0). The time coordinate adds no information, and its rounding error is
multiplied by ~cosh(r)^2 (1e8 at r = 10) in any Minkowski product. Against these references a
float32 result must be right to a few float32 ulps of its own size (for a point: a hyperbolic
distance of a few eps * |x_s|).

Pairs of points: ``near`` (distance 1e-3 .. 1e-1, radial and angular offsets mixed) and ``far``
(the second point anywhere within radius r of the origin), with the first point at radius r.
"""

import math

import mpmath
import numpy as np
import pytest
import torch

from geovae.distributions import WrappedNormal
from geovae.geometry.manifolds import Lorentz
from geovae.graph.neighbors import GeodesicKNN

H = Lorentz()
EPS32 = torch.finfo(torch.float32).eps
RADII = [2.0, 7.0, 10.0, 12.0]
KINDS = ["near", "far"]
MP = mpmath.MPContext()  # a private context: the global mpmath precision stays untouched
MP.dps = 40


# ---------------------------------------------------------------- inputs (float64 -> float32)
def directions(n, d, g):
    w = torch.randn(n, d, generator=g, dtype=torch.float64)
    return w / w.norm(dim=-1, keepdim=True)


def polar(r, w):
    """The point at radius r in direction w (unit rows), in float64."""
    return torch.cat([r.cosh().unsqueeze(-1), r.sinh().unsqueeze(-1) * w], -1)


def to_f32(x):
    """Round a float64 point to float32 as a float32 projx would leave it."""
    s = x[..., 1:].float()
    x0 = torch.sqrt(1 + (s.double() ** 2).sum(-1, keepdim=True)).float()
    return torch.cat([x0, s], -1)


def pairs(radius, kind, n=32, d=3, seed=0):
    """Float32 points x at hyperbolic radius ``radius`` and partners y (see module doc)."""
    g = torch.Generator().manual_seed(seed)
    r1 = torch.full((n,), radius, dtype=torch.float64)
    w1 = directions(n, d, g)
    if kind == "near":
        delta = 10 ** (-3 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
        phi = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        p = torch.randn(n, d, generator=g, dtype=torch.float64)
        p = p - (p * w1).sum(-1, keepdim=True) * w1
        p = p / p.norm(dim=-1, keepdim=True)
        angle = (delta * phi.sin() / math.sinh(radius)).unsqueeze(-1)
        r2, w2 = r1 + delta * phi.cos(), angle.cos() * w1 + angle.sin() * p
    else:
        r2, w2 = radius * torch.rand(n, generator=g, dtype=torch.float64), directions(n, d, g)
    return to_f32(polar(r1, w1)), to_f32(polar(r2, w2))


def tangent_at(x, c):
    """Tangent vectors at x (float32 points) with intrinsic coordinates c: c moved from the
    origin by parallel transport, computed in float64 and rounded to float32."""
    x, c = x.double(), c.double()
    xc = (x[..., 1:] * c).sum(-1, keepdim=True)
    return torch.cat([xc, c + xc / (1 + x[..., :1]) * x[..., 1:]], -1).float()


# ---------------------------------------------------------------- 40-digit references
def mp_vec(row):
    """mpf copies of a row of floats (tensors, numpy scalars), mpf values kept as they are."""
    return [t if isinstance(t, MP.mpf) else MP.mpf(float(t)) for t in row]


def mp_point(row):
    s = mp_vec(row[1:])
    return [MP.sqrt(1 + MP.fsum(t * t for t in s))] + s


def mp_tangent(x, row):
    s = mp_vec(row[1:])
    return [MP.fsum(a * b for a, b in zip(x[1:], s, strict=True)) / x[0]] + s


def mp_origin(d):
    return [MP.mpf(1)] + [MP.mpf(0)] * d


def mp_ldot(a, b):
    return MP.fsum(p * q for p, q in zip(a[1:], b[1:], strict=True)) - a[0] * b[0]


def mp_dist(x, y):
    return MP.acosh(max(-mp_ldot(x, y), MP.mpf(1)))


def mp_logmap(x, y):
    d, c = mp_dist(x, y), -mp_ldot(x, y)
    f = d / MP.sinh(d) if d else MP.mpf(1)
    return [f * (b - c * a) for a, b in zip(x, y, strict=True)]


def mp_expmap(x, u):
    n = MP.sqrt(max(mp_ldot(u, u), MP.mpf(0)))
    f = MP.sinh(n) / n if n else MP.mpf(1)
    return [MP.cosh(n) * a + f * b for a, b in zip(x, u, strict=True)]


def mp_transp(x, y, v):
    k = mp_ldot(y, v) / (1 - mp_ldot(x, y))
    return [c + k * (a + b) for a, b, c in zip(x, y, v, strict=True)]


def mp_norm(v):
    return MP.sqrt(MP.fsum(t * t for t in v))


def rel_err(row, ref):
    """Euclidean |row - ref| / |ref| over the spatial coordinates (how the code reads them),
    i.e. all but the first entry."""
    e = mp_norm([MP.mpf(float(a)) - b for a, b in zip(row[1:], ref[1:], strict=True)])
    return float(e / mp_norm(ref[1:]))


def point_err(row, ref):
    """Hyperbolic distance from the float32 point ``row`` to ``ref``, in units of the best a
    float32 point near ``ref`` can do (eps * |ref_s|, at least eps)."""
    return float(mp_dist(mp_point(row), mp_point(ref)) / (EPS32 * max(1, mp_norm(ref[1:]))))


# ---------------------------------------------------------------- manifold maps
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", RADII)
def test_dist_float32_far_from_origin(radius, kind):
    x, y = pairs(radius, kind)
    ref = [mp_dist(mp_point(a), mp_point(b)) for a, b in zip(x, y, strict=True)]
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-9)):
        out = H.dist(x.to(dtype), y.to(dtype))
        assert out.dtype == dtype
        err = max(abs(float(o) - float(r)) / float(r) for o, r in zip(out, ref, strict=True))
        assert err < tol, f"{dtype}: max relative error {err:.3g}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", RADII)
def test_cdist_float32_far_from_origin(radius, kind):
    # float64 too: GeodesicKNN casts float32 coordinates to float64 and calls cdist. cdist
    # differences rounded Poincare-ball coordinates (|p| < 1, rounding ~1e-16), so its
    # relative error is ~1e-16 cosh(r) / d: 1e-8 for d = 1e-3 at r = 12
    x, y = pairs(radius, kind, n=24)
    ref = [[mp_dist(mp_point(a), mp_point(b)) for b in y] for a in x]
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-7)):
        out = H.cdist(x.to(dtype), y.to(dtype))
        assert out.dtype == dtype and out.shape == (24, 24)
        err = max(abs(float(out[i, j]) - float(ref[i][j])) / float(ref[i][j])
                  for i in range(24) for j in range(24))
        assert err < tol, f"{dtype}: max relative error {err:.3g}"


def test_geodesic_knn_float32_coordinates_far_from_origin():
    x, y = pairs(10.0, "near", n=20)
    z = torch.cat([x, y]).numpy()
    graph = GeodesicKNN("hyperbolic", n_neighbors=3).fit_transform(z).tocoo()
    pts = [mp_point(r) for r in z]
    for i, j, v in zip(graph.row, graph.col, graph.data, strict=True):
        if i != j:
            ref = float(mp_dist(pts[i], pts[j]))
            assert abs(v - ref) < 1e-7 * ref, (i, j, v, ref)
    # each x's nearest other point is its partner y
    d = graph.toarray()
    d[d == 0] = np.inf
    assert (d[:20].argmin(1) == np.arange(20, 40)).all()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", RADII)
def test_logmap_float32_far_from_origin(radius, kind):
    x, y = pairs(radius, kind)
    u = H.logmap(x, y)
    assert u.dtype == torch.float32
    err = max(rel_err(a, mp_logmap(mp_point(p), mp_point(q)))
              for a, p, q in zip(u, x, y, strict=True))
    assert err < 1e-5, f"max relative error {err:.3g}"


@pytest.mark.parametrize("radius", RADII)
def test_logmap0_float32_far_from_origin(radius):
    _, y = pairs(radius, "far")
    y = torch.cat([y, pairs(radius, "near")[0]])
    u = H.logmap0(y)
    err = max(rel_err(a, mp_logmap(mp_origin(3), mp_point(q))) for a, q in zip(u, y, strict=True))
    assert err < 1e-5, f"max relative error {err:.3g}"
    assert (u[:, 0] == 0).all()


@pytest.mark.parametrize("radius", RADII)
def test_expmap_float32_far_from_origin(radius):
    # tangent vectors of length 0.01 .. 3 at a far point, in random directions
    x, _ = pairs(radius, "far")
    g = torch.Generator().manual_seed(1)
    c = directions(32, 3, g) * 10 ** (-2 + 2.5 * torch.rand(32, 1, generator=g,
                                                              dtype=torch.float64))
    u = tangent_at(x, c)
    y = H.expmap(x, u)
    assert y.dtype == torch.float32
    refs = [mp_expmap(mp_point(p), mp_tangent(mp_point(p), w)) for p, w in zip(x, u, strict=True)]
    err = max(point_err(a, r) for a, r in zip(y, refs, strict=True))
    assert err < 4, f"max error {err:.3g} eps * |y_s|"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", RADII)
def test_exp_log_round_trip_float32_far_from_origin(radius, kind):
    # the float32 tangent vector log_x(y) is itself rounded (relative eps); exp_x magnifies a
    # direction error by up to sinh(d) / d, so the bound is eps (|y_s| + |u_s| sinh(d) / d)
    x, y = pairs(radius, kind)
    if kind == "far":  # keep the geodesic short enough for exp_x to be well conditioned
        x = to_f32(polar(torch.full((32,), 0.5, dtype=torch.float64),
                         x[:, 1:].double() / x[:, 1:].double().norm(dim=-1, keepdim=True)))
    u = H.logmap(x, y)
    y2 = H.expmap(x, u)
    worst = 0.0
    for a, b, p, w in zip(y2, y, x, u, strict=True):
        pb, px = mp_point(b), mp_point(p)
        d = mp_dist(px, pb)
        amp = MP.sinh(d) / d if d else 1
        bound = EPS32 * (max(1, mp_norm(pb[1:])) + mp_norm(mp_vec(w)[1:]) * amp)
        worst = max(worst, float(mp_dist(mp_point(a), pb) / bound))
    assert worst < 4, f"max error {worst:.3g} x the rounding bound"


@pytest.mark.parametrize("radius", RADII)
def test_transp_float32_far_from_origin(radius):
    g = torch.Generator().manual_seed(2)
    c = torch.randn(32, 3, generator=g, dtype=torch.float64)
    o = H.origin(3, torch.zeros(1, dtype=torch.float32)).expand(32, 4)
    xn, yn = pairs(radius, "near")
    xf, yf = pairs(radius, "far")
    v0 = torch.cat([torch.zeros(32, 1), c], -1).float()
    cases = {  # name: (x, y, v tangent at x)
        "origin -> far": (o, xf, v0),
        "far -> origin": (xf, o, tangent_at(xf, c)),
        "far -> near it": (xn, yn, tangent_at(xn, c)),
        "far -> far": (xf, yf, tangent_at(xf, c)),
    }
    outs = {name: H.transp(*args) for name, args in cases.items()}
    outs["transp0"] = H.transp0(xf, v0)  # the special cases the wrapped normal uses
    outs["transp0back"] = H.transp0back(*cases["far -> origin"][::2])
    cases["transp0"], cases["transp0back"] = cases["origin -> far"], cases["far -> origin"]
    errs = {}
    for name, (x, y, v) in cases.items():
        assert outs[name].dtype == torch.float32
        refs = [mp_transp(mp_point(p), mp_point(q), mp_tangent(mp_point(p), w))
                for p, q, w in zip(x, y, v, strict=True)]
        errs[name] = max(rel_err(a, r) for a, r in zip(outs[name], refs, strict=True))
    assert max(errs.values()) < 1e-5, errs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", [7.0, 10.0, 12.0])
def test_dist_gradient_float32_far_from_origin(radius, kind):
    # gradient with respect to the spatial coordinates (the point is its spatial part)
    x, y = pairs(radius, kind, n=12)
    s = torch.cat([x, y], -1)[:, [1, 2, 3, 5, 6, 7]].clone().requires_grad_(True)

    def lift(t):
        return H.projx(torch.cat([torch.zeros_like(t[:, :1]), t], -1))

    (grad,) = torch.autograd.grad(H.dist(lift(s[:, :3]), lift(s[:, 3:])).sum(), s)
    worst = 0.0
    for row, g in zip(s.detach(), grad, strict=True):
        ref = mp_grad(lambda t: mp_dist(mp_point([0] + t[:3]), mp_point([0] + t[3:])), row)
        worst = max(worst, rel_err([0, *g], [0, *ref]))
    assert worst < 1e-4, f"max relative gradient error {worst:.3g}"


def mp_grad(f, row):
    """Central differences of f(list of mpf) at the float32 values in ``row`` (40 digits)."""
    t = mp_vec(row)
    out = []
    for i in range(len(t)):
        h = MP.mpf(10) ** -15 * max(1, abs(t[i]))
        hi, lo = list(t), list(t)
        hi[i] += h
        lo[i] -= h
        out.append((f(hi) - f(lo)) / (2 * h))
    return out


# ---------------------------------------------------------------- wrapped normal
def mp_log_density(loc, z, scale):
    """log q(z) of WrappedNormal(loc, scale), loc and z mpmath points."""
    n = len(scale)
    u = mp_logmap(loc, z)
    v = mp_transp(loc, mp_origin(n), u)[1:]
    r = mp_dist(loc, z)
    normal = MP.fsum(-(a / s) ** 2 / 2 - MP.log(s) - MP.log(2 * MP.pi) / 2
                     for a, s in zip(v, scale, strict=True))
    return normal - (n - 1) * (MP.log(MP.sinh(r) / r) if r else 0)


@pytest.mark.parametrize("n", [2, 5])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("radius", RADII)
def test_wrapped_normal_log_prob_float32_far_from_origin(radius, kind, n):
    # far pairs are what a mixture prior sees: z scored under components anywhere
    loc, z = pairs(radius, kind, n=24, d=n, seed=n)
    g = torch.Generator().manual_seed(3)
    scale = (0.05 + 1.5 * torch.rand(24, n, generator=g)).float()
    out = WrappedNormal(loc, scale).log_prob(z)
    assert out.dtype == torch.float32
    errs = [abs(float(o) - float(mp_log_density(mp_point(a), mp_point(b), mp_vec(s))))
            for o, a, b, s in zip(out, loc, z, scale, strict=True)]
    refs = [abs(float(mp_log_density(mp_point(a), mp_point(b), mp_vec(s))))
            for a, b, s in zip(loc, z, scale, strict=True)]
    # 1e-4 nats, or float32 rounding (a few eps relative) where log q is huge (far pairs)
    worst = max(e / (1e-4 + 1e-6 * r) for e, r in zip(errs, refs, strict=True))
    assert worst < 1, f"max error {max(errs):.3g} nats ({worst:.3g} x tolerance)"


@pytest.mark.parametrize("radius", RADII)
def test_wrapped_normal_push_float32_far_from_origin(radius):
    # z = exp_loc(PT_{0 -> loc}(v)) lands within a few float32 ulps of the exact point
    loc, _ = pairs(radius, "far", n=24, d=5)
    g = torch.Generator().manual_seed(4)
    v = (0.05 + 1.5 * torch.rand(24, 1, generator=g)) * torch.randn(24, 5, generator=g)
    v = v.float()
    z = WrappedNormal.push(v, loc)
    assert z.dtype == torch.float32
    err = 0.0
    for a, p, w in zip(z, loc, v, strict=True):
        pl = mp_point(p)
        ref = mp_expmap(pl, mp_transp(mp_origin(5), pl, [MP.mpf(0)] + mp_vec(w)))
        err = max(err, point_err(a, ref))
    assert err < 4, f"max error {err:.3g} eps * |z_s|"


def test_wrapped_normal_push_float32_caps_long_vectors():
    # computed in float64, but the tangent length is still capped for float32 (no overflow)
    loc, _ = pairs(10.0, "far", n=4)
    v = torch.tensor([[1e3, 0.0, 0.0], [0.0, 300.0, 0.0], [50.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    z = WrappedNormal.push(v, loc)
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    d = H.dist(loc.double(), z.double())
    assert (d[:3] < 40 + 1e-3).all() and abs(d[3] - 1) < 1e-3, d


@pytest.mark.parametrize("kind", KINDS)
def test_wrapped_normal_log_prob_gradient_float32_far_from_origin(kind):
    # d log q / d (spatial coordinates of loc and z), as a mixture prior's loc is trained
    n = 3
    loc, z = pairs(10.0, kind, n=8, d=n, seed=5)
    scale = torch.linspace(0.1, 1.0, n)
    s = torch.cat([loc[:, 1:], z[:, 1:]], -1).clone().requires_grad_(True)

    def lift(t):
        return H.projx(torch.cat([torch.zeros_like(t[:, :1]), t], -1))

    out = WrappedNormal(lift(s[:, :n]), scale).log_prob(lift(s[:, n:]))
    (grad,) = torch.autograd.grad(out.sum(), s)
    sc = mp_vec(scale)
    worst = 0.0
    for row, g in zip(s.detach(), grad, strict=True):
        ref = mp_grad(lambda t: mp_log_density(mp_point([0] + t[:n]), mp_point([0] + t[n:]),
                                               sc), row)
        worst = max(worst, rel_err([0, *g], [0, *ref]))
    assert worst < 1e-4, f"max relative gradient error {worst:.3g}"
