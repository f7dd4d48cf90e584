"""Merging the Leiden clusters that the graph cannot tell apart (`geovae.graph.merge`,
issue 26 item 1: Leiden at resolution 1 cut every type of 100k simulated cells in 2-3)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import geovae
from geovae.graph.merge import MERGE_CONNECTIVITY, edge_counts, merge_clusters, paga_connectivity


def _blobs(seed: int, n: int = 1500, dim: int = 6) -> tuple[ad.AnnData, np.ndarray]:
    """Three well-separated Gaussian blobs as a 6-D embedding (the 100k-cell latent had 5
    active dimensions): Leiden at resolution 1 cuts them into 8-9 clusters (seeds 0-1),
    pieces whose PAGA connectivity is 0.94-1; between blobs it is 0."""
    X, y = make_blobs(n_samples=n, centers=3, n_features=dim, center_box=(-20, 20),
                      random_state=seed)
    adata = ad.AnnData(np.zeros((n, 1), np.float32))
    adata.obsm["X_geovae"] = X.astype(np.float32)
    return adata, y


@pytest.mark.parametrize("seed", [0, 1])
def test_merging_undoes_resolution_1s_cuts_through_blobs(seed, caplog) -> None:
    adata, y = _blobs(seed)
    geovae.cluster(adata, umap=False, seed=seed, merge=None)
    unmerged = adata.obs["geovae_cluster"].nunique()
    assert unmerged >= 6 and dict(adata.uns["geovae"]["cluster"]["merge"]) == {"rule": "off"}
    with caplog.at_level(logging.INFO, logger="geovae.tools"):
        geovae.cluster(adata, umap=False, seed=seed)  # the default merges
    assert adata.obs["geovae_cluster"].nunique() == 3
    assert adjusted_rand_score(y, adata.obs["geovae_cluster"]) > 0.99
    info = adata.uns["geovae"]["cluster"]
    merge = info["merge"]
    assert info["n_clusters"] == 3 and merge["n_before"] == unmerged and merge["n_after"] == 3
    assert merge["rule"] == "gap" and not merge["at_gap"]  # the default; the drop is at 0.8
    assert len(merge["merged"]) == unmerged - 3
    assert min(merge["connectivity"]) > MERGE_CONNECTIVITY >= merge["max_left"]
    assert sorted(adata.obs["geovae_cluster"].cat.categories) == ["0", "1", "2"]
    sizes = adata.obs["geovae_cluster"].value_counts()
    assert list(sizes.index) == ["0", "1", "2"]  # named by size, as Leiden names them
    line = [r.getMessage() for r in caplog.records if "merged" in r.getMessage()]
    assert line == [f"merged {unmerged} Leiden clusters into 3: {unmerged - 3} pair(s) with "
                    f"PAGA connectivity > {MERGE_CONNECTIVITY:g} "
                    f"(highest left {merge['max_left']:.2f})"]


def test_connectivity_is_scanpys_paga_also_after_merging() -> None:
    adata, _ = _blobs(3, n=450, dim=2)
    geovae.cluster(adata, umap=False, merge=None)
    labels = adata.obs["geovae_cluster"].astype(str).to_numpy()
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(len(labels)) < 0.05, "noise", labels)  # links everywhere
    merged, rec = merge_clusters(adata, labels, "geovae_neighbors", threshold=0.0)
    assert rec.n_after == 1 and len(rec.merged) == rec.n_before - 1
    for lab in (labels, np.where(np.isin(labels, ("0", "1")), "0+1", labels)):
        names, codes = np.unique(lab, return_inverse=True)
        mine = paga_connectivity(edge_counts(adata, codes, len(names), "geovae_neighbors"),
                                 np.bincount(codes).astype(float))
        adata.obs["g"] = lab
        adata.obs["g"] = adata.obs["g"].astype("category")
        sc.tl.paga(adata, groups="g", neighbors_key="geovae_neighbors")
        ref = adata.uns["paga"]["connectivities"].toarray()
        assert (mine > 0).sum() > len(names) and np.allclose(mine, ref, atol=1e-12)


def test_separate_groups_are_never_merged_and_given_clusters_stay() -> None:
    adata, y = _blobs(2)
    geovae.cluster(adata, umap=False, resolution=0.05)  # few clusters: nothing to merge
    info = adata.uns["geovae"]["cluster"]["merge"]
    assert info["n_before"] == info["n_after"] and len(info["merged"]) == 0
    assert info["max_left"] <= MERGE_CONNECTIVITY
    labels, rec = merge_clusters(adata, y.astype(str), "geovae_neighbors")  # the true groups
    assert rec.merged == [] and rec.max_left < 0.05 and (labels == y.astype(str)).all()
    geovae.cluster(adata, umap=False, resolution="auto")
    assert "merge" not in adata.uns["geovae"]["cluster"]  # auto chooses on its own


@pytest.mark.parametrize("bad", ["0.8", True, -0.1, 1.5, float("nan")])
def test_a_bad_merge_threshold_is_one_line(bad) -> None:
    """``merge`` is a PAGA connectivity in [0, 1] or None; anything else an `OptionError`
    before any work (not a comparison error deep in `merge_clusters`)."""
    adata, _ = _blobs(0, n=60)
    with pytest.raises(geovae.OptionError, match="merge.*must be a PAGA connectivity"):
        geovae.cluster(adata, umap=False, merge=bad)


@pytest.mark.parametrize(("bad", "text"), [(1.5, "1.5"), ("often", "often"), (True, "True")])
def test_cluster_and_the_command_line_check_merge_alike(bad, text: str) -> None:
    """One check (`check_merge`) behind `cluster` and the command line's `parse_merge`: the
    same message for the same value, and ``"off"`` is no merging in both."""
    from geovae.graph.merge import parse_merge

    adata, _ = _blobs(0, n=60)
    with pytest.raises(geovae.OptionError) as python:
        geovae.cluster(adata, umap=False, merge=bad)
    with pytest.raises(geovae.OptionError) as cli:
        parse_merge(text if isinstance(bad, str) else bad)
    assert str(python.value) == str(cli.value) == (
        f"`merge` must be a PAGA connectivity between 0 and 1, gap or off (no merging), got "
        f"'{text}'")
    assert parse_merge("Off") is None and "geovae" not in adata.uns
    geovae.cluster(adata, umap=False, merge="off")
    assert adata.uns["geovae"]["cluster"]["merge"] == {"rule": "off"}
