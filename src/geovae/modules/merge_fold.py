"""A merge move's refit, shared by the overlap rules (`geovae.modules.merging`) and the
``graph`` rule (`geovae.modules.graph_merge`): component i takes over j, its mean the
mass-weighted mean of the two and its sd that of the cells it then has."""

from __future__ import annotations

import torch

from geovae.modules.deletion import mixture_probs


def merged_component(z: torch.Tensor, loc: torch.Tensor, resp: torch.Tensor, i: int, j: int,
                     counts: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(a, the merged mean mu(w) per cell (n, d), the merged sd (d,)) for component i taking
    over j, with ``resp`` (n,) i's responsibilities after the merge."""
    a = float(counts[i] / (counts[i] + counts[j]).clamp(min=1e-12))
    mu = a * loc[:, i] + (1 - a) * loc[:, j]
    mass = resp.sum().clamp(min=1e-12)
    sd = ((resp[:, None] * (z - mu).square()).sum(0) / mass).clamp(min=1e-6).sqrt()
    return a, mu, sd


def fold(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
         active: torch.Tensor, q: torch.Tensor, i: int, j: int,
         merges: list[tuple[int, int, float, torch.Tensor]]) -> torch.Tensor:
    """Component i takes over j, in place: j leaves ``active``, i's mean and sd at each
    cell's w in ``loc``, ``scale`` become the merge's (`merged_component`), the merge is
    appended to ``merges``; returns q(y|z) over the new active set. ``q`` is q(y|z) before."""
    counts = q.sum(0)
    active[j] = False
    q = mixture_probs(logits, active, None)
    # j's mean weighs by the mass i receives, not j's whole mass: where j's cells go to
    # a third component, i's mean stays with the cells it keeps (its sd is theirs)
    counts[j] = (q[:, i].sum() - counts[i]).clamp(min=0.0)
    a, mu, sd = merged_component(z, loc, q[:, i], i, j, counts)
    loc[:, i], scale[:, i] = mu, sd
    merges.append((i, j, a, sd))
    return q
