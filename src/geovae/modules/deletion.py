"""Delete moves for the c*GMΔVAE's global mixture weights (Hughes & Sudderth 2013).

Under mean-field inference two components that explain the same cells are a near-neutral
equilibrium: a cell split 60/40 between them pays the same ``kl_y`` as a cell wholly in one
merged component (the entropy of q(y) pays for the split), so the Dirichlet's pull towards fewer
components acts only through O(1) nats over the whole data set and the spare component's weight
decays over hundreds of epochs. A delete move removes component k from q(y|z) (its cells go to
the components the classifier ranks next) and is accepted only when the evidence lower bound
improves, computed exactly on a subsample of training cells with the same draws of z and w for
both sides (a paired difference, no Monte Carlo noise between them).

The part of the negative bound that depends on q(y|z), summed over N cells::

    sum_cells [ sum_k q_k (log q_k - log p(z|w,y=k)) ] - sum_k N_k E[log pi_k]
        + KL(Dir(gamma) || Dir(alpha)),   N_k = sum_cells q_k,   gamma = alpha + N

with gamma at its optimum given q (the fixed point of the SVI update). Everything else in the
-ELBO (reconstruction, log q(z|x), kl_w) does not change when q(y|z) does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Dirichlet, kl_divergence

from geovae._rng import seeded
from geovae.data.sources import DataSource

#: components proposed for deletion are the confident choice (q(y=k|z) > CONFIDENT) of at
#: most this share of the cells
PROPOSE_SHARE = 0.001
CONFIDENT = 0.9


def negative_bound(q: torch.Tensor, log_pz: torch.Tensor, alpha: torch.Tensor,
                   scale: float) -> torch.Tensor:
    """The q(y)-dependent part of the -ELBO (module docstring) for cells with mixture
    probabilities ``q`` (n, K) and component log-densities ``log_pz`` (n, K), scaled from the
    n cells to ``scale * n`` training cells."""
    per_cell = (torch.special.xlogy(q, q) - torch.where(q > 0, q * log_pz, 0.0)).sum()
    counts = scale * q.sum(0)
    gamma = alpha + counts
    e_log = torch.digamma(gamma) - torch.digamma(gamma.sum())
    return (scale * per_cell - (counts * e_log).sum()
            + kl_divergence(Dirichlet(gamma), Dirichlet(alpha)))


def mixture_probs(logits: torch.Tensor, active: torch.Tensor, onehot: torch.Tensor | None
                  ) -> torch.Tensor:
    """q(y|z) with the inactive components removed; labelled cells (rows of ``onehot`` that
    are not all zero) keep their observed label."""
    q = torch.softmax(logits.masked_fill(~active, -torch.inf), dim=-1)
    if onehot is not None:
        q = torch.where(onehot.sum(-1, keepdim=True) > 0, onehot, q)
    return q


def greedy_deletions(logits: torch.Tensor, log_pz: torch.Tensor, alpha: torch.Tensor,
                     active: torch.Tensor, scale: float, n_protected: int = 0,
                     onehot: torch.Tensor | None = None, max_share: float = PROPOSE_SHARE
                     ) -> tuple[torch.Tensor, list[int]]:
    """Delete components one at a time, each time the one whose removal lowers the -ELBO
    most, while some removal lowers it.

    Proposed for deletion are only components that are the confident choice (q(y=k|z) >
    `CONFIDENT`) of at most ``max_share`` of the cells (default 0.1%, 4 of 4096): ones that
    merely share cells with another component. A component that more cells choose
    confidently is not proposed, because the bound alone does not protect it. (The share is
    counted on the subsample with one draw of z per cell: a type near the cutoff, 0.2% of the
    cells say, is proposed now and then, and so is a type whose cells are all assigned with
    q <= 0.9; the bound then decides.) The encoder can fold two well-separated types into
    one component at little cost (on 10 Gaussian blobs, unrestricted delete moves after every
    epoch merged real types and the ARI fell from 0.91-1.0 to 0.38-0.83). Components
    ``< n_protected`` (labels) are never deleted, nor the last active one. Returns (the new
    ``active`` mask, deleted indices in order). Inputs in float64 for exact differences."""
    active = active.clone()
    deleted: list[int] = []
    if torch.isnan(logits).any() or torch.isnan(log_pz).any():
        return active, deleted  # no bound to compare: delete nothing
    log_pz = log_pz.clamp(min=-1e30)
    while int(active.sum()) > 1:
        q = mixture_probs(logits, active, onehot)
        base = negative_bound(q, log_pz, alpha, scale)
        share = (q > CONFIDENT).double().mean(0)  # cells that confidently choose k
        best, best_k = 0.0, -1
        for k in range(n_protected, len(active)):
            if not active[k] or share[k] > max_share:
                continue
            trial = active.clone()
            trial[k] = False
            gain = float(negative_bound(mixture_probs(logits, trial, onehot), log_pz, alpha,
                                        scale) - base)
            if gain < best:
                best, best_k = gain, k
        if best_k < 0:
            break
        active[best_k] = False
        deleted.append(best_k)
    return active, deleted


def seeded_subsample(idx: torch.Tensor, max_cells: int, seed: int) -> torch.Tensor:
    """At most ``max_cells`` of the cells ``idx``, drawn by a generator seeded with ``seed``
    (the global RNG untouched), in ascending order."""
    gen = torch.Generator().manual_seed(seed)
    return idx[torch.randperm(len(idx), generator=gen)[:max_cells].to(idx.device)].sort().values


@torch.no_grad()
def delete_components(module: torch.nn.Module, source: DataSource, idx: torch.Tensor,
                      seed: int, max_cells: int, refresh: bool = False) -> list[int]:
    """Delete moves on a `CGMVAEModule` with at most ``max_cells`` of the training cells
    ``idx``: switch off every spare component whose removal from q(y|z) raises the
    ELBO, and set gamma to its optimum given the new q(y). Global weights only, never the
    label components. Seeded and run in eval mode; the global RNG is left untouched.
    ``refresh``: set gamma to its optimum even when nothing is deleted (and with delete
    moves off). Returns the deleted components."""
    if (module.mixture_weights != "global" or not module.update_weights
            or not (module.delete_moves or refresh) or len(idx) == 0):
        return []
    was_training = module.training
    module.eval()
    sub = seeded_subsample(idx, max_cells, seed)
    logits, log_pz, onehot = [], [], []
    with seeded(seed, source.device):
        for batch in source.batches(sub, 1024):
            qz, qw, _ = module.posteriors(batch.x, batch.c)
            z, _ = module.latent.rsample(qz)
            logits.append(module.classifier(z).double())
            log_pz.append(module.prior_z(qw.rsample(), batch.c).log_prob(z.unsqueeze(1))
                          .double())
            labels = batch.labels
            onehot.append(F.one_hot(labels.clamp(min=0), module.n_clusters).double()
                          * (labels >= 0)[:, None])
    module.train(was_training)
    logits, onehot = torch.cat(logits), torch.cat(onehot)
    active, deleted = module.active, []
    if module.delete_moves:
        active, deleted = greedy_deletions(
            logits, torch.cat(log_pz), module.alpha.double(), module.active,
            float(module.n_obs) / len(sub), n_protected=module.n_labels, onehot=onehot)
    if deleted or refresh:
        module.active.copy_(active)
        q = mixture_probs(logits, active, onehot)
        module.gamma.copy_(module.alpha + module.n_obs * q.mean(0).to(module.gamma.dtype))
    return deleted
