"""The kNN graph `geovae.tools.cluster` writes is the graph its clusters were cut on: scanpy
hands umap-learn a view of the connectivities' values, and umap-learn zeroes the edges it
prunes (weights below max / epochs) in place, which left a different graph in the output, so
Leiden on a written file did not give ``obs['geovae_cluster']`` back (100k cells:
4,880 edges zeroed, 14 clusters against the 18 written)."""

from __future__ import annotations

import anndata as ad
import numpy as np
from sklearn.metrics import adjusted_rand_score

from geovae import _keys as K
from geovae.graph.merge import merge_clusters
from geovae.tools.cluster import cluster
from geovae.tools.resolution import LEIDEN


def _latent(seed: int = 0) -> ad.AnnData:
    """600 cells in 3 overlapping blobs of a 5-dimensional latent (weak edges between them)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(3, 5))
    z = centres[rng.integers(0, 3, 600)] + rng.normal(size=(600, 5))
    return ad.AnnData(np.zeros((600, 1), np.float32), obsm={K.REP: z.astype(np.float32)})


def test_the_umap_leaves_the_graph_as_the_clusters_saw_it() -> None:
    import scanpy as sc

    without, with_umap = _latent(), _latent()
    cluster(without, umap=False, seed=0)
    cluster(with_umap, umap=True, umap_epochs=100, seed=0)
    key = f"{K.NEIGHBORS}_connectivities"
    before, after = without.obsp[key], with_umap.obsp[key]
    assert before.data.min() < before.data.max() / 100  # edges the UMAP prunes exist here
    assert (after.data == 0).sum() == 0
    assert (after != before).nnz == 0
    assert with_umap.obsp["connectivities"] is not None
    assert (with_umap.obsp["connectivities"] != before).nnz == 0  # scanpy's keys too
    # Leiden (then the merge of what the graph cannot tell apart) on the written graph gives
    # the written clusters back
    sc.tl.leiden(with_umap, resolution=1.0, random_state=0, key_added="again",
                 neighbors_key=K.NEIGHBORS, **LEIDEN)
    again, _ = merge_clusters(with_umap, with_umap.obs["again"].to_numpy(), K.NEIGHBORS)
    assert adjusted_rand_score(again, with_umap.obs[K.CLUSTER]) == 1.0
