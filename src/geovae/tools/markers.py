"""Names for clusters: each cluster's majority known label and its top marker genes.

Marker genes are scanpy's ``sc.tl.rank_genes_groups`` (t-test, each cluster against the rest)
on log-normalised expression (counts scaled to 10,000 per cell, then log1p; a matrix that
is not counts is taken as already normalised), computed on a seeded subsample of at most
`MAX_CELLS` cells so that the cost stays bounded on large data. The result is stored under
scanpy's usual key, so ``sc.pl.rank_genes_groups(adata)`` draws it. Its log2 fold changes
(``logfoldchanges``) are left NaN, with a log line, where a matrix that is not counts cannot be
log1p expression (`fold_change_problem`: negative values, as in a standardised table, or
values above `LOG1P_MAX`): there scanpy's ratio of expm1 of the means means nothing.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from geovae import _keys as K
from geovae.errors import Note

log = logging.getLogger("geovae.tools")

#: cells rank_genes_groups sees at most (a seeded subsample beyond)
MAX_CELLS = 5000
#: genes ranked and stored per cluster
N_RANKED = 50
#: marker genes named per cluster (record, report)
N_NAMED = 5
#: where the ranking goes: scanpy's default key, unless the input holds its own there
KEY = "rank_genes_groups"
KEY_OWN = "geovae_rank_genes_groups"
#: the largest value a matrix not of counts may hold for scanpy's log2 fold changes: they read
#: the matrix as natural-log log1p expression (expm1 of each group's mean), and e^25, about
#: 7e10 counts in a cell, is more than any cell holds
LOG1P_MAX = 25.0


def majority_labels(clusters: Any, labels: Any) -> tuple[list[str], list[str], list[float]]:
    """(cluster, majority label, its share of the cluster's labelled cells) per cluster;
    unlabelled cells ("unknown", "nan", ...) are left out ("" where none is labelled)."""
    from geovae.report.palette import categories, is_missing

    c = pd.Series(np.asarray(clusters)).astype(str).to_numpy()
    y = pd.Series(np.asarray(labels)).astype(str).to_numpy()
    names, majority, share = [], [], []
    known = ~np.array([is_missing(v) for v in y], dtype=bool)
    for cl in categories(pd.Series(clusters)):
        here = y[(c == cl) & known]
        names.append(cl)
        if not len(here):
            majority.append("")
            share.append(0.0)
            continue
        values, counts = np.unique(here, return_counts=True)
        best = int(np.argmax(counts))
        majority.append(str(values[best]))
        share.append(float(counts[best] / counts.sum()))
    return names, majority, share


def expression(adata: Any, layer: str | None) -> tuple[Any, str]:
    """The matrix to rank genes on and how it was made: ``layer`` (or X), log-normalised
    when it holds counts."""
    if layer in (None, "", "X"):
        x, where = adata.X, "X"
    elif layer in adata.layers:
        x, where = adata.layers[layer], f"layers['{layer}']"
    else:  # layer="raw": .raw's values for these features (what the model was fitted on)
        from geovae.data.checks import get_matrix

        x, where = get_matrix(adata, layer), ".raw"
    sample = x[: min(200, x.shape[0])]
    values = sample.data if hasattr(sample, "data") and not isinstance(sample, np.ndarray) \
        else np.asarray(sample).ravel()
    values = np.asarray(values, dtype=float)
    if values.size and np.all(values >= 0) and np.allclose(values, np.round(values)):
        return x, f"log1p of {where} scaled to 10,000 counts per cell"
    return x, f"{where} as it is (not counts: taken as log-normalised)"


def log_normalised(x: Any, target: float = 1e4) -> Any:
    """log1p of each cell's counts scaled to ``target`` in all (scanpy's normalize_total +
    log1p, done here: scanpy's CSR kernel fails when numba's JIT is off, as pipelines' tests
    and some clusters set NUMBA_DISABLE_JIT); cells without counts stay zero."""
    import scipy.sparse as sp

    totals = np.asarray(x.sum(axis=1), dtype=np.float64).ravel()
    scale = np.divide(target, totals, out=np.zeros_like(totals), where=totals > 0)
    if sp.issparse(x):
        out = sp.csr_matrix(sp.diags(scale) @ sp.csr_matrix(x, dtype=np.float64))
        out.data = np.log1p(out.data)
        return out.astype(np.float32)
    return np.log1p(np.asarray(x, dtype=np.float64) * scale[:, None]).astype(np.float32)


def rank_markers(adata: Any, groupby: str = K.CLUSTER, layer: str | None = None,
                 seed: int = 0, max_cells: int = MAX_CELLS) -> dict[str, Any] | None:
    """``sc.tl.rank_genes_groups`` of ``obs[groupby]`` on a seeded subsample, stored in
    ``adata.uns`` under `KEY` (`KEY_OWN` where the input holds a ranking of its own there).
    Returns what was done (key, cells, expression) or None where it cannot run."""
    import anndata as ad
    import scanpy as sc

    from geovae.data.h5 import is_backed

    if is_backed(adata) or getattr(adata, "X", None) is None:
        return None
    x, how = expression(adata, layer)
    rng = np.random.default_rng(seed)
    idx = np.arange(adata.n_obs) if adata.n_obs <= max_cells else \
        np.sort(rng.choice(adata.n_obs, max_cells, replace=False))
    groups = adata.obs[groupby].astype(str).to_numpy()[idx]
    sizes = pd.Series(groups).value_counts()
    ranked = [g for g in categories_of(adata.obs[groupby]) if sizes.get(g, 0) >= 2]
    if len(ranked) < 2:
        return None
    genes = adata.var_names
    if not genes.is_unique:  # e.g. 10x gene symbols never made unique
        genes = ad.utils.make_index_unique(pd.Index(genes).astype(str))
        log.info("marker genes: duplicated gene names made unique for the ranking "
                 "(suffixes -1, -2, ...)")
    sub = ad.AnnData(X=x[idx].astype(np.float32), obs=pd.DataFrame(
        {groupby: pd.Categorical(groups)}, index=adata.obs_names[idx]),
        var=pd.DataFrame(index=genes))
    log.info(f"marker genes: scanpy's rank_genes_groups (t-test) of {len(ranked)} clusters on "
             f"{len(idx):,} cells")
    if how.startswith("log1p"):
        sub.X = log_normalised(sub.X)
    no_folds = fold_change_problem(sub.X, how)
    with warnings.catch_warnings(), np.errstate(**({"all": "ignore"} if no_folds else {})):
        warnings.simplefilter("ignore", pd.errors.PerformanceWarning)  # column by column
        sc.tl.rank_genes_groups(sub, groupby, groups=ranked, reference="rest",
                                method="t-test", n_genes=min(N_RANKED, adata.n_vars),
                                use_raw=False)
    result = sub.uns["rank_genes_groups"]
    if no_folds:
        for group in result["logfoldchanges"].dtype.names:
            result["logfoldchanges"][group] = np.nan
        log.info(f"marker genes: no log2 fold changes (logfoldchanges left NaN): {no_folds}, "
                 "and scanpy's are a ratio of expm1 of log1p expression; ranked by the t-test")
    result["params"]["geovae"] = True
    dots = dot_plot_data(sub, groupby, ranked, result, expression=not no_folds)
    own = adata.uns.get(KEY)
    key = KEY_OWN if isinstance(own, dict) and not own.get("params", {}).get("geovae") \
        else KEY
    adata.uns[key] = result
    return {"key": key, "n_cells": int(len(idx)), "expression": how, "seed": int(seed),
            "method": "t-test", "dotplot": dots}


def fold_change_problem(x: Any, how: str) -> str | None:
    """Why scanpy's log2 fold changes mean nothing on the ranked matrix ``x`` (made as
    ``how`` says, `expression`), or None: a matrix that is not counts with negative values or
    values above `LOG1P_MAX` is no log1p expression. Log-normalised counts always pass."""
    if how.startswith("log1p"):
        return None
    low, high = float(x.min()), float(x.max())
    if low < 0:
        return f"the matrix has negative values (down to {low:.3g}; standardised?)"
    if high > LOG1P_MAX:
        return f"the matrix has values up to {high:.3g}, no natural-log expression"
    return None


def dot_plot_data(sub: Any, groupby: str, groups: list[str], result: Any,
                  per_group: int = 2, most: int = 40,
                  expression: bool = True) -> dict[str, Any]:
    """What a dot plot of the markers draws: the top ``per_group`` genes of each group (at
    most ``most`` genes), and per group and gene the fraction of cells expressing it (above
    0) and the mean (log-normalised) expression. A matrix that is no expression
    (``expression=False``, e.g. a standardised table, where "above 0" is "above the mean" or
    everything) counts the cells above the feature's median over all ranked cells instead
    (``fraction_of``)."""
    genes = list(dict.fromkeys(str(g) for grp in groups
                               for g in result["names"][grp][:per_group]))[:most]
    cols = sub.var_names.get_indexer(genes)
    x = sub.X[:, cols]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    labels = sub.obs[groupby].astype(str).to_numpy()
    above = 0.0 if expression else np.median(x, axis=0)
    fraction = np.array([(x[labels == g] > above).mean(axis=0) for g in groups])
    mean = np.array([x[labels == g].mean(axis=0) for g in groups])
    return {"groups": groups, "genes": genes, "fraction": fraction.astype(np.float32),
            "mean": mean.astype(np.float32),
            "fraction_of": "expressing" if expression else "above_median"}


def top_markers(adata: Any, key: str, n: int = N_NAMED) -> dict[str, list[str]]:
    """The first ``n`` ranked genes of each group in ``uns[key]``."""
    names = adata.uns[key]["names"]
    return {str(g): [str(v) for v in names[g][:n]] for g in names.dtype.names}


def name_clusters(adata: Any, label_key: str | None = None, layer: str | None = None,
                  seed: int = 0, max_cells: int = MAX_CELLS) -> dict[str, Any]:
    """Name each cluster of ``obs['geovae_cluster']``: its majority label (``label_key``)
    and top marker genes; writes ``obs['geovae_cluster_name']`` ("3: CD14 Mono", or the
    first marker without labels) and the ranking (`rank_markers`). Returns the record's
    ``cluster_names`` field."""
    clusters = adata.obs[K.CLUSTER]
    names, majority, share = (majority_labels(clusters, adata.obs[label_key])
                              if label_key and label_key in adata.obs else
                              (categories_of(clusters), [], []))
    ranking = rank_markers(adata, K.CLUSTER, layer, seed, max_cells)
    markers = top_markers(adata, ranking["key"]) if ranking else {}
    record: dict[str, Any] = {"cluster": names,
                              "markers": [", ".join(markers.get(c, [])) for c in names]}
    if majority:
        record.update(label_key=label_key, label=majority, label_share=share)
    if ranking:
        record["dotplot"] = ranking.pop("dotplot")
        record["markers_from"] = ranking
    else:
        log.info(Note("marker genes: skipped (the expression matrix is on disk "
                      "({backed=True}) or there are fewer than two clusters of two cells)"))
    shown = majority or [(markers.get(c) or [""])[0] for c in names]
    full = {c: f"{c}: {m}" if m else c for c, m in zip(names, shown, strict=True)}
    adata.obs[K.CLUSTER_NAME] = pd.Categorical(clusters.astype(str).map(full),
                                               categories=[full[c] for c in names])
    return record


def categories_of(values: Any) -> list[str]:
    from geovae.report.palette import categories

    return categories(pd.Series(values))
