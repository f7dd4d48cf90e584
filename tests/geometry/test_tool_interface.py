"""What tools outside `geovae.geometry` ask of a manifold: its approximate-kNN space, its exact
kNN metric, its flat coordinates and its chart. Each answer is checked against the manifold's
own geodesic distance on random points."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geovae.geometry.manifolds import MANIFOLDS, Euclidean, Lorentz, Sphere, get_manifold

K_NN = 8


def _points(name: str, n: int = 300, d: int = 4, seed: int = 0) -> np.ndarray:
    """Random points on the manifold, near and far from the origin (hyperboloid: radius up
    to ~6, where the coordinates are ~200)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, d)) * rng.choice([0.05, 0.7, 2.0], size=(n, 1))
    m = get_manifold(name)
    x = m.expmap0(m.tangent0(torch.as_tensor(v))) if name != "euclidean" else torch.as_tensor(v)
    return x.numpy()


def _neighbours(dist: np.ndarray, k: int = K_NN) -> list[set[int]]:
    """Each row's k nearest others (the row itself left out)."""
    dist = dist.copy()
    np.fill_diagonal(dist, np.inf)
    return [set(np.argsort(row, kind="stable")[:k]) for row in dist]


def _metric_matrix(data: np.ndarray, metric: object) -> np.ndarray:
    """All pairwise values of a pynndescent metric (a name or a numba function)."""
    if isinstance(metric, str):
        from pynndescent.distances import named_distances

        metric = named_distances[metric]
    n = len(data)
    return np.array([[metric(data[i], data[j]) for j in range(n)] for i in range(n)])


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_ann_space_ranks_neighbours_as_the_geodesic_distance(name: str) -> None:
    """pynndescent, searching `ann_space`'s data with its metric, looks for the same
    neighbours as exact kNN under the manifold's `cdist` (float32 input, as in `cluster`)."""
    x = _points(name).astype(np.float32)
    manifold = get_manifold(name)
    data, metric = manifold.ann_space(x)
    ann = _metric_matrix(np.asarray(data), metric)
    exact = manifold.cdist(torch.as_tensor(x, dtype=torch.float64),
                           torch.as_tensor(x, dtype=torch.float64)).numpy()
    same = [len(a & b) for a, b in zip(_neighbours(ann), _neighbours(exact), strict=True)]
    assert sum(same) >= 0.995 * len(x) * K_NN, f"{name}: {sum(same)} of {len(x) * K_NN}"
    # (the hyperboloid's metric is the distance itself: tests/tools/test_neighbors.py)


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_exact_metric_is_the_geodesic_distance_where_given(name: str) -> None:
    from sklearn.metrics import pairwise_distances

    manifold = get_manifold(name)
    if manifold.exact_metric is None:
        assert not isinstance(manifold, Euclidean)  # only the flat space has one
        return
    x = _points(name, n=100)
    t = torch.as_tensor(x)
    np.testing.assert_allclose(pairwise_distances(x, metric=manifold.exact_metric),
                               manifold.dist(t[:, None], t[None]).numpy(), atol=1e-10)


@pytest.mark.parametrize("name", sorted(MANIFOLDS))
def test_flat_coordinates(name: str) -> None:
    """Euclidean and sphere: the flat metric ranks neighbours as the geodesic distance;
    hyperboloid: the log map at the origin keeps every distance to the origin."""
    from sklearn.metrics import pairwise_distances

    manifold = get_manifold(name)
    x = _points(name)
    coords, metric = manifold.flat_coordinates(x)
    flat = pairwise_distances(coords, metric=metric)
    if name == "hyperbolic":
        t = torch.as_tensor(x)
        to_origin = manifold.dist(manifold.origin(x.shape[1] - 1, t).expand_as(t), t).numpy()
        np.testing.assert_allclose(np.linalg.norm(coords, axis=1), to_origin, rtol=1e-9)
        assert metric == "euclidean"
        return
    exact = manifold.cdist(torch.as_tensor(x), torch.as_tensor(x)).numpy()
    assert _neighbours(flat) == _neighbours(exact)


def test_charts() -> None:
    """Flat space has no picture of its own, the sphere a Hammer map, the hyperboloid the
    Poincaré disk, whose coordinates (stored beside the latent) give the same distances."""
    assert (Euclidean().chart, Sphere().chart, Lorentz().chart) == ("plane", "hammer",
                                                                     "poincare")
    x = torch.as_tensor(_points("hyperbolic"))
    assert Euclidean().chart_coordinates(x[:, 1:]) is None
    assert Sphere().chart_coordinates(Sphere().projx(x)) is None
    p = Lorentz().chart_coordinates(x).numpy()
    assert (np.linalg.norm(p, axis=1) < 1).all()
    a, b = p[:150], p[150:]
    sq = ((a - b) ** 2).sum(1)
    poincare = np.arccosh(1 + 2 * sq / ((1 - (a * a).sum(1)) * (1 - (b * b).sum(1))))
    np.testing.assert_allclose(poincare, Lorentz().dist(x[:150], x[150:]).numpy(), rtol=1e-6)
