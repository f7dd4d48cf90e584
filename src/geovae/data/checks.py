"""Checks on the data a user gives: the matrix, its values, and the obs columns named."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from typing import Any

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
        raise layer_error(adata, layer)
    if X is None:
        raise InputError("the AnnData has no X matrix: give the counts in X or name a {layer}")
    if sp.issparse(X):
        return sp.csr_matrix(X, dtype=np.float32)
    return np.asarray(X, dtype=np.float32)


def _raw_matrix(adata: ad.AnnData) -> np.ndarray | sp.spmatrix:
    """``adata.raw.X`` for the features of ``adata`` (raw usually holds more features)."""
    raw = adata.raw
    if raw.var_names.equals(adata.var_names):
        return raw.X
    if not raw.var_names.is_unique:
        raise InputError("{layer='raw'}: the feature names of .raw are not unique; put the "
                         "counts in a layer instead and name it with {layer}")
    idx = raw.var_names.get_indexer(adata.var_names)
    if (idx < 0).any():
        missing = adata.var_names[idx < 0]
        raise InputError(f"{{layer='raw'}}: {len(missing)} features of X are not in .raw (e.g. "
                         f"'{missing[0]}'); put the counts in a layer instead "
                         "(adata.layers['counts'] = ...) and use {layer='counts'}")
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


#: what a matrix's values are, from narrowest to widest (NaN/Inf: `check_finite` refuses)
KINDS = ("counts", "non-negative", "signed", "non-finite")
#: values looked at per piece when a matrix's kind is read piece by piece
KIND_CHUNK = 10_000_000


def kind_of_values(vals: np.ndarray) -> str:
    """``counts`` (non-negative integers; also no values), ``non-negative`` (e.g.
    log-normalised), ``signed`` (e.g. scaled) or ``non-finite`` (NaN or Inf somewhere)."""
    if vals.size and not np.isfinite(vals).all():
        return "non-finite"
    with np.errstate(invalid="ignore"):
        if vals.size and vals.min() < 0:
            return "signed"
        if vals.size and np.any(np.mod(vals, 1) != 0):
            return "non-negative"
    return "counts"


def wider_kind(a: str, b: str) -> str:
    """The kind of two pieces of one matrix together."""
    return max(a, b, key=KINDS.index)


def _pieces(X: Any, limit: int | None = None) -> Iterator[np.ndarray]:
    """Stored values of a matrix (all, or about the first ``limit``), a piece at a time; a
    matrix on disk (anything with ``chunks``) is read chunk by chunk."""
    if hasattr(X, "chunks"):
        seen = 0
        for _, block in X.chunks():
            vals = _values(block)
            yield vals
            seen += vals.size
            if limit is not None and seen >= limit:
                return
        return
    if sp.issparse(X):
        data = X.data if limit is None else X.data[:limit]
        for i in range(0, len(data), KIND_CHUNK):
            yield np.asarray(data[i:i + KIND_CHUNK])
        return
    rows = X.shape[0] if limit is None else max(1, min(X.shape[0], limit // max(X.shape[1], 1)))
    step = max(1, KIND_CHUNK // max(X.shape[1], 1))
    for i in range(0, rows, step):
        yield np.asarray(X[i:min(i + step, rows)]).ravel()


def value_kind(X: Any, limit: int | None = None) -> str:
    """The `KINDS` entry of a matrix (in memory or on disk), from all of its values or about
    the first ``limit``."""
    kind = "counts"
    for piece in _pieces(X, limit):
        kind = wider_kind(kind, kind_of_values(piece))
        if kind in KINDS[2:]:
            break
    return kind


def auto_likelihood(kind: str) -> str:
    """The likelihood ``auto`` means for data of this kind: the one place it is decided
    (counts: negative binomial; anything else: Gaussian)."""
    return "nb" if kind == "counts" else "gaussian"


def auto_note(kind: str, detail: bool = False) -> str:
    """What ``auto`` resolved to for data of this kind, and why (``detail``: which kind of
    non-count values)."""
    chosen = auto_likelihood(kind)
    why = "non-negative integer counts" if chosen == "nb" else "non-count values"
    if detail and chosen != "nb":
        why = f"{kind} {why}"
    return f"auto → {chosen} ({why})"


def choose_likelihood(
    X: np.ndarray | sp.csr_matrix, cells: pd.Index, features: pd.Index, likelihood: str
) -> str:
    """Resolve ``auto`` (`auto_likelihood`) and check that the data suits the requested
    likelihood."""
    likelihood = likelihood.lower()
    if likelihood == "auto":
        return auto_likelihood(kind_of_values(_values(X)))
    if likelihood not in LIKELIHOODS:
        raise OptionError(f"unknown {{opt}} '{likelihood}': choose auto, "
                          + ", ".join(LIKELIHOODS), param="likelihood")
    vals = _values(X)
    if likelihood in COUNT_LIKELIHOODS and vals.size:
        if vals.min() < 0:
            i, j = _locate(X, int(np.argmin(vals)))
            raise InputError(
                f"negative value {vals.min():g} at cell '{cells[i]}', feature "
                f"'{features[j]}' cannot be a count for {{likelihood='{likelihood}'}}: "
                "give raw counts ({layer}) or use {likelihood='gaussian'}"
            )
        frac = np.mod(vals, 1)
        if np.any(frac != 0):
            i, j = _locate(X, int(np.flatnonzero(frac)[0]))
            raise InputError(
                f"non-integer value {vals[np.flatnonzero(frac)[0]]:g} at cell "
                f"'{cells[i]}', feature '{features[j]}': {{likelihood='{likelihood}'}} "
                "needs raw counts; name the counts layer with {layer} or use "
                "{likelihood='gaussian'}"
            )
    if likelihood == "bernoulli" and vals.size and (vals.min() < 0 or vals.max() > 1):
        raise InputError("{likelihood='bernoulli'} needs values in [0, 1]; "
                         f"found range [{vals.min():g}, {vals.max():g}]")
    return likelihood


def did_you_mean(name: str, choices: Iterable[Any]) -> str:
    """``"; did you mean NAME?"`` for the choice closest to ``name`` ignoring case (difflib),
    or ``""`` when none is close."""
    by_lower: dict[str, str] = {}
    for choice in map(str, choices):
        by_lower.setdefault(choice.lower(), choice)
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]}?" if close else ""


def check_obs_key(adata: ad.AnnData, key: str, param: str) -> None:
    """``key`` must be a column of ``adata.obs`` (``param`` names the option that gave it);
    the error suggests the closest column."""
    if key not in adata.obs.columns:
        avail = ", ".join(map(str, adata.obs.columns[:20])) or "none"
        raise OptionError(f"{{opt}} '{key}' is not a column of obs (available: {avail})"
                          + did_you_mean(key, adata.obs.columns), param=param)


#: a numeric obs column with more distinct values than this is a measurement, not labels
MAX_NUMERIC_LABELS = 100


def check_label_column(adata: ad.AnnData, key: str, param: str) -> None:
    """``key`` must be an obs column of labels: present, and not a numeric measurement with
    hundreds of distinct values (``n_counts``), which would make hundreds of classes."""
    check_obs_key(adata, key, param)
    col = adata.obs[key]
    if (isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(col)
            or not pd.api.types.is_numeric_dtype(col)):
        return
    n = int(col.nunique())
    if n > MAX_NUMERIC_LABELS:
        labels = [str(c) for c in adata.obs.columns
                  if isinstance(adata.obs[c].dtype, pd.CategoricalDtype)
                  or adata.obs[c].dtype == object][:5]
        hint = f" (categorical columns: {', '.join(labels)})" if labels else ""
        raise OptionError(f"{{opt}} '{key}' is a numeric column with {n} distinct values, not "
                          f"labels: give a column of cell types or groups{hint}, or make it "
                          f"categorical first (adata.obs['{key}'].astype('category'))",
                          param=param)


def layer_error(adata: ad.AnnData, layer: str) -> OptionError:
    """The error for a ``layer`` that ``adata`` does not have, with the closest name."""
    avail = ", ".join(adata.layers.keys()) or "none"
    if layer == "raw":
        return OptionError(f"layer 'raw' not found: the AnnData has no .raw and no layer "
                           f"named raw (available layers: {avail}); omit {{opt}} to use X",
                           param="layer")
    raw = "; .raw: {layer='raw'}" if adata.raw is not None else ""
    choices = [*adata.layers.keys(), *(["raw"] if adata.raw is not None else [])]
    return OptionError(f"layer '{layer}' not found (available layers: {avail}{raw}); omit "
                       "{opt} to use X" + did_you_mean(layer, choices), param="layer")


def check_layer(adata: ad.AnnData, layer: str | None) -> None:
    """``layer`` names X, a layer of ``adata`` or (``raw``) its ``.raw``."""
    if layer in (None, "X") or layer in adata.layers or (layer == "raw"
                                                          and adata.raw is not None):
        return
    raise layer_error(adata, layer)


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
