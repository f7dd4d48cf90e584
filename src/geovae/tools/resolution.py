"""A Leiden resolution chosen from the data: the resolution whose clusters are most stable
when a fifth of the cells is left out.

For each resolution of `GRID` the kNN graph of all cells is clustered once; then
`N_SUBSAMPLES` random 80 % subsamples get their own kNN graph (in the latent's metric) and
Leiden clustering, and the clusters of the subsample are compared with those of all cells on
the cells they share (adjusted Rand index). The resolution with the highest mean ARI wins;
ties go to the one closest to 1 (on a log scale). Trivial partitions, a single cluster (stable
by definition, ARI 1) or near-singletons (more than half as many clusters as cells, as identical
rows give), compete only when no resolution cuts anything else, and then only the single
cluster. Partitions that cut through a group of cells move when cells are left out; partitions
along real gaps do not. Where no split reaches `MIN_STABILITY` (data without clusters), where
every resolution gives near-singletons, or where there are fewer than `MIN_CELLS` cells, the
resolution is 1 (scanpy's default) and the log line says why. Above `MAX_CELLS` cells the grid
is searched on a seeded subsample of that many; the chosen resolution clusters all cells.

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

from geovae.graph.neighbors import LEIDEN

if TYPE_CHECKING:
    import anndata as ad

#: the resolutions tried
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0)
#: subsamples per resolution, and the share of the cells each keeps
N_SUBSAMPLES = 5
SUBSAMPLE = 0.8
#: what ``resolution`` may say to have it chosen
AUTO = "auto"
#: the mean ARI a split must reach to be chosen: the choices of digits (0.96-0.98) and wine
#: (0.88-0.95; bench_tables' seeds 0-4) clear it, a 500 x 8 Gaussian's best split
#: (0.41-0.52, seeds 0-4) does not
MIN_STABILITY = 0.7
#: fewer cells than this: resolution 1 (stability of so few cells means little)
MIN_CELLS = 50
#: at most this many cells (a seeded subsample) for the grid search
MAX_CELLS = 20_000
#: the resolution where the rule does not choose (scanpy's default)
DEFAULT = 1.0


def _clusters(k: int) -> str:
    return f"{k} cluster" + ("" if k == 1 else "s")


@dataclass
class ResolutionChoice:
    """The resolution chosen, and the evidence: per grid point the clusters and stability."""

    resolution: float
    grid: list[float] = field(default_factory=list)
    stability: list[float] = field(default_factory=list)
    n_clusters: list[int] = field(default_factory=list)
    labels: np.ndarray | None = None
    #: why the rule did not choose (resolution 1 then), or None
    fallback: str | None = None
    #: the cells the grid was searched on
    n_cells: int = 0

    @property
    def best(self) -> int:
        return self.grid.index(self.resolution)

    def describe(self) -> str:
        """One line for the log: what was chosen and why."""
        k = len(set(self.labels)) if self.labels is not None else 0
        if self.fallback is not None:
            return (f"Leiden resolution {self.resolution:g} (the default): {_clusters(k)}; "
                    f"not chosen by subsample stability: {self.fallback}")
        i = self.best
        line = (f"Leiden resolution {self.resolution:g} chosen: {_clusters(k)}, "
                f"the most stable when 20% of the cells are left out (mean ARI "
                f"{self.stability[i]:.2f} over {N_SUBSAMPLES} subsamples; grid "
                f"{self.grid[0]:g}-{self.grid[-1]:g}")
        if self.n_cells < len(self.labels):
            line += f", searched on {self.n_cells} of the cells"
        if DEFAULT in self.grid and self.resolution != DEFAULT:
            j = self.grid.index(DEFAULT)
            line += f"; resolution 1: {_clusters(self.n_clusters[j])}, {self.stability[j]:.2f}"
        return line + ")"

    def record(self) -> dict[str, Any]:
        """What goes into ``uns['geovae']['cluster']['resolution_choice']``."""
        return {"rule": "subsample stability (ARI)", "grid": list(self.grid),
                "stability": list(self.stability), "n_clusters": list(self.n_clusters),
                "n_subsamples": N_SUBSAMPLES, "subsample": SUBSAMPLE,
                "min_stability": MIN_STABILITY, "n_cells": int(self.n_cells),
                "fallback": self.fallback or ""}


def _leiden(adata: ad.AnnData, resolution: float, seed: int, neighbors_key: str) -> np.ndarray:
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, key_added="_geovae_res", random_state=seed,
                 neighbors_key=neighbors_key, **LEIDEN)
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
    latent's metric). The chosen clusters come back in ``labels``; resolution 1 with the
    reason in ``fallback`` where the rule cannot choose (see the module's docstring)."""
    from sklearn.metrics import adjusted_rand_score

    n = adata.n_obs
    if n < MIN_CELLS:
        return ResolutionChoice(
            resolution=DEFAULT, labels=_leiden(adata, DEFAULT, seed, neighbors_key), n_cells=n,
            fallback=f"{n} cells are too few to measure stability (at least {MIN_CELLS})")
    rng = np.random.default_rng(seed)
    graph, key, base = adata, neighbors_key, rep
    if n > MAX_CELLS:  # the grid on a subsample of MAX_CELLS cells with its own graph
        keep = np.sort(rng.choice(n, MAX_CELLS, replace=False))
        graph, key, base = (_subsample_graph(rep, keep, make_transformer, n_neighbors, seed),
                            "neighbors", rep[keep])
    m = graph.n_obs
    subsets = [np.sort(rng.choice(m, max(3, int(SUBSAMPLE * m)), replace=False))
               for _ in range(N_SUBSAMPLES)]
    subs = [_subsample_graph(base, idx, make_transformer, n_neighbors, seed) for idx in subsets]
    stability, counts, all_labels = [], [], []
    for r in grid:
        labels = _leiden(graph, r, seed, key)
        scores = [adjusted_rand_score(labels[idx], _leiden(sub, r, seed + 1 + i, "neighbors"))
                  for i, (idx, sub) in enumerate(zip(subsets, subs, strict=True))]
        stability.append(float(np.mean(scores)))
        counts.append(len(set(labels)))
        all_labels.append(labels)
    # one cluster is trivially "stable" (ARI 1 by convention), and so are singletons: such
    # partitions compete only where no resolution of the grid cuts anything else, and then
    # only the single cluster
    compete = [i for i, k in enumerate(counts) if 2 <= k <= m / 2]
    fallback = None
    if compete:
        best = max(stability[i] for i in compete)
        if best < MIN_STABILITY:
            j = max(compete, key=lambda i: stability[i])
            fallback = (f"no split of the grid {grid[0]:g}-{grid[-1]:g} is stable when 20% of "
                        f"the cells are left out (best mean ARI {best:.2f}, at resolution "
                        f"{grid[j]:g}; at least {MIN_STABILITY:g} needed)")
    else:
        compete = [i for i, k in enumerate(counts) if k == 1]
        best = max((stability[i] for i in compete), default=1.0)
        if not compete:
            fallback = (f"every resolution of the grid {grid[0]:g}-{grid[-1]:g} cuts the cells "
                        "into near-singletons (more clusters than half the cells)")
    common = {"grid": [float(g) for g in grid], "stability": stability, "n_clusters": counts,
              "n_cells": m}
    if fallback is not None:
        labels = all_labels[grid.index(DEFAULT)] if graph is adata and DEFAULT in grid \
            else _leiden(adata, DEFAULT, seed, neighbors_key)
        return ResolutionChoice(resolution=DEFAULT, labels=labels, fallback=fallback, **common)
    ties = [i for i in compete if stability[i] >= best - 1e-9]
    i = min(ties, key=lambda j: abs(np.log(grid[j])))
    labels = all_labels[i] if graph is adata else _leiden(adata, grid[i], seed, neighbors_key)
    return ResolutionChoice(resolution=float(grid[i]), labels=labels, **common)


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
