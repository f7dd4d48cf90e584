"""The one data path: from an AnnData to a checked `DataSpec` and model-ready arrays, the same
for a matrix in memory and one left on disk (backed).

A matrix is read through one interface, ``shape`` and ``chunks()`` (row blocks):
`MemoryMatrix` (the whole matrix as one chunk) or `geovae.data.h5.H5Matrix` (row ranges of
the file). `setup_data` and `prepare` check the names first (`check_names`), then run every
value check in one pass over the chunks (`scan`), so both kinds of input raise the same errors
in the same order; the likelihood ``auto`` means is decided by
`geovae.data.checks.auto_likelihood` alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from geovae.data.backed import BackedSource
from geovae.data.checks import (
    KINDS,
    auto_likelihood,
    auto_note,
    check_finite,
    check_label_column,
    check_layer,
    check_obs_key,
    check_unique_features,
    choose_likelihood,
    get_matrix,
    kind_of_values,
    wider_kind,
)
from geovae.data.h5 import H5Matrix, align, backed_path, is_backed
from geovae.data.prepare import BackedPrepared, Prepared, match_features, prepare_aligned
from geovae.data.sources import DataSource, InMemorySource
from geovae.data.spec import MIN_CELLS, MIN_FEATURES, DataSpec, obs_setup
from geovae.errors import InputError, OptionError
from geovae.nn.likelihoods import COUNT_LIKELIHOODS


class MemoryMatrix:
    """A matrix in memory behind the `H5Matrix` interface: one chunk, the whole matrix."""

    def __init__(self, X: np.ndarray | sp.csr_matrix):
        self.X, self.shape = X, tuple(X.shape)

    @property
    def n_obs(self) -> int:
        return self.shape[0]

    def chunks(self, values: int | None = None) -> Iterator[tuple[int, Any]]:
        yield 0, self.X


def open_matrix(adata: ad.AnnData, layer: str | None) -> MemoryMatrix | H5Matrix:
    """The matrix ``layer`` names (X, a layer or ``.raw``), in memory or on disk."""
    if not is_backed(adata):
        return MemoryMatrix(get_matrix(adata, layer))
    m = H5Matrix(backed_path(adata), layer)
    if m.shape != (adata.n_obs, adata.n_vars):
        raise InputError(f"{m.key} of '{m.path}' is {m.shape}, not cells x features "
                         f"({adata.n_obs} x {adata.n_vars}): re-save the file with anndata")
    return m


def check_names(adata: ad.AnnData, layer: str | None = None,
                batch_keys: list[str] | None = None, label_key: str | None = None,
                **other_keys: str | None) -> None:
    """Every layer and obs column a run names exists (with a close-match suggestion when not),
    and a label column holds labels; ``other_keys``: more label columns by parameter name
    (``eval_key=...``). Cheap: reads no matrix, so runs call it before logging anything."""
    for key in batch_keys or []:
        check_obs_key(adata, key, "batch_key")
    for param, key in {"label_key": label_key, **other_keys}.items():
        if key is not None:
            check_label_column(adata, key, param)
    if is_backed(adata):
        if layer not in (None, "X"):
            H5Matrix(backed_path(adata), layer).close()
    else:
        check_layer(adata, layer)


def scan(m: MemoryMatrix | H5Matrix, cells: pd.Index, features: pd.Index, likelihood: str,
         columns: np.ndarray | None = None, stats: bool = False, moments: bool = False
         ) -> dict[str, Any]:
    """One pass over ``m``: the value checks chunk by chunk (a later chunk's NaN may be
    reported after an earlier chunk's negative count), and the likelihood ``auto`` resolves
    to; with ``stats`` the number of cells and of features without a non-zero value, with
    ``moments`` the per-feature mean and standard deviation (float64 sums)."""
    n_f = len(features)
    kind = KINDS[0]
    empty_cells = 0
    nnz_feature = np.zeros(n_f, dtype=np.int64)
    s1, s2 = np.zeros(n_f), np.zeros(n_f)
    for start, block in m.chunks():
        block = align(block, columns, n_f)
        names = cells[start:start + block.shape[0]]
        check_finite(block, names, features)
        if likelihood != "auto":
            choose_likelihood(block, names, features, likelihood)
        elif kind == KINDS[0]:
            kind = wider_kind(kind, kind_of_values(block.data if sp.issparse(block)
                                                   else np.asarray(block).ravel()))
        if stats:
            nz = block != 0
            empty_cells += int((np.asarray(nz.sum(axis=1)).ravel() == 0).sum())
            nnz_feature += np.asarray(nz.sum(axis=0)).ravel().astype(np.int64)
        if moments:
            s1 += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
            sq = block.multiply(block) if sp.issparse(block) else np.square(block, dtype=np.float64)
            s2 += np.asarray(sq.sum(axis=0, dtype=np.float64)).ravel()
    n = max(m.n_obs, 1)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
    return {"likelihood": likelihood if likelihood != "auto" else auto_likelihood(kind),
            "kind": kind, "empty_cells": empty_cells, "nnz_feature": nnz_feature,
            "mean": mean, "std": std}


def setup_data(
    adata: ad.AnnData,
    likelihood: str = "auto",
    layer: str | None = None,
    batch_keys: list[str] | None = None,
    label_key: str | None = None,
    n_top_genes: int | None = None,
) -> tuple[DataSpec, Prepared, list[str]]:
    """Validate ``adata`` once and build the `DataSpec` and the prepared arrays (the matrix
    stays on disk for a backed AnnData).

    Returns (spec, prepared, notes): notes are one-line facts for the user (the likelihood
    chosen, features selected, empty cells or features).
    """
    backed = is_backed(adata)
    if adata.n_obs < MIN_CELLS or adata.n_vars < MIN_FEATURES:
        raise InputError(f"need at least {MIN_CELLS} cells and {MIN_FEATURES} features to fit a "
                         f"model, got {adata.n_obs} x {adata.n_vars}: give more data")
    if n_top_genes is not None and backed:
        raise OptionError("{opt} is not supported with {backed=True} yet: select the features "
                          "first (e.g. scanpy's highly_variable_genes on a subsample, then "
                          "write adata[:, genes]) or {backed=False}", param="n_top_genes")
    if n_top_genes is not None and n_top_genes < 1:
        raise OptionError("{opt} must be at least 1", param="n_top_genes")
    check_names(adata, layer, batch_keys, label_key)
    check_unique_features(adata)
    if likelihood != "auto":  # a known name, before any value is read
        choose_likelihood(np.zeros(0, np.float32), adata.obs_names, adata.var_names, likelihood)
    batch_keys, categories, labels = obs_setup(adata, batch_keys, label_key)
    m = open_matrix(adata, layer)
    found = scan(m, adata.obs_names, adata.var_names, likelihood.lower(), stats=True,
                 moments=backed)
    chosen = found["likelihood"]
    notes = [f"likelihood {auto_note(found['kind'])}"] if likelihood == "auto" else []
    notes += _empty_notes(found, adata.n_obs)
    if backed:
        notes.append(f"backed: {m.key} read from disk in chunks, never loaded whole")
    features = list(map(str, adata.var_names))
    X = m.X if isinstance(m, MemoryMatrix) else None
    if n_top_genes is not None:
        if n_top_genes >= len(features):
            notes.append(f"n_top_genes={n_top_genes} >= the {len(features)} features: all "
                         "features are used")
        else:
            features = select_genes(adata, X, chosen, n_top_genes)
            notes.append(f"{len(features)} highly variable features selected")
    if X is not None and len(features) < adata.n_vars:
        X = X[:, adata.var_names.get_indexer(features)]
    center = scale = None
    if chosen == "gaussian":
        mean, std = (found["mean"], found["std"]) if X is None else _moments(X)
        center, scale = mean.tolist(), np.where(std > 1e-8, std, 1.0).tolist()
    spec = DataSpec(features=features, likelihood=chosen, layer=layer, batch_keys=batch_keys,
                    batch_categories=categories, label_key=label_key, label_categories=labels,
                    center=center, scale=scale)
    if X is not None:
        return spec, prepare_aligned(adata, spec, X), notes
    out = prepare_aligned(adata, spec, np.zeros((0, 0), np.float32))
    return spec, BackedPrepared(X=m, batch=out.batch, labels=out.labels,
                                n_features=adata.n_vars), notes


def prepare(adata: ad.AnnData, spec: DataSpec, *, new_data: bool = False) -> Prepared:
    """Align ``adata`` to ``spec`` (features by name), check it and return model-ready arrays
    (the matrix stays on disk for a backed AnnData).

    With ``new_data`` missing features are filled with zeros and reported, extra features are
    dropped; no shared feature is an error.
    """
    check_names(adata, batch_keys=spec.batch_keys)
    check_unique_features(adata)
    m = open_matrix(adata, spec.layer)
    idx, missing = match_features(adata, spec, new_data)
    facts = {"n_missing_features": len(missing), "missing_features": missing,
             "n_extra_features": int(adata.n_vars - (len(spec.features) - len(missing)))}
    features = pd.Index(spec.features)
    if isinstance(m, MemoryMatrix):
        X = _aligned(m.X, idx, missing, len(spec.features))
        scan(MemoryMatrix(X), adata.obs_names, features, spec.likelihood)
        out = prepare_aligned(adata, spec, X)
        out.n_missing_features, out.missing_features = len(missing), missing
        out.n_extra_features = facts["n_extra_features"]
        return out
    columns = np.full(adata.n_vars, -1, dtype=np.int64)
    columns[idx[idx >= 0]] = np.flatnonzero(idx >= 0)
    if np.array_equal(columns, np.arange(adata.n_vars)):
        columns = None
    scan(m, adata.obs_names, features, spec.likelihood, columns)
    out = prepare_aligned(adata, spec, np.zeros((0, 0), np.float32))
    return BackedPrepared(X=m, batch=out.batch, labels=out.labels, columns=columns,
                          n_features=len(spec.features), **facts)


def _aligned(X: np.ndarray | sp.csr_matrix, idx: np.ndarray, missing: list[str],
             n_features: int) -> np.ndarray | sp.csr_matrix:
    """The columns ``idx`` of ``X`` (-1: a missing feature, filled with zeros)."""
    if missing:
        present = idx >= 0
        cols = X[:, idx[present]]
        if sp.issparse(X):
            cols = sp.csr_matrix(cols)
            return sp.csr_matrix((cols.data, np.flatnonzero(present)[cols.indices],
                                  cols.indptr), shape=(X.shape[0], n_features))
        full = np.zeros((X.shape[0], n_features), dtype=np.float32)
        full[:, present] = cols
        return full
    X = X[:, idx]
    return sp.csr_matrix(X) if sp.issparse(X) else X


def _moments(X: np.ndarray | sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of a matrix in memory."""
    mean = np.asarray(X.mean(axis=0)).ravel()
    sq = X.multiply(X).mean(axis=0) if sp.issparse(X) else (X**2).mean(axis=0)
    return mean, np.sqrt(np.maximum(np.asarray(sq).ravel() - mean**2, 0))


def _empty_notes(found: dict[str, Any], n_obs: int) -> list[str]:
    """Refuse an all-zero matrix; name all-zero cells and features (kept: they are valid)."""
    if found["empty_cells"] == n_obs:
        raise InputError("every value of the data is zero: check the layer ({layer}) or the "
                         "file")
    notes = []
    if found["empty_cells"]:
        notes.append(f"{found['empty_cells']} cells have no non-zero value (kept)")
    if (found["nnz_feature"] == 0).any():
        notes.append(f"{int((found['nnz_feature'] == 0).sum())} features are zero in every "
                     "cell (kept)")
    return notes


def select_genes(adata: ad.AnnData, X: Any, likelihood: str, n_top_genes: int) -> list[str]:
    """Highly variable features via scanpy (on log-normalised copies of counts)."""
    import scanpy as sc

    tmp = ad.AnnData(X=X.copy(), obs=pd.DataFrame(index=adata.obs_names),
                     var=pd.DataFrame(index=adata.var_names))
    if likelihood in COUNT_LIKELIHOODS:
        sc.pp.normalize_total(tmp, target_sum=1e4)
        sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return list(tmp.var_names[tmp.var["highly_variable"].to_numpy()])


def make_source(prepared: Prepared, n_categories: list[int], device: torch.device
                ) -> DataSource:
    """The source for prepared data: `InMemorySource`, or `BackedSource` for a matrix on
    disk (`BackedPrepared`)."""
    if isinstance(prepared, BackedPrepared):
        return BackedSource(prepared, n_categories, device)
    return InMemorySource(prepared, n_categories, device)
