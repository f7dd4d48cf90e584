"""Clusters have names (issue 27, item 4): the majority known label of each cluster, its top
marker genes from scanpy's rank_genes_groups on log-normalised expression of a seeded,
bounded subsample (under scanpy's usual key, a user's own ranking left alone), shown in the
UMAP legend and as a table in the report."""

from __future__ import annotations

import re
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import geovae
from geovae import _keys as K
from geovae.tools.markers import majority_labels, name_clusters
from geovae.tools.record import update_record


def counts_with_markers(n: int = 900, k: int = 3, genes: int = 40, seed: int = 0
                        ) -> ad.AnnData:
    """Poisson counts; the cells of cluster c express gene ``g{c}`` 20 times as much."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, k, n)
    rate = np.full((n, genes), 2.0)
    rate[np.arange(n), cluster] = 40.0
    obs = pd.DataFrame({K.CLUSTER: pd.Categorical(cluster.astype(str)),
                        "cell_type": np.array(["T", "B", "NK"])[cluster]},
                       index=[f"c{i}" for i in range(n)])
    a = ad.AnnData(X=rng.poisson(rate).astype(np.float32), obs=obs,
                   var=pd.DataFrame(index=[f"g{j}" for j in range(genes)]))
    a.obsm[K.UMAP] = rng.normal(size=(n, 2))
    return a


def test_majority_label_and_its_share_leave_unlabelled_cells_out() -> None:
    clusters = ["0"] * 6 + ["1"] * 4 + ["2"] * 2
    labels = ["B", "B", "T", "unknown", "unknown", "unknown",  # 0: B, 2 of 3 labelled
              "NK", "NK", "NK", "T",                            # 1: NK, 3 of 4
              "nan", "unknown"]                                 # 2: nothing labelled
    names, majority, share = majority_labels(clusters, labels)
    assert names == ["0", "1", "2"]
    assert majority == ["B", "NK", ""]
    assert share == pytest.approx([2 / 3, 3 / 4, 0.0])


def test_marker_genes_under_scanpys_key_on_a_seeded_subsample() -> None:
    import scanpy as sc

    a = counts_with_markers()
    record = name_clusters(a, "cell_type", max_cells=300, seed=3)
    assert record["markers"][0].split(", ")[0] == "g0"
    assert [m.split(", ")[0] for m in record["markers"]] == ["g0", "g1", "g2"]
    assert record["label"] == ["T", "B", "NK"] and record["label_share"] == [1.0, 1.0, 1.0]
    how = record["markers_from"]
    assert how == {"key": "rank_genes_groups", "n_cells": 300, "seed": 3, "method": "t-test",
                   "expression": "log1p of X scaled to 10,000 counts per cell"}
    assert a.uns["rank_genes_groups"]["params"]["groupby"] == K.CLUSTER
    assert list(a.obs[K.CLUSTER_NAME].cat.categories) == ["0: T", "1: B", "2: NK"]
    sc.pl.rank_genes_groups(a, n_genes=3, show=False)  # scanpy's own plot reads it
    b = counts_with_markers()
    again = name_clusters(b, "cell_type", max_cells=300, seed=3)  # same seed, same result
    assert np.array_equal(again.pop("dotplot")["mean"], record.pop("dotplot")["mean"])
    assert again == record
    names = a.uns["rank_genes_groups"]["names"]
    assert np.array_equal(names["0"], b.uns["rank_genes_groups"]["names"]["0"])


def test_a_users_own_ranking_is_left_alone() -> None:
    import scanpy as sc

    a = counts_with_markers()
    sc.tl.rank_genes_groups(a, "cell_type", use_raw=False)
    own = a.uns["rank_genes_groups"]
    record = name_clusters(a, None)
    assert a.uns["rank_genes_groups"] is own and own["params"]["groupby"] == "cell_type"
    assert record["markers_from"]["key"] == "geovae_rank_genes_groups"
    assert a.uns["geovae_rank_genes_groups"]["params"]["groupby"] == K.CLUSTER
    assert "label" not in record  # no labels: clusters named by their top marker
    assert list(a.obs[K.CLUSTER_NAME].cat.categories) == ["0: g0", "1: g1", "2: g2"]


def test_backed_data_gets_label_names_without_markers(tmp_path: Path) -> None:
    from geovae.io.backed import read_backed

    counts_with_markers().write_h5ad(tmp_path / "a.h5ad")
    a = read_backed(tmp_path / "a.h5ad")
    record = name_clusters(a, "cell_type")
    assert "markers_from" not in record and record["label"] == ["T", "B", "NK"]
    assert "rank_genes_groups" not in a.uns


def test_report_and_umap_legend_show_the_names(tmp_path: Path) -> None:
    from geovae.report.plot import umap_figure

    a = counts_with_markers()
    update_record(a, cluster_names=name_clusters(a, "cell_type"), model="vae")
    legend = [t.get_text() for ax in umap_figure(a, []).axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    n = a.obs[K.CLUSTER].value_counts()
    assert legend == [f"0: T ({n['0']})", f"1: B ({n['1']})", f"2: NK ({n['2']})"], legend
    text = geovae.report(a, tmp_path / "r.html").read_text()
    body = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', text, re.S))["names"]
    rows = re.findall(r"<tr><td>.*?</tr>", body)
    assert len(rows) == 3
    assert "<td>T (100%)</td><td>g0, " in rows[0]
    assert "sc.pl.rank_genes_groups(adata)" in body
    assert len(re.findall(r"<img ", body)) == 1  # the dot plot
    dots = a.uns[K.UNS]["cluster_names"]["dotplot"]
    genes = list(dots["genes"])
    assert genes[0] == "g0" and {"g1", "g2"} <= set(genes)  # two top markers per cluster
    assert dots["fraction"].shape == dots["mean"].shape == (3, len(genes))
    g1 = genes.index("g1")
    assert dots["mean"][1, g1] > 2 + max(dots["mean"][0, g1], dots["mean"][2, g1])  # log1p


def test_fit_names_its_clusters(cg_fit: Path, tmp_path: Path) -> None:
    """``geovae fit --label-key``: the output holds the names, scanpy's ranking and the
    record; the report has the names table and dot plot."""
    a = ad.read_h5ad(cg_fit)
    info = a.uns[K.UNS]["cluster_names"]
    assert info["label_key"] == "bulk_labels"
    assert list(info["cluster"]) == list(a.obs[K.CLUSTER].cat.categories)
    truth = a.obs["bulk_labels"].astype(str).to_numpy()
    for c, label in zip(info["cluster"], info["label"], strict=True):
        here = truth[a.obs[K.CLUSTER].astype(str).to_numpy() == c]
        values, n = np.unique(here, return_counts=True)
        assert label == values[np.argmax(n)]  # the majority, recomputed
    assert a.uns["rank_genes_groups"]["params"]["groupby"] == K.CLUSTER
    assert info["markers_from"]["n_cells"] == a.n_obs  # 700 cells: no subsample
    first = a.obs[K.CLUSTER_NAME].astype(str).iloc[0]
    assert first == f"{a.obs[K.CLUSTER].iloc[0]}: " \
        f"{info['label'][list(info['cluster']).index(str(a.obs[K.CLUSTER].iloc[0]))]}"
    text = geovae.report(cg_fit, tmp_path / "r.html").read_text()
    body = dict(re.findall(r'<section id="([a-z]+)">(.*?)</section>', text, re.S))["names"]
    assert len(re.findall(r"<tr><td>", body)) == len(info["cluster"])
    assert len(re.findall(r"<img ", body)) == 1


def test_duplicate_gene_names_are_ranked_not_a_crash() -> None:
    """`geovae cluster` accepts any .h5ad with an embedding, also one whose gene symbols
    were never made unique (common for 10x symbols): the ranking makes them unique for itself
    (issue found in review: `get_indexer` raised InvalidIndexError after kNN and UMAP)."""
    a = counts_with_markers()
    a.var_names = ["g0", "g0"] + [f"g{j}" for j in range(2, a.n_vars)]  # g1 renamed g0
    record = name_clusters(a, "cell_type", max_cells=300, seed=3)
    firsts = [m.split(", ")[0] for m in record["markers"]]
    assert firsts == ["g0", "g0-1", "g2"]  # cluster 1's marker is the second "g0"
    assert list(a.var_names[:2]) == ["g0", "g0"]  # the user's names are not changed


@pytest.mark.parametrize("sparse", [False, True])
def test_log_normalisation_is_scanpys(sparse: bool) -> None:
    """The markers' expression equals scanpy's normalize_total(1e4) + log1p, computed without
    scanpy's numba CSR kernel (it raised UnboundLocalError with NUMBA_DISABLE_JIT=1, which the
    pipelines' tests set: fit failed after clustering; tests/workflows run that way)."""
    import scanpy as sc
    import scipy.sparse as sp

    from geovae.tools.markers import log_normalised

    a = counts_with_markers(n=200)
    a.X[0] = 0  # a cell without counts stays zero
    x = sp.csr_matrix(a.X) if sparse else a.X.copy()
    ours = log_normalised(x)
    ours = ours.toarray() if sparse else ours
    b = ad.AnnData(a.X.copy())
    sc.pp.normalize_total(b, target_sum=1e4)
    sc.pp.log1p(b)
    assert np.allclose(ours, b.X, rtol=1e-5, atol=1e-6)
    assert not ours[0].any() and ours[1:].sum(1).min() > 0


@pytest.mark.parametrize("shift", [None, 0.0, 100.0])
def test_no_log2_fold_changes_where_the_matrix_cannot_be_log1p(
        shift: float | None, caplog: pytest.LogCaptureFixture) -> None:
    """A table that is not counts is ranked as it is; scanpy's log2 fold changes (a ratio of
    expm1 of log1p means) raised numpy's RuntimeWarnings on a standardised table (negative
    values) and on values too large for log1p expression, and meant nothing there: now NaN,
    with a log line, and no warning. Log-normalised expression (``shift=None``) keeps finite
    fold changes; the ranking itself is the same."""
    import logging
    import warnings

    from geovae.tools.markers import log_normalised, rank_markers

    a = counts_with_markers(n=300)
    x = log_normalised(a.X)
    if shift is not None:  # standardised; 100: shifted above any log1p expression
        x = (x - x.mean(0)) / x.std(0) + shift
    a.X = x.astype(np.float32)
    logger = logging.getLogger("geovae")  # the CLI's tests may have stopped propagation
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="geovae"), warnings.catch_warnings():
            warnings.simplefilter("error")
            assert rank_markers(a) is not None
    finally:
        logger.removeHandler(caplog.handler)
    result = a.uns["rank_genes_groups"]
    assert [result["names"][g][0] for g in ("0", "1", "2")] == ["g0", "g1", "g2"]
    folds = np.array([result["logfoldchanges"][g] for g in ("0", "1", "2")], dtype=float)
    said = sorted({r.getMessage() for r in caplog.records  # each record once, both handlers
                   if "no log2 fold changes" in r.getMessage()})
    if shift is None:
        assert np.isfinite(folds).all() and folds[:, 0].min() > 2 and not said
    else:
        assert np.isnan(folds).all() and len(said) == 1, said
        assert ("negative values" if shift == 0 else "values up to 1") in said[0], said
    # the dot plot's dot size: cells expressing (> 0) on expression; on a table that is no
    # expression, cells above the feature's median (> 0 is everything at shift 100)
    dots = rank_markers(a)["dotplot"]
    assert dots["fraction_of"] == ("expressing" if shift is None else "above_median")
    genes = list(dots["genes"])
    for k in range(3):
        own = dots["fraction"][k, genes.index(f"g{k}")]
        rest = np.delete(dots["fraction"][:, genes.index(f"g{k}")], k)
        if shift is None:  # Poisson(2) elsewhere: most cells of every cluster express it
            assert own == 1.0 and rest.min() > 0.8, (k, own, rest)
        else:  # at shift 100 "> 0" would be 1.0 everywhere
            assert own > 0.9 and rest.max() < 0.6, (shift, k, own, rest)


@pytest.mark.parametrize("fraction_of", ["expressing", "above_median"])
def test_dot_figure_says_what_the_dots_count(fraction_of: str) -> None:
    """The dot plot's legend and colour bar name what the dots show: cells expressing and
    mean expression, or on a table that is no expression cells above the median and the
    mean value (review F41: the colour bar said "mean expression" on tables)."""
    import matplotlib.pyplot as plt

    from geovae.report.names import dot_figure

    dots = {"groups": ["0", "1"], "genes": ["a", "b"], "fraction_of": fraction_of,
            "fraction": np.array([[0.9, 0.1], [0.2, 0.8]]),
            "mean": np.array([[2.0, 0.1], [0.3, 1.5]])}
    fig = dot_figure(dots, {})
    legend = fig.axes[0].get_legend().get_title().get_text()
    bar = fig.axes[1].get_ylabel()
    plt.close(fig)
    median = fraction_of == "above_median"
    assert legend == ("cells above median" if median else "cells expressing"), legend
    assert bar.startswith("mean value" if median else "mean expression"), bar
