"""c*GMΔVAE: the conditional Gaussian-mixture VAE with a Dirichlet prior on the mixture weights.

Generative model (c = one-hot covariates, optional)::

    p(x, y, z, w, π | c) = p(x|z,c) p(z|w,y) p(y|π) p(π) p(w)
    w ~ N(0, I),  π ~ Dir(alpha),  y|π ~ Cat(π),  z|w,y ~ P_y(w) on the latent manifold

The covariate enters the decoder only (``condition_prior=False``, the default): the prior of
z is the same mixture in every condition, so the ELBO gains nothing from a z that moves with c
and the latent written to ``X_geovae`` is corrected for it (as scVI's decoder-only covariates).
``condition_prior=True`` is the thesis' p(z|w,y,c): each condition gets its own mixture, z is
free to move with c at no KL cost and the latent splits by condition (kept for models saved
by geovae 0.1.0 and for users who want condition-specific components). The encoder sees c only
with ``encode_covariates=True`` (scVI's ``encode_covariates``; default False).

Mixture weights (``mixture_weights``):

* ``"global"`` (default): one vector π for the data set, with a variational Dirichlet posterior
  q(π) = Dir(β), as in Bayesian Gaussian mixtures (scikit-learn's
  ``BayesianGaussianMixture``). E_q[log π_k] = ψ(β_k) - ψ(Σβ) enters the y term and
  KL(q(π) || Dir(alpha)) is counted once per data set, i.e. divided by ``dataset_size`` (the
  number of cells; the model sets it before training) in each cell's -ELBO. β is updated in
  closed form during training, by the natural-gradient (stochastic variational inference)
  step on the ELBO: β ← (1 - ρ) β + ρ (alpha + N · mean_batch q(y|·)), ρ_t = max(1/(t + 1),
  ``weights_step``). With alpha < 1 components the data do not need lose their mass
  (E_q[π_k] → alpha / (N + K alpha)), so ``n_clusters`` is an upper bound and the posterior
  weights say how many components are used.
* ``"per_cell"``: the thesis' d ~ Dir(alpha) drawn per cell, with q(d|z) = Dir(g(z)). Then
  p(y = k) = E[d_k] = 1/K for any symmetric alpha: alpha does not set the weights; it only
  changes how much an uncertain cell pays, and alpha < 1 pushes cells to over-confident
  assignments (which is what empties components). Kept for models saved by geovae 0.1.0.

Inference model: q(z|x[,c]) is the latent's own posterior, q(w|x[,c]) Gaussian,
q(y|z) = Cat(f(z)), and q(π) = Dir(β) or q(d|z) = Dir(g(z)); f and g read z's ambient
coordinates (``embed_dim``).

The mixture components P_k(w[,c]) live on z's manifold (`component_prior`, the only
geometry-specific piece):

* euclidean: N(mu_k(w), diag sigma_k(w)^2), sigma = softplus + 1e-3;
* sphere S^d: the posterior's own family, von Mises-Fisher (``posterior="vmf"``) or Power
  Spherical, with mean direction mu_k(w) / |mu_k(w)| and concentration
  kappa_k(w) = softplus + 1, at most the latent's ``max_kappa``;
* hyperbolic H^d: WrappedNormal(expmap0(v_k(w)), softplus + 1e-3).

log p(z|w,y=k) is the component's exact log-density at the sampled z, so ``kl_z`` below is a
single-sample Monte Carlo estimate in z with the sum over k exact, for every geometry.

-ELBO per cell = the five terms of the thesis, each taken in closed form where one exists
(only z and w are sampled, once); D = q(π) = Dir(β) (global) or q(d|z) = Dir(g(z)) (per cell),
N = ``dataset_size`` for global weights and 1 per cell:

* ``reconstruction`` (13): -log p(x|z,c)
* ``kl_z`` (14): sum_k q(y=k|z) [log q(z|x) - log p(z|w,y=k)]
* ``kl_w`` (15): KL(q(w|x) || N(0, I))
* ``kl_y`` (16): sum_k q(y=k|z) [log q(y=k|z) - E_D[log π_k]]
* ``kl_d`` (17): KL(D || Dir(alpha)) / N

Labelled cells (``labels >= 0``) use the one-hot observed label instead of q(y|z) in the sums
(and in the update of β) and add ``classifier_weight * -log q(y=label|z)`` (Kingma et al.
2014), so component k is label k for k < n_labels.

``model_options``: ``n_clusters`` (K; default n_labels, or 20 without labels), ``w_dim``
(default latent_dim), ``dirichlet_alpha`` (concentration of the symmetric Dirichlet prior;
default 1/K for global weights, 1 per cell), ``classifier_weight`` (default 50),
``mixture_weights`` (``global`` or ``per_cell``), ``weights_step`` (floor of the step size
of β's update, default 0.05), ``condition_prior`` (default False), ``encode_covariates``
(default False), ``cluster_samples`` (draws of z for the predictive q(y|x) =
E_q(z|x) q(y|z) that the model reports, default 32; 0 = q(y|z) at the posterior mean of z,
as geovae 0.1.0 did). A config saved without these keys (geovae 0.1.0) loads with the old
values: per-cell d, alpha 1, condition_prior and encode_covariates True, cluster_samples 0
(`geovae.models.cgmvae.LEGACY_OPTIONS`).
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
#: how the mixture weights are modelled (see the module docstring)
MIXTURE_WEIGHTS = ("global", "per_cell")


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
    """p(z|w,y=k[,c]) on z's manifold from unconstrained ``out`` (..., component_params).

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


def _repeat(t: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """(B, ...) -> (n * B, ...), sample-major (row s * B + i is cell i's copy s)."""
    return None if t is None else t.repeat(n, *([1] * (t.dim() - 1)))


class CGMVAEModule(VAEModule):
    """c*GMΔVAE on tensors; inherits the z encoder, decoder and likelihood from `VAEModule`."""

    def __init__(self, n_features: int, latent: Latent, likelihood: str = "nb",
                 n_covariates: int = 0, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.1, center: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, *, n_clusters: int = 20, n_labels: int = 0,
                 w_dim: int | None = None, dirichlet_alpha: float | None = None,
                 classifier_weight: float = 50.0, mixture_weights: str = "global",
                 weights_step: float = 0.05, linear_prior: bool = True,
                 condition_prior: bool = False, encode_covariates: bool = False,
                 cluster_samples: int = 32):
        if not isinstance(latent, SUPPORTED_LATENTS):
            raise OptionError(f"model cgmvae has no mixture prior p(z|w,y) for the "
                              f"{latent.geometry!r} latent: use --latent euclidean, sphere or "
                              f"hyperbolic")
        if n_clusters < max(n_labels, 1):
            raise OptionError(f"{{opt}}={n_clusters} must be at least the number of label "
                              f"categories ({n_labels}) and at least 1", param="n_clusters")
        if mixture_weights not in MIXTURE_WEIGHTS:
            raise OptionError(f"unknown {{opt}} {mixture_weights!r}: use "
                              + " or ".join(MIXTURE_WEIGHTS), param="mixture_weights")
        if dirichlet_alpha is None:
            dirichlet_alpha = 1.0 / n_clusters if mixture_weights == "global" else 1.0
        if not dirichlet_alpha > 0:
            raise OptionError("{opt} must be positive", param="dirichlet_alpha")
        if not 0 < weights_step <= 1:
            raise OptionError("{opt} must be in (0, 1]", param="weights_step")
        if not isinstance(cluster_samples, int) or cluster_samples < 0:
            raise OptionError("{opt} must be a whole number >= 0", param="cluster_samples")
        super().__init__(n_features, latent, likelihood, n_covariates, n_hidden, n_layers,
                         dropout, center, scale)
        self.encode_covariates = bool(encode_covariates)
        if n_covariates and not encode_covariates:  # the encoder reads x only
            self.encoder = mlp(n_features, n_hidden, n_layers, dropout)
        z_dim, w_dim = latent.embed_dim, w_dim or latent.intrinsic_dim  # ambient coordinates
        self.n_clusters, self.n_labels, self.z_dim = n_clusters, n_labels, z_dim
        self.n_component_params = component_params(latent)
        self.classifier_weight, self.condition_prior = classifier_weight, condition_prior
        self.mixture_weights, self.weights_step = mixture_weights, float(weights_step)
        self.cluster_samples = cluster_samples
        #: cells in the data set: global weights count KL(q(π)||p(π)) once per data set
        self.dataset_size = 1
        self.w_head = nn.Linear(n_hidden, 2 * w_dim)  # q(w|x[,c]) from the shared encoder
        self.classifier = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                        nn.Linear(n_hidden, n_clusters))  # f(z)
        if mixture_weights == "per_cell":
            self.dirichlet = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                           nn.Linear(n_hidden, n_clusters))  # g(z), raw
        n_prior_in = w_dim + (n_covariates if condition_prior else 0)
        n_out = n_clusters * self.n_component_params
        self.linear_prior = linear_prior
        if linear_prior:  # components affine in w: each one unimodal
            self.prior_net = nn.Sequential(nn.Linear(n_prior_in, n_out))
        else:
            self.prior_net = nn.Sequential(mlp(n_prior_in, n_hidden, n_layers, dropout),
                                           nn.Linear(n_hidden, n_out))
        self.register_buffer("alpha", torch.full((n_clusters,), float(dirichlet_alpha)))
        if mixture_weights == "global":
            # q(π) = Dir(β); starts at the prior plus one cell's worth of uniform mass
            self.register_buffer("beta", self.alpha + 1.0 / n_clusters)
            self.register_buffer("beta_steps", torch.zeros((), dtype=torch.long))

    def covariate_layers(self) -> list[tuple[str, int]]:
        layers = [("decoder.0", self.latent.embed_dim)]
        if self.encode_covariates:
            layers.insert(0, ("encoder.0", self.n_features))
        if self.condition_prior:
            first = "prior_net.0" if self.linear_prior else "prior_net.0.0"
            width = self.get_submodule(first).in_features
            layers.append((first, width - self.n_covariates))
        return layers

    # ------------------------------------------------------------------ pieces
    def hidden(self, x_in: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """The encoder's last hidden layer; reads c only with ``encode_covariates``."""
        return super().hidden(x_in, c if self.encode_covariates else None)

    def posteriors(self, x: torch.Tensor, c: torch.Tensor | None
                   ) -> tuple[Distribution, Normal, torch.Tensor]:
        """q(z|x[,c]) (the latent's), q(w|x[,c]) (per-dimension Normal) and the target."""
        x_in, target, _ = self.transform(x)
        h = self.hidden(x_in, c)
        return self.latent(h), self.posterior_w(h), target

    def posterior_w(self, h: torch.Tensor) -> Normal:
        loc, raw = self.w_head(h).chunk(2, dim=-1)
        return Normal(loc, F.softplus(raw) + 1e-4)

    def concentrations(self, z: torch.Tensor) -> torch.Tensor:
        """Parameters of the Dirichlet over the mixture weights for each row of ``z``, (B, K):
        β of q(π) repeated (global weights) or g(z) of q(d|z) (per cell)."""
        if self.mixture_weights == "global":
            return self.beta.to(z.dtype).expand(*z.shape[:-1], self.n_clusters)
        return concentration(self.dirichlet(z))

    def weights(self) -> torch.Tensor:
        """The model's class probabilities p(y = k), (K,): E_q[π] = β / Σβ for global
        weights; E[d] = alpha / Σalpha (= 1/K) per cell."""
        conc = self.beta if self.mixture_weights == "global" else self.alpha
        return conc / conc.sum()

    def prior_z(self, w: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """p(z|w,y=k[,c]) for all k at once on z's manifold: batch shape (B, K)."""
        inp = w if c is None or not self.condition_prior else torch.cat([w, c], dim=-1)
        out = self.prior_net(inp).view(-1, self.n_clusters, self.n_component_params)
        return component_prior(self.latent, out)

    @torch.no_grad()
    def cluster_probs(self, x: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
        """q(y|z) at the posterior mean of z: (B, K). (The model reports the predictive
        q(y|x) = E_q(z|x) q(y|z) instead; see `geovae.models.CGMVAE.get_cluster_probs`.)"""
        return torch.softmax(self.classifier(self.latent_mean(x, c)), dim=-1)

    @torch.no_grad()
    def update_weights(self, resp: torch.Tensor) -> None:
        """One natural-gradient step of q(π) = Dir(β) from a minibatch's q(y|·), (B, K)."""
        target = self.alpha + self.dataset_size * resp.mean(0).to(self.beta.dtype)
        rho = max(1.0 / (int(self.beta_steps) + 1), self.weights_step)
        self.beta.mul_(1 - rho).add_(rho * target)
        self.beta_steps += 1

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
        alpha = self.alpha.to(z.dtype)
        if self.mixture_weights == "global":
            beta = self.beta.to(z.dtype)
            e_log_d = torch.digamma(beta) - torch.digamma(beta.sum())
            kl_d = (kl_divergence(Dirichlet(beta), Dirichlet(alpha)) / self.dataset_size
                    ).expand_as(log_qz)
        else:
            g = self.concentrations(z)
            e_log_d = torch.digamma(g) - torch.digamma(g.sum(-1, keepdim=True))
            kl_d = kl_divergence(Dirichlet(g), Dirichlet(alpha))
        log_pz = self.prior_z(w, c).log_prob(z.unsqueeze(1))  # (B, K)
        terms = {
            "reconstruction": reconstruction,
            "kl_z": log_qz - (pi * log_pz).sum(-1),
            "kl_w": kl_divergence(qw, Normal(torch.zeros_like(w), torch.ones_like(w))).sum(-1),
            "kl_y": (torch.special.xlogy(pi, pi) - pi * e_log_d).sum(-1),
            "kl_d": kl_d,
        }
        kl = terms["kl_z"] + terms["kl_w"] + terms["kl_y"] + terms["kl_d"]
        ce = torch.where(labelled, -log_pi.gather(1, labels.clamp(min=0)[:, None]).squeeze(1),
                         torch.zeros_like(kl)) if labels is not None else torch.zeros_like(kl)
        loss = (reconstruction + kl_weight * kl + self.classifier_weight * ce).mean()
        if self.mixture_weights == "global" and self.training:
            self.update_weights(pi.detach())
        return LossOutput(loss, reconstruction, kl, {**terms, "classification": ce})

    # ------------------------------------------------------------------ evaluation
    def log_joint_and_proposal(self, x: torch.Tensor, c: torch.Tensor | None, n_samples: int
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log p(x, z, w | c), log q(z, w | x[,c])), each (n_samples, B), for
        `VAEModule.log_marginal`'s importance-sampled log p(x|c).

        The mixture is summed out exactly: log p(x, z, w) = log p(x|z,c)
        + log sum_k π_k p(z|w,y=k[,c]) + log p(w), with π = `weights` (the model's class
        probabilities: E_q[π] for global weights, 1/K per cell); proposal q(z|x) q(w|x).
        """
        x_in, target, library = self.transform(x)
        h = _repeat(self.hidden(x_in, c), n_samples)
        qz = self.latent(h)
        z, log_qz = self.latent.rsample(qz)
        if log_qz is None:
            log_qz = qz.log_prob(z)
        qw = self.posterior_w(h)
        w = qw.sample()
        log_qw = qw.log_prob(w).sum(-1)
        log_pw = Normal(torch.zeros_like(w), torch.ones_like(w)).log_prob(w).sum(-1)
        cs = _repeat(c, n_samples)
        log_w = torch.log(self.weights().to(z.dtype))
        log_pz = torch.logsumexp(log_w + self.prior_z(w, cs).log_prob(z.unsqueeze(1)), dim=-1)
        px = self.decode(z, cs, _repeat(library, n_samples))
        log_px = px.log_prob(_repeat(target, n_samples)).sum(-1)
        shape = (n_samples, len(x))
        return (log_px + log_pz + log_pw).view(shape), (log_qz + log_qw).view(shape)
