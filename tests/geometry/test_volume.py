"""Decoder volume element log sqrt(det(J^T J)): toy map, linear maps, curved latents."""

import math

import pytest
import torch

from geovae.geometry.manifolds import Euclidean, Lorentz, Sphere
from geovae.geometry.volume import log_volume

pytestmark = pytest.mark.usefixtures("float64")


def toy(z):
    """Seed 000: x = 2^(-1/4) (z1^2 / sqrt2, z2^2 / sqrt2, z1 z2), D(z) = z1^2 + z2^2."""
    r2 = math.sqrt(2.0)
    return 2 ** -0.25 * torch.stack([z[0] ** 2 / r2, z[1] ** 2 / r2, z[0] * z[1]])


def test_toy_map_pointwise():
    torch.manual_seed(0)
    z = torch.randn(500, 2)
    d = log_volume(toy, z).exp()
    assert torch.allclose(d, (z * z).sum(-1), rtol=1e-10, atol=0)


def test_toy_map_expectation_is_two():
    # D = |z|^2 ~ chi^2_2 under N(0, I2): mean 2, sd 2, so the MC mean of N = 40000 has
    # standard error 0.01; tolerance 5 standard errors
    torch.manual_seed(1)
    d = log_volume(toy, torch.randn(40000, 2)).exp()
    assert abs(d.mean().item() - 2.0) < 0.05


@pytest.mark.parametrize("out_dim", [3, 7])  # 3: square, reverse mode; 7: forward mode
def test_linear_map(out_dim):
    torch.manual_seed(2)
    a = torch.randn(out_dim, 3)
    lv = log_volume(lambda z: a @ z, torch.randn(10, 3))
    assert torch.allclose(lv, 0.5 * torch.logdet(a.T @ a).expand(10), rtol=1e-12)


def test_euclidean_basis_same_as_none():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 20))
    z = torch.randn(8, 3)
    assert torch.allclose(log_volume(net, z), log_volume(net, z, Euclidean().tangent_basis))


def ambient_map(x):
    """A smooth nonlinear map R^3 -> R^4 used on the curved latents."""
    return torch.stack([x[0] * x[1], torch.sin(x[2]) + x[0], x[1] ** 2 - x[2],
                        torch.exp(0.3 * x[0])])


def chart_volume(chart, metric_det, p):
    """sqrt(det(J_c^T J_c) / det g) in an explicit chart: the volume relative to the
    Riemannian measure sqrt(det g) dp."""
    jac = torch.autograd.functional.jacobian(lambda q: ambient_map(chart(q)), p)
    return 0.5 * (torch.logdet(jac.T @ jac) - math.log(metric_det(p)))


def test_sphere_matches_spherical_coordinates():
    def chart(p):  # (theta, phi) -> S^2, metric diag(1, sin^2 theta)
        th, ph = p[0], p[1]
        return torch.stack([th.cos(), th.sin() * ph.cos(), th.sin() * ph.sin()])

    p = torch.tensor([0.7, 2.1])
    x = chart(p).unsqueeze(0)
    ref = chart_volume(chart, lambda q: math.sin(q[0]) ** 2, p)
    assert torch.allclose(log_volume(ambient_map, x, Sphere().tangent_basis)[0], ref, rtol=1e-10)


def test_hyperboloid_matches_polar_coordinates():
    def chart(p):  # (r, phi) -> H^2, metric diag(1, sinh^2 r)
        r, ph = p[0], p[1]
        return torch.stack([r.cosh(), r.sinh() * ph.cos(), r.sinh() * ph.sin()])

    p = torch.tensor([1.3, -0.4])
    x = chart(p).unsqueeze(0)
    ref = chart_volume(chart, lambda q: math.sinh(q[0]) ** 2, p)
    assert torch.allclose(log_volume(ambient_map, x, Lorentz().tangent_basis)[0], ref, rtol=1e-10)
