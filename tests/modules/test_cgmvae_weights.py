"""The c*GMΔVAE's mixture weights (global q(π) or per-cell d), the classifier weight, the
predictive cluster probabilities and their calibration: checked against closed forms, brute
force and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Dirichlet

from geovae.models.cgmvae import entropy, expected_calibration_error
from geovae.modules.cgmvae import TERMS, CGMVAEModule
from geovae.nn.latents import make_latent


def _tiny(weights: str = "global", seed: int = 0, n_obs: int = 40,
          labelled_fraction: float = 1.0) -> CGMVAEModule:
    torch.manual_seed(seed)
    latent = make_latent("euclidean", 2, 16)
    m = CGMVAEModule(6, latent, "gaussian", 2, n_hidden=16, dropout=0.0, n_clusters=3,
                     w_dim=2, mixture_weights=weights)
    m = m.double()
    m.set_data_facts(n_obs, labelled_fraction)
    return m.eval()


def _elbo_gamma_part(gamma: torch.Tensor, alpha: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The ELBO's terms in gamma for fixed q(y) of N cells: sum_n sum_k q_nk E[log pi_k]
    - KL(Dir(gamma) || Dir(alpha))."""
    e_log = torch.digamma(gamma) - torch.digamma(gamma.sum())
    return (q * e_log).sum() - torch.distributions.kl_divergence(Dirichlet(gamma),
                                                                 Dirichlet(alpha))


def test_gamma_updates_converge_to_the_bound_optimum() -> None:
    m = _tiny(n_obs=20)
    torch.manual_seed(3)
    q = torch.softmax(torch.randn(20, 3, dtype=torch.float64) * 2, -1)
    seen = []
    for _ in range(400):  # minibatches of 5 cells, cycling through the 20
        for start in range(0, 20, 5):
            m._update_gamma(q[start:start + 5])
            seen.append(m.gamma.clone())
    # the SVI fixed point is alpha + N mean q (averaged over passes: the batches' noise)
    star = m.alpha + q.sum(0)
    assert torch.allclose(torch.stack(seen[400:]).mean(0), star, rtol=0.01)
    # ... and alpha + sum q is where the bound's gradient in gamma vanishes
    g = star.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_elbo_gamma_part(g, m.alpha, q), g)
    assert grad.abs().max() < 1e-8
    wrong = (q.sum(0) + 1.0).requires_grad_(True)  # e.g. a prior of 1 instead of alpha
    (grad_wrong,) = torch.autograd.grad(_elbo_gamma_part(wrong, m.alpha, q), wrong)
    assert grad_wrong.abs().max() > 1e-3


def test_gamma_not_updated_in_warmup_eval_or_when_frozen() -> None:
    m = _tiny()
    x, c = torch.randn(8, 6, dtype=torch.float64), torch.eye(2, dtype=torch.float64)[[0] * 8]
    before = m.gamma.clone()
    m.eval()(x, c)
    m.train()(x, c, kl_weight=0.5)
    assert torch.equal(m.gamma, before)
    m.update_weights = False
    m(x, c)
    assert torch.equal(m.gamma, before)
    m.update_weights = True
    m(x, c)
    assert not torch.equal(m.gamma, before)


@pytest.mark.parametrize("label", [-1, 1])
@torch.no_grad()
def test_global_weight_terms_match_brute_force(label: int) -> None:
    """kl_y and kl_d with global weights against sampling pi ~ q(pi), y ~ q(y|z)."""
    m = _tiny(n_obs=40)
    m.gamma.copy_(torch.tensor([5.0, 20.0, 15.0], dtype=torch.float64))
    torch.manual_seed(1)
    n = 200_000
    x = torch.randn(1, 6, dtype=torch.float64).expand(n, -1)
    c = torch.tensor([[0.0, 1.0]], dtype=torch.float64).expand(n, -1)
    torch.manual_seed(2)
    closed = m(x, c, torch.full((n,), label)).terms
    torch.manual_seed(2)  # the same z as the closed form: only y and pi are sampled here
    qz = m.encode(m.transform(x)[0], c)
    z, _ = m.latent.rsample(qz)
    q = Categorical(logits=m.classifier(z))
    y = q.sample() if label < 0 else torch.full((n,), label)
    log_qy = q.log_prob(y) if label < 0 else torch.zeros(n, dtype=torch.float64)
    pi = Dirichlet(m.gamma).sample((n,))
    brute = {"kl_y": log_qy - torch.log(pi[torch.arange(n), y]),
             "kl_d": (Dirichlet(m.gamma).log_prob(pi) - Dirichlet(m.alpha).log_prob(pi))
             / m.n_obs}
    for t, b in brute.items():
        a = closed[t]
        se = float(torch.sqrt(a.var() / n + b.var() / n))
        assert abs(float(a.mean() - b.mean())) < 5 * se + 1e-9, (t, a.mean(), b.mean(), se)


@pytest.mark.parametrize("weights", ["global", "per_cell"])
@pytest.mark.parametrize("term", TERMS + ("classification",))
def test_term_gradients_match_finite_differences(weights: str, term: str) -> None:
    """With the noise fixed, each term is a smooth function of the weights: autograd's
    directional derivative equals a central difference. A term computed on detached inputs
    (or dropped from the graph) has autograd 0 against a non-zero difference."""
    m = _tiny(weights, seed=4)
    torch.manual_seed(5)
    x = torch.randn(16, 6, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[torch.arange(16) % 2]
    labels = torch.tensor([0, 1, 2, -1] * 4)
    params = [p for p in m.parameters()]
    direction = [torch.randn_like(p) for p in params]

    def value() -> torch.Tensor:
        torch.manual_seed(6)
        return m(x, c, labels).terms[term].sum()

    if weights == "global" and term == "kl_d":  # KL(q(pi)||p(pi)) / N: gamma is set by SVI
        assert not value().requires_grad
        return
    grads = torch.autograd.grad(value(), params, allow_unused=True)
    auto = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True)
               if g is not None)
    eps = 1e-5
    with torch.no_grad():
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
        up = float(value())
        for p, d in zip(params, direction, strict=True):
            p.sub_(2 * eps * d)
        down = float(value())
        for p, d in zip(params, direction, strict=True):
            p.add_(eps * d)
    numeric = (up - down) / (2 * eps)
    assert abs(numeric) > 1e-6, "the direction does not move this term"
    assert auto == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_classifier_weight_scales_with_the_labelled_fraction() -> None:
    """Kingma et al. 2014: alpha times the mean over labelled cells, whatever their share."""
    x = torch.randn(12, 6, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[torch.arange(12) % 2]
    labels = torch.tensor([0, 1, 2] + [-1] * 9)
    out = {}
    for f in (1.0, 0.25):
        m = _tiny(seed=7, labelled_fraction=f)
        torch.manual_seed(8)
        out[f] = m(x, c, labels)
    ce = out[1.0].terms["classification"]
    assert torch.allclose(ce, out[0.25].terms["classification"])
    extra = float(out[0.25].loss - out[1.0].loss)
    assert extra == pytest.approx(float(50.0 * (1 / 0.25 - 1) * ce.mean()), rel=1e-9)


@torch.no_grad()
def test_predictive_probabilities_average_over_q_z() -> None:
    m = _tiny()
    torch.manual_seed(9)
    x = torch.randn(5, 6, dtype=torch.float64)
    c = torch.eye(2, dtype=torch.float64)[[0, 1, 0, 1, 0]]
    torch.manual_seed(10)
    probs = m.cluster_probs(x, c, 4)
    torch.manual_seed(10)
    qz = m.encode(m.transform(x)[0], c)
    manual = sum(torch.softmax(m.classifier(m.latent.rsample(qz)[0]), -1) for _ in range(4)) / 4
    assert torch.allclose(probs, manual)
    at_mean = m.cluster_probs(x, c, 0)
    assert torch.allclose(at_mean, torch.softmax(m.classifier(m.latent_mean(x, c)), -1))
    # many draws: the predictive differs from q(y|z) at the mean (not a point estimate)
    torch.manual_seed(11)
    many = m.cluster_probs(x, c, 4000)
    torch.manual_seed(12)
    again = m.cluster_probs(x, c, 4000)
    assert (many - again).abs().max() < 0.03  # Monte Carlo error of 4000 draws
    assert (many - at_mean).abs().max() > 0.03


def test_expected_calibration_error() -> None:
    rng = np.random.default_rng(0)
    # two bins by hand: conf 0.95 (2 cells, 1 right) and 0.55 (2 cells, 2 right)
    p = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    truth = np.array([0, 1, 0, 1])
    assert expected_calibration_error(p, truth) == pytest.approx(0.5 * 0.45 + 0.5 * 0.45)
    # calibrated by construction: truth drawn from the probabilities -> ECE ~ 0
    logits = rng.normal(0, 2, (20_000, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = (rng.random(20_000)[:, None] > probs.cumsum(1)).sum(1)
    assert expected_calibration_error(probs, truth) < 0.02
    # over-confident: the same truth against sharpened probabilities
    sharp = probs ** 4 / (probs ** 4).sum(1, keepdims=True)
    assert expected_calibration_error(sharp, truth) > 0.1
    assert np.allclose(entropy(np.full((2, 4), 0.25)), np.log(4))
    assert np.allclose(entropy(np.eye(3)), 0.0)


def test_per_cell_alpha_does_not_change_p_y() -> None:
    """The thesis's per-cell d: p(y = k) = E[d_k] = 1/K for any symmetric alpha (issue 9.2),
    while global weights move with the data."""
    for alpha in (0.05, 1.0, 20.0):
        d = Dirichlet(torch.full((4,), alpha, dtype=torch.float64)).sample((100_000,))
        assert torch.allclose(d.mean(0), torch.full((4,), 0.25, dtype=torch.float64),
                              atol=0.01)
    m = _tiny(n_obs=100)
    for _ in range(200):
        m._update_gamma(torch.tensor([[1.0, 0.0, 0.0]] * 10, dtype=torch.float64))
    assert float(m.mixture_weight_means()[0]) > 0.95


def test_options_checked() -> None:
    latent = make_latent("euclidean", 2, 16)
    from geovae.errors import OptionError

    with pytest.raises(OptionError, match="mixture_weights"):
        CGMVAEModule(6, latent, "gaussian", mixture_weights="local")
    with pytest.raises(OptionError, match="cluster_samples"):
        CGMVAEModule(6, latent, "gaussian", cluster_samples=-1)
    m = CGMVAEModule(6, latent, "gaussian", n_clusters=8)
    assert float(m.alpha[0]) == pytest.approx(1 / 8)  # global: sparse prior 1/K
    assert not hasattr(m, "dirichlet")
    m = CGMVAEModule(6, latent, "gaussian", n_clusters=8, mixture_weights="per_cell")
    assert float(m.alpha[0]) == 1.0 and hasattr(m, "dirichlet")



@pytest.mark.parametrize("weights", ["global", "per_cell"])
@torch.no_grad()
def test_log_marginal_matches_quadrature(weights: str) -> None:
    """`log_marginal` (IWAE with q(z|x) q(w|x), y summed out with `log_class_prior`) against
    log p(x) = log ∫∫ p(x|z) sum_k p(y=k) p(z|w,k) p(w) dz dw by quadrature, on a tiny model
    with 1-d z and w."""
    from torch.distributions import Normal

    from geovae.modules.base import Batch

    torch.manual_seed(0)
    m = CGMVAEModule(3, make_latent("euclidean", 1, 8), "gaussian", n_hidden=8, dropout=0.0,
                     n_clusters=3, w_dim=1, mixture_weights=weights).double().eval()
    if weights == "global":
        m.gamma.copy_(torch.tensor([30.0, 2.0, 8.0], dtype=torch.float64))
    # a broad proposal (q(z|x) = N(0, 3^2), q(w|x) = N(1, 1.5^2)) keeps the weights' variance
    # small. q(w|x) is not p(w) = N(0, 1), and p(z|w,k) moves with w (every component's mean
    # follows the first's, doubled) and x with z (decoder doubled), so the estimate needs
    # log p(w) - log q(w|x): without it, it is log E_q(w)[p(x|w)], not log E_p(w)[p(x|w)],
    # 0.11 (global) and 0.23 (per_cell) nats off at the worst cell, against < 0.02 with it.
    for head, mean, sd in ((m.latent.head, 0.0, 3.0), (m.w_head, 1.0, 1.5)):
        head.weight.zero_()
        head.bias.copy_(torch.tensor([mean, float(np.log(np.expm1(sd - 1e-4)))]))
    loc_rows = m.prior_net[1].weight[0::2]  # (K, hidden): component k's mean
    loc_rows.copy_(2 * loc_rows[0].clone().expand_as(loc_rows))
    m.likelihood.loc.weight.mul_(2.0)
    x = torch.randn(4, 3, dtype=torch.float64)
    w = torch.linspace(-9, 9, 721, dtype=torch.float64)[:, None]
    z = torch.linspace(-12, 12, 2401, dtype=torch.float64)[:, None]
    comp = m.prior_z(w, None)  # (W, K) components
    log_pz = comp.base_dist.log_prob(z[:, None, None, :]).squeeze(-1)  # (Z, W, K)
    prior_y = torch.tensor([30.0, 2.0, 8.0], dtype=torch.float64) / 40 \
        if weights == "global" else torch.full((3,), 1 / 3, dtype=torch.float64)
    log_pz = torch.logsumexp(torch.log(prior_y) + log_pz, -1)  # (Z, W)
    log_pw = Normal(0.0, 1.0).log_prob(w[:, 0])  # (W,)
    log_px_z = m.decode(z, None, torch.ones(len(z), 1, dtype=torch.float64)).log_prob(
        x[:, None, :]).sum(-1)  # (cells, Z)
    dz, dw = float(z[1] - z[0]), float(w[1] - w[0])
    inner = torch.logsumexp(log_pz + log_pw, 1) + np.log(dw)  # log p(z), (Z,)
    truth = torch.logsumexp(log_px_z + inner, 1) + np.log(dz)
    assert float(torch.logsumexp(inner, 0) + np.log(dz)) == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(1)
    est = m.log_marginal(Batch(x, None, torch.full((4,), -1)), 50_000)
    torch.manual_seed(2)
    elbo = m.log_marginal(Batch(x.repeat(2000, 1), None, torch.full((8000,), -1)), 1)
    elbo = elbo.view(2000, 4).mean(0)  # S = 1: the ELBO, below log p(x)
    print(weights, "quadrature", truth.numpy().round(4), "IWAE", est.numpy().round(4))
    assert est.shape == (4,)
    assert torch.allclose(est, truth, atol=0.03)
    assert (elbo < est).all()
