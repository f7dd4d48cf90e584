"""The NB log-likelihood's sparse CPU path gives the dense formula's values and gradients."""

from __future__ import annotations

import pytest
import torch

from geovae.nn.likelihoods import _EPS, NBLikelihood, log_nb_positive, log_zinb_positive


def dense_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The textbook formula, every term on every entry (the reference)."""
    log_theta_mu = torch.log(theta + mu + _EPS)
    return (theta * (torch.log(theta + _EPS) - log_theta_mu)
            + x * (torch.log(mu + _EPS) - log_theta_mu)
            + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))


def sparse_counts(shape: tuple[int, ...], rate: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.poisson(torch.rand(shape, dtype=dtype) * rate)


@pytest.mark.parametrize("theta_shape", ["per_feature", "full", "scalar"])
def test_sparse_path_matches_dense_values_and_gradients(theta_shape: str) -> None:
    torch.manual_seed(0)
    B, G = 64, 300
    x = sparse_counts((B, G), 0.3, torch.float64)  # ~75% zeros: the sparse path runs
    assert 0.5 < (x == 0).double().mean() < 0.95
    mu = (torch.rand(B, G, dtype=torch.float64) * 4 + 0.01).requires_grad_()
    shape = {"per_feature": (G,), "full": (B, G), "scalar": ()}[theta_shape]
    log_theta = torch.randn(shape, dtype=torch.float64).requires_grad_()
    got = log_nb_positive(x, mu, log_theta.exp())
    ref = dense_nb(x, mu, log_theta.exp())
    assert got.shape == ref.shape == (B, G)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(got.sum(), (mu, log_theta))
    g_ref = torch.autograd.grad(ref.sum(), (mu, log_theta))
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dense_counts_take_the_dense_path_with_the_same_values() -> None:
    torch.manual_seed(1)
    x = sparse_counts((16, 50), 8.0, torch.float64)  # mostly non-zero
    mu, theta = torch.rand(16, 50, dtype=torch.float64) * 9, torch.rand(50, dtype=torch.float64)
    torch.testing.assert_close(log_nb_positive(x, mu, theta), dense_nb(x, mu, theta))


def test_zinb_and_head_agree_with_the_dense_formula_in_float32() -> None:
    torch.manual_seed(2)
    head = NBLikelihood(8, 200, zero_inflated=True)
    with torch.no_grad():
        head.log_theta.normal_()
    h, library = torch.randn(32, 8), torch.full((32, 1), 150.0)
    px = head(h, library)
    x = sparse_counts((32, 200), 0.5, torch.float32)
    theta = head.log_theta.exp()
    log_nb = dense_nb(x, px.mu, theta)
    softplus_neg = torch.nn.functional.softplus(-px.zi_logits)
    log_nb0 = theta * (torch.log(theta + _EPS) - torch.log(theta + px.mu + _EPS))
    ref = torch.where(x < 0.5,
                      torch.nn.functional.softplus(-px.zi_logits + log_nb0) - softplus_neg,
                      -px.zi_logits - softplus_neg + log_nb)
    got = px.log_prob(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got, log_zinb_positive(x, px.mu, theta, px.zi_logits))
    # per-cell sums, what the loss uses: equal to float32 rounding
    torch.testing.assert_close(got.sum(-1), ref.sum(-1), rtol=1e-6, atol=1e-3)
