"""The ``"graph"`` merge rule for the c*GMΔVAE's mixture (issue 24): merge the components the
latent's kNN graph cannot tell apart, the way `geovae.graph.merge` merges Leiden clusters.

The ``"elbo"`` rule keeps two components where two Gaussians fit one type better than one:
count data put a type's shallower cells in a side lobe, and a mixture splits each such type
in two. A kNN graph does not care whether a group is Gaussian: the cells of a lobe and of its
core are each other's neighbours, the cells of two types are not. So the rule reads the
mixture's clusters (each cell's argmax of q(y|z) at its posterior mean, on the merge
subsample) on the kNN graph of the cells' posterior means (`n_neighbors`, as
`geovae.tools.cluster` builds it: scanpy's neighbours, exact Euclidean kNN), measures scanpy's
PAGA connectivity between them (`geovae.graph.merge.paga_connectivity`) and merges greedily
by the same gap rule as the Leiden clusters (`geovae.graph.merge.merge_clusters` with
``GAP``: above 0.8, then on down to 0.3 where that ends at a tenfold drop, `gap_stop`).
Each group of components it joins becomes the group's largest component, refitted to the
cells it then has (`geovae.modules.merge_fold.fold`, the overlap rules' refit), so the model,
not a relabelling, holds the merged clusters: the prior's component and q(y|z) change, and
`cluster_probs` reads them as for any other merge.

A small-side veto (`small_side_veto`) keeps a rare type's component apart: PAGA caps the
connectivity of two small clusters with a few edges between them at 1, so a 10-15-cell
component of a 2 % type was merged at 1.0 with the mixed component beside it; a type's lobe,
as small, sends most of its cells' neighbours into its core.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import torch

from geovae._rng import seeded
from geovae.data.sources import DataSource
from geovae.modules.deletion import mixture_probs, seeded_subsample
from geovae.modules.merge_fold import fold

#: neighbours per cell of the graph (`geovae.tools.cluster.cluster`'s default)
N_NEIGHBORS = 15
#: the graph's neighbours key in the scratch AnnData
_KEY = "graph_merge"
#: `small_side_veto`: no merge of two groups where the smaller holds < `SMALL_SHARE` of the
#: cells AND sends < `SMALL_EDGES` of its cells' kNN edges to the other. Chosen on the
#: development split only (benchmarks/results/clusters_graph_smallside_2026-12-07.py's DEV:
#: rare-2 % draws seeds 10-24, rare-1 % seeds 30-34, issue-type 2,000-cell K = 15 seeds
#: 10-14), grid 0.01-0.03 x 0.1-0.5: the highest rare-type F1 that keeps the issue-type
#: ARI; 0.02 / 0.25 confirmed (a tie; 0.5 kept a lobe). Reported on fresh draws: RESULTS.md.
SMALL_SHARE = 0.02
SMALL_EDGES = 0.25


@torch.no_grad()
def posterior_means(module: torch.nn.Module, source: DataSource, idx: torch.Tensor, seed: int,
                    max_cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(posterior means of z, logits of q(y|z) at them) of the merge subsample (the cells of
    `geovae.modules.merging.mixture_draws`: `seeded_subsample`), float64; eval mode. The merge
    step takes them from its one pass (``mixture_draws(..., means=True)``); this second pass
    is for scripts that need only the means."""
    was_training = module.training
    module.eval()
    sub = seeded_subsample(idx, max_cells, seed)
    means, logits = [], []
    with seeded(seed, source.device):
        for batch in source.batches(sub, 1024):
            qz, _, _ = module.posteriors(batch.x, batch.c)
            z = module.latent.mean(qz)
            means.append(z.double().cpu())
            logits.append(module.classifier(z).double().cpu())
    module.train(was_training)
    return torch.cat(means), torch.cat(logits)


def small_side_veto(edges: np.ndarray, sizes: np.ndarray, i: int, j: int) -> bool:
    """`geovae.graph.merge.merge_clusters`' ``veto``: True where the smaller of groups ``i``
    and ``j`` holds < `SMALL_SHARE` of the cells and sends < `SMALL_EDGES` of its cells'
    kNN edges (``edges``: directed counts between the groups, its own included) to the other
    (the module's constants as they are at the call)."""
    small, other = (i, j) if sizes[i] <= sizes[j] else (j, i)
    return bool(sizes[small] < SMALL_SHARE * sizes.sum()
                and edges[small, other] < SMALL_EDGES * edges[small].sum())


def graph_groups(means: np.ndarray, labels: np.ndarray, seed: int = 0,
                 n_neighbors: int = N_NEIGHBORS, veto: bool = True) -> list[list[int]]:
    """The groups of components (each a list, two or more) that the gap rule merges: PAGA on
    the kNN graph of ``means`` (n, d) between the cells' components ``labels`` (n,), greedy,
    `geovae.graph.merge.merge_clusters` with ``GAP`` and (``veto``) `small_side_veto`.
    Components no cell chose are in none."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return []
    merged, _ = graph_merge_record(means, labels, seed, n_neighbors,
                                   veto=small_side_veto if veto else None)
    groups: dict[str, list[int]] = {}
    for comp in np.unique(labels):
        groups.setdefault(str(merged[labels == comp][0]), []).append(int(comp))
    return [sorted(g) for g in groups.values() if len(g) > 1]


def graph_merge_record(means: np.ndarray, labels: np.ndarray, seed: int = 0,
                       n_neighbors: int = N_NEIGHBORS, threshold: float | str | None = None,
                       veto=None) -> tuple[np.ndarray, object]:
    """`geovae.graph.merge.merge_clusters` (``threshold``, default ``GAP``; ``veto``) of the cells'
    ``labels`` on the kNN graph of ``means`` (exact Euclidean, scanpy's neighbours): the
    merged labels and the `MergeRecord`; the graph as `geovae.tools.cluster` builds it
    (`geovae.graph.neighbors.neighbors_graph`)."""
    from geovae.graph.merge import GAP, merge_clusters
    from geovae.graph.neighbors import neighbors_graph

    labels = np.asarray(labels)
    a = ad.AnnData(obs={"_": np.zeros(len(labels))}, obsm={"rep": np.asarray(means)})
    k = max(2, min(n_neighbors, len(labels) - 1))
    neighbors_graph(a, "rep", _KEY, "euclidean", k, seed=seed)
    return merge_clusters(a, labels.astype(str), _KEY, GAP if threshold is None else threshold,
                          veto)


def graph_merges(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 active: torch.Tensor, means: torch.Tensor, mean_logits: torch.Tensor,
                 n_protected: int = 0, seed: int = 0, veto: bool = True
                 ) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """The ``"graph"`` rule (module docstring) on the merge subsample: ``z``, ``logits``,
    ``loc``, ``scale`` as `geovae.modules.merging.greedy_overlap_merges` takes them, the
    cells' posterior ``means`` (n, d) and the logits of q(y|z) there ``mean_logits`` (n, K).
    Within each group the largest component (q(y) mass) takes the others, largest first;
    ``veto``: with `small_side_veto`.
    Returns (the new ``active``, merges as (i, j, a, sd))."""
    active, loc, scale = active.clone(), loc.clone(), scale.clone()
    merges: list[tuple[int, int, float, torch.Tensor]] = []
    if any(torch.isnan(t).any() for t in (logits, loc, scale, means, mean_logits)):
        return active, merges
    labels = mixture_probs(mean_logits, active.cpu(), None).argmax(1).numpy()  # means: CPU
    groups = graph_groups(means.numpy(), labels, seed, veto=veto)
    q = mixture_probs(logits, active, None)
    for group in groups:
        group = [c for c in group if c >= n_protected]
        if len(group) < 2:
            continue
        mass = q.sum(0)
        order = sorted(group, key=lambda c: -float(mass[c]))
        for j in order[1:]:
            q = fold(z, logits, loc, scale, active, q, order[0], j, merges)
    return active, merges
