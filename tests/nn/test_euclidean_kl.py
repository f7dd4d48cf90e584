"""The Euclidean latent's closed-form KL is torch's ``kl_divergence`` against N(0, I),
bit for bit, value and gradients."""

from __future__ import annotations

import torch
from torch.distributions import kl_divergence

from geovae.nn.latents import EuclideanLatent


def test_kl_is_torchs_kl_divergence_bit_for_bit() -> None:
    torch.manual_seed(0)
    latent = EuclideanLatent(10, 32)
    h = torch.randn(64, 32, requires_grad=True)
    q = latent(h)
    got = latent.kl(q, q.rsample(), None)
    want = kl_divergence(q, latent.prior(h))
    assert torch.equal(got, want)
    w = torch.randn(64)
    g_got = torch.autograd.grad((got * w).sum(), (h, *latent.parameters()), retain_graph=True)
    g_want = torch.autograd.grad((want * w).sum(), (h, *latent.parameters()))
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.equal(a, b)


def test_a_flow_keeps_the_monte_carlo_kl() -> None:
    """With a flow, log q at the sample is given: the closed form does not apply."""
    torch.manual_seed(1)
    latent = EuclideanLatent(4, 16, flow=2)
    q = latent(torch.randn(8, 16))
    z, log_q = latent.rsample(q)
    want = log_q - latent.prior(z).log_prob(z)
    assert torch.equal(latent.kl(q, z, log_q), want)
