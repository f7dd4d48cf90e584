"""Neighbours, Leiden and UMAP at 20k+ cells (the scale where scanpy switches to pynndescent)."""

from __future__ import annotations

import numpy as np
import scanpy as sc
from sklearn.metrics import adjusted_rand_score

import geovae
from geovae.simulate import simulate_counts


def test_cluster_and_umap_at_20k_cells() -> None:
    a = simulate_counts(n_cells=20_500, n_genes=300, n_types=5, seed=1)
    b = a.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    sc.pp.pca(b, n_comps=10)
    a.obsm["X_geovae"] = b.obsm["X_pca"]
    geovae.cluster(a, resolution=0.2)
    assert a.obs["geovae_cluster"].dtype == "category"
    assert a.obsm["X_umap"].shape == (20_500, 2) and np.isfinite(a.obsm["X_umap"]).all()
    # simulated types are well separated (PCA + KMeans ARI ~1), so Leiden must find them
    assert adjusted_rand_score(a.obs["cell_type"], a.obs["geovae_cluster"]) > 0.8
