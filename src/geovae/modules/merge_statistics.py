"""The statistics the overlap merge rules judge a pair of components by (issue 24;
`geovae.modules.merging` makes the merges): ``"modes"``' ridge ratio (Ray & Lindsay 2005's
ridgeline between two Gaussians, the dip of the mixture density along it, Hennig 2010),
``"demp"``'s directly estimated misclassification probability (Hennig 2010), and the
``"lobes"`` rule's veto: the standardised mean difference and Welch's t per feature of the
cells' depth-normalised expression.
Pure functions of tensors, float64 where the callers pass it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Normal

#: points on each ridgeline
RIDGE_POINTS = 41


def component_density(points: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
                      ) -> torch.Tensor:
    """log of one component's density averaged over the cells' w, (1/n) sum_cells
    N(point; loc_cell, diag scale_cell^2), at ``points`` (G, d); ``loc``, ``scale`` (n, d)."""
    lp = Normal(loc[None], scale[None]).log_prob(points[:, None]).sum(-1)  # (G, n)
    return torch.logsumexp(lp, 1) - math.log(loc.shape[0])


def ridgeline(m_i: torch.Tensor, v_i: torch.Tensor, m_j: torch.Tensor, v_j: torch.Tensor,
              points: int = RIDGE_POINTS) -> torch.Tensor:
    """Ray & Lindsay's ridgeline between N(m_i, diag v_i) and N(m_j, diag v_j): the points
    [(1 - t)/v_i + t/v_j]^-1 [(1 - t) m_i/v_i + t m_j/v_j], t in [0, 1], (points, d). Every
    mode of a mixture of the two lies on it."""
    t = torch.linspace(0.0, 1.0, points, dtype=m_i.dtype, device=m_i.device)[:, None]
    return ((1 - t) * m_i / v_i + t * m_j / v_j) / ((1 - t) / v_i + t / v_j)


def dip_ratio(log_density: torch.Tensor) -> float:
    """min over the points of density / min(highest density before it, highest after it)
    for a density profile (G,) given as logs: 1 when it has one mode, near 0 when it falls
    to nothing between two."""
    left = torch.cummax(log_density, 0).values
    right = torch.cummax(log_density.flip(0), 0).values.flip(0)
    return float(torch.exp((log_density - torch.minimum(left, right)).min()))


def ridge_ratio(loc: torch.Tensor, scale: torch.Tensor, counts: torch.Tensor, i: int,
                j: int) -> float:
    """`dip_ratio` of pi_i p_i + pi_j p_j along the ridgeline between the moment-matched
    Gaussians of components i and j (mean and variance over the cells' w of N(mu_k(w),
    sigma_k(w)^2)); ``loc``, ``scale`` (n, K, d), ``counts`` (K,) the q(y) mass."""
    moments = []
    for k in (i, j):
        mk = loc[:, k].mean(0)
        moments += [mk, scale[:, k].square().mean(0) + (loc[:, k] - mk).square().mean(0)]
    path = ridgeline(*moments)
    log_f = torch.logaddexp(torch.log(counts[i]) + component_density(path, loc[:, i],
                                                                      scale[:, i]),
                            torch.log(counts[j]) + component_density(path, loc[:, j],
                                                                      scale[:, j]))
    return dip_ratio(log_f)


def misclassification(q: torch.Tensor) -> torch.Tensor:
    """(K, K): P[i, j] = sum_cells q_i 1[argmax q = j] / sum_cells q_i, the estimated
    probability that a cell of component i is assigned to j (Hennig 2010's DEMP)."""
    hard = F.one_hot(q.argmax(1), q.shape[1]).to(q)
    return q.T @ hard / q.sum(0)[:, None].clamp(min=1e-12)



def depth_normalised(x: torch.Tensor, batch: torch.Tensor | None, counts: bool
                     ) -> torch.Tensor:
    """Each cell's expression x / its library size (``counts``; else the features as they
    are), float64, with each batch's (each distinct row of ``batch``) mean moved to the
    mean over all cells: what two components of one type split by depth share."""
    y = x.double()
    if counts:
        y = y / y.sum(1, keepdim=True).clamp(min=1.0)
    if batch is not None and batch.shape[1]:
        groups = torch.unique(batch, dim=0, return_inverse=True)[1]
        means = torch.zeros(int(groups.max()) + 1, y.shape[1], dtype=y.dtype)
        means.index_add_(0, groups, y)
        means /= torch.bincount(groups)[:, None].to(y)
        y = y - means[groups] + y.mean(0)
    return y


def feature_t(y: torch.Tensor, hard: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Welch's t per feature of ``y`` between the cells whose argmax ``hard`` is i and j."""
    a, b = y[hard == i], y[hard == j]
    if min(len(a), len(b)) < 2:
        return torch.zeros(y.shape[1], dtype=y.dtype)
    se = (a.var(0) / len(a) + b.var(0) / len(b)).clamp(min=1e-300).sqrt()
    return (a.mean(0) - b.mean(0)) / se



def feature_effect(y: torch.Tensor, hard: torch.Tensor, i: int, j: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(standardised mean difference, Welch's t) per feature of ``y`` between the cells whose
    argmax ``hard`` is i and j. The effect is the difference of the two means over the root
    mean of the two variances (population variances: it stays as it is when every cell is
    replicated, and does not grow with the cells' count, as t does; review F22); t is
    `feature_t`'s."""
    a, b = y[hard == i], y[hard == j]
    if min(len(a), len(b)) < 2:
        zero = torch.zeros(y.shape[1], dtype=y.dtype)
        return zero, zero
    diff = a.mean(0) - b.mean(0)
    pooled = ((a.var(0, correction=0) + b.var(0, correction=0)) / 2).clamp(min=1e-300)
    se = (a.var(0) / len(a) + b.var(0) / len(b)).clamp(min=1e-300)
    return diff / pooled.sqrt(), diff / se.sqrt()
