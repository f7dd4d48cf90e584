"""Model-ready arrays for one AnnData under a `DataSpec`: features aligned by name, covariate
and label codes. Done once per AnnData per run; the sources read minibatches from the result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

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
from geovae.errors import InputError

if TYPE_CHECKING:
    from geovae.data.spec import DataSpec


@dataclass
class Prepared:
    """Model-ready arrays for one AnnData under a `DataSpec`."""

    X: np.ndarray | sp.csr_matrix  # (n_cells, n_features) float32, features in spec order
    batch: np.ndarray  # (n_cells, n_covariate_keys) integer codes
    labels: np.ndarray  # (n_cells,) integer codes, -1 where unlabelled
    n_missing_features: int = 0
    missing_features: list[str] = field(default_factory=list)
    n_extra_features: int = 0  # features of the data unknown to the model (dropped)

    @property
    def n_obs(self) -> int:
        return self.X.shape[0]


def match_features(adata: ad.AnnData, spec: DataSpec, new_data: bool
                   ) -> tuple[np.ndarray, list[str]]:
    """(column of each model feature in ``adata`` or -1, the missing features' names); no
    shared feature, or any missing one when ``new_data`` is False, is an `InputError`."""
    idx = adata.var_names.get_indexer(spec.features)
    missing = [g for g, i in zip(spec.features, idx, strict=True) if i < 0]
    if len(missing) == len(spec.features):
        raise InputError(
            f"the data shares no feature names with the model's {len(spec.features)} features "
            f"(model: {', '.join(spec.features[:3])}...; data: "
            f"{', '.join(map(str, adata.var_names[:3]))}...); check that both use the same "
            "gene identifiers"
        )
    if missing and not new_data:
        raise InputError(f"{len(missing)} model features missing from the data, e.g. "
                         f"{missing[:3]}")
    return idx, missing


def prepare(adata: ad.AnnData, spec: DataSpec, *, new_data: bool = False) -> Prepared:
    """Align ``adata`` to ``spec`` (features by name), check it and return model-ready arrays.

    With ``new_data`` missing features are filled with zeros and reported, extra features are
    dropped; no shared feature is an error.
    """
    from geovae.data.h5 import is_backed, prepare_backed

    if is_backed(adata):
        return prepare_backed(adata, spec, new_data=new_data)
    check_unique_features(adata)
    X = get_matrix(adata, spec.layer)
    idx, missing = match_features(adata, spec, new_data)
    if missing:
        present = idx >= 0
        cols = X[:, idx[present]]
        if sp.issparse(X):
            cols = sp.csr_matrix(cols)
            X = sp.csr_matrix((cols.data, np.flatnonzero(present)[cols.indices], cols.indptr),
                              shape=(X.shape[0], len(spec.features)))
        else:
            full = np.zeros((X.shape[0], len(spec.features)), dtype=np.float32)
            full[:, present] = cols
            X = full
    else:
        X = X[:, idx]
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    features = pd.Index(spec.features)
    check_finite(X, adata.obs_names, features)
    choose_likelihood(X, adata.obs_names, features, spec.likelihood)
    out = prepare_aligned(adata, spec, X)
    out.n_missing_features, out.missing_features = len(missing), missing
    out.n_extra_features = int(adata.n_vars - (len(spec.features) - len(missing)))
    return out


def prepare_aligned(adata: ad.AnnData, spec: DataSpec, X: np.ndarray | sp.csr_matrix
                    ) -> Prepared:
    """`Prepared` from a matrix already aligned to ``spec.features`` and checked."""
    batch = np.zeros((adata.n_obs, len(spec.batch_keys)), dtype=np.int64)
    for k, (key, cats) in enumerate(zip(spec.batch_keys, spec.batch_categories, strict=True)):
        check_obs_key(adata, key, "batch_key")
        values = category_strings(adata.obs[key])
        codes = pd.Index(cats).get_indexer(values)
        if (codes < 0).any():
            unknown = sorted(set(values[codes < 0]))[:3]
            raise InputError(f"batch key '{key}' has categories unseen in training: {unknown}; "
                             "the model only knows " + ", ".join(cats[:10]))
        batch[:, k] = codes
    labels = np.full(adata.n_obs, -1, dtype=np.int64)
    if spec.label_key is not None and spec.label_key in adata.obs.columns:
        col = adata.obs[spec.label_key]
        known = ~is_unlabelled(col)
        codes = pd.Index(spec.label_categories).get_indexer(category_strings(col))
        labels = np.where(known, codes, -1)
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=np.float32)
    return Prepared(X=X, batch=batch, labels=labels)
