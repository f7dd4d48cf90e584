"""Exact k-nearest neighbours under a latent manifold's geodesic distance, for scanpy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from geovae.geometry.manifolds import get_manifold


class GeodesicKNN(TransformerMixin, BaseEstimator):
    """sklearn-style kNN transformer (``mode='distance'``) for ``sc.pp.neighbors``.

    Like `sklearn.neighbors.KNeighborsTransformer`, each row holds the sample itself (distance
    0) and its ``n_neighbors`` nearest others. Distances are computed in float64 in blocks.
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
        dists, idx = [], []
        for start in range(0, Q.shape[0], self.block):
            d = manifold.cdist(Q[start:start + self.block], self.X_)
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


def knn_transformer(geometry: str, n_neighbors: int) -> object:
    """Exact kNN with the latent's own distance (scikit-learn for Euclidean)."""
    if geometry == "euclidean":
        from sklearn.neighbors import KNeighborsTransformer

        return KNeighborsTransformer(n_neighbors=n_neighbors, metric="euclidean",
                                     mode="distance")
    return GeodesicKNN(geometry, n_neighbors)


def knn(query: np.ndarray, reference: np.ndarray, k: int, geometry: str,
        exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of the ``k`` nearest reference rows of each query row in the
    latent's own metric, nearest first; ``exclude_self`` when query is reference."""
    k_eff = min(k + int(exclude_self), reference.shape[0])
    if geometry == "euclidean":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=k_eff).fit(reference)
        dist, idx = nn.kneighbors(query)
    else:
        manifold = get_manifold(geometry)
        ref = torch.as_tensor(np.asarray(reference), dtype=torch.float64)
        q = torch.as_tensor(np.asarray(query), dtype=torch.float64)
        parts = [torch.topk(manifold.cdist(q[s:s + 2048], ref), k_eff, dim=1, largest=False)
                 for s in range(0, q.shape[0], 2048)]
        dist = torch.cat([p.values for p in parts]).numpy()
        idx = torch.cat([p.indices for p in parts]).numpy()
    if exclude_self:
        dist, idx = dist[:, 1:], idx[:, 1:]
    return dist, idx
