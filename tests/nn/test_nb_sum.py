"""The fused NB sum (`geovae.nn.nb_sum`) gives the per-entry formula's values and gradients;
its pieces (vectorised digamma, lgamma(x + 1) table, a source's non-zeros) match what they
replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geovae.data.prepare import Prepared
from geovae.data.sources import InMemorySource
from geovae.models import GeoVAE
from geovae.nn.likelihoods import (
    NONZERO_ENTRIES,
    NegativeBinomial,
    log_nb_positive,
    summed_log_prob,
)
from geovae.nn.nb_sum import NonZeros, digamma, log_factorial_table, nb_log_prob_sum


def counts(n: int, genes: int, rate: float, seed: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(n, genes, generator=g, dtype=dtype) * rate, generator=g)
    x[3] = 0  # a cell without counts
    x[5, :] = torch.arange(genes, dtype=dtype) * 37.0 % 500  # a dense row with large counts
    return x


@pytest.mark.parametrize("with_table", [False, True])
def test_values_and_gradients_match_the_per_entry_formula(with_table: bool) -> None:
    x = counts(64, 300, 0.5, seed=0)
    g = torch.Generator().manual_seed(1)
    mu = (torch.rand(64, 300, generator=g, dtype=torch.float64) * 40 + 1e-3).requires_grad_()
    log_theta = (torch.randn(300, generator=g, dtype=torch.float64) * 3).requires_grad_()
    nz = NonZeros.of(x)
    if with_table:
        nz = nz._replace(log_factorial=log_factorial_table(x.reshape(-1))[nz.values.long()])
    weights = torch.linspace(-1.0, 2.0, 64, dtype=torch.float64)  # an upstream gradient
    got = nb_log_prob_sum(mu, log_theta.exp(), nz)
    ref = log_nb_positive(x, mu, log_theta.exp()).sum(-1)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-9)
    g_got = torch.autograd.grad((got * weights).sum(), (mu, log_theta))
    g_ref = torch.autograd.grad((ref * weights).sum(), (mu, log_theta))
    for a, b in zip(g_got, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)


def test_gradcheck() -> None:
    x = counts(8, 20, 1.0, seed=2)
    nz = NonZeros.of(x)
    g = torch.Generator().manual_seed(3)
    mu = (torch.rand(8, 20, generator=g, dtype=torch.float64) * 5 + 0.1).requires_grad_()
    theta = (torch.rand(20, generator=g, dtype=torch.float64) * 3 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda m, t: nb_log_prob_sum(m, t, nz), (mu, theta))


def test_summed_log_prob_routes_and_agrees_in_float32() -> None:
    x = counts(128, 500, 0.4, seed=4, dtype=torch.float32)
    g = torch.Generator().manual_seed(5)
    mu = torch.rand(128, 500, generator=g) * 10 + 1e-3
    theta = torch.rand(500, generator=g) * 5 + 0.01
    ref = log_nb_positive(x, mu, theta).sum(-1)
    torch.testing.assert_close(summed_log_prob(NegativeBinomial(mu, theta), x), ref,
                               rtol=1e-5, atol=1e-3)
    # zero inflation and dense counts keep the per-entry formula, the same values
    zi = torch.zeros(128, 500)
    px = NegativeBinomial(mu, theta, zi)
    torch.testing.assert_close(summed_log_prob(px, x), px.log_prob(x).sum(-1))


def test_vectorised_digamma() -> None:
    y = torch.cat([torch.logspace(-6, 6, 2000, dtype=torch.float64),
                   torch.linspace(0.01, 30, 3000, dtype=torch.float64)])
    ref = torch.digamma(y)
    torch.testing.assert_close(digamma(y), ref, rtol=1e-9, atol=1e-9)
    err32 = (digamma(y.float()).double() - ref).abs() / ref.abs().clamp_min(1)
    assert err32.max() < 2e-6


def test_log_factorial_table() -> None:
    data = torch.tensor([1.0, 2.0, 7.0, 150.0, 3000.0])
    table = log_factorial_table(data)
    assert torch.equal(table[data.long()], torch.lgamma(data + 1))
    assert log_factorial_table(torch.tensor([1.0, 2.5])) is None  # not counts
    assert log_factorial_table(torch.tensor([-1.0, 2.0])) is None


def test_a_sources_nonzeros_are_the_scan() -> None:
    x = counts(300, 40, 0.3, seed=6, dtype=torch.float32)
    X = sp.csr_matrix(x.numpy())
    src = InMemorySource(Prepared(X, np.zeros((300, 1), np.int64), np.full(300, -1)), [1],
                         torch.device("cpu"))
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(7))[:128]
    block = src.rows(idx)
    assert torch.equal(block, x[idx])
    known, scanned = getattr(block, NONZERO_ENTRIES), NonZeros.of(block)
    for name in ("rows", "cols", "flat", "values", "row_ends"):
        assert torch.equal(getattr(known, name), getattr(scanned, name)), name
    assert torch.equal(known.log_factorial, torch.lgamma(known.values + 1))


def test_vae_loss_equals_the_per_entry_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    from geovae.datasets import simulate_counts

    adata = simulate_counts(n_cells=300, n_genes=200, n_types=3, n_conditions=2, seed=0)
    model = GeoVAE(adata, batch_key="condition", seed=0)
    batch = model.source().take(torch.arange(128))
    assert hasattr(batch.x, NONZERO_ENTRIES)
    model.module.train()

    def loss_and_grads() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.module.zero_grad()
        torch.manual_seed(0)
        out = model.module.loss(batch, 0.5)
        out.loss.backward()
        return out.reconstruction.detach(), [p.grad.clone() for p in
                                             model.module.parameters()]

    fused = loss_and_grads()
    import geovae.modules.vae as vae

    monkeypatch.setattr(vae, "summed_log_prob", lambda px, x: px.log_prob(x).sum(-1))
    per_entry = loss_and_grads()
    torch.testing.assert_close(fused[0], per_entry[0], rtol=1e-5, atol=1e-3)
    for a, b in zip(fused[1], per_entry[1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)


def _out_of_place_reference(mu: torch.Tensor, theta: torch.Tensor, nz: NonZeros,
                            grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The fused sum's forward value and backward gradients written with out-of-place
    operations only (the code before its in-place passes), step for step."""
    from geovae.nn.nb_sum import _EPS, row_sums

    t = mu + theta + _EPS
    d = torch.sub(torch.log(theta + _EPS), torch.log(t))
    out = torch.mv(d, theta)
    mu_nz, t_nz = mu.reshape(-1)[nz.flat], t.reshape(-1)[nz.flat]
    y = nz.values + theta[nz.cols]
    vals = (nz.values * (torch.log(mu_nz + _EPS) - torch.log(t_nz)) + torch.lgamma(y)
            - torch.lgamma(theta)[nz.cols] - torch.lgamma(nz.values + 1))
    out = out + row_sums(vals, nz.row_ends)
    g_nz = grad[nz.rows]
    q = theta / t
    grad_mu = q * (-grad)[:, None]
    grad_mu.reshape(-1).scatter_add_(
        0, nz.flat, g_nz * nz.values * (1 / (mu_nz + _EPS) - 1 / t_nz))
    grad_theta = (torch.mv(d.t(), grad) - torch.mv(q.t(), grad)
                  + grad.sum() * (theta / (theta + _EPS)))
    grad_theta.scatter_add_(0, nz.cols, g_nz * (digamma(y) - nz.values / t_nz
                                                - torch.digamma(theta)[nz.cols]))
    return out, grad_mu, grad_theta


def test_in_place_passes_give_the_same_bits() -> None:
    """The forward's and backward's in-place dense passes change no bit of the value or of
    either gradient (float32, the training dtype)."""
    x = counts(96, 400, 0.4, seed=6, dtype=torch.float32)
    g = torch.Generator().manual_seed(7)
    mu = (torch.rand(96, 400, generator=g) * 20 + 1e-3).requires_grad_()
    theta = (torch.rand(400, generator=g) * 5 + 0.01).requires_grad_()
    grad = torch.randn(96, generator=g)
    nz = NonZeros.of(x)
    out = nb_log_prob_sum(mu, theta, nz)
    grad_mu, grad_theta = torch.autograd.grad(out, (mu, theta), grad)
    ref = _out_of_place_reference(mu.detach(), theta.detach(), nz, grad)
    for got, want in zip((out, grad_mu, grad_theta), ref, strict=True):
        assert torch.equal(got, want)


def head_case(n: int, genes: int, rate: float, seed: int) -> tuple:
    """An NB head's inputs in float32: counts (seed ``seed``), then logits, per-feature theta
    and an upstream gradient (seed ``seed + 1``), the library sizes and the non-zeros."""
    x = counts(n, genes, rate, seed=seed, dtype=torch.float32)
    g = torch.Generator().manual_seed(seed + 1)
    logits = torch.randn(n, genes, generator=g, requires_grad=True)
    theta = (torch.rand(genes, generator=g) * 5 + 0.01).requires_grad_()
    grad = torch.randn(n, generator=g)
    return x, logits, theta, x.sum(-1, keepdim=True), grad, NonZeros.of(x)


def test_proportions_and_library_give_the_products_bits() -> None:
    """``library`` given: the mean formed inside gives the value and the gradients (through
    the proportions, and theta) of passing ``proportions * library``, bit for bit; the NB
    likelihood head takes this path and still exposes the mean."""
    x, logits, theta, library, grad, nz = head_case(80, 300, 0.4, seed=8)
    rho = torch.softmax(logits, -1)
    got = nb_log_prob_sum(rho, theta, nz, library)
    want = nb_log_prob_sum(rho * library, theta, nz)
    assert torch.equal(got, want)
    g_got = torch.autograd.grad(got, (logits, theta), grad, retain_graph=True)
    g_want = torch.autograd.grad(want, (logits, theta), grad)
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.equal(a, b)
    px = NegativeBinomial(None, theta, proportions=rho, library=library)
    assert px.factors() is not None and tuple(px.batch_shape) == (80, 300)
    assert torch.equal(summed_log_prob(px, x), want)
    assert torch.equal(px.mean, rho * library) and px.factors() is None


def test_logits_give_the_softmaxs_bits() -> None:
    """``logits=True``: the softmax formed inside (one autograd node) gives the value and the
    gradients (through the logits, and theta) of passing the softmax, bit for bit; the NB
    head hands its logits and forms the proportions only where asked for them."""
    x, logits, theta, library, grad, nz = head_case(64, 250, 0.3, seed=10)
    got = nb_log_prob_sum(logits, theta, nz, library, logits=True)
    want = nb_log_prob_sum(torch.softmax(logits, -1), theta, nz, library)
    assert torch.equal(got, want)
    g_got = torch.autograd.grad(got, (logits, theta), grad)
    g_want = torch.autograd.grad(want, (logits, theta), grad)
    for a, b in zip(g_got, g_want, strict=True):
        assert torch.equal(a, b)
    px = NegativeBinomial(None, theta, logits=logits, library=library)
    assert px.factors()[0] is None  # the proportions not formed yet
    assert torch.equal(summed_log_prob(px, x), want)
    assert torch.equal(px.mean, torch.softmax(logits, -1) * library)
    with pytest.raises(ValueError, match="library"):
        nb_log_prob_sum(logits, theta, nz, logits=True)
