"""Approximate neighbours (pynndescent) in each latent's own metric against exact kNN.

NN-descent is compiled by numba on its first call in a process (tens of seconds per metric
on a loaded 2-core machine), so these tests use one small point set per geometry.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import torch

from geovae import _keys as K
from geovae.geometry.lorentz import ann_metric
from geovae.geometry.manifolds import Lorentz, Sphere
from geovae.graph.neighbors import (
    ANN_THRESHOLD,
    ApproxKNN,
    GeodesicKNN,
    knn,
    knn_recall,
    knn_transformer,
)
from geovae.tools.cluster import cluster

N, DIM, K_NN = 1500, 6, 10
GEOMETRIES = ("euclidean", "sphere", "hyperbolic")


def _points(geometry: str, n: int = N, seed: int = 0) -> np.ndarray:
    """Clustered latents (12 Gaussian blobs in R^DIM) mapped onto each manifold; hyperbolic
    ones reach radius ~6, where float32 coordinates are ~200."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (12, DIM))
    z = centers[rng.integers(0, 12, n)] + rng.normal(0, 1, (n, DIM))
    if geometry == "sphere":
        z = np.hstack([z, np.full((n, 1), 2.0)])
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    elif geometry == "hyperbolic":
        u = torch.as_tensor(np.hstack([np.zeros((n, 1)), 0.5 * z]))
        z = Lorentz().expmap0(u).numpy()
    return z.astype(np.float32)


@pytest.fixture(scope="module", params=GEOMETRIES)
def graphs(request: pytest.FixtureRequest) -> tuple[str, np.ndarray, object, object]:
    geometry = request.param
    X = _points(geometry)
    ann = ApproxKNN(geometry, K_NN, random_state=0, n_jobs=1)
    graph = ann.fit_transform(X)
    return geometry, X, ann, graph


def test_graph_rows_are_self_then_nearest_first(graphs) -> None:  # noqa: ANN001
    geometry, X, ann, graph = graphs
    assert graph.shape == (N, N)
    assert np.all(np.diff(graph.indptr) == K_NN + 1)  # scanpy's shortcut: constant row length
    ind = graph.indices.reshape(N, K_NN + 1)
    val = graph.data.reshape(N, K_NN + 1)
    np.testing.assert_array_equal(ind[:, 0], np.arange(N))
    assert np.all(val[:, 0] == 0) and np.all(val[:, 1:] >= 0)
    assert np.all(np.diff(val, axis=1) >= 0)
    assert not (ind[:, 1:] == np.arange(N)[:, None]).any()


def test_recall_and_distances_match_exact_knn(graphs) -> None:  # noqa: ANN001
    geometry, X, ann, _ = graphs
    recall, n_queries = knn_recall(X, ann.indices_, ann.distances_, geometry, n_queries=N)
    assert n_queries == N
    assert recall >= 0.9, f"{geometry}: recall {recall:.3f}"
    exact = knn_transformer(geometry, K_NN).fit_transform(X)
    e_ind = exact.indices.reshape(N, K_NN + 1)
    e_val = exact.data.reshape(N, K_NN + 1)
    shared = 0
    for i in range(N):
        ed = dict(zip(e_ind[i], e_val[i], strict=True))
        for j, d in zip(ann.indices_[i], ann.distances_[i], strict=True):
            if j in ed:
                shared += 1
                assert d == pytest.approx(ed[j], rel=1e-6, abs=1e-7), (geometry, i, j)
    assert shared >= 0.9 * N * K_NN


def test_recall_counts_misses() -> None:
    X = _points("euclidean", n=300)
    d, i = knn(X, X, 5, "euclidean", exclude_self=True)
    assert knn_recall(X, i, d, "euclidean")[0] == 1.0
    far_d, far_i = knn(X, X, 10, "euclidean", exclude_self=True)
    half = np.hstack([i[:, :3], far_i[:, 8:]]), np.hstack([d[:, :3], far_d[:, 8:]])
    r = knn_recall(X, *half, "euclidean")[0]
    assert 0.6 - 0.05 <= r < 0.8  # 3 of 5 right, barring ties at the 5th distance


def test_lorentz_metric_is_the_hyperboloid_distance() -> None:
    """The numba metric pynndescent ranks with, on spatial coordinates, is geovae's
    `Lorentz.dist` (x_0 first, x_0 = sqrt(1 + |x_{1:}|^2)), near and far from the origin."""
    metric = ann_metric()
    assert Lorentz().ann_space(np.ones((1, 3)))[1] is metric  # one function per process
    rng = np.random.default_rng(1)
    u = rng.normal(size=(400, 5)) * rng.choice([0.01, 1.0, 4.0], size=(400, 1))
    x = Lorentz().expmap0(torch.as_tensor(np.hstack([np.zeros((400, 1)), u]))).numpy()
    a, b = x[:200], x[200:]
    b[:50] = a[:50] + 1e-4 * rng.normal(size=(50, 6))  # nearby pairs (off the surface...)
    b = Lorentz().projx(torch.as_tensor(b)).numpy()  # ...projected back onto it
    ours = np.array([metric(p[1:], q[1:]) for p, q in zip(a, b, strict=True)])
    ref = Lorentz().dist(torch.as_tensor(a), torch.as_tensor(b)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    # float32 coordinates, as pynndescent passes them: the same numbers read in float64
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    ours32 = np.array([metric(p[1:], q[1:]) for p, q in zip(a32, b32, strict=True)])
    ref32 = Lorentz().dist(torch.as_tensor(a32).double(), torch.as_tensor(b32).double())
    np.testing.assert_allclose(ours32, ref32.numpy(), rtol=1e-9, atol=1e-12)


def test_sphere_cosine_ranks_as_the_angle() -> None:
    """On unit vectors 1 - cos θ is monotone in the great-circle angle θ: the same neighbours
    (the angles themselves come from `Sphere.dist`, not arccos, which is inaccurate near 0)."""
    X = _points("sphere", n=300).astype(np.float64)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    cos = 1 - X @ X.T
    ang = Sphere().cdist(torch.as_tensor(X), torch.as_tensor(X)).numpy()
    far = ang > 1e-2
    np.testing.assert_allclose(np.arccos(1 - cos[far]), ang[far], rtol=1e-7)
    for i in range(len(X)):
        assert set(np.argsort(cos[i])[:K_NN + 1]) == set(np.argsort(ang[i])[:K_NN + 1])


def test_geodesic_knn_blocks_bound_memory() -> None:
    """Exact kNN gives the same rows whatever the block size."""
    X = _points("hyperbolic", n=500)
    a = GeodesicKNN("hyperbolic", 5).fit_transform(X)
    b = GeodesicKNN("hyperbolic", 5, block=7).fit_transform(X)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.data, b.data)


@pytest.mark.parametrize("geometry", ["sphere", "hyperbolic"])
def test_cluster_records_method_and_recall(geometry: str) -> None:
    X = _points(geometry, n=N)
    a = ad.AnnData(np.zeros((N, 1), np.float32))
    a.obsm[K.REP] = X
    a.uns[K.UNS] = {"latent": {"geometry": geometry}}
    cluster(a, n_neighbors=K_NN, umap=False, ann_threshold=0)
    rec = a.uns[K.UNS]["cluster"]
    assert rec["knn_method"] == "pynndescent" and rec["metric"] == geometry
    assert rec["knn_recall"] >= 0.9 and rec["knn_recall_cells"] == 1000
    approx = a.obsp[f"{K.NEIGHBORS}_distances"].copy()
    cluster(a, n_neighbors=K_NN, umap=False)  # N < ANN_THRESHOLD: exact
    rec = a.uns[K.UNS]["cluster"]
    assert N < ANN_THRESHOLD and rec["knn_method"] == "exact" and rec["knn_recall"] == 1.0
    exact = a.obsp[f"{K.NEIGHBORS}_distances"]
    assert approx.shape == exact.shape
    # the graphs agree on most edges, and on the distance of every shared edge
    rows = np.repeat(np.arange(N), K_NN + 1)
    a_edges = dict(zip(zip(rows, approx.indices, strict=True), approx.data, strict=True))
    e_edges = dict(zip(zip(rows, exact.indices, strict=True), exact.data, strict=True))
    shared = a_edges.keys() & e_edges.keys()
    assert len(shared) >= 0.9 * len(e_edges)
    # (atol: the exact sphere path's cdist goes through a matrix product, ~1e-8 at 0)
    np.testing.assert_allclose([a_edges[e] for e in shared], [e_edges[e] for e in shared],
                               rtol=1e-6, atol=1e-7)


def test_cluster_rejects_a_bad_threshold() -> None:
    from geovae.errors import OptionError

    a = ad.AnnData(np.zeros((20, 1), np.float32))
    a.obsm[K.REP] = _points("euclidean", n=20)
    with pytest.raises(OptionError):
        cluster(a, ann_threshold=-1, umap=False)
