"""The gap rule of the Leiden-cluster merge (`geovae.graph.merge.gap_stop`, ``merge="gap"``):
pieces of one group get less connected as the group grows (issue 26: 0.78-0.79 at 200,000
simulated cells, so the 0.8 threshold stopped at 9 clusters for 6 types), the pairs of
different groups stay far below; the rule goes on below 0.8, down to 0.3, only where that ends
at a tenfold drop."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import geovae
from geovae.graph.merge import GAP, GAP_FLOOR, GAP_RATIO, gap_stop, merge_clusters


@pytest.mark.parametrize(("conns", "left", "kept"), [
    ([1, 0.9, 0.85], 0.026, 3),  # 100k: every merge above 0.8, the drop right there
    ([1, 0.93, 0.82, 0.787, 0.786, 0.775], 0.025, 6),  # 200k: on to the 31-fold drop
    ([1, 0.87, 0.77, 0.72, 0.62, 0.42, 0.38, 0.32], 0.27, 2),  # Kang: no drop, as 0.8
    ([0.9, 0.6, 0.1], 0.05, 1),  # 6-fold at 0.6 -> 0.1 is not a gap
    ([0.9, 0.6], 0.06, 2),  # exactly tenfold is
    ([0.7, 0.5], 0.0, 2),  # below 0.8 from the start; no edge left
    ([0.7, 0.5], 0.3, 0),
    ([], 0.02, 0),
    ([0.9, 0.5], None, 1),  # the merges ended at one cluster: no pair left, no drop
    ([0.7, 0.5], None, 0),
    ([1, 0.95], None, 2),  # above 0.8 all the way: the threshold rule's merges
])
def test_gap_stop_keeps_the_merges_above_the_threshold_and_runs_to_a_drop(conns, left,
                                                                         kept) -> None:
    assert gap_stop(conns, left) == kept
    assert gap_stop(conns, left) >= next((k for k, c in enumerate(conns) if c <= 0.8),
                                         len(conns))  # never fewer merges than 0.8


def _halved_blobs(seed: int, dim: int = 3) -> tuple[ad.AnnData, np.ndarray, np.ndarray]:
    """Three separated 3-D blobs, each cut in half through its centre: the halves' PAGA
    connectivity is 0.57-0.75 (seeds 0-1; below 0.8, a cut through one group at this
    density), between blobs 0."""
    X, y = make_blobs(n_samples=1500, centers=3, n_features=dim, center_box=(-20, 20),
                      random_state=seed)
    adata = ad.AnnData(np.zeros((len(X), 1), np.float32))
    adata.obsm["X_geovae"] = X.astype(np.float32)
    geovae.cluster(adata, umap=False, merge=None, seed=seed)  # the kNN graph
    centre = np.array([X[y == k, 0].mean() for k in range(3)])
    halves = np.array([f"{k}{'ab'[int(x > centre[k])]}" for x, k in zip(X[:, 0], y,
                                                                        strict=True)])
    return adata, y, halves


@pytest.mark.parametrize("seed", [0, 1])
def test_gap_rule_joins_halves_below_the_threshold_and_never_the_blobs(seed) -> None:
    adata, y, halves = _halved_blobs(seed)
    kept, rec = merge_clusters(adata, halves, "geovae_neighbors", 0.8)
    assert rec.n_after == 6 and rec.merged == []  # 0.8 keeps them
    assert GAP_FLOOR < rec.max_left < 0.8
    merged, rec = merge_clusters(adata, halves, "geovae_neighbors", GAP)
    assert rec.n_after == 3 and rec.at_gap and adjusted_rand_score(y, merged) == 1.0
    assert all(GAP_FLOOR < c <= 0.8 for c in rec.connectivity)
    assert rec.connectivity[-1] >= GAP_RATIO * rec.max_left
    info = rec.record()
    assert info["rule"] == GAP and info["at_gap"] and info["floor"] == GAP_FLOOR
    assert "then 3 more down to" in rec.describe()
    same, rec = merge_clusters(adata, y.astype(str), "geovae_neighbors", GAP)  # true groups
    assert rec.merged == [] and not rec.at_gap and (same == y.astype(str)).all()


def test_gap_rule_through_cluster_and_the_floor() -> None:
    """``cluster(merge="gap")`` records the rule; a 2-D draw whose halves sit at 0.34 then
    below the floor (seed 1) is left alone: no tenfold drop above 0.3."""
    adata, _, halves = _halved_blobs(1, dim=2)
    labels, rec = merge_clusters(adata, halves, "geovae_neighbors", GAP)
    assert rec.merged == [] and rec.n_after == 6 and not rec.at_gap
    geovae.cluster(adata, umap=False, merge="gap")
    info = adata.uns["geovae"]["cluster"]["merge"]
    assert info["rule"] == GAP and info["threshold"] == 0.8 and info["ratio"] == GAP_RATIO


def test_gap_rule_never_takes_one_cluster_for_a_drop() -> None:
    """Two Gaussian groups 2 sd apart (PAGA connectivity about 0.4: below 0.8, above the
    floor), given as two clusters: merging them leaves one cluster and no pair to drop to,
    so the gap rule keeps both, as 0.8 does (it used to read the end as a drop "to no edge"
    and merge them: ARI 1 -> 0)."""
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 750)
    X = rng.normal(size=(len(y), 3))
    X[:, 0] += 2.0 * y
    adata = ad.AnnData(np.zeros((len(y), 1), np.float32))
    adata.obsm["X_geovae"] = X.astype(np.float32)
    geovae.cluster(adata, umap=False, merge=None)  # the kNN graph
    for rule in (0.8, GAP):
        kept, rec = merge_clusters(adata, y.astype(str), "geovae_neighbors", rule)
        assert rec.merged == [] and rec.n_after == 2 and not rec.at_gap, (rule, rec)
        assert GAP_FLOOR < rec.max_left < 0.8
        assert adjusted_rand_score(y, kept) == 1.0
