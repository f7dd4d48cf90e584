"""`VAEModule.log_marginal` against exact marginal likelihoods.

* Linear-Gaussian VAE (Euclidean latent, linear decoder, fixed noise): x ~ N(b, AAᵀ + σ²I)
  exactly. With the exact posterior as proposal every importance weight equals p(x), so one
  sample must give log p(x) to rounding; with a deliberately poor proposal the IWAE estimate
  rises with S and reaches log p(x) within a few standard errors.
* Every latent geometry (flow, vMF, Power Spherical, wrapped normal) with a decoder that
  ignores z: p(x) = p(x|·), so the estimate tests that log p(z) and log q(z) are normalised
  densities on the same measure (E_q[p/q] = 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from geovae.modules.base import Batch
from geovae.modules.vae import VAEModule
from geovae.nn.latents import make_latent

D, d = 4, 2
SIGMA = 0.5


def _inv_softplus(y: torch.Tensor) -> torch.Tensor:
    return torch.log(torch.expm1(y))


def linear_gaussian(center: torch.Tensor, scale: torch.Tensor, loc_gain: float = 1.0,
                    sd_gain: float = 1.0) -> tuple[VAEModule, torch.Tensor, torch.Tensor]:
    """A VAE whose standardised data follow x ~ N(b, AAᵀ + σ²I); returns (module, A, b).

    A has orthogonal columns, so the posterior N(M(x - b), Σ) has diagonal Σ and the
    encoder (linear, then the latent head) can represent it exactly (gains of 1); other gains
    give a wrong proposal.
    """
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g))
    A = q * torch.tensor([1.5, 0.8])
    b = torch.randn(D, generator=g)
    module = VAEModule(D, make_latent("euclidean", d, d), "gaussian", n_hidden=d, dropout=0.0,
                       center=center, scale=scale)
    module.decoder = nn.Identity()  # h = z
    post_cov = torch.linalg.inv(torch.eye(d) + A.T @ A / SIGMA**2)
    assert torch.allclose(post_cov, torch.diag(torch.diagonal(post_cov)), atol=1e-10)
    M = post_cov @ A.T / SIGMA**2
    encoder = nn.Linear(D, d)
    with torch.no_grad():
        module.likelihood.loc.weight.copy_(A)
        module.likelihood.loc.bias.copy_(b)
        module.likelihood.log_scale.fill_(float(_inv_softplus(torch.tensor(SIGMA))))
        encoder.weight.copy_(loc_gain * M)
        encoder.bias.copy_(-loc_gain * M @ b)
        head = module.latent.head
        head.weight.zero_()
        head.weight[:d].copy_(torch.eye(d))
        sd = sd_gain * torch.diagonal(post_cov).sqrt() - 1e-4
        head.bias.copy_(torch.cat([torch.zeros(d), _inv_softplus(sd)]))
    module.encoder = encoder
    return module, A, b


def exact_log_px(x: torch.Tensor, A: torch.Tensor, b: torch.Tensor, center: torch.Tensor,
                 scale: torch.Tensor) -> torch.Tensor:
    """log N(x; center + scale * b, S (AAᵀ + σ²I) S), S = diag(scale)."""
    cov = torch.diag(scale) @ (A @ A.T + SIGMA**2 * torch.eye(D)) @ torch.diag(scale)
    law = torch.distributions.MultivariateNormal(center + scale * b, cov)
    return law.log_prob(x)


def sample_data(n: int, A: torch.Tensor, b: torch.Tensor, center: torch.Tensor,
                scale: torch.Tensor, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    xs = z @ A.T + b + SIGMA * torch.randn(n, D, generator=g)
    return center + scale * xs


CENTER = torch.tensor([1.0, -2.0, 0.5, 3.0])
SCALE = torch.tensor([2.0, 0.5, 1.0, 3.0])


def test_exact_posterior_gives_exact_log_px(float64) -> None:
    module, A, b = linear_gaussian(CENTER.double(), SCALE.double())
    x = sample_data(64, A, b, CENTER.double(), SCALE.double())
    truth = exact_log_px(x, A, b, CENTER.double(), SCALE.double())
    torch.manual_seed(0)
    for n_samples in (1, 7):
        est = module.log_marginal(Batch(x, None, torch.full((64,), -1)), n_samples)
        assert est.shape == (64,)
        torch.testing.assert_close(est, truth, atol=1e-7, rtol=0)


def test_iwae_rises_with_samples_and_converges(float64) -> None:
    center, scale = CENTER.double(), SCALE.double()
    module, A, b = linear_gaussian(center, scale, loc_gain=0.6, sd_gain=1.6)
    n = 200
    x = sample_data(n, A, b, center, scale)
    batch = Batch(x, None, torch.full((n,), -1))
    truth = exact_log_px(x, A, b, center, scale)
    torch.manual_seed(0)
    gaps = {}
    for n_samples in (1, 10, 3000):
        diff = module.log_marginal(batch, n_samples) - truth
        gaps[n_samples] = (float(diff.mean()), float(diff.std() / math.sqrt(n)))
    (g1, se1), (g10, _), (gbig, sebig) = gaps[1], gaps[10], gaps[3000]
    assert g1 < -0.1  # the proposal is poor: the ELBO is well below log p(x)
    assert g1 + 3 * se1 < g10 < gbig + 3 * sebig  # IWAE bounds tighten with S
    assert abs(gbig) < 3 * sebig + 2e-3, gaps  # and reach log p(x)


def test_blocks_keep_cells_and_samples_aligned(float64) -> None:
    """Tiny blocks split both the cells and the samples; with the exact posterior every weight
    is that cell's p(x), so a mix-up between cells or samples would show."""
    center, scale = CENTER.double(), SCALE.double()
    module, A, b = linear_gaussian(center, scale)
    x = sample_data(30, A, b, center, scale)
    module.marginal_block_elements = 256 * 7  # 7 rows per block
    est = module.log_marginal(Batch(x, None, torch.full((30,), -1)), 50)
    torch.testing.assert_close(est, exact_log_px(x, A, b, center, scale), atol=1e-7, rtol=0)


@pytest.mark.parametrize("geometry, options", [
    ("euclidean", {}), ("euclidean", {"flow": 2}), ("sphere", {"posterior": "vmf"}),
    ("sphere", {"posterior": "power-spherical"}), ("hyperbolic", {}),
])
def test_latent_densities_are_normalised(float64, geometry: str, options: dict) -> None:
    """A decoder that ignores z makes p(x) = p(x|·): the estimate is then log E_q[p(z)/q(z)]
    + log p(x|·), and E_q[p/q] = 1 only if both densities are exact on the same measure."""
    torch.manual_seed(0)
    latent = make_latent(geometry, 3, 16, **options)
    module = VAEModule(5, latent, "nb", n_hidden=16, dropout=0.0)
    with torch.no_grad():
        module.decoder[0].weight.zero_()  # decoder output no longer depends on z
        head = latent.head
        head.weight.mul_(0.1)  # q varies little with x ...
        if geometry != "sphere":  # ... and is broader than the prior, so p/q is bounded
            head.bias[3:].fill_(float(_inv_softplus(torch.tensor(1.3))))
            # q away from the prior's centre (distance ~1): on the hyperboloid, q's and the
            # prior's Jacobians (n-1) log(sinh r / r) then differ (r from different points)
            # and no longer cancel in p/q, so a density without it fails here
            head.bias[:3].copy_(torch.tensor([0.7, -0.5, 0.5]))
        if options.get("flow"):
            for p in latent.flow.parameters():
                p.add_(0.1 * torch.randn_like(p))  # a flow away from the identity
    x = torch.poisson(torch.full((6, 5), 4.0))
    batch = Batch(x, None, torch.full((6,), -1))
    _, target, library = module.eval().transform(x)
    z_any = torch.zeros(6, latent.embed_dim)  # any z: the decoder ignores it
    log_px = module.decode(z_any, None, library).log_prob(target).sum(-1)
    torch.manual_seed(1)
    n_samples = 20000
    est = module.log_marginal(batch, n_samples)
    with torch.no_grad():  # Monte Carlo error of the mean weight, from another draw
        log_joint, log_q = module.log_joint_and_proposal(x, None, n_samples)
    w = torch.exp(log_joint - log_q - log_px.detach())  # p(z)/q(z): mean 1
    rel_se = w.std(0) / w.mean(0) / math.sqrt(n_samples)
    assert (rel_se < 0.02).all(), rel_se  # the check below is sharp
    assert ((est - log_px).abs() < 4 * rel_se + 1e-3).all(), (est - log_px, rel_se)


def test_subclass_changing_the_model_must_override() -> None:
    class Other(VAEModule):
        def forward(self, *args, **kwargs):  # another generative model
            return super().forward(*args, **kwargs)

    module = Other(5, make_latent("euclidean", 2, 8), "nb", n_hidden=8)
    x = torch.ones(3, 5)
    with pytest.raises(NotImplementedError, match="log_joint_and_proposal"):
        module.log_marginal(Batch(x, None, torch.full((3,), -1)), 2)


def test_log_marginal_keeps_training_mode_and_gradients_off() -> None:
    module = VAEModule(5, make_latent("sphere", 2, 8), "zinb", n_hidden=8).train()
    x = torch.poisson(torch.full((4, 5), 3.0))
    est = module.log_marginal(Batch(x, None, torch.full((4,), -1)), 5)
    assert module.training and not est.requires_grad and torch.isfinite(est).all()
