"""Statistical and numerical tests of the latent distributions (seeded; float64 default).

KS tests use a p-value floor of 1e-3: with fixed seeds they are deterministic, and a correct
sampler fails one such test with probability 1e-3. Monte Carlo comparisons use 5 standard
errors estimated from the same sample.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import ive
from torch.distributions import kl_divergence

from geovae.distributions import (
    HypersphericalUniform,
    PowerSpherical,
    VonMisesFisher,
    WrappedNormal,
    bessel_ratio,
    log_iv,
)
from geovae.geometry.manifolds import Lorentz

P_MIN = 1e-3
H = Lorentz()


pytestmark = pytest.mark.usefixtures("float64")


def unit(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, generator=g)
    return x / x.norm()


def within(samples, target, k=5.0):
    """|mean - target| < k standard errors (+ a float64 rounding floor)."""
    se = samples.std() / math.sqrt(samples.numel())
    return abs(samples.mean().item() - float(target)) < k * se.item() + 1e-12


# ---------------------------------------------------------------- Bessel
ORDERS = [0.0, 0.5, 1.0, 1.5, 4.0, 7.3, 15.5, 31.5, 32.0]


@pytest.mark.parametrize("v", ORDERS)
def test_log_iv_matches_scipy(v):
    k = torch.logspace(-3, 5, 400)
    ref = np.log(ive(v, k.numpy())) + k.numpy()
    err = np.abs(log_iv(v, k).numpy() - ref) / np.maximum(1.0, np.abs(ref))
    assert err.max() < 1e-12  # measured ~5e-14; worst just above the series/Debye switch


@pytest.mark.parametrize("v", [0.0, 0.5, 4.0, 31.5])
def test_log_iv_gradient(v):
    k = torch.tensor([1e-3, 0.7, 12.0, 49.9, 50.1, 300.0, 1e4], requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: log_iv(v, x), (k,))
    (g,) = torch.autograd.grad(log_iv(v, k).sum(), k)
    kn = k.detach().numpy()
    ref = ive(v + 1, kn) / ive(v, kn) + v / kn  # d/dk log I_v = I_{v+1}/I_v + v/k
    assert np.allclose(g.numpy(), ref, rtol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("m", [2, 3, 10, 65])
def test_vmf_log_normalizer_stable_and_monotone(m, dtype):
    k = torch.logspace(-3, 5, 200, dtype=dtype).requires_grad_(True)
    log_c = VonMisesFisher(unit(m).to(dtype), k).log_normalizer()
    (g,) = torch.autograd.grad(log_c.sum(), k)
    assert torch.isfinite(log_c).all() and torch.isfinite(g).all()
    assert (log_c.diff() <= 0).all()  # d log C / dk = -A_m(k) < 0
    assert (g < 0).all()
    ref = VonMisesFisher(unit(m), k.detach().double()).log_normalizer()
    assert torch.allclose(log_c.double(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m", [2, 3, 10, 65])
@pytest.mark.parametrize("kappa", [0.01, 1.0, 60.0, 1e4])
def test_vmf_kl_gradcheck(m, kappa):
    # finite-difference step relative to kappa: at kappa = 1e4 the KL carries ~1e-8 absolute
    # rounding noise (kappa * A_m with A_m = exp(log I_{v+1} - log I_v)), too much for eps=1e-6
    u = HypersphericalUniform(m)
    k = torch.tensor([kappa], requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: kl_divergence(VonMisesFisher(unit(m), x), u), (k,),
                                    eps=1e-6 * max(1.0, kappa))


# ---------------------------------------------------------------- samplers
CASES = [(m, k) for m in (2, 3, 10, 65) for k in (0.1, 1.0, 10.0, 1000.0)]


@pytest.mark.parametrize("m,kappa", CASES)
def test_vmf_sampler_matches_scipy(m, kappa):
    torch.manual_seed(m)
    mu = unit(m, seed=m)
    z = VonMisesFisher(mu, torch.tensor(kappa)).sample((3000,))
    ref = stats.vonmises_fisher(mu.numpy(), kappa).rvs(3000, random_state=m)
    assert torch.allclose(z.norm(dim=-1), torch.ones(3000))
    p = stats.ks_2samp((z @ mu).numpy(), ref @ mu.numpy()).pvalue
    assert p > P_MIN, p
    # the orthogonal part averages to zero: E[z] = A_m(kappa) mu (checks the rotation)
    a = bessel_ratio(m / 2 - 1, torch.tensor(kappa))
    resid = z - (z @ mu).unsqueeze(-1) * mu
    assert resid.mean(0).norm() < 5 * math.sqrt((1 - a.item() ** 2 + 1e-12) / 3000)
    assert within(z @ mu, a)


@pytest.mark.parametrize("m,kappa", CASES)
def test_power_spherical_marginal_is_affine_beta(m, kappa):
    torch.manual_seed(m)
    mu = unit(m, seed=m)
    q = PowerSpherical(mu, torch.tensor(kappa))
    z = q.rsample((3000,))
    assert torch.allclose(z.norm(dim=-1), torch.ones(3000))
    alpha, beta = (m - 1) / 2 + kappa, (m - 1) / 2  # (w + 1) / 2 ~ Beta(alpha, beta)
    p = stats.kstest(((z @ mu + 1) / 2).numpy(), stats.beta(alpha, beta).cdf).pvalue
    assert p > P_MIN, p
    assert within(z @ mu, (q.mean @ mu).item())


@pytest.mark.parametrize("n", [1, 2, 5])
def test_wrapped_normal_pulls_back_to_gaussian(n):
    torch.manual_seed(n)
    loc = H.expmap0(H.tangent0(torch.randn(n)))
    scale = torch.linspace(0.3, 1.5, n)
    q = WrappedNormal(loc, scale)
    z = q.sample((3000,))
    assert H.check_point(z)[0]
    v, r = WrappedNormal.pull(z, loc.expand_as(z))
    for i in range(n):
        p = stats.kstest((v[:, i] / scale[i]).numpy(), "norm").pvalue
        assert p > P_MIN, p
    assert torch.allclose(r, v.norm(dim=-1), atol=1e-8)  # transport is an isometry
    z2, log_q = q.rsample_with_log_prob((50,))
    assert torch.allclose(log_q, q.log_prob(z2), atol=1e-8)


# ---------------------------------------------------------------- normalisation
def sphere_grid_2d(nt=400):
    th = torch.arange(nt) * (2 * math.pi / nt)  # periodic trapezoid: spectral accuracy
    return torch.stack([th.cos(), th.sin()], -1), torch.full((nt,), 2 * math.pi / nt)


def sphere_grid_3d(nc=200, nphi=400):
    c, w = np.polynomial.legendre.leggauss(nc)  # Gauss-Legendre in cos(theta)
    c, w = torch.from_numpy(c), torch.from_numpy(w)
    phi = torch.arange(nphi) * (2 * math.pi / nphi)
    s = (1 - c * c).sqrt()
    x = torch.stack([c[:, None].expand(-1, nphi), s[:, None] * phi.cos(),
                     s[:, None] * phi.sin()], -1).reshape(-1, 3)
    return x, (w[:, None] * (2 * math.pi / nphi)).expand(-1, nphi).reshape(-1)


# Power Spherical: integer kappa only. (1 + mu^T x)^kappa has a branch point at x = -mu, where
# quadrature converges only algebraically (~1e-5 at kappa = 0.1); the importance-sampling test
# below covers non-integer kappa.
@pytest.mark.parametrize("cls,kappa", [(VonMisesFisher, 0.1), (VonMisesFisher, 3.0),
                                       (VonMisesFisher, 40.0), (PowerSpherical, 1.0),
                                       (PowerSpherical, 3.0), (PowerSpherical, 40.0)])
def test_density_integrates_to_one_s1_s2(cls, kappa):
    for x, w in (sphere_grid_2d(4000), sphere_grid_3d()):
        q = cls(unit(x.shape[-1], seed=5), torch.tensor(kappa))
        total = (q.log_prob(x).exp() * w).sum()
        assert abs(total.item() - 1) < 1e-7, total


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
@pytest.mark.parametrize("m", [10, 65])
def test_density_integrates_to_one_importance(cls, m):
    # E_uniform[q / u] = 1; kappa is kept moderate so the weights have a finite, small variance
    torch.manual_seed(m)
    u = HypersphericalUniform(m)
    x = u.sample((40000,))
    q = cls(unit(m, seed=1), torch.tensor(0.2 * m))
    assert within((q.log_prob(x) - u.log_prob(x)).exp(), 1.0)


def hyperbolic_grid(n, rmax=12.0, nr=600, nphi=256):
    r, w = np.polynomial.legendre.leggauss(nr)
    if n == 1:  # x = (cosh t, sinh t), volume dt, t in [-rmax, rmax]
        t, w = torch.from_numpy(r) * rmax, torch.from_numpy(w) * rmax
        return torch.stack([t.cosh(), t.sinh()], -1), w
    r, w = torch.from_numpy((r + 1) * rmax / 2), torch.from_numpy(w * rmax / 2)
    phi = torch.arange(nphi) * (2 * math.pi / nphi)
    x = torch.stack([r.cosh()[:, None].expand(-1, nphi), r.sinh()[:, None] * phi.cos(),
                     r.sinh()[:, None] * phi.sin()], -1).reshape(-1, 3)
    vol = (w * r.sinh())[:, None] * (2 * math.pi / nphi)  # volume element sinh r dr dphi
    return x, vol.expand(-1, nphi).reshape(-1)


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("scale", [0.3, 1.0])
def test_wrapped_normal_integrates_to_one_h1_h2(n, scale):
    # loc at distance ~0.8 from the origin: the mass beyond r = 12 is below e^-40
    loc = H.expmap0(H.tangent0(torch.full((n,), 0.8 / math.sqrt(n))))
    q = WrappedNormal(loc, torch.linspace(scale, 1.3 * scale, n))
    x, w = hyperbolic_grid(n)
    total = (q.log_prob(x).exp() * w).sum()
    assert abs(total.item() - 1) < 1e-7, total


def test_wrapped_normal_integrates_to_one_importance_h5():
    # E_r[q / r] = 1 with a proposal r that shares nothing with q: a Gaussian N(0, 0.7^2 I) in
    # the tangent space at the origin, pushed by exp_0, whose density is written out here:
    # N(v) / (sinh|v| / |v|)^(n-1). q sits at distance 0.6 from the origin, so q's own
    # (n-1) log(sinh r / r), r = d(loc, z), does not cancel against the proposal's (as it did
    # with a proposal at q's loc); without it the estimate is ~2.1, 90 standard errors off.
    # Variance of q / r is finite: every q scale is below 0.7 * sqrt(2).
    torch.manual_seed(0)
    n, s = 5, 0.7
    v0 = torch.randn(n)
    loc = H.expmap0(H.tangent0(0.6 * v0 / v0.norm()))
    q = WrappedNormal(loc, torch.tensor([0.35, 0.4, 0.45, 0.5, 0.55]))
    v = s * torch.randn(40000, n)
    z = H.expmap0(H.tangent0(v))
    r = v.norm(dim=-1)
    log_r = (stats.norm.logpdf((v / s).numpy()).sum(-1) - n * math.log(s)
             - (n - 1) * torch.log(torch.sinh(r) / r).numpy())
    assert within((q.log_prob(z) - torch.from_numpy(log_r)).exp(), 1.0)


# ---------------------------------------------------------------- KL
@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
@pytest.mark.parametrize("m,kappa", [(2, 1.0), (3, 10.0), (10, 0.5), (65, 50.0)])
def test_kl_to_uniform_closed_form_vs_monte_carlo(cls, m, kappa):
    torch.manual_seed(1)
    q, p = cls(unit(m), torch.tensor(kappa)), HypersphericalUniform(m)
    z = q.sample((20000,))
    kl = kl_divergence(q, p)
    assert kl > 0
    assert within(q.log_prob(z) - p.log_prob(z), kl)


def test_power_spherical_kl_gradcheck():
    p = HypersphericalUniform(10)
    k = torch.tensor([0.01, 1.0, 100.0], requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: kl_divergence(PowerSpherical(
        unit(10).expand(3, 10), x), p), (k,))


def test_hyperbolic_kl_is_not_registered():
    q = WrappedNormal(H.origin(2, torch.zeros(1)), torch.ones(2))
    with pytest.raises(NotImplementedError):
        kl_divergence(q, q)


# ---------------------------------------------------------------- reparameterised gradients
def per_sample_kappa_grad(cls, m, kappa, n):
    """Per-sample d(mu^T z)/d kappa: each sample gets its own copy of kappa."""
    mu = unit(m)
    k = torch.full((n,), kappa, requires_grad=True)
    w = cls(mu.expand(n, m), k).rsample() @ mu
    (g,) = torch.autograd.grad(w.sum(), k)
    return w.detach(), g


@pytest.mark.parametrize("kappa", [0.1, 1.0, 10.0, 1000.0])
def test_vmf_s2_kappa_gradient_exact(kappa):
    # m = 3 uses the exact inverse CDF: E[d w / d kappa] = d A_3 / d kappa
    torch.manual_seed(2)
    w, g = per_sample_kappa_grad(VonMisesFisher, 3, kappa, 40000)
    k = torch.tensor(kappa, requires_grad=True)
    a = bessel_ratio(0.5, k)
    (da,) = torch.autograd.grad(a, k)
    assert within(w, a.item()) and within(g, da.item())


GRAD_CASES = [(m, k) for m in (2, 5, 10, 65) for k in (0.5, 1.0, 10.0, 100.0)]


@pytest.mark.parametrize("m,kappa", [*GRAD_CASES, (10, 1e4), (65, 1e4)])
def test_vmf_kappa_gradient_unbiased(m, kappa):
    # implicit reparameterisation: E[d w / d kappa] = d A_m / d kappa for every m. The per-sample
    # gradients are i.i.d. with finite variance, so by the CLT their mean lies within 5 standard
    # errors of the truth except with probability ~6e-7 (the old accepted-proposal gradient was
    # 43% low at m = 2, kappa = 1, i.e. ~100 standard errors off)
    torch.manual_seed(3)
    w, g = per_sample_kappa_grad(VonMisesFisher, m, kappa, 20000)
    k = torch.tensor(kappa, requires_grad=True)
    (da,) = torch.autograd.grad(bessel_ratio(m / 2 - 1, k), k)
    assert torch.isfinite(g).all() and (g > 0).all()
    assert within(g, da.item())


def _angle_tail(theta, kappa, m):
    """P(angle(x, mu) > theta) = F(cos theta), by adaptive quadrature in the angle."""
    from scipy import integrate

    def f(th):
        return math.exp(kappa * (math.cos(th) - 1)) * math.sin(th) ** (m - 2)

    opts = {"epsabs": 0, "epsrel": 1e-13, "limit": 200}
    total = integrate.quad(f, 0, math.pi, points=[min(1.5, 3 * math.sqrt(m / kappa))], **opts)
    return 1 - integrate.quad(f, 0, theta, **opts)[0] / total[0]


def _one_minus_w_at(u, kappa, m):
    """1 - w = 1 - F^{-1}(u; kappa), by root finding on the quadrature CDF."""
    from scipy import optimize

    th = optimize.brentq(lambda t: _angle_tail(t, kappa, m) - u, 1e-12, math.pi - 1e-12,
                         xtol=1e-15, rtol=1e-15)
    return 2 * math.sin(th / 2) ** 2


@pytest.mark.parametrize("m", [2, 5, 10, 65])
@pytest.mark.parametrize("kappa", [0.5, 10.0, 100.0, 1000.0])
def test_vmf_implicit_gradient_matches_inverse_cdf(m, kappa):
    # common random numbers: fixed u, central difference of w(u, kappa) = F^{-1}(u; kappa); the
    # quantiles reach every quadrature branch (upper, full lower, truncated lower for kappa>30)
    from geovae.distributions.von_mises_fisher import implicit_dw_dkappa

    us = (0.02, 0.5, 0.98)
    h = 1e-5 * kappa
    fd = [-(_one_minus_w_at(u, kappa + h, m) - _one_minus_w_at(u, kappa - h, m)) / (2 * h)
          for u in us]
    y0 = torch.tensor([_one_minus_w_at(u, kappa, m) for u in us])
    g = implicit_dw_dkappa(y0, torch.tensor(kappa), m)
    assert torch.allclose(g, torch.tensor(fd), rtol=1e-6, atol=0)


@pytest.mark.parametrize("kappa", [0.5, 5.0, 200.0])
def test_power_spherical_kappa_gradient(kappa):
    torch.manual_seed(4)
    w, g = per_sample_kappa_grad(PowerSpherical, 10, kappa, 40000)
    # E[w] = kappa / (kappa + m - 1) for PS; derivative (m - 1) / (kappa + m - 1)^2
    assert within(w, kappa / (kappa + 9)) and within(g, 9 / (kappa + 9) ** 2)


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
def test_loc_gradient_matches_closed_form(cls):
    # f(z) = c^T z, E f = E[w] c^T mu / |mu|: gradient E[w] (I - mu mu^T) c / |mu| in raw mu
    torch.manual_seed(5)
    m, n = 10, 40000
    raw = (2 * unit(m)).expand(n, m).clone().requires_grad_(True)
    c = torch.randn(m)
    q = cls(raw / raw.norm(dim=-1, keepdim=True), torch.tensor(5.0))
    (g,) = torch.autograd.grad((q.rsample() @ c).sum(), raw)
    mu = unit(m)
    ew = (q.mean[0] @ mu).item()
    target = ew * (c - (c @ mu) * mu) / 2
    for i in range(m):
        assert within(g[:, i], target[i])


@pytest.mark.parametrize("cls", [VonMisesFisher, PowerSpherical])
def test_float32_extreme_kappa_finite(cls):
    mu = unit(65).float()
    k = torch.tensor([1e-3, 1.0, 1e5], dtype=torch.float32, requires_grad=True)
    q = cls(mu.expand(3, 65), k)
    z = q.rsample((100,))
    assert z.dtype == torch.float32 and torch.isfinite(z).all()
    loss = q.log_prob(z).sum() + kl_divergence(q, HypersphericalUniform(65)).sum()
    (g,) = torch.autograd.grad(loss, k)
    assert torch.isfinite(loss) and torch.isfinite(g).all()
