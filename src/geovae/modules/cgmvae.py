"""c*GMΔVAE: the conditional Gaussian-mixture VAE with a Dirichlet prior on the mixture weights.

Generative model (c = one-hot covariates, optional)::

    p(x, y, z, w, d | c) = p(x|z,c) p(z|w,y,c) p(y|d) p(d) p(w)
    w ~ N(0, I),  d ~ Dir(alpha),  y|d ~ Cat(d),  z|w,y,c ~ P_y(w,c) on the latent manifold

Inference model: q(z|x,c) is the latent's own posterior, q(w|x,c) Gaussian,
q(y|z) = Cat(f(z)), q(d|z) = Dir(g(z)); f and g read z's ambient coordinates (``embed_dim``).

The mixture components P_k(w,c) live on z's manifold (`component_prior`, the only
geometry-specific piece):

* euclidean: N(mu_k(w,c), diag sigma_k(w,c)^2), sigma = softplus + 1e-3;
* sphere S^d: the posterior's own family, von Mises-Fisher (``posterior="vmf"``) or Power
  Spherical, with mean direction mu_k(w,c) / |mu_k(w,c)| and concentration
  kappa_k(w,c) = softplus + 1, at most the latent's ``max_kappa``;
* hyperbolic H^d: WrappedNormal(expmap0(v_k(w,c)), softplus + 1e-3).

log p(z|w,y=k,c) is the component's exact log-density at the sampled z, so ``kl_z`` below is a
single-sample Monte Carlo estimate in z with the sum over k exact, for every geometry.

-ELBO per cell = the five terms of the thesis, each taken in closed form where one exists
(only z and w are sampled, once):

* ``reconstruction`` (13): -log p(x|z)
* ``kl_z`` (14): sum_k q(y=k|z) [log q(z|x) - log p(z|w,y=k)]
* ``kl_w`` (15): KL(q(w|x) || N(0, I))
* ``kl_y`` (16): sum_k q(y=k|z) [log q(y=k|z) - (psi(g_k) - psi(sum g))]
* ``kl_d`` (17): KL(Dir(g(z)) || Dir(alpha))

Labelled cells (``labels >= 0``) use the one-hot observed label instead of q(y|z) in the sums
and add ``classifier_weight * -log q(y=label|z)`` (Kingma et al. 2014), so component k is
label k for k < n_labels.

``model_options``: ``n_clusters`` (K; default n_labels, or 20 without labels), ``w_dim``
(default latent_dim), ``dirichlet_alpha`` (concentration of the symmetric Dirichlet prior on
d, default 1; alpha < 1 favours sparse weights so unused components empty out),
``classifier_weight`` (default 50), ``condition_prior`` (p(z|w,y) also sees c; default True).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Dirichlet, Distribution, Independent, Normal, kl_divergence

from geovae.distributions import PowerSpherical, VonMisesFisher, WrappedNormal
from geovae.errors import OptionError
from geovae.modules.base import LossOutput
from geovae.modules.vae import VAEModule
from geovae.nn.latents import EuclideanLatent, HyperbolicLatent, Latent, SphereLatent
from geovae.nn.layers import mlp

TERMS = ("reconstruction", "kl_z", "kl_w", "kl_y", "kl_d")


def concentration(raw: torch.Tensor) -> torch.Tensor:
    """Dirichlet concentrations from unconstrained outputs: softplus + 1e-3, at most 1e3."""
    return (F.softplus(raw) + 1e-3).clamp(max=1e3)


#: latents the mixture prior p(z|w,y) is defined for (see `component_prior`)
SUPPORTED_LATENTS = (EuclideanLatent, SphereLatent, HyperbolicLatent)


def component_params(latent: Latent) -> int:
    """Unconstrained outputs per mixture component that `component_prior` reads."""
    if isinstance(latent, SphereLatent):
        return latent.embed_dim + 1  # direction (d + 1) and concentration
    return 2 * latent.intrinsic_dim  # location (or tangent vector at the origin) and scale


def component_prior(latent: Latent, out: torch.Tensor) -> Distribution:
    """p(z|w,y=k,c) on z's manifold from unconstrained ``out`` (..., component_params).

    Batch shape ``out.shape[:-1]``; event = z's ``embed_dim`` coordinates, so ``log_prob``
    takes points as `Latent.rsample` returns them.
    """
    if isinstance(latent, SphereLatent):
        loc = F.normalize(out[..., :-1], dim=-1)
        kappa = (F.softplus(out[..., -1]) + 1).clamp(max=latent.max_kappa)
        return (VonMisesFisher if latent.posterior == "vmf" else PowerSpherical)(loc, kappa)
    a, raw = out.chunk(2, dim=-1)
    scale = F.softplus(raw) + 1e-3
    if isinstance(latent, HyperbolicLatent):
        return WrappedNormal(latent.manifold.expmap0(latent.manifold.tangent0(a)), scale)
    return Independent(Normal(a, scale), 1)


class CGMVAEModule(VAEModule):
    """c*GMΔVAE on tensors; inherits the z encoder, decoder and likelihood from `VAEModule`."""

    def __init__(self, n_features: int, latent: Latent, likelihood: str = "nb",
                 n_covariates: int = 0, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.1, center: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, *, n_clusters: int = 20, n_labels: int = 0,
                 w_dim: int | None = None, dirichlet_alpha: float = 1.0,
                 classifier_weight: float = 50.0, condition_prior: bool = True):
        if not isinstance(latent, SUPPORTED_LATENTS):
            raise OptionError(f"model cgmvae has no mixture prior p(z|w,y) for the "
                              f"{latent.geometry!r} latent: use --latent euclidean, sphere or "
                              f"hyperbolic")
        if n_clusters < max(n_labels, 1):
            raise OptionError(f"{{opt}}={n_clusters} must be at least the number of label "
                              f"categories ({n_labels}) and at least 1", param="n_clusters")
        if not dirichlet_alpha > 0:
            raise OptionError("{opt} must be positive", param="dirichlet_alpha")
        super().__init__(n_features, latent, likelihood, n_covariates, n_hidden, n_layers,
                         dropout, center, scale)
        z_dim, w_dim = latent.embed_dim, w_dim or latent.intrinsic_dim  # ambient coordinates
        self.n_clusters, self.n_labels, self.z_dim = n_clusters, n_labels, z_dim
        self.n_component_params = component_params(latent)
        self.classifier_weight, self.condition_prior = classifier_weight, condition_prior
        self.w_head = nn.Linear(n_hidden, 2 * w_dim)  # q(w|x,c) from the shared encoder
        self.classifier = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                        nn.Linear(n_hidden, n_clusters))  # f(z)
        self.dirichlet = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                       nn.Linear(n_hidden, n_clusters))  # g(z), raw
        n_prior_in = w_dim + (n_covariates if condition_prior else 0)
        self.prior_net = nn.Sequential(mlp(n_prior_in, n_hidden, n_layers, dropout),
                                       nn.Linear(n_hidden,
                                                 n_clusters * self.n_component_params))
        self.register_buffer("alpha", torch.full((n_clusters,), float(dirichlet_alpha)))

    def covariate_layers(self) -> list[tuple[str, int]]:
        layers = super().covariate_layers()
        if self.condition_prior:
            layers.append(("prior_net.0.0", self.prior_net[0][0].in_features - self.n_covariates))
        return layers

    # ------------------------------------------------------------------ pieces
    def posteriors(self, x: torch.Tensor, c: torch.Tensor | None
                   ) -> tuple[Distribution, Normal, torch.Tensor]:
        """q(z|x,c) (the latent's), q(w|x,c) (per-dimension Normal) and the target."""
        x_in, target, _ = self.transform(x)
        h = self.hidden(x_in, c)
        loc, raw = self.w_head(h).chunk(2, dim=-1)
        return self.latent(h), Normal(loc, F.softplus(raw) + 1e-4), target

    def concentrations(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): the Dirichlet parameters of q(d|z)."""
        return concentration(self.dirichlet(z))

    def prior_z(self, w: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """p(z|w,y=k,c) for all k at once on z's manifold: batch shape (B, K)."""
        inp = w if c is None or not self.condition_prior else torch.cat([w, c], dim=-1)
        out = self.prior_net(inp).view(-1, self.n_clusters, self.n_component_params)
        return component_prior(self.latent, out)

    @torch.no_grad()
    def cluster_probs(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """q(y|z) at the posterior mean of z: (B, K)."""
        return torch.softmax(self.classifier(self.latent_mean(x, c)), dim=-1)

    # ------------------------------------------------------------------ loss
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO (five closed-form terms) plus the classification loss on labelled cells."""
        qz, qw, target = self.posteriors(x, c)
        z, log_qz = self.latent.rsample(qz)
        if log_qz is None:
            log_qz = qz.log_prob(z)
        w = qw.rsample()
        library = x.sum(-1, keepdim=True)
        reconstruction = -self.decode(z, c, library).log_prob(target).sum(-1)
        logits = self.classifier(z)
        log_pi = torch.log_softmax(logits, dim=-1)
        pi = log_pi.exp()
        labelled = torch.zeros_like(log_qz, dtype=torch.bool) if labels is None else labels >= 0
        if labelled.any():
            onehot = F.one_hot(labels.clamp(min=0), self.n_clusters).to(pi.dtype)
            pi = torch.where(labelled[:, None], onehot, pi)
        g = self.concentrations(z)
        e_log_d = torch.digamma(g) - torch.digamma(g.sum(-1, keepdim=True))
        log_pz = self.prior_z(w, c).log_prob(z.unsqueeze(1))  # (B, K)
        terms = {
            "reconstruction": reconstruction,
            "kl_z": log_qz - (pi * log_pz).sum(-1),
            "kl_w": kl_divergence(qw, Normal(torch.zeros_like(w), torch.ones_like(w))).sum(-1),
            "kl_y": (torch.special.xlogy(pi, pi) - pi * e_log_d).sum(-1),
            "kl_d": kl_divergence(Dirichlet(g), Dirichlet(self.alpha.to(g.dtype))),
        }
        kl = terms["kl_z"] + terms["kl_w"] + terms["kl_y"] + terms["kl_d"]
        ce = torch.where(labelled, -log_pi.gather(1, labels.clamp(min=0)[:, None]).squeeze(1),
                         torch.zeros_like(kl)) if labels is not None else torch.zeros_like(kl)
        loss = (reconstruction + kl_weight * kl + self.classifier_weight * ce).mean()
        return LossOutput(loss, reconstruction, kl, {**terms, "classification": ce})
