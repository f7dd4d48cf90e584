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
as small, sends most of its cells' neighbours into its core. On counts an expression veto
(`expression_veto`) keeps apart two groups the graph joins whose pooled expression differs
(Kang's NK and CD8 T, B and activated B); a lobe has its core's profile at a smaller library.
"""

from __future__ import annotations

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
#: `expression_veto`: no merge of two groups where the smaller holds >= `EXPRESSION_SHARE` of
#: the cells and >= `EXPRESSION_GENES` of the genes that average >= `EXPRESSION_FLOOR` counts
#: per cell on either side differ >= 2 ** `EXPRESSION_LFC`-fold in pooled rate (the side's
#: counts / its library sizes, summed over its cells). Chosen on the development split only
#: (benchmarks/results/clusters_graph_realveto_2026-12-07.py: the bundled Kang data, K = 15,
#: fit seeds 0-2; rare-2 % draws seeds 10-24, rare-1 % seeds 30-34, issue-type 2,000-cell
#: K = 15 seeds 10-14): among the pairs the gap rule merges whose smaller side holds >= 1-2 %
#: of the cells, one type's pieces had <= 0.12 of the genes at 2-fold (a piece beside a mixed
#: component 0.14), Kang's pairs of two labelled types >= 0.33 (every Kang pair >= 0.30);
#: 0.2 lies between. Smaller sides are noise (3-15 cells: 0.13-0.41) and stay
#: `small_side_veto`'s. Reported on fresh draws: RESULTS.md, "Delete moves".
EXPRESSION_SHARE = 0.02
EXPRESSION_FLOOR = 0.1
EXPRESSION_LFC = 1.0
EXPRESSION_GENES = 0.2


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


def expression_differs(sums: np.ndarray, cells: np.ndarray) -> bool:
    """`expression_veto`'s test of two sides: ``sums`` (2, G) their cells' summed counts,
    ``cells`` (2,) how many cells each holds. The pooled rates take each side's library as
    the offset the NB decoder does, so a type's shallow lobe has its core's; they and the
    floor are unchanged when every cell is replicated."""
    rate = sums / np.maximum(sums.sum(1, keepdims=True), 1.0)
    genes = (sums / np.maximum(cells, 1.0)[:, None] >= EXPRESSION_FLOOR).any(0)
    if not genes.any():
        return False
    with np.errstate(divide="ignore"):
        lfc = np.abs(np.log2(rate[0, genes]) - np.log2(rate[1, genes]))
    return bool((lfc >= EXPRESSION_LFC).mean() >= EXPRESSION_GENES)


def expression_veto(labels: np.ndarray, sums: np.ndarray):
    """A `geovae.graph.merge.merge_clusters` ``veto`` for the cells' components ``labels`` with
    each component's summed counts ``sums`` (K, G; row = component): `small_side_veto`, and
    no merge where the smaller group holds >= `EXPRESSION_SHARE` of the cells and
    `expression_differs` from the other (two types the graph joins, e.g. NK and CD8 T).
    It follows the groups as they merge: `merge_clusters` merges a pair exactly when the
    veto, asked, says False."""
    names = np.unique(np.asarray(labels).astype(str))
    groups = [sums[int(n)] for n in names]

    def veto(edges: np.ndarray, sizes: np.ndarray, i: int, j: int) -> bool:
        if small_side_veto(edges, sizes, i, j):
            return True
        small = i if sizes[i] <= sizes[j] else j
        if sizes[small] >= EXPRESSION_SHARE * sizes.sum() and expression_differs(
                np.stack([groups[i], groups[j]]), sizes[[i, j]]):
            return True
        groups[i] = groups[i] + groups.pop(j)
        return False

    return veto


def graph_groups(means: np.ndarray, labels: np.ndarray, seed: int = 0,
                 n_neighbors: int = N_NEIGHBORS, veto: bool = True,
                 sums: np.ndarray | None = None) -> list[list[int]]:
    """The groups of components (each a list, two or more) that the gap rule merges: PAGA on
    the kNN graph of ``means`` (n, d) between the cells' components ``labels`` (n,), greedy,
    `geovae.graph.merge.merge_clusters` with ``GAP`` and (``veto``) `small_side_veto`, with
    each component's summed counts ``sums`` (K, G) `expression_veto`.
    Components no cell chose are in none."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return []
    rule = None if not veto else small_side_veto if sums is None else \
        expression_veto(labels, np.asarray(sums))
    merged, _ = graph_merge_record(means, labels, seed, n_neighbors, veto=rule)
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
    from geovae.graph.neighbors import points_graph

    labels = np.asarray(labels)
    a = points_graph(means, _KEY, n_neighbors, seed)
    return merge_clusters(a, labels.astype(str), _KEY, GAP if threshold is None else threshold,
                          veto)


def graph_merges(z: torch.Tensor, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 active: torch.Tensor, means: torch.Tensor, mean_logits: torch.Tensor,
                 n_protected: int = 0, seed: int = 0, veto: bool = True,
                 sums: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, list[tuple[int, int, float, torch.Tensor]]]:
    """The ``"graph"`` rule (module docstring) on the merge subsample: ``z``, ``logits``,
    ``loc``, ``scale`` as `geovae.modules.merging.greedy_overlap_merges` takes them, the
    cells' posterior ``means`` (n, d) and the logits of q(y|z) there ``mean_logits`` (n, K).
    Within each group the largest component (q(y) mass) takes the others, largest first;
    ``veto``: with `small_side_veto` and, given each component's summed counts ``sums``
    (K, G; `geovae.modules.merging.mixture_draws`), `expression_veto`.
    Returns (the new ``active``, merges as (i, j, a, sd))."""
    active, loc, scale = active.clone(), loc.clone(), scale.clone()
    merges: list[tuple[int, int, float, torch.Tensor]] = []
    if any(torch.isnan(t).any() for t in (logits, loc, scale, means, mean_logits)):
        return active, merges
    labels = mixture_probs(mean_logits, active.cpu(), None).argmax(1).numpy()  # means: CPU
    groups = graph_groups(means.numpy(), labels, seed, veto=veto,
                          sums=None if sums is None else sums.numpy())
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
