"""Merge moves for the c*GMΔVAE's global mixture (issue 24), beside the delete moves.

A delete move (`geovae.modules.deletion`) removes a component from q(y|z) and keeps the others
as they are; when one type is split over two components, each confidently chosen by many
cells, it is not even proposed (the bound alone does not protect real types from being
folded into a neighbour), and if it were, the receiving component is too narrow for the cells
it gets. A merge move removes component j from q(y|z) (its cells go where the classifier
ranks them next, mostly to its twin i) AND refits component i to the cells it then has:

    mu_i(w) <- a mu_i(w) + (1 - a) mu_j(w),   a = N_i / (N_i + N_j)   (linear in the prior
               network's last layer: exact),
    sigma_i <- the weighted sd of z around mu_i(w) under i's new responsibilities (constant
               in w),

and is accepted only when the -ELBO's q(y)- and component-dependent part (`negative_bound`)
falls, computed on a subsample of training cells with the same draws of z and w on both
sides. Every proposal is exactly what the model then computes (no distillation), so an
accepted merge lowers the -ELBO on those draws. Euclidean latents only (the refit is a
Gaussian's moments) and unsupervised mixtures only (labelled cells keep their label's
component); turning the delete moves off (``delete_moves=False``) turns these off too.
"""

from __future__ import annotations

import torch
from torch.distributions import Normal

from geovae._rng import seeded
from geovae.data.sources import DataSource
from geovae.modules.deletion import mixture_probs, negative_bound, seeded_subsample
from geovae.modules.mixture_start import inverse_softplus


def merged_component(z: torch.Tensor, loc: torch.Tensor, resp: torch.Tensor, i: int, j: int,
                     counts: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(a, the merged mean mu(w) per cell (n, d), the merged sd (d,)) for component i taking
    over j, with ``resp`` (n,) i's responsibilities after the merge."""
    a = float(counts[i] / (counts[i] + counts[j]).clamp(min=1e-12))
    mu = a * loc[:, i] + (1 - a) * loc[:, j]
    mass = resp.sum().clamp(min=1e-12)
    sd = ((resp[:, None] * (z - mu).square()).sum(0) / mass).clamp(min=1e-6).sqrt()
    return a, mu, sd


def greedy_merges(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor,
                  log_pz: torch.Tensor, alpha: torch.Tensor, active: torch.Tensor,
                  scale: float, n_protected: int = 0
                  ) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """Merge components one pair at a time, each time the (i takes j) that lowers the bound
    most, while one does. ``z`` (n, d) draws, ``logits`` of q(y|z) (n, K), the components'
    means at each cell's w ``loc`` (n, K, d) and log-densities ``log_pz`` (n, K), float64.
    For each j the partner i is the component that receives most of j's cells. Returns (the
    new ``active``, accepted merges as (i, j, a, sd))."""
    active, log_pz, loc = active.clone(), log_pz.clone(), loc.clone()
    merges: list[tuple[int, int, float, torch.Tensor]] = []
    if torch.isnan(logits).any() or torch.isnan(log_pz).any():
        return active, merges
    log_pz = log_pz.clamp(min=-1e30)
    while int(active.sum()) > 1:
        q = mixture_probs(logits, active, None)
        base = negative_bound(q, log_pz, alpha, scale)
        counts = q.sum(0)
        best, choice = 0.0, None
        for j in range(n_protected, len(active)):
            if not active[j]:
                continue
            trial = active.clone()
            trial[j] = False
            q2 = mixture_probs(logits, trial, None)
            i = int(((q2 - q) * q[:, j:j + 1]).sum(0).argmax())  # where j's cells go
            a, mu, sd = merged_component(z, loc, q2[:, i], i, j, counts)
            lp = log_pz.clone()
            lp[:, i] = Normal(mu, sd).log_prob(z).sum(-1)
            gain = float(negative_bound(q2, lp, alpha, scale) - base)
            if gain < best:
                best, choice = gain, (i, j, a, mu, sd, lp)
        if choice is None:
            break
        i, j, a, mu, sd, log_pz = choice
        loc[:, i] = mu
        active[j] = False
        merges.append((i, j, a, sd))
    return active, merges


def apply_merge(module: torch.nn.Module, i: int, j: int, a: float, sd: torch.Tensor) -> None:
    """Component i of the prior network's last layer becomes the merge of i and j: the mean
    rows a i + (1 - a) j, the scale rows constant at ``sd``."""
    last = module.prior_net[-1]
    p, d = module.n_component_params, len(sd)
    rows_i, rows_j = slice(i * p, i * p + d), slice(j * p, j * p + d)
    last.weight[rows_i] = a * last.weight[rows_i] + (1 - a) * last.weight[rows_j]
    last.bias[rows_i] = a * last.bias[rows_i] + (1 - a) * last.bias[rows_j]
    scale_rows = slice(i * p + d, (i + 1) * p)
    last.weight[scale_rows] = 0.0
    last.bias[scale_rows] = inverse_softplus((sd - 1e-3).clamp(min=1e-6)).to(last.bias)


@torch.no_grad()
def merge_components(module: torch.nn.Module, source: DataSource, idx: torch.Tensor,
                     seed: int, max_cells: int) -> list[tuple[int, int]]:
    """Merge moves on a `CGMVAEModule` (global weights, Euclidean latent, no labels; off
    with the delete moves) with at most ``max_cells`` of the training cells ``idx``; gamma
    set to its optimum given the new q(y). Seeded, eval mode, the global RNG untouched.
    Returns the merges as (kept, removed) pairs."""
    from geovae.nn.latents import EuclideanLatent

    if (module.mixture_weights != "global" or not module.update_weights or module.n_labels
            or not (module.merge_moves and module.delete_moves) or len(idx) == 0
            or not isinstance(module.latent, EuclideanLatent)):
        return []
    was_training = module.training
    module.eval()
    sub = seeded_subsample(idx, max_cells, seed)
    zs, logits, locs, log_pz = [], [], [], []
    with seeded(seed, source.device):
        for batch in source.batches(sub, 1024):
            qz, qw, _ = module.posteriors(batch.x, batch.c)
            z, _ = module.latent.rsample(qz)
            prior = module.prior_z(qw.rsample(), batch.c)
            zs.append(z.double())
            logits.append(module.classifier(z).double())
            locs.append(prior.base_dist.loc.double())
            log_pz.append(prior.log_prob(z.unsqueeze(1)).double())
    module.train(was_training)
    z, logits = torch.cat(zs), torch.cat(logits)
    active, merges = greedy_merges(z, logits, torch.cat(locs), torch.cat(log_pz),
                                   module.alpha.double(), module.active,
                                   float(module.n_obs) / len(sub), module.n_labels)
    for i, j, a, sd in merges:
        apply_merge(module, i, j, a, sd)
    if merges:
        module.active.copy_(active)
        q = mixture_probs(logits, active, None)
        module.gamma.copy_(module.alpha + module.n_obs * q.mean(0).to(module.gamma.dtype))
    return [(i, j) for i, j, _, _ in merges]

