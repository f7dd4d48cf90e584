"""k-nearest neighbours under a latent manifold's geodesic distance, for scanpy: exact
(scikit-learn, or brute force in blocks) up to `ANN_THRESHOLD` cells, approximate
(pynndescent) above it, with its recall against the exact neighbours measured on a sample;
`neighbors_graph` builds scanpy's graph with them (for `geovae.tools.cluster` and the
``graph`` merge rule, `geovae.modules.graph_merge`)."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from geovae.geometry.manifolds import get_manifold

if TYPE_CHECKING:
    import anndata as ad

log = logging.getLogger("geovae.tools")

#: above this many cells `cluster` builds its kNN graph with pynndescent (approximate);
#: exact kNN is quadratic in the cells for curved latents (about 1e10 distances at 100k)
ANN_THRESHOLD = 50_000

#: query cells on which the recall of approximate neighbours is measured
RECALL_QUERIES = 1000

#: float64 entries of one block of distances (128 MiB): bounds the memory of exact kNN
_BLOCK_ENTRIES = 2**24


#: how geovae runs scanpy's Leiden on these graphs (`geovae.tools.cluster`, the resolution
#: rule of `geovae.tools.resolution` and the c*GMΔVAE's start: the same clusters)
LEIDEN = {"flavor": "igraph", "n_iterations": 2, "directed": False}


def _rows_per_block(n_ref: int, most: int = 2048) -> int:
    return max(1, min(most, _BLOCK_ENTRIES // max(n_ref, 1)))


class GeodesicKNN(TransformerMixin, BaseEstimator):
    """sklearn-style kNN transformer (``mode='distance'``) for ``sc.pp.neighbors``.

    Like `sklearn.neighbors.KNeighborsTransformer`, each row holds the sample itself (distance
    0) and its ``n_neighbors`` nearest others. Distances are computed in float64 in blocks of
    at most ``block`` query rows (fewer for large references, to bound the memory).
    """

    def __init__(self, geometry: str = "sphere", n_neighbors: int = 15, block: int = 2048):
        self.geometry = geometry
        self.n_neighbors = n_neighbors
        self.block = block

    def fit(self, X: np.ndarray, y: object = None) -> GeodesicKNN:
        self.X_ = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        return self

    def transform(self, X: np.ndarray) -> sp.csr_matrix:
        manifold = get_manifold(self.geometry)
        Q = torch.as_tensor(np.asarray(X), dtype=torch.float64)
        k = min(self.n_neighbors + 1, self.X_.shape[0])
        rows = _rows_per_block(self.X_.shape[0], self.block)
        dists, idx = [], []
        for start in range(0, Q.shape[0], rows):
            d = manifold.cdist(Q[start:start + rows], self.X_)
            val, ind = torch.topk(d, k, dim=1, largest=False)
            dists.append(val)
            idx.append(ind)
        val = torch.cat(dists).numpy()
        ind = torch.cat(idx).numpy()
        n = Q.shape[0]
        return sp.csr_matrix((val.ravel(), ind.ravel(), np.arange(0, n * k + 1, k)),
                             shape=(n, self.X_.shape[0]))

    def fit_transform(self, X: np.ndarray, y: object = None, **_: object) -> sp.csr_matrix:
        return self.fit(X).transform(X)


def ann_space(geometry: str, X: np.ndarray) -> tuple[np.ndarray, object]:
    """The data and metric pynndescent searches with, ranking as the latent's own metric
    (`geovae.geometry.Manifold.ann_space`)."""
    return get_manifold(geometry).ann_space(np.asarray(X))


def pair_dist(geometry: str, X: np.ndarray, rows: np.ndarray, cols: np.ndarray,
              chunk: int = 1 << 20) -> np.ndarray:
    """Distances d(X[rows[i]], X[cols[i]]) in float64 with the manifold's own formula."""
    manifold = get_manifold(geometry)
    Xt = torch.as_tensor(np.asarray(X), dtype=torch.float64)
    out = np.empty(len(rows), dtype=np.float64)
    for s in range(0, len(rows), chunk):
        r = torch.as_tensor(rows[s:s + chunk])
        c = torch.as_tensor(cols[s:s + chunk])
        out[s:s + chunk] = manifold.dist(Xt[r], Xt[c]).numpy()
    return out


class ApproxKNN(TransformerMixin, BaseEstimator):
    """Approximate kNN transformer (pynndescent) with the latent's own metric, for
    ``sc.pp.neighbors``; rows as `GeodesicKNN`'s: the sample itself at distance 0, then its
    ``n_neighbors`` nearest others found by NN-descent, nearest first, their distances
    recomputed in float64 with the manifold's formula. Rows where NN-descent found too few
    neighbours are computed exactly."""

    def __init__(self, geometry: str = "euclidean", n_neighbors: int = 15,
                 random_state: int = 0, n_jobs: int | None = None):
        self.geometry = geometry
        self.n_neighbors = n_neighbors
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit_transform(self, X: np.ndarray, y: object = None, **_: object) -> sp.csr_matrix:
        from geovae.graph.jit_cache import import_umap

        import_umap()  # pynndescent with numba's cache on
        from pynndescent import NNDescent

        X = np.asarray(X)
        n = X.shape[0]
        k = min(self.n_neighbors, n - 1)
        data, metric = ann_space(self.geometry, X)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Failed to correctly find n_neighbors")
            # umap-learn's settings for the forest and the iterations
            index = NNDescent(data, metric=metric, n_neighbors=k + 1,
                              n_trees=min(64, 5 + int(round(n ** 0.5 / 20.0))),
                              n_iters=max(5, int(round(np.log2(n)))),
                              random_state=self.random_state, n_jobs=self.n_jobs,
                              low_memory=True, compressed=False)
        cand = index.neighbor_graph[0].astype(np.int64)  # (n, k + 1), -1 where none found
        me = np.arange(n)[:, None]
        valid = (cand >= 0) & (cand != me)
        short = valid.sum(1) < k
        safe = np.where(valid, cand, 0)
        dist = pair_dist(self.geometry, X, np.repeat(np.arange(n), cand.shape[1]),
                         safe.ravel()).reshape(cand.shape)
        dist[~valid] = np.inf
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        ind = np.take_along_axis(safe, order, 1)
        val = np.take_along_axis(dist, order, 1)
        if short.any():  # NN-descent came back with fewer than k: exact for those rows
            rows = np.flatnonzero(short)
            ed, ei = knn(X[rows], X, k + 1, self.geometry)
            for j, r in enumerate(rows):
                keep = ei[j] != r
                ind[r], val[r] = ei[j][keep][:k], ed[j][keep][:k]
        self.n_exact_rows_ = int(short.sum())
        self.indices_, self.distances_ = ind, val
        ind = np.hstack([np.arange(n)[:, None], ind])
        val = np.hstack([np.zeros((n, 1)), val])
        m = k + 1
        return sp.csr_matrix((val.ravel(), ind.ravel(), np.arange(0, n * m + 1, m)),
                             shape=(n, n))


def knn_transformer(geometry: str, n_neighbors: int, n_obs: int = 0,
                    ann_threshold: int = ANN_THRESHOLD, seed: int = 0,
                    n_jobs: int | None = None) -> object:
    """kNN with the latent's own distance: exact (scikit-learn for Euclidean, `GeodesicKNN`
    otherwise) up to ``ann_threshold`` cells, `ApproxKNN` (pynndescent) above."""
    if n_obs > ann_threshold:
        return ApproxKNN(geometry, n_neighbors, random_state=seed, n_jobs=n_jobs)
    metric = get_manifold(geometry).exact_metric
    if metric is not None:
        from sklearn.neighbors import KNeighborsTransformer

        return KNeighborsTransformer(n_neighbors=n_neighbors, metric=metric, mode="distance")
    return GeodesicKNN(geometry, n_neighbors)


def neighbors_graph(adata: ad.AnnData, use_rep: str, key_added: str, geometry: str,
                    n_neighbors: int, seed: int = 0, ann_threshold: int = ANN_THRESHOLD,
                    describe: bool = False) -> object:
    """scanpy's kNN graph (``sc.pp.neighbors``: distances and UMAP connectivities under
    ``key_added``) of ``obsm[use_rep]`` with the latent's own distance (`knn_transformer` on
    torch's threads, whose count scanpy resets and this restores); ``describe``: log the
    method and distance first. Returns the transformer (`ApproxKNN` keeps the neighbours)."""
    import scanpy as sc

    from geovae.graph.jit_cache import import_umap

    import_umap()  # scanpy's connectivities (and UMAP) use umap-learn: numba's cache on
    threads = torch.get_num_threads()
    transformer = knn_transformer(geometry, n_neighbors, n_obs=adata.n_obs,
                                  ann_threshold=ann_threshold, seed=seed, n_jobs=threads)
    if describe:
        method = "approximate, pynndescent" if isinstance(transformer, ApproxKNN) else "exact"
        log.info(f"kNN graph: {n_neighbors} neighbours of {adata.n_obs} cells ({method}, "
                 f"{geometry} distance)")
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=use_rep, key_added=key_added,
                    transformer=transformer, random_state=seed)
    torch.set_num_threads(threads)  # scanpy's neighbours reset torch's thread count
    return transformer


def knn_recall(X: np.ndarray, indices: np.ndarray, distances: np.ndarray, geometry: str,
               n_queries: int = RECALL_QUERIES, seed: int = 0) -> tuple[float, int]:
    """Recall of approximate neighbours (``indices``/``distances``: (n, k), the sample itself
    left out) against exact kNN on ``n_queries`` random cells: the share of the returned
    neighbours that are among the exact k nearest others, i.e. no farther than the exact
    k-th nearest (so ties at the k-th distance do not count as misses). Returns
    (recall, number of query cells)."""
    X = np.asarray(X, dtype=np.float64)  # exact distances in float64, as pair_dist's
    n, k = indices.shape
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(n, size=min(n_queries, n), replace=False))
    ed, ei = knn(X[q], X, k + 1, geometry)
    kth = np.empty(len(q))
    for j, r in enumerate(q):
        kth[j] = ed[j][ei[j] != r][:k][-1]
    tol = 1e-9 * kth + 1e-7  # exact sphere distances via a matrix product: ~1e-8 near 0
    hits = (distances[q] <= (kth + tol)[:, None]).sum()
    return float(hits / (len(q) * k)), int(len(q))


def points_graph(points: np.ndarray, key: str, n_neighbors: int, seed: int = 0) -> ad.AnnData:
    """A scratch AnnData of the points (n, d) holding their exact Euclidean kNN graph under
    ``key`` (`neighbors_graph`, as `geovae.tools.cluster` builds it), with at least 2 and at
    most n - 1 neighbours: the graph the c*GMΔVAE's start and ``graph`` merge rule read."""
    import anndata as ad

    a = ad.AnnData(obs={"_": np.zeros(len(points))}, obsm={"rep": np.asarray(points)})
    neighbors_graph(a, "rep", key, "euclidean", max(2, min(n_neighbors, len(points) - 1)),
                    seed=seed)
    return a


def knn(query: np.ndarray, reference: np.ndarray, k: int, geometry: str,
        exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of the ``k`` nearest reference rows of each query row in the
    latent's own metric, nearest first; ``exclude_self`` when query is reference."""
    k_eff = min(k + int(exclude_self), reference.shape[0])
    manifold = get_manifold(geometry)
    if manifold.exact_metric is not None:
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k_eff, metric=manifold.exact_metric).fit(reference)
        dist, idx = nn.kneighbors(query)
    else:
        ref = torch.as_tensor(np.asarray(reference), dtype=torch.float64)
        q = torch.as_tensor(np.asarray(query), dtype=torch.float64)
        rows = _rows_per_block(ref.shape[0])
        parts = [torch.topk(manifold.cdist(q[s:s + rows], ref), k_eff, dim=1, largest=False)
                 for s in range(0, q.shape[0], rows)]
        dist = torch.cat([p.values for p in parts]).numpy()
        idx = torch.cat([p.indices for p in parts]).numpy()
    if exclude_self:
        dist, idx = dist[:, 1:], idx[:, 1:]
    return dist, idx
