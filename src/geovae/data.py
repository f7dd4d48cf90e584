"""From an AnnData to what the model trains on: feature set, likelihood, covariates, checks.

`DataSpec` is everything needed to turn *any* AnnData into the same tensors again (it is saved
with the model), so `embed` on new data matches genes by name, never by position.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.errors import InputError, OptionError

LIKELIHOODS = ("nb", "zinb", "gaussian", "bernoulli")
COUNT_LIKELIHOODS = ("nb", "zinb")
UNLABELLED = {"", "nan", "na", "none", "unknown", "unlabeled", "unlabelled", "?"}


@dataclass
class DataSpec:
    """How to build model inputs from an AnnData; JSON-serialisable."""

    genes: list[str]
    likelihood: str
    layer: str | None = None
    batch_keys: list[str] = field(default_factory=list)
    batch_categories: list[list[str]] = field(default_factory=list)
    label_key: str | None = None
    label_categories: list[str] = field(default_factory=list)
    center: list[float] | None = None
    scale: list[float] | None = None

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def n_batch(self) -> int:
        """Width of the one-hot covariate block (sum over covariates)."""
        return sum(len(c) for c in self.batch_categories)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(**d)


def get_matrix(adata: ad.AnnData, layer: str | None) -> np.ndarray | sp.csr_matrix:
    """Return ``X`` or ``layers[layer]`` as float32 CSR (sparse input) or dense array."""
    if layer in (None, "X"):
        X = adata.X
    else:
        if layer not in adata.layers:
            avail = ", ".join(adata.layers.keys()) or "none"
            raise OptionError(f"layer '{layer}' not found (available layers: {avail}); "
                              "omit --layer to use X")
        X = adata.layers[layer]
    if X is None:
        raise InputError("the AnnData has no X matrix: give the counts in X or name a --layer")
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def _values(X: np.ndarray | sp.csr_matrix) -> np.ndarray:
    return X.data if sp.issparse(X) else np.asarray(X).ravel()


def check_finite(X: np.ndarray | sp.csr_matrix, cells: pd.Index, features: pd.Index) -> None:
    """Raise if any entry is NaN or infinite, naming the first offending cell and feature."""
    vals = _values(X)
    bad = ~np.isfinite(vals)
    if bad.any():
        i, j = _locate(X, int(np.flatnonzero(bad)[0]))
        kind = "NaN" if np.isnan(vals[bad][0]) else "infinite"
        raise InputError(
            f"{int(bad.sum())} NaN/Inf values in the data (first: {kind} at cell "
            f"'{cells[i]}', feature '{features[j]}'); remove or impute them"
        )


def _locate(X: np.ndarray | sp.csr_matrix, flat: int) -> tuple[int, int]:
    if sp.issparse(X):
        row = int(np.searchsorted(X.indptr, flat, side="right") - 1)
        return row, int(X.indices[flat])
    return divmod(flat, X.shape[1])


def is_count_data(X: np.ndarray | sp.csr_matrix) -> bool:
    vals = _values(X)
    return bool(vals.size == 0 or (vals.min() >= 0 and np.all(np.mod(vals, 1) == 0)))


def choose_likelihood(
    X: np.ndarray | sp.csr_matrix, cells: pd.Index, features: pd.Index, likelihood: str
) -> str:
    """Resolve ``auto`` and check that the data suits the requested likelihood."""
    likelihood = likelihood.lower()
    if likelihood == "auto":
        return "nb" if is_count_data(X) else "gaussian"
    if likelihood not in LIKELIHOODS:
        raise OptionError(f"unknown likelihood '{likelihood}': choose auto, "
                          + ", ".join(LIKELIHOODS))
    vals = _values(X)
    if likelihood in COUNT_LIKELIHOODS and vals.size:
        if vals.min() < 0:
            i, j = _locate(X, int(np.argmin(vals)))
            raise InputError(
                f"negative value {vals.min():g} at cell '{cells[i]}', feature "
                f"'{features[j]}' cannot be a count for --likelihood {likelihood}: "
                "give raw counts (--layer) or use --likelihood gaussian"
            )
        frac = np.mod(vals, 1)
        if np.any(frac != 0):
            i, j = _locate(X, int(np.flatnonzero(frac)[0]))
            raise InputError(
                f"non-integer value {vals[np.flatnonzero(frac)[0]]:g} at cell "
                f"'{cells[i]}', feature '{features[j]}': --likelihood "
                f"{likelihood} needs raw counts; name the counts layer with --layer or use "
                "--likelihood gaussian"
            )
    if likelihood == "bernoulli" and vals.size and (vals.min() < 0 or vals.max() > 1):
        raise InputError("--likelihood bernoulli needs values in [0, 1]; "
                         f"found range [{vals.min():g}, {vals.max():g}]")
    return likelihood


def check_obs_key(adata: ad.AnnData, key: str, option: str) -> None:
    if key not in adata.obs.columns:
        avail = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise OptionError(f"{option} '{key}' is not a column of obs (available: {avail})")


def is_unlabelled(values: pd.Series) -> np.ndarray:
    """True where a label is missing, NaN or a placeholder such as 'unknown'."""
    s = values.astype(object)
    return (s.isna() | s.astype(str).str.strip().str.lower().isin(UNLABELLED)).to_numpy()


def setup_data(
    adata: ad.AnnData,
    likelihood: str = "auto",
    layer: str | None = None,
    batch_keys: list[str] | None = None,
    label_key: str | None = None,
    n_top_genes: int | None = None,
) -> tuple[DataSpec, str]:
    """Validate ``adata`` and build the `DataSpec`; returns it and a one-line summary."""
    if adata.n_obs < 2 or adata.n_vars < 1:
        raise InputError(f"need at least 2 cells and 1 feature, got {adata.n_obs} x "
                         f"{adata.n_vars}")
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][0]
        raise InputError(f"feature names are not unique (e.g. '{dup}'): run "
                         "adata.var_names_make_unique() first")
    X = get_matrix(adata, layer)
    check_finite(X, adata.obs_names, adata.var_names)
    chosen = choose_likelihood(X, adata.obs_names, adata.var_names, likelihood)
    notes = []
    if likelihood == "auto":
        notes.append(f"likelihood auto -> {chosen} ("
                     + ("non-negative integer counts" if chosen == "nb" else "non-count values")
                     + ")")
    batch_keys = list(batch_keys or [])
    categories = []
    for key in batch_keys:
        check_obs_key(adata, key, "--batch-key")
        col = adata.obs[key]
        if col.isna().any():
            raise InputError(f"--batch-key '{key}' has missing values in "
                             f"{int(col.isna().sum())} cells; fill them first")
        categories.append(sorted(map(str, pd.unique(col.astype(str)))))
    labels: list[str] = []
    if label_key is not None:
        check_obs_key(adata, label_key, "--label-key")
        col = adata.obs[label_key]
        known = col[~is_unlabelled(col)].astype(str)
        labels = sorted(pd.unique(known))
        if not labels:
            raise InputError(f"--label-key '{label_key}' has no labelled cells")
    genes = list(map(str, adata.var_names))
    if n_top_genes is not None and n_top_genes < len(genes):
        genes = select_genes(adata, X, chosen, n_top_genes)
        notes.append(f"{len(genes)} highly variable features selected")
    center = scale = None
    if chosen == "gaussian":
        idx = adata.var_names.get_indexer(genes)
        Xs = X[:, idx]
        mean = np.asarray(Xs.mean(axis=0)).ravel()
        sq = Xs.multiply(Xs).mean(axis=0) if sp.issparse(Xs) else (Xs**2).mean(axis=0)
        std = np.sqrt(np.maximum(np.asarray(sq).ravel() - mean**2, 0))
        center, scale = mean.tolist(), np.where(std > 1e-8, std, 1.0).tolist()
    spec = DataSpec(genes=genes, likelihood=chosen, layer=layer, batch_keys=batch_keys,
                    batch_categories=categories, label_key=label_key, label_categories=labels,
                    center=center, scale=scale)
    return spec, "; ".join(notes)


def select_genes(adata: ad.AnnData, X, likelihood: str, n_top_genes: int) -> list[str]:
    """Highly variable features via scanpy (on log-normalised copies of counts)."""
    import scanpy as sc

    if n_top_genes < 1:
        raise OptionError("--n-top-genes must be at least 1")
    tmp = ad.AnnData(X=X.copy(), obs=pd.DataFrame(index=adata.obs_names),
                     var=pd.DataFrame(index=adata.var_names))
    if likelihood in COUNT_LIKELIHOODS:
        sc.pp.normalize_total(tmp, target_sum=1e4)
        sc.pp.log1p(tmp)
    sc.pp.highly_variable_genes(tmp, n_top_genes=n_top_genes, flavor="seurat")
    return list(tmp.var_names[tmp.var["highly_variable"].to_numpy()])


@dataclass
class Prepared:
    """Model-ready arrays for one AnnData under a `DataSpec`."""

    X: np.ndarray | sp.csr_matrix
    batch: np.ndarray  # (n_cells, n_covariates) integer codes
    labels: np.ndarray  # (n_cells,) integer codes, -1 where unlabelled
    n_missing_genes: int = 0
    missing_genes: list[str] = field(default_factory=list)


def prepare(adata: ad.AnnData, spec: DataSpec, *, new_data: bool = False) -> Prepared:
    """Align ``adata`` to ``spec`` (genes by name) and return model-ready arrays.

    With ``new_data`` the genes are matched by name: missing genes are filled with zeros and
    reported, extra genes are dropped; no shared gene is an error.
    """
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][0]
        raise InputError(f"feature names are not unique (e.g. '{dup}'): run "
                         "adata.var_names_make_unique() first")
    X = get_matrix(adata, spec.layer)
    idx = adata.var_names.get_indexer(spec.genes)
    missing = [g for g, i in zip(spec.genes, idx, strict=True) if i < 0]
    if len(missing) == len(spec.genes):
        raise InputError(
            f"the data shares no feature names with the model's {len(spec.genes)} features "
            f"(model: {', '.join(spec.genes[:3])}...; data: {', '.join(adata.var_names[:3])}...)"
            "; check that both use the same gene identifiers"
        )
    if missing and not new_data:
        raise InputError(f"{len(missing)} model features missing from the data, e.g. "
                         f"{missing[:3]}")
    if missing:
        present = idx >= 0
        cols = X[:, idx[present]]
        if sp.issparse(X):
            cols = sp.csr_matrix(cols)
            X = sp.csr_matrix((cols.data, np.flatnonzero(present)[cols.indices], cols.indptr),
                              shape=(X.shape[0], len(spec.genes)))
        else:
            full = np.zeros((X.shape[0], len(spec.genes)), dtype=np.float32)
            full[:, present] = cols
            X = full
    else:
        X = X[:, idx]
    if sp.issparse(X):
        X = sp.csr_matrix(X)
    genes = pd.Index(spec.genes)
    check_finite(X, adata.obs_names, genes)
    choose_likelihood(X, adata.obs_names, genes, spec.likelihood)
    batch = np.zeros((adata.n_obs, len(spec.batch_keys)), dtype=np.int64)
    for k, (key, cats) in enumerate(zip(spec.batch_keys, spec.batch_categories, strict=True)):
        check_obs_key(adata, key, "batch key")
        values = adata.obs[key].astype(str).to_numpy()
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
        codes = pd.Index(spec.label_categories).get_indexer(col.astype(str).to_numpy())
        labels = np.where(known, codes, -1)
    return Prepared(X=X, batch=batch, labels=labels, n_missing_genes=len(missing),
                    missing_genes=missing)
