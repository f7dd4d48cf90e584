"""One kNN graph builder (`geovae.graph.neighbors.neighbors_graph`) for `geovae.tools.cluster`
and the c*GMΔVAE's ``graph`` merge rule (`geovae.modules.graph_merge`): it is scanpy's graph
with the latent's own kNN (`knn_transformer`), bit for bit, in each geometry, exact and
approximate, and both callers get the same graph from the same cells."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from geovae import _keys as K
from geovae.geometry.manifolds import Lorentz
from geovae.graph.neighbors import ApproxKNN, knn_transformer, neighbors_graph

N, K_NN, SEED = 400, 12, 3


def _points(geometry: str, seed: int = 0) -> np.ndarray:
    """8 Gaussian blobs in R^5 (float64) mapped onto ``geometry``'s manifold."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 3, (8, 5))[rng.integers(0, 8, N)] + rng.normal(0, 1, (N, 5))
    if geometry == "sphere":
        z = np.hstack([z, np.full((N, 1), 2.0)])
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    elif geometry == "hyperbolic":
        z = Lorentz().expmap0(torch.as_tensor(np.hstack([np.zeros((N, 1)), 0.5 * z]))).numpy()
    return z


def _bare(rep: np.ndarray) -> ad.AnnData:
    return ad.AnnData(obs={"_": np.zeros(len(rep))}, obsm={"rep": rep})


def _same(a: sp.spmatrix, b: sp.spmatrix) -> None:
    a, b = sp.csr_matrix(a), sp.csr_matrix(b)
    for part in ("data", "indices", "indptr"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), part


@pytest.mark.parametrize(("geometry", "ann_threshold"), [
    ("euclidean", 50_000), ("sphere", 50_000), ("hyperbolic", 50_000), ("euclidean", 0)])
def test_the_graph_is_scanpys_with_the_latents_knn(geometry: str, ann_threshold: int) -> None:
    """Distances and connectivities as ``sc.pp.neighbors`` with `knn_transformer` (what
    `cluster` and the merge rule each ran inline before), to the bit. Broken once (the
    transformer built with ``n_neighbors + 1``): failed."""
    import scanpy as sc

    rep = _points(geometry)
    threads = torch.get_num_threads()
    ref = _bare(rep)
    sc.pp.neighbors(ref, n_neighbors=K_NN, use_rep="rep", key_added="ref", random_state=SEED,
                    transformer=knn_transformer(geometry, K_NN, n_obs=N, seed=SEED,
                                                ann_threshold=ann_threshold, n_jobs=threads))
    torch.set_num_threads(threads)
    got = _bare(rep)
    transformer = neighbors_graph(got, "rep", "new", geometry, K_NN, seed=SEED,
                                  ann_threshold=ann_threshold)
    assert isinstance(transformer, ApproxKNN) == (ann_threshold == 0)
    for part in ("distances", "connectivities"):
        _same(got.obsp[f"new_{part}"], ref.obsp[f"ref_{part}"])


def test_cluster_and_the_graph_merge_rule_build_one_graph(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """The merge rule's graph of the cells' means (`graph_merge_record`) is `cluster`'s graph
    of the same Euclidean latent at the same neighbours and seed, to the bit. Broken once
    (the rule's graph with ``k - 1`` neighbours): failed."""
    import geovae.graph.merge as graph_merge_layer
    from geovae.modules.graph_merge import graph_merge_record
    from geovae.tools.cluster import cluster

    rep = _points("euclidean", seed=1)
    a = ad.AnnData(np.zeros((N, 1), np.float32))
    a.obsm[K.REP] = rep
    cluster(a, n_neighbors=K_NN, umap=False, seed=SEED, merge=None)
    seen: list[ad.AnnData] = []
    merge_clusters = graph_merge_layer.merge_clusters

    def spy(adata: ad.AnnData, *args: object) -> object:
        seen.append(adata)
        return merge_clusters(adata, *args)

    monkeypatch.setattr(graph_merge_layer, "merge_clusters", spy)
    labels = a.obs[K.CLUSTER].astype(int).to_numpy()
    graph_merge_record(rep, labels, seed=SEED, n_neighbors=K_NN)
    assert len(seen) == 1
    for part in ("distances", "connectivities"):
        _same(seen[0].obsp[f"graph_merge_{part}"], a.obsp[f"{K.NEIGHBORS}_{part}"])
