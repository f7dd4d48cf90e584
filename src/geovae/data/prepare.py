"""Model-ready arrays for one AnnData under a `DataSpec`: features aligned by name, covariate
and label codes, and the matrix in memory (`Prepared`) or on disk (`BackedPrepared`). Built
once per AnnData per run by `geovae.data.setup`; the sources read minibatches from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.data.checks import category_strings, is_unlabelled
from geovae.data.h5 import H5Matrix
from geovae.data.spec import DataSpec
from geovae.errors import InputError


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


def prepare_aligned(adata: ad.AnnData, spec: DataSpec, X: np.ndarray | sp.csr_matrix
                    ) -> Prepared:
    """`Prepared` from a matrix already aligned to ``spec.features`` and checked, for an
    AnnData whose covariate columns `geovae.data.setup.check_names` found."""
    batch = np.zeros((adata.n_obs, len(spec.batch_keys)), dtype=np.int64)
    for k, (key, cats) in enumerate(zip(spec.batch_keys, spec.batch_categories, strict=True)):
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


class BackedPrepared(Prepared):
    """`Prepared` whose ``X`` is an `H5Matrix` on disk (with a column map to the features)."""

    def __init__(self, X: H5Matrix, batch: np.ndarray, labels: np.ndarray, n_features: int,
                 columns: np.ndarray | None = None, **facts: Any):
        super().__init__(X=X, batch=batch, labels=labels, **facts)  # type: ignore[arg-type]
        self.n_features, self.columns = n_features, columns
