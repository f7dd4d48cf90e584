"""Checks on the data a user gives: the matrix, its values, and the obs columns named."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.errors import InputError, OptionError
from geovae.nn.likelihoods import COUNT_LIKELIHOODS, LIKELIHOODS

UNLABELLED = {"", "nan", "na", "none", "unknown", "unlabeled", "unlabelled", "?"}


def get_matrix(adata: ad.AnnData, layer: str | None) -> np.ndarray | sp.csr_matrix:
    """Return ``X``, ``layers[layer]`` or, for ``layer="raw"`` without such a layer,
    ``adata.raw`` restricted to ``adata.var_names`` (in their order), as float32 CSR (sparse
    input) or dense array."""
    if layer in (None, "X"):
        X = adata.X
    elif layer in adata.layers:
        X = adata.layers[layer]
    elif layer == "raw" and adata.raw is not None:
        X = _raw_matrix(adata)
    else:
        avail = ", ".join(adata.layers.keys()) or "none"
        raw = "; .raw: --layer raw" if adata.raw is not None else ""
        if layer == "raw":
            raise OptionError(f"layer 'raw' not found: the AnnData has no .raw and no layer "
                              f"named raw (available layers: {avail}); omit --layer to use X")
        raise OptionError(f"layer '{layer}' not found (available layers: {avail}{raw}); "
                          "omit --layer to use X")
    if X is None:
        raise InputError("the AnnData has no X matrix: give the counts in X or name a --layer")
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def _raw_matrix(adata: ad.AnnData) -> np.ndarray | sp.spmatrix:
    """``adata.raw.X`` for the features of ``adata`` (raw usually holds more features)."""
    raw = adata.raw
    if raw.var_names.equals(adata.var_names):
        return raw.X
    if not raw.var_names.is_unique:
        raise InputError("--layer raw: the feature names of .raw are not unique; put the "
                         "counts in a layer instead and use --layer NAME")
    idx = raw.var_names.get_indexer(adata.var_names)
    if (idx < 0).any():
        missing = adata.var_names[idx < 0]
        raise InputError(f"--layer raw: {len(missing)} features of X are not in .raw (e.g. "
                         f"'{missing[0]}'); put the counts in a layer instead "
                         "(adata.layers['counts'] = ...) and use --layer counts")
    X = raw.X
    return X[:, idx]


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
        raise OptionError(f"unknown {{opt}} '{likelihood}': choose auto, "
                          + ", ".join(LIKELIHOODS), param="likelihood")
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


def check_obs_key(adata: ad.AnnData, key: str, param: str) -> None:
    """``key`` must be a column of ``adata.obs`` (``param`` names the option that gave it)."""
    if key not in adata.obs.columns:
        avail = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise OptionError(f"{{opt}} '{key}' is not a column of obs (available: {avail})",
                          param=param)


def is_unlabelled(values: pd.Series) -> np.ndarray:
    """True where a label is missing, NaN or a placeholder such as 'unknown'."""
    s = values.astype(object)
    return (s.isna() | s.astype(str).str.strip().str.lower().isin(UNLABELLED)).to_numpy()


def check_unique_features(adata: ad.AnnData) -> None:
    """Feature names must be unique to be matched by name."""
    if not adata.var_names.is_unique:
        dup = adata.var_names[adata.var_names.duplicated()][0]
        raise InputError(f"feature names are not unique (e.g. '{dup}'): run "
                         "adata.var_names_make_unique() first")


def category_strings(values: pd.Series) -> np.ndarray:
    """Category names of a covariate or label column as strings, the same whether the column
    holds 0/1, 0.0/1.0 or "0"/"1": integral numbers are written without a decimal point."""
    s = pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(s.cat.categories.dtype) if len(s.cat.categories) else s.astype(object)
    if pd.api.types.is_bool_dtype(s):
        return s.astype(str).to_numpy()
    if pd.api.types.is_numeric_dtype(s):
        v = s.to_numpy(dtype=float)
        integral = np.isfinite(v) & (np.mod(v, 1) == 0)
        out = s.astype(str).to_numpy().astype(object)
        out[integral] = v[integral].astype(np.int64).astype(str)
        return out.astype(str)
    out = s.astype(str).to_numpy()
    numeric = pd.to_numeric(pd.Series(out), errors="coerce").to_numpy()
    if np.isfinite(numeric).all() and (np.mod(numeric, 1) == 0).all():
        return numeric.astype(np.int64).astype(str)  # "1.0" in one file and "1" in another
    return out
