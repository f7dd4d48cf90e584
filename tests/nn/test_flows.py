"""RealNVP: log-determinants against brute-force Jacobians, invertibility, normalisation."""

import math

import pytest
import torch

from geovae.nn.flows import AffineCoupling, RealNVP

pytestmark = pytest.mark.usefixtures("float64")


def randomised(flow, std=0.3, seed=0):
    """Random weights everywhere (the zero-initialised last layers would make it the identity)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.normal_(0.0, std)
    return flow


def test_identity_at_init():
    torch.manual_seed(0)
    flow = RealNVP(4, 4, 16)
    z = torch.randn(10, 4)
    y, logdet = flow(z)
    assert torch.equal(y, z) and torch.equal(logdet, torch.zeros(10))


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_logdet_matches_brute_force_jacobian(dim):
    flow = randomised(RealNVP(dim, 4, 16))
    z = torch.randn(6, dim)
    _, logdet = flow(z)
    for i in range(6):
        jac = torch.autograd.functional.jacobian(lambda x: flow(x)[0], z[i])
        assert torch.allclose(logdet[i], torch.linalg.slogdet(jac).logabsdet, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_inverse_recovers_input(dim):
    flow = randomised(RealNVP(dim, 4, 16), seed=1)
    z = 2 * torch.randn(50, dim)
    y, ld = flow(z)
    back, ld_inv = flow.inverse(y)
    assert torch.allclose(back, z, atol=1e-12)
    assert torch.allclose(ld_inv, -ld, atol=1e-12)


@pytest.mark.parametrize("parity", [0, 1])
def test_coupling_leaves_conditioning_half_unchanged(parity):
    layer = randomised(AffineCoupling(5, 8, parity))
    z = torch.randn(7, 5)
    y, _ = layer(z)
    a = slice(0, 2) if parity == 0 else slice(2, 5)
    assert torch.equal(y[:, a], z[:, a])
    assert not torch.allclose(y, z)


def test_log_scale_is_clamped():
    layer = randomised(AffineCoupling(2, 8, 0), std=50.0)
    _, logdet = layer(10 * torch.randn(100, 2))
    assert logdet.abs().max() <= layer.s_max  # one transformed coordinate


def test_density_integrates_to_one_2d():
    # trapezoid on [-L, L]^2, n^2 nodes; the pushed-forward Gaussian is smooth and decays like
    # a Gaussian (scales within e^{+-3} per layer, std 0.2 weights keep them near 1), so the
    # truncation and grid errors are far below the 1e-6 tolerance
    flow = randomised(RealNVP(2, 4, 16), std=0.2, seed=2)
    L, n = 12.0, 801
    g = torch.linspace(-L, L, n)
    x = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        p = flow.log_prob(x).exp().reshape(n, n)
    h = (2 * L / (n - 1)) ** 2
    w = torch.ones(n)
    w[0] = w[-1] = 0.5
    total = (w[:, None] * w[None, :] * p).sum() * h
    assert abs(total.item() - 1) < 1e-6, total
    assert p[0].max() < 1e-12 and p[:, 0].max() < 1e-12  # nothing left at the border


def test_one_dimensional_flow_is_elementwise_affine():
    flow = randomised(RealNVP(1, 4, 16))
    assert len(flow.layers) == 1
    z = torch.linspace(-3, 3, 7).unsqueeze(-1)
    y, ld = flow(z)
    slope = (y[1:] - y[:-1]) / (z[1:] - z[:-1])
    assert torch.allclose(slope, slope[0].expand_as(slope))
    assert torch.allclose(ld, torch.log(slope[0]).expand(7))
    assert math.isfinite(flow.log_prob(z).sum().item())
