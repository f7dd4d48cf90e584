"""Warm start of the c*GMΔVAE's mixture (issue 24): pretrain, start from the latent's clusters.

Trained end to end from random weights, the unsupervised mixture often settles in the
symmetric state where every component p(z|w,y=k) is the same and q(y|z) is the prior weights
for every cell (kl_y = 0, y unused: w alone explains z). The VaDE / GMVAE / scDeepCluster
recipe, with one addition:

1. **pretrain** (the first ``fraction`` of the epochs): z and w train on the VAE's loss
   (reconstruction + KL(q(z|x) || N(0, I))); the mixture's parameters are not used;
2. **start** (``mixture_start``, `START_RULES`): the clusters of at most `START_CELLS`
   training cells' posterior means, ``leiden`` (the default): Leiden on their kNN graph
   (`leiden_labels`: as `geovae.tools.cluster` cuts a latent, folded down to K where it cuts
   more) at the resolution of `START_RESOLUTIONS` whose clusters, as diagonal Gaussians, score
   the best integrated classification likelihood (`icl`, `leiden_start`), ``gmm``:
   scikit-learn's ``BayesianGaussianMixture`` (Dirichlet-process weights, diagonal
   covariances, K components; the default before 2026-12-07); p(z|w,y=k) starts
   at each cluster's (responsibility-weighted) mean and sd of the posterior draws (the prior
   network's last layer's weights zeroed, so w does not yet move the components), q(y|z) is
   distilled from the responsibilities, and gamma = alpha + N x the clusters' shares (a
   component Leiden leaves empty starts at N(0, I) with gamma = alpha and stays out of use
   unless the training gives it cells);
3. **hold** (the next ``hold`` share of the epochs): the prior network (the components) and
   gamma stay where the start put them while the encoder, decoder and q(y|z) train on the full
   -ELBO; then everything trains on the -ELBO to the end. The objective of the kept weights
   is the thesis's -ELBO: early stopping restarts when the components and weights are
   released (the hold's end), so the weights it keeps were trained, and chosen, on the
   -ELBO with everything free, and it cannot end a fit during the pretraining or the hold.

Euclidean latents only (the GMM lives in z's coordinates); other latents train as before.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from geovae._rng import seeded
from geovae.data.sources import DataSource
from geovae.modules.deletion import seeded_subsample

#: defaults of ``warm_start`` and ``hold`` (benchmarks/RESULTS.md, "Clusters: the mixture's
#: ablation": chosen on the development runs there)
WARM_START, HOLD = 0.5, 0.25
#: training cells the start clusters (Leiden or the GMM)
START_CELLS = 4096
#: covariance of the ``gmm`` start (``full`` split the 800-cell blobs as often: by condition)
START_COVARIANCE = "diag"
#: initialisations of the ``gmm`` start; the one with the best lower bound starts the mixture
START_INITS = 1
#: Adam steps distilling q(y|z) from the start's responsibilities
DISTIL_STEPS = 300
#: how the start clusters the pretrained latent (module docstring, step 2). ``leiden``
#: chosen on the development sets only (benchmarks/RESULTS.md, "Clusters: the mixture's
#: ablation": simulated hard K = 15 seeds 0-4, issue-type K = 20 seeds 0-2, hard K = 5,
#: rare, blobs seeds 0-2, the bundled Kang data K = 15 seeds 0-2); reported on fresh draws
START_RULES = ("leiden", "gmm")
#: the Leiden clustering of the start: the 15-NN graph (`geovae.tools.cluster`'s); resolution 1
#: is `leiden_labels`' default (for scripts and tests; the start uses `START_RESOLUTIONS`)
START_RESOLUTION, START_NEIGHBORS = 1.0, 15
#: the resolutions `leiden_start` chooses among by `icl`. Chosen on development draws only
#: (benchmarks/RESULTS.md, "The start's resolution": the start's ARI on captured pretrained
#: latents of Baron mouse seeds 10-11, full Kang 0-1, the bundled Kang 0-2, pbmc68k 0-1,
#: digits 0-2, hard 0-2, medium 0, blobs 0-2): resolution 1 alone cuts a large type into
#: pieces (Baron's beta cells, full Kang's CD14 monocytes); with 0.25 in the grid ICL chose
#: it on hard seed 2 (2 clusters for 5 types, ARI 0.22) and full Kang seed 0 (0.62 vs 0.73)
START_RESOLUTIONS = (0.5, 0.75, 1.0)


def phase_epochs(epochs: int, fraction: float, hold: float) -> tuple[int, int]:
    """(first epoch of the mixture phase, first epoch after the hold) for ``epochs``; the
    mixture always gets at least the last epoch (0, 0: no warm start)."""
    start = min(int(round(fraction * epochs)), epochs - 1) if fraction > 0 else 0
    if start <= 0:
        return 0, 0
    return start, min(epochs, start + int(round(hold * epochs)))


def warm_starts(module: torch.nn.Module) -> bool:
    """Whether ``module`` trains with the warm start: an unsupervised mixture with global
    weights on a Euclidean latent (others train end to end)."""
    from geovae.nn.latents import EuclideanLatent

    return (bool(module.warm_start) and not module.n_labels
            and module.mixture_weights == "global" and isinstance(module.latent, EuclideanLatent))


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """x with softplus(x) = y (y > 0)."""
    return y + torch.log(-torch.expm1(-y))


@torch.no_grad()
def latent_draws(module: torch.nn.Module, source: DataSource, idx: torch.Tensor, seed: int,
                 max_cells: int = START_CELLS) -> tuple[torch.Tensor, torch.Tensor]:
    """(posterior means, one draw z ~ q(z|x,c)) of at most ``max_cells`` of the cells
    ``idx`` (a seeded subsample; draws seeded too), float64 on the CPU."""
    sub = seeded_subsample(idx, max_cells, seed)
    was = module.training
    module.eval()
    means, draws = [], []
    with seeded(seed, source.device):
        for b in source.batches(sub, 1024):
            qz = module.encode(module.transform(b.x)[0], b.c)
            means.append(module.latent.mean(qz).double().cpu())
            draws.append(module.latent.rsample(qz)[0].double().cpu())
    module.train(was)
    return torch.cat(means), torch.cat(draws)


def leiden_labels(means: np.ndarray, n_clusters: int, seed: int,
                  resolution: float = START_RESOLUTION, graph: object | None = None
                  ) -> np.ndarray:
    """Leiden clusters 0..k-1 (k <= ``n_clusters``) of the points ``means`` (n, d): ``resolution``
    on their `START_NEIGHBORS`-NN graph (exact Euclidean, scanpy's
    neighbours, as `geovae.tools.cluster` builds it), seeded; while there are more than
    ``n_clusters``, the smallest joins the cluster whose centroid is nearest its own.
    ``graph``: that graph built before (`points_graph` of ``means``, key ``start``)."""
    import scanpy as sc

    from geovae.graph.neighbors import LEIDEN, points_graph

    a = points_graph(means, "start", START_NEIGHBORS, seed) if graph is None else graph
    sc.tl.leiden(a, resolution=resolution, random_state=seed, neighbors_key="start",
                 **LEIDEN)
    labels = a.obs["leiden"].astype(int).to_numpy()
    while labels.max() + 1 > n_clusters:
        sizes = np.bincount(labels)
        small = int(np.argmin(sizes))
        centroids = np.stack([means[labels == k].mean(0) for k in range(len(sizes))])
        gaps = ((centroids - centroids[small]) ** 2).sum(1)
        gaps[small] = np.inf
        labels[labels == small] = int(np.argmin(gaps))
        labels = np.unique(labels, return_inverse=True)[1]
    return labels


def icl(points: np.ndarray, labels: np.ndarray) -> float:
    """The integrated classification likelihood (Biernacki, Celeux & Govaert 2000, BIC form)
    of the clusters ``labels`` of ``points`` (n, d) as a mixture of diagonal Gaussians at the
    clusters' shares, means and variances: sum over cells of log(share x density of its
    own cluster) - (K (2d + 1) - 1) / 2 x log n; 1e-4 is added to each variance (a cluster of
    identical points stays finite). Higher is better."""
    from scipy.stats import norm

    n, d = points.shape
    clusters = np.unique(labels)
    total = 0.0
    for k in clusters:
        mine = points[labels == k]
        sd = np.sqrt(mine.var(0) + 1e-4)  # + 1e-4 to every variance (sklearn's reg_covar)
        total += len(mine) * np.log(len(mine) / n) + norm.logpdf(mine, mine.mean(0), sd).sum()
    return float(total - 0.5 * (len(clusters) * (2 * d + 1) - 1) * np.log(n))


def leiden_start(means: np.ndarray, n_clusters: int, seed: int
                 ) -> tuple[np.ndarray, float, dict[float, float], dict[float, int]]:
    """(labels, resolution, ICL per resolution, clusters per resolution): `leiden_labels` at
    each of `START_RESOLUTIONS`, the one with the highest `icl` of ``means`` (ties: the
    finer)."""
    from geovae.graph.neighbors import points_graph

    graph = points_graph(means, "start", START_NEIGHBORS, seed)  # one graph, cut at each
    cuts = {r: leiden_labels(means, n_clusters, seed, r, graph) for r in START_RESOLUTIONS}
    scores = {r: icl(means, labels) for r, labels in cuts.items()}
    best = max(sorted(scores, reverse=True), key=scores.__getitem__)
    return cuts[best], float(best), scores, {r: int(labels.max()) + 1 for r, labels in cuts.items()}


def start_candidates(scores: dict[float, float], clusters: dict[float, int]
                     ) -> dict[str, dict[str, float]]:
    """`leiden_start`'s evidence as ``uns`` and ``config.json`` keep it: per resolution (its
    text, e.g. ``"0.5"``) the clusters Leiden cut and their `icl`."""
    return {f"{r:g}": {"clusters": int(clusters[r]), "icl": round(float(scores[r]), 1)}
            for r in sorted(scores)}


def start_responsibilities(means: torch.Tensor, n_clusters: int, rule: str, seed: int
                           ) -> tuple[torch.Tensor, np.ndarray, float | None, dict | None]:
    """((n, K) float64 responsibilities, (K,) weights, Leiden's resolution or None, the
    resolutions' evidence (`start_candidates`) or None) of the start's clusters of ``means``
    (step 2): Leiden's one-hot and shares (`leiden_start`), or the GMM's posteriors and
    weights."""
    if rule == "leiden":
        labels, resolution, scores, clusters = leiden_start(means.numpy(), n_clusters, seed)
        resp = F.one_hot(torch.as_tensor(labels), n_clusters).double()
        return (resp, (resp.sum(0) / len(resp)).numpy(), resolution,
                start_candidates(scores, clusters))
    from sklearn.mixture import BayesianGaussianMixture

    gmm = BayesianGaussianMixture(
        n_components=n_clusters, covariance_type=START_COVARIANCE, max_iter=300,
        n_init=START_INITS, random_state=seed,
        weight_concentration_prior_type="dirichlet_process"
    ).fit(means.numpy())
    return (torch.as_tensor(gmm.predict_proba(means.numpy())),
            np.asarray(gmm.weights_, dtype=np.float64), None, None)


def start_mixture(module: torch.nn.Module, source: DataSource, idx: torch.Tensor,
                  seed: int) -> np.ndarray:
    """Step 2 of the module docstring on ``module`` (a `CGMVAEModule` with a Euclidean
    latent) by its ``mixture_start`` rule. The clusters come from the posterior means; each
    component's mean and sd are then those of the posterior draws z weighted by the
    responsibilities (the means alone are narrower than the z the -ELBO scores: a latent
    dimension the VAE leaves unused has means near 0 and draws of sd 1). Returns the
    clusters' shares (the start's weights)."""
    means, z = latent_draws(module, source, idx, seed)
    rule = getattr(module, "mixture_start", "gmm")
    resp, weights, module.start_resolution, module.start_candidates = start_responsibilities(
        means, module.n_clusters, rule, seed)  # resp: (n, K)
    mass = resp.sum(0).clamp(min=1e-6)[:, None]  # (K, 1)
    loc = resp.T @ z / mass
    sd = ((resp.T @ z.square()) / mass - loc.square()).clamp(min=1e-4).sqrt()
    sd[resp.sum(0) == 0] = 1.0  # an empty component starts at N(0, I)
    last = module.prior_net[-1]
    with torch.no_grad():
        last.weight.zero_()
        bias = torch.cat([loc, inverse_softplus(sd - 1e-3)], dim=-1)  # (K, 2d) per component
        last.bias.copy_(bias.reshape(-1).to(last.bias))
    distil_classifier(module, torch.cat([means, z]).to(last.bias),
                      torch.cat([resp, resp]).to(last.bias), seed)
    module.gamma.copy_(module.alpha + module.n_obs * torch.as_tensor(weights).to(module.gamma))
    return weights


def distil_classifier(module: torch.nn.Module, z: torch.Tensor, target: torch.Tensor,
                      seed: int, steps: int = DISTIL_STEPS) -> None:
    """Fit q(y|z) (the classifier) to the GMM's responsibilities ``target`` at ``z`` by
    cross-entropy, full batch, on its own Adam (the training's optimiser is not touched)."""
    params = list(module.classifier.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    was = module.training
    module.eval()  # no dropout: a deterministic target fit
    with seeded(seed, z.device), torch.enable_grad():
        for _ in range(steps):
            loss = -(target * F.log_softmax(module.classifier(z), dim=-1)).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for p in params:
        p.grad = None
    module.train(was)


def set_phase(module: torch.nn.Module, phase: str) -> None:
    """``pretrain``, ``hold`` (components and gamma fixed) or ``mixture`` (all trains)."""
    module.phase = phase
    module.prior_net.requires_grad_(phase != "hold")



def mixture_phase(module: torch.nn.Module, epoch: int, epochs: int, source: DataSource,
                  idx: torch.Tensor, seed: int) -> bool:
    """The trainer's hook before each epoch: enter the phase ``epoch`` belongs to. True
    (early stopping starts again) at the start (step 2), through the hold and at the hold's
    end: early stopping never ends a fit before its components and weights have trained, nor
    keeps weights from before their release (on the issue's data at the default 400 epochs it
    had ended the fit 4 epochs into the hold). In the pretraining early stopping watches the
    VAE's loss, and where it would end the fit the mixture starts instead (`plateau`)."""
    if module.y_temper > 0:  # q(y|z)'s entropy weighed in from 0 to 1
        module.entropy_weight = min(1.0, epoch / (module.y_temper * epochs))
    if not warm_starts(module) or len(idx) < module.n_clusters:  # the GMM needs >= K cells
        return False
    if epoch == 0:
        module.schedule = phase_epochs(epochs, module.warm_start, module.hold)
        module.schedule_epochs = epochs
    start, end = module.schedule
    if epoch == 0 and start > 0:
        set_phase(module, "pretrain")
    if epoch < start:
        return not module.plateau_start  # True: early stopping starts again each epoch
    if epoch == start and start > 0:
        start_mixture(module, source, idx, seed)
        module.weights_fixed = bool(module.hold_weights)  # gamma stays at the start's
        set_phase(module, "hold" if end > start else "mixture")
        return True
    if module.phase == "hold" and epoch < end:
        return True  # nor end the hold, or keep weights whose components never trained
    if epoch == end and module.phase == "hold":
        set_phase(module, "mixture")
        return True  # early stopping counts from the release of the components and weights
    return False


def plateau(module: torch.nn.Module, epoch: int) -> bool:
    """The trainer's hook where early stopping would end the fit after ``epoch``: in the
    pretraining (``plateau_start``) the VAE has converged, so the mixture starts at the next
    epoch, on the best pretraining weights (the trainer restores them), with the hold
    shortened in proportion (hold / warm_start x the pretrained epochs); True. Otherwise
    False: the fit ends."""
    if not (module.plateau_start and module.phase == "pretrain" and module.schedule):
        return False
    start, epochs = epoch + 1, module.schedule_epochs
    if start >= epochs:
        return False
    hold = int(round(module.hold / module.warm_start * start))
    module.schedule = (start, min(epochs, start + hold))
    return True


def pretrain_loss(module: torch.nn.Module, x: torch.Tensor, c: torch.Tensor | None,
                  kl_weight: float) -> object:
    """Step 1's loss: the VAE's -ELBO (z against N(0, I)); the mixture's terms are 0."""
    from geovae.modules.vae import VAEModule

    out = VAEModule.forward(module, x, c, None, kl_weight)
    zero = torch.zeros_like(out.kl)
    out.terms.update(kl_w=zero, kl_y=zero, kl_d=zero, classification=zero)
    return out
