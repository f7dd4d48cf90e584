"""From an AnnData to what the model trains on: feature set, likelihood, covariates, checks.

`DataSpec` is everything needed to turn *any* AnnData into the same tensors again (it is saved
with the model), so `embed` on new data matches features by name, never by position.
`setup_data` validates the training data once and returns the spec with the prepared arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.data.checks import (
    category_strings,
    check_finite,
    check_obs_key,
    check_unique_features,
    choose_likelihood,
    get_matrix,
    is_unlabelled,
)
from geovae.data.prepare import Prepared, prepare_aligned
from geovae.errors import InputError, OptionError
from geovae.nn.likelihoods import COUNT_LIKELIHOODS

#: the smallest data geovae fits: fewer cells cannot give a neighbour graph and a held-out split
MIN_CELLS = 10
MIN_FEATURES = 2


@dataclass
class DataSpec:
    """How to build model inputs from an AnnData; JSON-serialisable."""

    features: list[str]
    likelihood: str
    layer: str | None = None
    batch_keys: list[str] = field(default_factory=list)
    batch_categories: list[list[str]] = field(default_factory=list)
    label_key: str | None = None
    label_categories: list[str] = field(default_factory=list)
    center: list[float] | None = None
    scale: list[float] | None = None

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_categories(self) -> list[int]:
        """Number of categories of each covariate key."""
        return [len(c) for c in self.batch_categories]

    @property
    def n_covariates(self) -> int:
        """Width of the one-hot covariate block (sum over covariate keys)."""
        return sum(self.n_categories)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """From `to_dict` output; model directories of geovae 0.1.0 say ``genes``."""
        d = dict(d)
        if "genes" in d and "features" not in d:
            d["features"] = d.pop("genes")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown data spec field(s) {unknown}")
        return cls(**d)


def setup_data(
    adata: ad.AnnData,
    likelihood: str = "auto",
    layer: str | None = None,
    batch_keys: list[str] | None = None,
    label_key: str | None = None,
    n_top_genes: int | None = None,
) -> tuple[DataSpec, Prepared, list[str]]:
    """Validate ``adata`` once and build the `DataSpec` and the prepared arrays.

    Returns (spec, prepared, notes): notes are one-line facts for the user (the likelihood
    chosen, features selected, empty cells or features).
    """
    from geovae.data.h5 import is_backed, setup_backed

    if is_backed(adata):
        return setup_backed(adata, likelihood, layer, batch_keys, label_key, n_top_genes)
    if adata.n_obs < MIN_CELLS or adata.n_vars < MIN_FEATURES:
        raise InputError(f"need at least {MIN_CELLS} cells and {MIN_FEATURES} features to fit a "
                         f"model, got {adata.n_obs} x {adata.n_vars}: give more data")
    check_unique_features(adata)
    X = get_matrix(adata, layer)
    check_finite(X, adata.obs_names, adata.var_names)
    chosen = choose_likelihood(X, adata.obs_names, adata.var_names, likelihood)
    notes = []
    if likelihood == "auto":
        notes.append(f"likelihood auto → {chosen} ("
                     + ("non-negative integer counts" if chosen == "nb" else "non-count values")
                     + ")")
    notes += _empty_notes(X)
    batch_keys, categories, labels = obs_setup(adata, batch_keys, label_key)
    features = list(map(str, adata.var_names))
    if n_top_genes is not None:
        if n_top_genes < 1:
            raise OptionError("{opt} must be at least 1", param="n_top_genes")
        if n_top_genes >= len(features):
            notes.append(f"n_top_genes={n_top_genes} >= the {len(features)} features: all "
                         "features are used")
        else:
            features = select_genes(adata, X, chosen, n_top_genes)
            notes.append(f"{len(features)} highly variable features selected")
    idx = adata.var_names.get_indexer(features)
    X = X[:, idx] if len(features) < adata.n_vars else X
    center = scale = None
    if chosen == "gaussian":
        mean = np.asarray(X.mean(axis=0)).ravel()
        sq = X.multiply(X).mean(axis=0) if sp.issparse(X) else (X**2).mean(axis=0)
        std = np.sqrt(np.maximum(np.asarray(sq).ravel() - mean**2, 0))
        center, scale = mean.tolist(), np.where(std > 1e-8, std, 1.0).tolist()
    spec = DataSpec(features=features, likelihood=chosen, layer=layer, batch_keys=batch_keys,
                    batch_categories=categories, label_key=label_key, label_categories=labels,
                    center=center, scale=scale)
    return spec, prepare_aligned(adata, spec, X), notes


def obs_setup(adata: ad.AnnData, batch_keys: list[str] | None, label_key: str | None
              ) -> tuple[list[str], list[list[str]], list[str]]:
    """(batch keys, their categories, label categories) of ``adata.obs``, checked."""
    batch_keys = list(batch_keys or [])
    categories = []
    for key in batch_keys:
        check_obs_key(adata, key, "batch_key")
        col = adata.obs[key]
        if col.isna().any():
            raise InputError(f"batch key '{key}' has missing values in "
                             f"{int(col.isna().sum())} cells; fill them first")
        categories.append(sorted(set(category_strings(col))))
    labels: list[str] = []
    if label_key is not None:
        check_obs_key(adata, label_key, "label_key")
        col = adata.obs[label_key]
        labels = sorted(set(category_strings(col[~is_unlabelled(col)])))
        if not labels:
            raise InputError(f"label key '{label_key}' has no labelled cells")
    return batch_keys, categories, labels


def _empty_notes(X: np.ndarray | sp.csr_matrix) -> list[str]:
    """Refuse an all-zero matrix; name all-zero cells and features (kept: they are valid)."""
    nonzero = (X != 0)
    per_cell = np.asarray(nonzero.sum(axis=1)).ravel()
    if not per_cell.any():
        raise InputError("every value of the data is zero: check the layer (--layer) or the "
                         "file")
    per_feature = np.asarray(nonzero.sum(axis=0)).ravel()
    notes = []
    if (per_cell == 0).any():
        notes.append(f"{int((per_cell == 0).sum())} cells have no non-zero value (kept)")
    if (per_feature == 0).any():
        notes.append(f"{int((per_feature == 0).sum())} features are zero in every cell (kept)")
    return notes


def select_genes(adata: ad.AnnData, X, likelihood: str, n_top_genes: int) -> list[str]:
    """Highly variable features via scanpy (on log-normalised copies of counts)."""
    import scanpy as sc

    tmp = ad.AnnData(X=X.copy(), obs=pd.DataFrame(index=adata.obs_names),
                     var=pd.DataFrame(index=adata.var_names))
    if likelihood in COUNT_LIKELIHOODS:
        sc.pp.normalize_total(tmp, target_sum=1e4)
        sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return list(tmp.var_names[tmp.var["highly_variable"].to_numpy()])
