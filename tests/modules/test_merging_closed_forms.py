"""Closed forms behind the overlap merge rules (`geovae.modules.merging`): the ridgeline is
Ray & Lindsay's (every point a critical point of the two Gaussians' weighted log-densities),
the ridge ratio weights the two components by their mass, and DEMP is the larger of the two
directions' misclassification probabilities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geovae.modules.merging import misclassification, pair_statistics, ridge_ratio, ridgeline


def test_every_ridgeline_point_is_stationary_for_its_weights() -> None:
    """x(t) solves (1 - t) (x - m_i) / v_i + t (x - m_j) / v_j = 0 (unequal variances, means
    apart on every axis: a straight line between the means does not)."""
    gen = torch.Generator().manual_seed(0)
    m_i, m_j = torch.randn(3, generator=gen, dtype=torch.float64), \
        torch.randn(3, generator=gen, dtype=torch.float64) + 2.0
    v_i, v_j = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64), \
        torch.tensor([3.0, 0.2, 1.5], dtype=torch.float64)
    path = ridgeline(m_i, v_i, m_j, v_j, points=11)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)[:, None]
    grad = (1 - t) * (path - m_i) / v_i + t * (path - m_j) / v_j
    assert torch.allclose(grad, torch.zeros_like(grad), atol=1e-12)
    assert torch.allclose(path[0], m_i) and torch.allclose(path[-1], m_j)


def _dip(delta: float, p: float) -> float:
    """The dip ratio of p N(0, 1) + (1 - p) N(delta, 1) on a fine grid of [0, delta]."""
    x = np.linspace(0.0, delta, 200_001)
    f = p * np.exp(-x * x / 2) + (1 - p) * np.exp(-(x - delta) ** 2 / 2)
    left = np.maximum.accumulate(f)
    right = np.maximum.accumulate(f[::-1])[::-1]
    return float((f / np.minimum(left, right)).min())


@pytest.mark.parametrize(("delta", "p"), [(2.6, 0.9), (3.5, 0.8), (4.0, 0.9), (3.5, 0.5)])
def test_the_ridge_ratio_weights_the_components_by_their_mass(delta: float, p: float) -> None:
    """Unequal masses change the mixture's modality (delta 2.6: bimodal at 1:1, one mode at
    9:1); the ridge ratio follows the weighted density, computed on a fine grid."""
    loc = torch.tensor([[[0.0], [delta]]], dtype=torch.float64)
    counts = torch.tensor([p, 1 - p], dtype=torch.float64) * 1000
    assert ridge_ratio(loc, torch.ones_like(loc), counts, 0, 1) == \
        pytest.approx(_dip(delta, p), abs=2e-3)


def test_demp_is_the_larger_direction() -> None:
    """q (3 cells, 2 components), argmax 0, 0, 1: P[0, 1] = 0.2 / 1.7, P[1, 0] = 0.5 / 1.3;
    the pair's DEMP is the larger, 0.5 / 1.3."""
    q = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    p = misclassification(q)
    assert p[0, 1].item() == pytest.approx(0.2 / 1.7) and p[1, 0].item() == pytest.approx(0.5 / 1.3)
    assert torch.allclose(p.sum(1), torch.ones(2, dtype=torch.float64))
    loc = torch.zeros(3, 2, 1, dtype=torch.float64)
    loc[:, 1] = 5.0
    (i, j, _, demp), = pair_statistics(q.log(), loc, torch.ones_like(loc),
                                       torch.ones(2, dtype=torch.bool))
    assert (i, j) == (0, 1) and demp == pytest.approx(0.5 / 1.3)
