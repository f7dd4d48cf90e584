"""Neighbours, Leiden and UMAP at 20k+ cells (the scale where scanpy switches to pynndescent)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import adjusted_rand_score

import geovae
from geovae.datasets.simulate import simulate_counts


@pytest.fixture(scope="module")
def big() -> ad.AnnData:
    """20,500 simulated cells with a 10-d PCA embedding standing in for X_geovae."""
    a = simulate_counts(n_cells=20_500, n_genes=300, n_types=5, seed=1)
    b = a.copy()
    sc.pp.normalize_total(b)
    sc.pp.log1p(b)
    sc.pp.pca(b, n_comps=10)
    a.obsm["X_geovae"] = b.obsm["X_pca"]
    return a


def test_cluster_and_umap_at_20k_cells(big: ad.AnnData) -> None:
    a = big.copy()
    geovae.cluster(a, resolution=0.2)
    assert a.obs["geovae_cluster"].dtype == "category"
    assert a.obsm["X_umap"].shape == (20_500, 2) and np.isfinite(a.obsm["X_umap"]).all()
    # simulated types are well separated (PCA + KMeans ARI ~1), so Leiden must find them
    assert adjusted_rand_score(a.obs["cell_type"], a.obs["geovae_cluster"]) > 0.8


def test_scanpy_default_neighbors_at_20k_cells(big: ad.AnnData) -> None:
    """A user's own `sc.pp.neighbors` on our output takes scanpy's pynndescent path above
    4096 cells; scanpy 1.11 + pynndescent 0.7.0 fails there ('csr_array' has no 'getnnz'),
    which the pin pynndescent<0.7 avoids."""
    a = big.copy()
    sc.pp.neighbors(a, use_rep="X_geovae")
    sc.tl.leiden(a, flavor="igraph", n_iterations=2, directed=False, resolution=0.2)
    conn = a.obsp["connectivities"]
    assert conn.shape == (20_500, 20_500) and conn.nnz > 20_500 * 10
    assert adjusted_rand_score(a.obs["cell_type"], a.obs["leiden"]) > 0.8
