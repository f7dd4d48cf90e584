"""benchmarks/bench_tables.py's fair baseline (issue 24, item 6): PCA + Leiden with the
resolution chosen by the same rule as `geovae fit table.csv` uses on its latent, so that a
comparison is of the representations and not of how many clusters Leiden happened to cut."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import load_benchmark
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler


@pytest.fixture(scope="module")
def tables():  # noqa: ANN201
    return load_benchmark("bench_tables")


def test_pca_leiden_auto_chooses_the_resolution_as_geovae_does(tables) -> None:  # noqa: ANN001
    """Three well-separated 5-D blobs: scanpy's resolution 1 cuts them into many clusters, the
    baseline with geovae's rule finds the three and records the grid's resolution it chose."""
    import anndata as ad
    from baseline_pca_leiden import pca_leiden

    from geovae.tools.resolution import GRID

    X, y = make_blobs(n_samples=600, centers=3, n_features=5, center_box=(-20, 20),
                      random_state=0)
    X = StandardScaler().fit_transform(X)
    fixed = pca_leiden(ad.AnnData(X.astype(np.float32)), 0)
    assert len(np.unique(fixed)) >= 5  # resolution 1 over-splits
    pred, info = tables.pca_leiden_auto(X, 0)
    assert len(np.unique(pred)) == 3 and adjusted_rand_score(y, pred) > 0.95
    assert info["resolution"] in GRID and info["resolution"] < 1 and info["fallback"] == ""


def test_the_summary_pairs_geovae_with_the_same_rule_baseline_first(tables) -> None:  # noqa: ANN001
    assert tables.PAIRS[0] == ("geovae", "pca_leiden_auto")
    assert set(tables.DEFAULT_METHODS) == {"pca_leiden", "pca_leiden_auto", "geovae"}
    assert tables.DEV == ("digits",)
