"""Mixture weights of the c*GMΔVAE: global weights with q(π) = Dir(β) learned by the ELBO
(the default) empty the components the data do not need; the thesis' per-cell d stays as
``mixture_weights="per_cell"``; the -ELBO terms of both against brute-force Monte Carlo."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score
from torch.distributions import Categorical, Dirichlet, Normal, kl_divergence

import geovae
from geovae.datasets.blobs import make_blobs
from geovae.modules.cgmvae import TERMS, CGMVAEModule
from geovae.nn.latents import make_latent


def _tiny(seed: int = 0, **options: object) -> CGMVAEModule:
    torch.manual_seed(seed)
    m = CGMVAEModule(6, make_latent("euclidean", 2, 16), "gaussian", 2, n_hidden=16,
                     dropout=0.0, n_clusters=3, w_dim=2, dirichlet_alpha=0.7, **options)
    return m.double().eval()


# ---------------------------------------------------------------------- the five terms
@pytest.mark.parametrize("label", [-1, 1])
@pytest.mark.parametrize("weights", ["global", "per_cell"])
@torch.no_grad()
def test_terms_match_brute_force(weights: str, label: int) -> None:
    """Each closed-form term against its log-ratio with z, w, y and π (or d) all sampled;
    global weights: β away from the prior and KL(q(π)||p(π)) divided by the data-set size."""
    m = _tiny(mixture_weights=weights)
    n_data = 1
    if weights == "global":
        m.beta.copy_(torch.tensor([5.0, 0.3, 40.0], dtype=torch.float64))
        m.dataset_size = n_data = 37
    torch.manual_seed(1)
    x = torch.randn(1, 6, dtype=torch.float64)
    c = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    n = 50_000
    closed = m(x.expand(n, -1), c.expand(n, -1), torch.full((n,), label)).terms
    qz, qw, target = m.posteriors(x, c)
    z, w = qz.sample((n,)).squeeze(1), qw.sample((n,)).squeeze(1)
    cc = c.expand(n, -1)
    qy = Categorical(logits=m.classifier(z))
    y = qy.sample() if label < 0 else torch.full((n,), label)
    qd = Dirichlet(m.concentrations(z))
    d = qd.sample()
    rows = torch.arange(n)
    brute = {
        "reconstruction": -m.decode(z, cc, x.sum(-1, keepdim=True).expand(n, 1))
        .log_prob(target.expand(n, -1)).sum(-1),
        "kl_z": qz.log_prob(z) - m.prior_z(w, cc).log_prob(z.unsqueeze(1))[rows, y],
        "kl_w": qw.log_prob(w).sum(-1) - Normal(0.0, 1.0).log_prob(w).sum(-1),
        "kl_y": (qy.log_prob(y) if label < 0 else 0.0) - torch.log(d[rows, y]),
        "kl_d": (qd.log_prob(d) - Dirichlet(m.alpha.expand(n, -1)).log_prob(d)) / n_data,
    }
    for t in TERMS:
        a, b = closed[t], brute[t]
        se = float(torch.sqrt(a.var() / n + b.var() / n))
        print(f"{weights} {t}: closed {float(a.mean()):.5f} brute {float(b.mean()):.5f}")
        assert abs(float(a.mean() - b.mean())) < 5 * se + 1e-9, t
    if weights == "global":  # counted once per data set
        kl = kl_divergence(Dirichlet(m.beta), Dirichlet(m.alpha))
        assert torch.allclose(closed["kl_d"], kl / n_data)


@torch.no_grad()
def test_beta_is_the_elbo_optimum_of_q_pi() -> None:
    """A training step moves β towards alpha + N * mean_i q(y_i) (the coordinate-ascent
    optimum of the ELBO in q(π), as in a Bayesian GMM), with step 1/(t + 1) floored at
    ``weights_step``; labelled cells count with their label; eval leaves β alone."""
    m = _tiny()
    m.dataset_size = 500
    x = torch.randn(64, 6, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[torch.arange(64) % 2]
    labels = torch.full((64,), -1)
    labels[:16] = 2

    def target(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        z = m.posteriors(x, c)[0].rsample()  # the draw forward makes first
        resp = torch.softmax(m.classifier(z), -1)
        resp[:16] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        return m.alpha + 500 * resp.mean(0)

    m.train()
    torch.manual_seed(3)
    m(x, c, labels)
    first = target(3)
    assert torch.allclose(m.beta, first)  # step 1: rho = 1
    torch.manual_seed(4)
    m(x, c, labels)
    assert torch.allclose(m.beta, (first + target(4)) / 2)  # step 2: rho = 1/2
    assert float(m.beta.sum()) == pytest.approx(500 + 3 * 0.7)
    assert float(m.beta[2] - m.alpha[2]) >= 500 * 0.25  # 16 of 64 cells labelled 2
    m.eval()
    before = m.beta.clone()
    m(x, c, labels)
    assert torch.equal(before, m.beta)
    assert torch.allclose(m.weights(), m.beta / m.beta.sum())
    for _ in range(100):  # later steps: rho floored at weights_step
        m.train()(x, c, labels)
    assert int(m.beta_steps) == 102


def test_per_cell_alpha_does_not_set_the_weights() -> None:
    """The thesis' d per cell: p(y=k) = E[d_k] = 1/K whatever the symmetric alpha."""
    for alpha in (0.01, 1.0, 10.0):
        m = _tiny(mixture_weights="per_cell")
        m.alpha.fill_(alpha)
        d = Dirichlet(m.alpha).sample((200_000,))
        assert torch.allclose(d.mean(0), m.weights(), atol=3e-3)
        assert torch.allclose(m.weights(), torch.full((3,), 1 / 3, dtype=torch.float64))


# ---------------------------------------------------------------------- components used
def _fit(n_blobs: int, seed: int = 0, **options: object) -> tuple[dict, float]:
    adata = make_blobs(n_cells=2000, n_blobs=n_blobs, n_conditions=1, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                   model_options={"n_clusters": 15, **options}, epochs=40, progress=False,
                   seed=seed)
    info = adata.uns["geovae"]
    ari = adjusted_rand_score(adata.obs["blob"], adata.obsm["geovae_cluster_probs"].argmax(1))
    print(f"{n_blobs} blobs, K = 15, {options or 'defaults'}: used (weights) "
          f"{info['n_components_used']}, argmax {info['n_components_argmax']}, ARI {ari:.3f}; "
          f"weights {np.round(info['mixture_weights'], 3)}")
    return info, ari


@pytest.mark.parametrize(("n_blobs", "low", "high"), [(5, 4, 7), (10, 9, 11)])
def test_unneeded_components_get_no_weight(n_blobs: int, low: int, high: int) -> None:
    info, ari = _fit(n_blobs)
    assert low <= info["n_components_used"] <= high
    assert low <= info["n_components_argmax"] <= high
    assert ari >= 0.9
    weights = np.asarray(info["mixture_weights"])
    assert weights.shape == (15,) and np.isclose(weights.sum(), 1.0, atol=1e-5)
    assert list(info["empty_components"]) == [int(k) for k in np.flatnonzero(weights < 0.005)]


# ---------------------------------------------------------------------- log p(x)
@pytest.mark.parametrize("weights", ["global", "per_cell"])
@torch.no_grad()
def test_log_marginal_matches_quadrature(weights: str) -> None:
    """`log_marginal` (IWAE with q(z|x) q(w|x), the mixture summed out with the model's class
    probabilities) against log p(x) = log ∫∫ p(x|z) sum_k π_k p(z|w,k) p(w) dz dw by
    quadrature on a tiny model with 1-d z and w."""
    from geovae.modules.base import Batch

    torch.manual_seed(0)
    m = CGMVAEModule(3, make_latent("euclidean", 1, 8), "gaussian", n_hidden=8, dropout=0.0,
                     n_clusters=3, w_dim=1, mixture_weights=weights).double().eval()
    if weights == "global":
        m.beta.copy_(torch.tensor([30.0, 2.0, 8.0], dtype=torch.float64))
    # a broad proposal (q(z|x) = N(0, 3^2), q(w|x) = N(0, 1)) keeps the weights' variance small
    for head, sd in ((m.latent.head, 3.0), (m.w_head, 1.0)):
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.0, float(np.log(np.expm1(sd - 1e-4)))]))
    x = torch.randn(4, 3, dtype=torch.float64)
    w = torch.linspace(-9, 9, 721, dtype=torch.float64)[:, None]
    z = torch.linspace(-12, 12, 2401, dtype=torch.float64)[:, None]
    comp = m.prior_z(w, None)  # (W, K) components
    log_pz = comp.base_dist.log_prob(z[:, None, None, :]).squeeze(-1)  # (Z, W, K)
    log_pz = torch.logsumexp(torch.log(m.weights()) + log_pz, -1)  # (Z, W)
    log_pw = Normal(0.0, 1.0).log_prob(w[:, 0])  # (W,)
    log_px_z = m.decode(z, None, torch.ones(len(z), 1, dtype=torch.float64)).log_prob(
        x[:, None, :]).sum(-1)  # (cells, Z)
    dz, dw = float(z[1] - z[0]), float(w[1] - w[0])
    inner = torch.logsumexp(log_pz + log_pw, 1) + np.log(dw)  # log p(z), (Z,)
    truth = torch.logsumexp(log_px_z + inner, 1) + np.log(dz)
    assert float(torch.logsumexp(inner, 0) + np.log(dz)) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    est = m.log_marginal(Batch(x, None, torch.full((4,), -1)), 20_000)
    torch.manual_seed(2)
    elbo = m.log_marginal(Batch(x.repeat(2000, 1), None, torch.full((8000,), -1)), 1)
    elbo = elbo.view(2000, 4).mean(0)  # S = 1: the ELBO, below log p(x)
    print(weights, "quadrature", truth.numpy().round(4), "IWAE", est.numpy().round(4))
    assert est.shape == (4,)
    assert torch.allclose(est, truth, atol=0.03)
    assert (elbo < est).all()
