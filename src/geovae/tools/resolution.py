"""A Leiden resolution chosen from the data: the resolution whose clusters are most stable
when a fifth of the cells is left out.

For each resolution of `GRID` the kNN graph of all cells is clustered once; then
`N_SUBSAMPLES` random 80 % subsamples get their own kNN graph (in the latent's metric) and
Leiden clustering, and the clusters of the subsample are compared with those of all cells on
the cells they share (adjusted Rand index). The resolution with the highest mean ARI wins;
ties go to the one closest to 1 (on a log scale). A single cluster, stable by definition
(ARI 1), competes only when no resolution cuts two or more. Partitions that cut through a group of
cells move when cells are left out; partitions along real gaps do not.

Chosen by measurement on the development set, the sklearn digits table
(``data/digits.csv.gz``, 90 % subsamples, seeds 0-2, `benchmarks/bench_tables.py`), against
resolution 1, the silhouette, Calinski-Harabasz and Davies-Bouldin indices in the latent,
stability across Leiden seeds alone and the longest plateau of the cluster count: see
`benchmarks/RESULTS.md` ("Tables"). The wine, breast cancer and iris tables only report it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import anndata as ad

#: the resolutions tried
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0)
#: subsamples per resolution, and the share of the cells each keeps
N_SUBSAMPLES = 5
SUBSAMPLE = 0.8
#: what ``resolution`` may say to have it chosen
AUTO = "auto"


@dataclass
class ResolutionChoice:
    """The resolution chosen, and the evidence: per grid point the clusters and stability."""

    resolution: float
    grid: list[float] = field(default_factory=list)
    stability: list[float] = field(default_factory=list)
    n_clusters: list[int] = field(default_factory=list)
    labels: np.ndarray | None = None

    @property
    def best(self) -> int:
        return self.grid.index(self.resolution)

    def describe(self) -> str:
        """One line for the log: what was chosen and why."""
        i = self.best
        line = (f"Leiden resolution {self.resolution:g} chosen: {self.n_clusters[i]} clusters, "
                f"the most stable when 20% of the cells are left out (mean ARI "
                f"{self.stability[i]:.2f} over {N_SUBSAMPLES} subsamples; grid "
                f"{self.grid[0]:g}-{self.grid[-1]:g}")
        if 1.0 in self.grid and self.resolution != 1.0:
            j = self.grid.index(1.0)
            line += f"; resolution 1: {self.n_clusters[j]} clusters, {self.stability[j]:.2f}"
        return line + ")"

    def record(self) -> dict[str, Any]:
        """What goes into ``uns['geovae']['cluster']['resolution_choice']``."""
        return {"rule": "subsample stability (ARI)", "grid": list(self.grid),
                "stability": list(self.stability), "n_clusters": list(self.n_clusters),
                "n_subsamples": N_SUBSAMPLES, "subsample": SUBSAMPLE}


def _leiden(adata: ad.AnnData, resolution: float, seed: int, neighbors_key: str) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, key_added="_geovae_res", random_state=seed,
                 neighbors_key=neighbors_key, flavor="igraph", n_iterations=2,
                 directed=False)
    labels = adata.obs.pop("_geovae_res").astype(str).to_numpy()
    adata.uns.pop("_geovae_res", None)
    return labels


def _subsample_graph(rep: np.ndarray, idx: np.ndarray, make_transformer: Any,
                     n_neighbors: int, seed: int) -> ad.AnnData:
    """A bare AnnData of the cells ``idx`` with their own kNN graph."""
    import anndata as ad
    import scanpy as sc

    sub = ad.AnnData(np.zeros((len(idx), 0), np.float32))
    sub.obsm["rep"] = rep[idx]
    k = max(2, min(n_neighbors, len(idx) - 1))
    sc.pp.neighbors(sub, n_neighbors=k, use_rep="rep", transformer=make_transformer(k, len(idx)),
                    random_state=seed)
    return sub


def choose_resolution(adata: ad.AnnData, rep: np.ndarray, neighbors_key: str,
                      make_transformer: Any, n_neighbors: int, seed: int = 0,
                      grid: tuple[float, ...] = GRID) -> ResolutionChoice:
    """The resolution of ``grid`` whose Leiden clusters of ``adata`` (its graph under
    ``neighbors_key``) are the most stable over `N_SUBSAMPLES` subsamples of `SUBSAMPLE` of
    the cells; ``make_transformer(k, n)`` gives the kNN transformer for ``n`` cells (the
    latent's metric). The chosen clusters come back in ``labels``."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    n = adata.n_obs
    subsets = [np.sort(rng.choice(n, max(3, int(SUBSAMPLE * n)), replace=False))
               for _ in range(N_SUBSAMPLES)]
    subs = [_subsample_graph(rep, idx, make_transformer, n_neighbors, seed) for idx in subsets]
    stability, counts, all_labels = [], [], []
    for r in grid:
        labels = _leiden(adata, r, seed, neighbors_key)
        scores = [adjusted_rand_score(labels[idx], _leiden(sub, r, seed + 1 + i, "neighbors"))
                  for i, (idx, sub) in enumerate(zip(subsets, subs, strict=True))]
        stability.append(float(np.mean(scores)))
        counts.append(len(set(labels)))
        all_labels.append(labels)
    # one cluster is trivially "stable" (ARI 1 by convention): it competes only where no
    # resolution of the grid cuts two or more
    compete = [i for i, k in enumerate(counts) if k >= 2] or list(range(len(grid)))
    best = max(stability[i] for i in compete)
    ties = [i for i in compete if stability[i] >= best - 1e-9]
    i = min(ties, key=lambda j: abs(np.log(grid[j])))
    return ResolutionChoice(resolution=float(grid[i]), grid=[float(g) for g in grid],
                            stability=stability, n_clusters=counts, labels=all_labels[i])


def parse_resolution(value: float | str | None) -> float | str | None:
    """A resolution as given (a number, a number's text, ``auto`` or None for the default),
    checked: a positive number or `AUTO`."""
    from geovae.errors import OptionError

    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() == AUTO:
            return AUTO
        try:
            value = float(value)
        except ValueError:
            raise OptionError(f"{{opt}} must be a positive number or auto, got '{value}'",
                              param="resolution") from None
    if isinstance(value, bool) or not np.isfinite(value) or not value > 0:
        raise OptionError(f"{{opt}} must be a positive number or auto, got {value!r}",
                          param="resolution")
    return float(value)


def default_resolution(value: float | str | None, fmt: str) -> float | str:
    """What a run clusters with: the user's value, else `AUTO` for a table (``fmt`` from
    `geovae.io.read.input_format`) and 1 for anything else (single-cell inputs keep scanpy's
    default: the rule was chosen and checked on tables only)."""
    value = parse_resolution(value)
    if value is not None:
        return value
    return AUTO if fmt == "table" else 1.0
