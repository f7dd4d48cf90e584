"""The Leiden resolution chosen from the data (`geovae.tools.resolution`) and the table
defaults of `geovae fit table.csv` (issue 24, item 6)."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_wine, make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

import geovae
from geovae.errors import OptionError
from geovae.tools.resolution import AUTO, default_resolution, parse_resolution
from tests.helpers import run_cli


def _blobs(seed: int) -> tuple[ad.AnnData, np.ndarray]:
    """Three well-separated 2-D blobs of 200 points as an embedding: Leiden at resolution 1
    cuts each into several clusters (13 in all, measured for seeds 0-2)."""
    X, y = make_blobs(n_samples=600, centers=3, n_features=2, center_box=(-20, 20),
                      random_state=seed)
    adata = ad.AnnData(np.zeros((600, 1), np.float32))
    adata.obsm["X_geovae"] = X.astype(np.float32)
    return adata, y


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_resolution_finds_the_blobs_where_resolution_1_does_not(seed, caplog) -> None:
    adata, y = _blobs(seed)
    geovae.cluster(adata, resolution=1.0, umap=False, seed=seed, merge=None)
    assert adata.obs["geovae_cluster"].nunique() >= 6  # resolution 1 over-splits
    with caplog.at_level(logging.INFO, logger="geovae.tools"):
        geovae.cluster(adata, resolution="auto", umap=False, seed=seed)
    assert adata.obs["geovae_cluster"].nunique() == 3
    assert adjusted_rand_score(y, adata.obs["geovae_cluster"]) > 0.95
    info = adata.uns["geovae"]["cluster"]
    choice = info["resolution_choice"]
    assert info["resolution"] in list(choice["grid"]) and info["resolution"] < 1
    i = list(choice["grid"]).index(info["resolution"])
    assert choice["stability"][i] == max(choice["stability"]) and choice["n_clusters"][i] == 3
    line = [r.getMessage() for r in caplog.records if "chosen" in r.getMessage()]
    assert len(line) == 1 and line[0].startswith(f"Leiden resolution {info['resolution']:g} "
                                                 "chosen: 3 clusters, the most stable")
    assert "resolution 1: " in line[0]  # and what resolution 1 would have cut


def test_a_given_resolution_wins_and_tables_default_to_auto() -> None:
    assert default_resolution(None, "table") == AUTO
    assert default_resolution(None, "h5ad") == 1.0
    assert default_resolution(0.5, "table") == 0.5
    assert default_resolution("0.7", "table") == 0.7
    assert default_resolution("AUTO", "h5ad") == AUTO
    for bad in ("abc", "0", -1.0, float("nan"), True):
        with pytest.raises(OptionError, match="positive number or auto"):
            parse_resolution(bad)


def test_bad_resolution_is_a_one_line_usage_error(tmp_path) -> None:
    adata, _ = _blobs(0)
    adata.write_h5ad(tmp_path / "b.h5ad")
    bad = run_cli("cluster", tmp_path / "b.h5ad", "--out", tmp_path / "c.h5ad",
                  "--resolution", "lots", "--quiet")
    assert bad.exit_code == 2
    assert "--resolution must be a positive number or auto, got 'lots'" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "c.h5ad").exists()


@pytest.mark.slow
def test_default_fit_of_a_standardised_wine_table_finds_the_three_cultivars(tmp_path,
                                                                            caplog) -> None:
    """`geovae fit wine.csv` at its defaults (d = 20, resolution chosen) on sklearn's wine
    table standardised as a user would. Floor below what was measured (ARI 0.91, all 178
    rows, seed 0); the defaults before (d = 10, resolution 1) score 0.47 here."""
    from geovae.runs import run_fit

    b = load_wine()
    df = pd.DataFrame(StandardScaler().fit_transform(b.data), columns=b.feature_names)
    df.insert(0, "label", [str(b.target_names[t]) for t in b.target])
    df.to_csv(tmp_path / "wine.csv", index=False)
    with caplog.at_level(logging.INFO, logger="geovae"):
        run_fit(tmp_path / "wine.csv", label_key="label", umap=False, heldout_samples=0,
                threads=1, progress=False)
    out = ad.read_h5ad(tmp_path / "wine.geovae.h5ad")
    assert out.uns["geovae"]["latent"]["dim"] == 20
    assert "resolution_choice" in out.uns["geovae"]["cluster"]
    assert adjusted_rand_score(out.obs["label"], out.obs["geovae_cluster"]) >= 0.7
    assert any(r.getMessage().startswith("Leiden resolution") and "chosen" in r.getMessage()
               for r in caplog.records)


def test_one_cluster_does_not_win_by_being_trivially_stable() -> None:
    """Resolutions so low that Leiden keeps all cells in one cluster, whose subsample ARI is 1
    by convention: the chooser takes the most stable partition into 2 or more."""
    from geovae import _keys as K
    from geovae.graph.neighbors import knn_transformer
    from geovae.tools.resolution import choose_resolution

    X, _ = make_blobs(n_samples=300, centers=1, n_features=2, random_state=0)
    adata = ad.AnnData(np.zeros((300, 1), np.float32))
    adata.obsm["X_geovae"] = X.astype(np.float32)
    geovae.cluster(adata, resolution=1.0, umap=False)  # the kNN graph

    def make(k: int, n: int):
        return knn_transformer("euclidean", k, n_obs=n)

    choice = choose_resolution(adata, adata.obsm["X_geovae"], K.NEIGHBORS, make, 15,
                               grid=(0.0001, 0.001, 0.5, 1.0, 2.0))
    assert choice.n_clusters[0] == 1 and choice.stability[0] == 1.0  # trivial, on the grid
    assert choice.n_clusters[choice.best] >= 2 and choice.resolution >= 0.5


def _embedding(X: np.ndarray) -> ad.AnnData:
    adata = ad.AnnData(np.zeros((len(X), 1), np.float32))
    adata.obsm["X_geovae"] = np.asarray(X, np.float32)
    return adata


def _auto(adata: ad.AnnData, caplog, seed: int = 0) -> tuple[dict, str]:
    """`geovae.cluster` with the resolution chosen: the record and the one log line."""
    with caplog.at_level(logging.INFO, logger="geovae.tools"):
        geovae.cluster(adata, resolution="auto", umap=False, seed=seed)
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("Leiden resolution")]
    assert len(lines) == 1
    return adata.uns["geovae"]["cluster"], lines[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_data_without_clusters_falls_back_to_resolution_1(seed, caplog) -> None:
    """A 500 x 8 standard Gaussian has no clusters: its splits are unstable (best mean ARI
    about 0.5, at the finest resolution, measured for seeds 0-4) and the rule chose the finest
    before; now no split reaches `MIN_STABILITY` and the resolution is 1."""
    from geovae.tools.resolution import GRID, MIN_STABILITY

    X = np.random.default_rng(seed).normal(size=(500, 8))
    info, line = _auto(_embedding(X), caplog, seed)
    choice = info["resolution_choice"]
    assert info["resolution"] == 1.0 and choice["fallback"].startswith("no split of the grid")
    assert max(choice["stability"][i] for i, k in enumerate(choice["n_clusters"])
               if k >= 2) < MIN_STABILITY
    finest = choice["n_clusters"][list(choice["grid"]).index(GRID[-1])]
    assert info["n_clusters"] < finest
    assert line.startswith(f"Leiden resolution 1 (the default): {info['n_clusters']} clusters; "
                           "not chosen by subsample stability: no split")


def test_identical_rows_are_not_one_cluster_each(caplog) -> None:
    """100 identical rows: Leiden at resolutions above 1 cuts them into near-singletons
    (40-100 clusters, the singletons perfectly "stable"); they are trivial like one cluster."""
    from geovae import _keys as K
    from geovae.graph.neighbors import knn_transformer
    from geovae.tools.resolution import choose_resolution

    adata = _embedding(np.ones((100, 4)))
    info, line = _auto(adata, caplog)
    assert info["n_clusters"] == 1 and adata.obs["geovae_cluster"].nunique() == 1
    assert "1 cluster;" in line or "1 cluster," in line  # singular

    def make(k: int, n: int):
        return knn_transformer("euclidean", k, n_obs=n)

    choice = choose_resolution(adata, adata.obsm["X_geovae"], K.NEIGHBORS, make, 15,
                               grid=(1.5, 2.0))
    assert min(choice.n_clusters) > 50  # only near-singletons on this grid
    assert choice.resolution == 1.0 and "near-singletons" in choice.fallback
    assert len(set(choice.labels)) < 50


def test_too_few_cells_fall_back_to_resolution_1(caplog) -> None:
    """Below `MIN_CELLS` (50) the subsample stability means little: resolution 1, no grid
    search."""
    X, _ = make_blobs(n_samples=40, centers=3, n_features=2, random_state=0)
    info, line = _auto(_embedding(X), caplog)
    choice = info["resolution_choice"]
    assert info["resolution"] == 1.0 and len(choice["grid"]) == 0
    assert "too few" in choice["fallback"]
    assert line.startswith("Leiden resolution 1 (the default): ")
    assert "40 cells are too few to measure stability (at least 50)" in line


def test_a_large_input_searches_the_grid_on_a_subsample(monkeypatch, caplog) -> None:
    """Above `MAX_CELLS` the grid is searched on a seeded subsample of that many cells; the
    chosen resolution then clusters all cells (the blobs of the first test, cap 200). The
    resolution does not carry over exactly: 0.3 cuts the 3 blobs of 200 cells into 3 and of
    all 600 into 6 (measured, seed 0), and the log line gives the count of all cells."""
    import geovae.tools.resolution as resolution

    monkeypatch.setattr(resolution, "MAX_CELLS", 200)
    adata, _ = _blobs(0)
    info, line = _auto(adata, caplog)
    choice = info["resolution_choice"]
    assert choice["n_cells"] == 200 and "searched on 200 of the cells" in line
    assert choice["n_clusters"][list(choice["grid"]).index(info["resolution"])] == 3
    assert adata.obs["geovae_cluster"].notna().all()
    assert f"chosen: {adata.obs['geovae_cluster'].nunique()} clusters" in line
