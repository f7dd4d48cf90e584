"""c*GMΔVAE: the conditional Gaussian-mixture VAE with a Dirichlet prior on the mixture weights.

Generative model (c = one-hot covariates, optional)::

    p(x, y, z, w, pi | c) = p(x|z,c) p(z|w,y) p(y|pi) p(pi) p(w)
    w ~ N(0, I),  pi ~ Dir(alpha),  y|pi ~ Cat(pi),  z|w,y ~ P_y(w) on the latent manifold

The covariates enter the encoder and the decoder only (``condition_prior=False``, the
default for every latent): the decoder explains what the condition does to x, so z, what
``X_geovae`` holds, need not carry the condition (scVI's construction).
``condition_prior=True`` (geovae 0.1.0) also feeds c to p(z|w,y,c), which lets z move with c
at no KL cost: the latent splits by condition (CHANGELOG: why hyperbolic latents left it).

Mixture weights, ``mixture_weights``:

* ``"global"`` (default): one weight vector pi for the whole data set, as in a Bayesian GMM
  (scikit-learn's ``BayesianGaussianMixture``): prior Dir(alpha), alpha = 1/K by default,
  variational posterior q(pi) = Dir(gamma). gamma is updated by stochastic variational
  inference (Hoffman et al. 2013): after each training step
  gamma <- (1 - rho) gamma + rho (alpha + N mean_batch q(y)), the optimum of the bound in gamma
  given q(y); N = training cells. E[log pi_k] = psi(gamma_k) - psi(sum gamma) then enters every
  cell's ``kl_y``. KL(q(pi) || p(pi)) / N is each cell's share of ``kl_d``. That pull towards
  fewer components is weak where two components share the same cells (the entropy of q(y)
  pays for the split), so after training delete moves (`delete_components`,
  `geovae.modules.deletion`) remove such spare components when the bound improves:
  ``n_clusters`` is an upper bound.
* ``"per_cell"`` (the thesis): d ~ Dir(alpha) per cell, q(d|z) = Dir(g(z)); p(y = k) = 1/K for
  every symmetric alpha, so alpha only changes how much the bound charges an uncertain q(y|z).

Inference model: q(z|x,c) is the latent's own posterior, q(w|x,c) Gaussian,
q(y|z) = Cat(f(z)) (and q(d|z) = Dir(g(z)) per cell); f and g read z's ambient coordinates
(``embed_dim``). Cluster probabilities are the predictive q(y|x) = E_q(z|x) q(y|z), estimated
with ``cluster_samples`` draws of z (0: q(y|z) at the posterior mean, geovae 0.1.0).

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
* ``kl_y`` (16): sum_k q(y=k|z) [log q(y=k|z) - E[log pi_k]] (per cell: E over q(d|z))
* ``kl_d`` (17): KL(q(d|z) || Dir(alpha)) per cell; global: KL(q(pi) || Dir(alpha)) / N

Labelled cells (``labels >= 0``) use the one-hot observed label instead of q(y|z) in the sums
and add ``classifier_weight / labelled_fraction * -log q(y=label|z)``: as in Kingma et al.
2014 (alpha times the mean over labelled cells), the classifier's weight does not shrink when
fewer cells are labelled. Component k is label k for k < n_labels.

``model_options``: ``n_clusters`` (K; default n_labels, or 20 without labels), ``w_dim``
(default latent_dim), ``mixture_weights`` (``global``/``per_cell``), ``dirichlet_alpha``
(default 1/K global, 1 per cell), ``classifier_weight`` (default 50), ``condition_prior``
(default False), ``delete_moves`` (default True, global weights: `delete_components`),
``cluster_samples`` (default 32), ``warm_start`` / ``hold`` (shares of the epochs pretrained
as a VAE / with the started components held, default 0.5 / 0.25; unsupervised Euclidean
only: `mixture_start`, started by ``mixture_start``, ``leiden``, default, or ``gmm``),
``plateau_start`` (True: a plateaued pretraining starts the mixture early; off by default:
RESULTS.md, donors), ``hold_weights`` (default True: with the warm start gamma is held from
the start to the end of training, then set to its optimum given q(y)), ``merge_moves``
(default True: after training, before the delete moves, unsupervised Euclidean only:
`geovae.modules.merging`; ``merge_rule`` ``elbo``, default, ``demp``, ``lobes``, ``modes``
or ``graph``: which merges), ``prior_lr`` (the components' share of the learning rate,
default 1), ``y_temper`` (default 0, off), ``encoder_input`` (count data: as the VAE's,
`geovae.modules.vae.ENCODER_INPUTS`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Normal, kl_divergence

from geovae.data.sources import DataSource
from geovae.errors import OptionError
from geovae.modules import components as comp
from geovae.modules import mixture_start
from geovae.modules.base import LossOutput, processes
from geovae.modules.deletion import delete_components
from geovae.modules.merging import check_merge_rule, merge_components
from geovae.modules.mixture_start import HOLD, START_RULES, WARM_START, pretrain_loss, set_phase
from geovae.modules.vae import VAEModule, repeat_samples
from geovae.nn.latents import Latent, standard_normal_kl
from geovae.nn.layers import mlp
from geovae.nn.likelihoods import summed_log_prob

TERMS = ("reconstruction", "kl_z", "kl_w", "kl_y", "kl_d")
MIXTURE_WEIGHTS = ("global", "per_cell")
#: training cells each round of delete moves looks at
DELETE_CELLS = 4096


class CGMVAEModule(VAEModule):
    """c*GMΔVAE on tensors; inherits the z encoder, decoder and likelihood from `VAEModule`."""

    def __init__(self, n_features: int, latent: Latent, likelihood: str = "nb",
                 n_covariates: int = 0, n_hidden: int = 128, n_layers: int = 1,
                 dropout: float = 0.1, center: torch.Tensor | None = None,
                 scale: torch.Tensor | None = None, *, n_clusters: int = 20, n_labels: int = 0,
                 w_dim: int | None = None, mixture_weights: str = "global",
                 dirichlet_alpha: float | None = None, classifier_weight: float = 50.0,
                 condition_prior: bool = False, cluster_samples: int = 32,
                 delete_moves: bool = True, prior_uses_w: bool = True,
                 warm_start: float = WARM_START, hold: float = HOLD, y_temper: float = 0.0,
                 prior_lr: float = 1.0, merge_moves: bool = True, hold_weights: bool = True,
                 plateau_start: bool = False, encoder_input: str | None = None,
                 merge_rule: str = "elbo", mixture_start: str = "leiden"):
        if not isinstance(latent, comp.SUPPORTED_LATENTS):
            raise OptionError(f"model cgmvae has no mixture prior p(z|w,y) for the "
                              f"{latent.geometry!r} latent: use {{latent='euclidean'}}, "
                              "sphere or hyperbolic")
        if n_clusters < max(n_labels, 1):
            raise OptionError(f"{{opt}}={n_clusters} must be at least the number of label "
                              f"categories ({n_labels}) and at least 1", param="n_clusters")
        if mixture_weights not in MIXTURE_WEIGHTS:
            raise OptionError(f"{{opt}} must be one of {', '.join(MIXTURE_WEIGHTS)}, not "
                              f"{mixture_weights!r}", param="mixture_weights")
        if dirichlet_alpha is None:
            dirichlet_alpha = 1.0 / n_clusters if mixture_weights == "global" else 1.0
        if not dirichlet_alpha > 0:
            raise OptionError("{opt} must be positive", param="dirichlet_alpha")
        if not (0 <= warm_start < 1 and 0 <= hold < 1 and warm_start + hold <= 1):
            raise OptionError(f"{{opt}}={warm_start} and hold={hold} must be shares of the "
                              "epochs in [0, 1) that add up to at most 1", param="warm_start")
        if not y_temper >= 0:
            raise OptionError(f"{{opt}} must be >= 0, got {y_temper}", param="y_temper")
        if not 0 < prior_lr <= 1:
            raise OptionError(f"{{opt}} must be in (0, 1], got {prior_lr}", param="prior_lr")
        if cluster_samples < 0:
            raise OptionError("{opt} must be >= 0 (0: posterior mean)", param="cluster_samples")
        if mixture_start not in START_RULES:
            raise OptionError("{opt} must be leiden or gmm", param="mixture_start")
        super().__init__(n_features, latent, likelihood, n_covariates, n_hidden, n_layers,
                         dropout, center, scale, encoder_input=encoder_input)
        z_dim, w_dim = latent.embed_dim, w_dim or latent.intrinsic_dim  # ambient coordinates
        self.n_clusters, self.n_labels, self.z_dim = n_clusters, n_labels, z_dim
        self.n_component_params = comp.component_params(latent)
        self.classifier_weight, self.condition_prior = classifier_weight, condition_prior
        self.mixture_weights, self.cluster_samples = mixture_weights, cluster_samples
        self.prior_uses_w, self.warm_start, self.hold = prior_uses_w, warm_start, hold
        self.mixture_start, self.start_resolution, self.start_candidates = mixture_start, None, None
        self.prior_lr = prior_lr  # the prior network's share of the learning rate (`lr_scales`)
        #: with the warm start, gamma stays at the start's from then to the end of training
        #: (`mixture_start`); ``weights_fixed`` is True while it does
        self.hold_weights, self.weights_fixed = hold_weights, False
        self.phase = "mixture"  # `mixture_start.mixture_phase` sets the warm start's phases
        #: (mixture's first epoch, first after the hold) of ``schedule_epochs`` (`mixture_start`)
        self.schedule, self.schedule_epochs, self.plateau_start = None, 0, plateau_start
        #: weight of q(y|z)'s entropy in the training loss (`mixture_start.mixture_phase`)
        self.y_temper, self.entropy_weight = y_temper, 1.0
        #: SVI updates of gamma during training (`freeze_for_query` may turn them off)
        self.update_weights = True
        #: delete moves after training (`delete_components`; `freeze_for_query` turns them off)
        self.delete_moves = delete_moves
        #: merge moves after training, before the delete moves, by ``merge_rule``
        self.merge_moves, self.merge_rule = merge_moves, check_merge_rule(merge_rule)
        self.w_head = nn.Linear(n_hidden, 2 * w_dim)  # q(w|x,c) from the shared encoder
        self.classifier = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                        nn.Linear(n_hidden, n_clusters))  # f(z)
        if mixture_weights == "per_cell":
            self.dirichlet = nn.Sequential(mlp(z_dim, n_hidden, n_layers, dropout),
                                           nn.Linear(n_hidden, n_clusters))  # g(z), raw
        n_prior_in = w_dim + (n_covariates if condition_prior else 0)
        self.prior_net = nn.Sequential(mlp(n_prior_in, n_hidden, n_layers, dropout),
                                       nn.Linear(n_hidden,
                                                 n_clusters * self.n_component_params))
        self.register_buffer("alpha", torch.full((n_clusters,), float(dirichlet_alpha)))
        # training-set facts the model sets before training (`set_data_facts`)
        self.register_buffer("n_obs", torch.tensor(1.0))
        self.register_buffer("labelled_fraction", torch.tensor(1.0))
        if mixture_weights == "global":  # q(pi) = Dir(gamma)
            self.register_buffer("gamma", self.alpha + 1.0 / n_clusters)
        #: components q(y|z) may use; delete moves (`delete_components`) switch them off
        self.register_buffer("active", torch.ones(n_clusters, dtype=torch.bool))

    def set_data_facts(self, n_obs: int, labelled_fraction: float = 1.0) -> None:
        """Tell the module the training set's size N and labelled share (before training):
        the global weights' update and the classifier's weight scale with them."""
        self.n_obs.fill_(float(max(n_obs, 1)))
        self.labelled_fraction.fill_(float(min(max(labelled_fraction, 1e-3), 1.0)))
        if self.mixture_weights == "global":
            self.gamma.copy_(self.alpha + self.n_obs / self.n_clusters)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object,
                              **kwargs: object) -> None:
        # geovae 0.1.0 modules had no training-set buffers: keep the neutral defaults
        for name in ("n_obs", "labelled_fraction", "active"):
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def expected_log_weights(self) -> torch.Tensor:
        """E_q(pi)[log pi_k] for the global weights, (K,)."""
        return torch.digamma(self.gamma) - torch.digamma(self.gamma.sum())

    def log_class_prior(self) -> torch.Tensor:
        """log p(y = k) with the weights integrated out, (K,): log E_q(pi)[pi_k] for global
        weights (the posterior predictive of a new cell), -log K for per-cell d."""
        if self.mixture_weights == "global":
            return torch.log(self.gamma) - torch.log(self.gamma.sum())
        return torch.full_like(self.alpha, -math.log(self.n_clusters))

    def mixture_weight_means(self) -> torch.Tensor | None:
        """E_q(pi)[pi] (global weights) or None (per-cell weights)."""
        if self.mixture_weights != "global":
            return None
        return self.gamma / self.gamma.sum()

    def covariate_layers(self) -> list[tuple[str, int]]:
        layers = super().covariate_layers()
        if self.condition_prior:
            layers.append(("prior_net.0.0", self.prior_net[0][0].in_features - self.n_covariates))
        return layers

    # ------------------------------------------------------------------ pieces
    def posteriors(self, x: torch.Tensor, c: torch.Tensor | None
                   ) -> tuple[Distribution, Normal, torch.Tensor]:
        """q(z|x,c) (the latent's), q(w|x,c) (per-dimension Normal) and the target."""
        h = self.hidden_of(x, c)
        return self.latent(h), self.q_w(h), self.target_and_library(x)[0]

    def q_w(self, h: torch.Tensor) -> Normal:
        """q(w|x,c) from the encoder's hidden layer (per-dimension Normal)."""
        loc, raw = self.w_head(h).chunk(2, dim=-1)
        return comp.normal_(loc, F.softplus(raw) + 1e-4)

    def concentrations(self, z: torch.Tensor) -> torch.Tensor:
        """g(z): the Dirichlet parameters of q(d|z) (per-cell weights)."""
        return comp.concentration(self.dirichlet(z))

    def weight_terms(self, z: torch.Tensor, pi: torch.Tensor, kl_weight: float = 1.0
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[log weights] per cell (B, K), kl_d per cell (B,)) for either weight model."""
        if self.mixture_weights == "per_cell":
            g = self.concentrations(z)
            e_log_d = torch.digamma(g) - torch.digamma(g.sum(-1, keepdim=True))
            prior = comp.dirichlet_(self.alpha.to(g.dtype))
            return e_log_d, kl_divergence(comp.dirichlet_(g), prior)
        if (self.training and self.update_weights and kl_weight >= 1 and self.phase != "hold"
                and not self.weights_fixed):
            self._update_gamma(pi.detach())  # after the KL warm-up: components form first
        e_log, kl_global = comp.global_weight_terms(self)  # computed once while gamma is held
        return e_log.to(pi.dtype).expand_as(pi), kl_global.to(pi.dtype).expand(pi.shape[0])

    @torch.no_grad()
    def _update_gamma(self, pi: torch.Tensor) -> None:
        """One SVI step on gamma from this minibatch's q(y) (no host synchronisation)."""
        rho = (pi.shape[0] * processes() / self.n_obs).clamp(0.002, 0.2)  # ~ an epoch's memory
        target = self.alpha + self.n_obs * pi.float().mean(0)
        self.gamma.mul_(1 - rho).add_(rho * target)

    def synced_state(self) -> list[torch.Tensor]:
        """gamma (`_update_gamma`): the ranks' mean step is one process's on the global batch."""
        return [self.gamma] if self.mixture_weights == "global" else []

    def freeze_for_query(self, policy: str) -> None:
        """Query mapping: keep the reference's global weights (gamma) unless everything trains
        (``policy='none'``), and never delete a component: the query may lack types the
        reference's cells still use."""
        self.update_weights = policy == "none"
        self.delete_moves, self.merge_moves, self.warm_start = False, False, 0.0

    def lr_scales(self) -> dict[str, float]:
        """The prior network (the mixture components) trains at ``prior_lr`` x the lr."""
        return {"prior_net": self.prior_lr} if self.prior_lr != 1 else {}

    def has_phases(self) -> bool:
        """True with the warm start: pretraining and hold leave the mixture out of the loss."""
        return mixture_start.warm_starts(self)

    def before_epoch(self, epoch: int, epochs: int, source: DataSource, idx: torch.Tensor,
                     seed: int) -> bool:
        """The trainer's hook: the warm start's phases (`mixture_start.mixture_phase`)."""
        return mixture_start.mixture_phase(self, epoch, epochs, source, idx, seed)

    def on_plateau(self, epoch: int) -> bool:
        """The trainer's hook: a converged pretraining starts the mixture (`plateau`)."""
        return mixture_start.plateau(self, epoch)

    def after_training(self, source: DataSource, idx: torch.Tensor, seed: int) -> None:
        """The trainer's hook on the kept weights: delete moves. Only after training: spare
        components are the reserve from which a component covering two types splits later
        in training (deleting them after each epoch cost 10 blobs ARI 0.9-1.0 -> 0.78-0.82
        in 3 of 5 seeds)."""
        set_phase(self, "mixture")
        self.entropy_weight = 1.0  # the -ELBO from here on
        merge_components(self, source, idx, seed, DELETE_CELLS)
        # held weights (``hold_weights``) go to their optimum given q(y) here
        delete_components(self, source, idx, seed, DELETE_CELLS, refresh=self.weights_fixed)
        self.weights_fixed = False

    def delete_components(self, source: DataSource, idx: torch.Tensor, seed: int,
                          max_cells: int = DELETE_CELLS) -> list[int]:
        """Delete moves on at most ``max_cells`` of the training cells ``idx``
        (`geovae.modules.deletion.delete_components`); returns the deleted components."""
        return delete_components(self, source, idx, seed, max_cells)

    def prior_z(self, w: torch.Tensor, c: torch.Tensor | None) -> Distribution:
        """p(z|w,y=k,c) for all k at once on z's manifold: batch shape (B, K)."""
        if not self.prior_uses_w:
            w = torch.zeros_like(w)
        inp = w if c is None or not self.condition_prior else torch.cat([w, c], dim=-1)
        out = self.prior_net(inp).view(-1, self.n_clusters, self.n_component_params)
        return comp.component_prior(self.latent, out)

    @torch.no_grad()
    def cluster_probs(self, x: torch.Tensor, c: torch.Tensor | None,
                      n_samples: int | None = None) -> torch.Tensor:
        """The predictive q(y|x) = E_q(z|x) q(y|z), (B, K): the mean of q(y|z_s) over
        ``n_samples`` draws z_s ~ q(z|x,c) (default ``cluster_samples``; 0 = q(y|z) at the
        posterior mean, sharper). Draws use torch's global generator: seed it."""
        n = self.cluster_samples if n_samples is None else n_samples
        if n == 0:
            return torch.softmax(self.logits(self.latent_mean(x, c)), dim=-1)
        qz = self.encode(self.transform(x)[0], c)
        probs = torch.zeros(x.shape[0], self.n_clusters, device=x.device, dtype=x.dtype)
        for _ in range(n):
            z, _ = self.latent.rsample(qz)
            probs += torch.softmax(self.logits(z), dim=-1)
        return probs / n

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|z), -inf for the components delete moves switched off."""
        return self.classifier(z).masked_fill(~self.active, -torch.inf)

    def log_joint_and_proposal(self, x: torch.Tensor, c: torch.Tensor | None, n_samples: int
                               ) -> tuple[torch.Tensor, torch.Tensor]:
        """For `VAEModule.log_marginal`: z ~ q(z|x,c) and w ~ q(w|x,c); log p(x, z, w | c) =
        log p(x|z,c) + log sum_k p(y=k) p(z|w,y=k) + log p(w) (y and the weights summed or
        integrated out exactly, `log_class_prior`), log q = log q(z|x,c) + log q(w|x,c)."""
        x_in, target, library = self.transform(x)
        h = repeat_samples(self.hidden(x_in, c), n_samples)
        qz = self.latent(h)
        z, log_qz = self.latent.rsample(qz)
        if log_qz is None:
            log_qz = qz.log_prob(z)
        qw = self.q_w(h)
        w = qw.sample()
        cs = repeat_samples(c, n_samples)
        log_pz = torch.logsumexp(self.prior_z(w, cs).log_prob(z.unsqueeze(1))
                                 + self.log_class_prior().to(z.dtype), dim=-1)
        log_pw = Normal(torch.zeros_like(w), torch.ones_like(w)).log_prob(w).sum(-1)
        px = self.decode(z, cs, repeat_samples(library, n_samples))
        log_px = summed_log_prob(px, repeat_samples(target, n_samples))
        shape = (n_samples, len(x))
        return (log_px + log_pz + log_pw).view(shape), (log_qz + qw.log_prob(w).sum(-1)
                                                        ).view(shape)

    # ------------------------------------------------------------------ loss
    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, kl_weight: float = 1.0) -> LossOutput:
        """-ELBO (five closed-form terms) plus the classification loss on labelled cells (the
        tempering term left out at entropy weight 1: the same bits)."""
        self._arm_dropouts(x)
        if self.phase == "pretrain":
            return pretrain_loss(self, x, c, kl_weight)
        qz, qw, target = self.posteriors(x, c)
        z, log_qz = self.latent.rsample(qz)
        if log_qz is None:
            log_qz = qz.log_prob(z)
        w = qw.rsample()
        reconstruction = -summed_log_prob(self.decode(z, c, self.library_of(x)), target)
        log_pi = torch.log_softmax(self.logits(z), dim=-1)
        pi = log_pi.exp()
        # sum_k q log q, 0 for deleted components (q = 0; finite gradients, unlike xlogy's)
        neg_entropy = (pi * log_pi.masked_fill(~self.active, 0.0)).sum(-1)
        labelled = torch.zeros_like(log_qz, dtype=torch.bool) if labels is None else labels >= 0
        if labels is not None:  # not labelled.any() nor F.one_hot: each a host read
            onehot = torch.zeros_like(pi).scatter_(1, labels.clamp(min=0)[:, None], 1.0)
            pi = torch.where(labelled[:, None], onehot, pi)
            neg_entropy = torch.where(labelled, 0.0, neg_entropy)  # one-hot: no entropy
        e_log_d, kl_d = self.weight_terms(z, pi, kl_weight)
        log_pz = self.prior_z(w, c).log_prob(z.unsqueeze(1))  # (B, K)
        terms = {
            "reconstruction": reconstruction,
            "kl_z": log_qz - (pi * log_pz).sum(-1),
            "kl_w": standard_normal_kl(qw.loc, qw.scale).sum(-1),  # KL(q(w) || N(0, I))
            "kl_y": neg_entropy - (pi * e_log_d).sum(-1),
            "kl_d": kl_d,
        }
        kl = terms["kl_z"] + terms["kl_w"] + terms["kl_y"] + terms["kl_d"]
        untempered = 1 - self.entropy_weight  # `y_temper`
        loss = reconstruction + kl_weight * (kl - untempered * neg_entropy if untempered else kl)
        ce = torch.zeros_like(kl)
        if labels is not None:
            ce = torch.where(labelled, -log_pi.gather(1, labels.clamp(min=0)[:, None])[:, 0], ce)
            loss = loss + self.classifier_weight / self.labelled_fraction * ce
        return LossOutput(loss.mean(), reconstruction, kl, {**terms, "classification": ce})
