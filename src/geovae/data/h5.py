"""An on-disk ``.h5ad`` matrix read in row ranges, and the data checks and `DataSpec` setup done
in one streaming pass over it (out-of-core mode: X is never loaded whole).

`H5Matrix` reads ``X`` or ``layers/NAME`` of a file anndata wrote: CSR (``data``,
``indices``, ``indptr``) or dense. Columns are aligned to a `DataSpec`'s features by a column
map applied to each chunk; missing features stay zero. The checks are those of the in-memory
path (`geovae.data.checks`), run chunk by chunk, so the same problems raise the same errors
(a later chunk's NaN may be reported after an earlier chunk's negative count).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.data.checks import (
    check_finite,
    check_unique_features,
    choose_likelihood,
    is_count_data,
)
from geovae.data.prepare import Prepared, match_features, prepare_aligned
from geovae.errors import InputError, OptionError

if TYPE_CHECKING:
    from geovae.data.spec import DataSpec

#: stored values read per chunk in the streaming passes (about 8 MB of float32 + int32)
CHUNK_VALUES = 1 << 20
#: the in-memory path holds X several times (anndata's copy, float32 CSR, the source's
#: int64 index and float32 value tensors): about this many bytes per stored value
BYTES_PER_VALUE = 28
#: ``--backed`` is automatic when the in-memory estimate exceeds this share of free memory
AUTO_SHARE = 0.5
#: the attribute naming the file of a matrix-less AnnData that stands for it
#: (`geovae.io.backed.read_backed`, `backed_view`)
BACKED_ATTR = "_geovae_backed_file"


def matrix_key(layer: str | None) -> str:
    """HDF5 path of the matrix a ``--layer`` names in backed mode."""
    if layer in (None, "X"):
        return "X"
    if layer == "raw":
        raise OptionError("--layer raw is not supported with --backed: store the counts as a "
                          "layer (adata.layers['counts'] = ...) and use --layer counts, or drop "
                          "--backed")
    return f"layers/{layer}"


class H5Matrix:
    """Rows of one matrix of an ``.h5ad`` file, read on demand (CSR or dense)."""

    def __init__(self, path: str | os.PathLike, layer: str | None = None):
        import h5py

        self.path, self.key = Path(path), matrix_key(layer)
        self.file = h5py.File(self.path, "r")
        if self.key not in self.file:
            avail = ", ".join(self.file["layers"].keys()) if "layers" in self.file else ""
            raise OptionError(f"layer '{layer}' not found in '{path}' (available layers: "
                              f"{avail or 'none'}); omit --layer to use X")
        node = self.file[self.key]
        if isinstance(node, h5py.Dataset):
            self.sparse = False
            self.shape = tuple(int(s) for s in node.shape)
            self.dense = node
        else:
            enc = node.attrs.get("encoding-type", "")
            enc = enc.decode() if isinstance(enc, bytes) else str(enc)
            if enc != "csr_matrix":
                raise InputError(f"'{path}' stores {self.key} as {enc or 'an unknown type'}; "
                                 "backed mode reads rows, so it needs CSR or dense: re-save it "
                                 "with adata.X = scipy.sparse.csr_matrix(adata.X) and "
                                 "write_h5ad, or drop --backed")
            self.sparse = True
            self.shape = tuple(int(s) for s in node.attrs["shape"])
            self.data, self.indices = node["data"], node["indices"]
            self.indptr = node["indptr"][:].astype(np.int64)  # n_obs + 1 offsets: small
        self.rows_read = 0  # rows read so far (for tests and benchmarks)

    @property
    def n_obs(self) -> int:
        return self.shape[0]

    @property
    def nnz(self) -> int:
        """Stored values (every entry for a dense matrix)."""
        return int(self.indptr[-1]) if self.sparse else self.shape[0] * self.shape[1]

    def read(self, start: int, stop: int) -> sp.csr_matrix | np.ndarray:
        """Rows ``start:stop`` as float32 CSR (sparse file) or dense array."""
        self.rows_read += stop - start
        if not self.sparse:
            return np.asarray(self.dense[start:stop], dtype=np.float32)
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        data = np.asarray(self.data[lo:hi], dtype=np.float32)
        indices = np.asarray(self.indices[lo:hi], dtype=np.int32)
        return sp.csr_matrix((data, indices, self.indptr[start:stop + 1] - lo),
                             shape=(stop - start, self.shape[1]))

    def chunks(self, values: int | None = None) -> Iterator[tuple[int, Any]]:
        """(first row, rows) over the whole matrix, about ``values`` (default `CHUNK_VALUES`)
        stored values at a time."""
        values = values or CHUNK_VALUES
        start = 0
        while start < self.n_obs:
            if self.sparse:
                stop = int(np.searchsorted(self.indptr, self.indptr[start] + values, "right"))
                stop = min(max(stop - 1, start + 1), self.n_obs)
            else:
                stop = min(self.n_obs, start + max(1, values // max(self.shape[1], 1)))
            yield start, self.read(start, stop)
            start = stop

    def close(self) -> None:
        self.file.close()


def align(block: Any, columns: np.ndarray | None, n_features: int) -> Any:
    """Columns of a chunk in feature order: ``columns[j]`` is file column j's feature, -1 to
    drop it; None when the file's columns are the features already."""
    if columns is None:
        return block
    if not sp.issparse(block):
        out = np.zeros((block.shape[0], n_features), dtype=np.float32)
        keep = columns >= 0
        out[:, columns[keep]] = block[:, keep]
        return out
    target = columns[block.indices]
    keep = target >= 0
    kept = np.concatenate([[0], np.cumsum(keep)])
    return sp.csr_matrix((block.data[keep], target[keep].astype(np.int32),
                          kept[block.indptr]), shape=(block.shape[0], n_features))


def backed_view(adata: ad.AnnData, obs: pd.DataFrame) -> ad.AnnData:
    """A matrix-less AnnData with ``obs`` replaced that stands for ``adata``'s file."""
    view = ad.AnnData(obs=obs, var=pd.DataFrame(index=adata.var_names))
    setattr(view, BACKED_ATTR, backed_path(adata))
    return view


def is_backed(adata: ad.AnnData) -> bool:
    """Whether ``adata``'s matrix is read from its file (geovae's or anndata's backed mode)."""
    return getattr(adata, BACKED_ATTR, None) is not None or bool(adata.isbacked)


def backed_path(adata: ad.AnnData) -> Path:
    """The file a backed AnnData's matrix is read from."""
    return Path(getattr(adata, BACKED_ATTR, None) or adata.filename)


def should_back(path: str | os.PathLike, layer: str | None = None,
                available: int | None = None) -> bool:
    """Whether ``--backed`` is automatic for ``path``: an ``.h5ad`` whose matrix, held in
    memory (`BYTES_PER_VALUE` per stored value), would take more than `AUTO_SHARE` of the
    available memory."""
    try:
        m = H5Matrix(path, layer)
    except Exception:  # noqa: BLE001 - not readable as backed: the in-memory reader reports it
        return False
    try:
        need = m.nnz * BYTES_PER_VALUE
    finally:
        m.close()
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return need > AUTO_SHARE * available


def scan(m: H5Matrix, cells: pd.Index, features: pd.Index, likelihood: str,
         columns: np.ndarray | None = None, stats: bool = False) -> dict[str, Any]:
    """One pass over ``m``: the in-memory checks chunk by chunk, and (``stats``) the
    likelihood ``auto`` resolves to, cells and features with no non-zero value, and the
    per-feature mean and standard deviation."""
    n_f = len(features)
    counts = True
    empty_cells = 0
    nnz_feature = np.zeros(n_f, dtype=np.int64)
    s1, s2 = np.zeros(n_f), np.zeros(n_f)
    for start, block in m.chunks():
        block = align(block, columns, n_f)
        names = cells[start:start + block.shape[0]]
        check_finite(block, names, features)
        if likelihood != "auto":
            choose_likelihood(block, names, features, likelihood)
        elif counts:
            counts = is_count_data(block)
        if stats:
            nz = block != 0
            empty_cells += int((np.asarray(nz.sum(axis=1)).ravel() == 0).sum())
            nnz_feature += np.asarray(nz.sum(axis=0)).ravel().astype(np.int64)
            s1 += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
            sq = block.multiply(block) if sp.issparse(block) else np.square(block, dtype=np.float64)
            s2 += np.asarray(sq.sum(axis=0, dtype=np.float64)).ravel()
    chosen = likelihood if likelihood != "auto" else ("nb" if counts else "gaussian")
    n = max(m.n_obs, 1)
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0))
    return {"likelihood": chosen, "empty_cells": empty_cells, "nnz_feature": nnz_feature,
            "mean": mean, "std": std}


def setup_backed(adata: ad.AnnData, likelihood: str = "auto", layer: str | None = None,
                 batch_keys: list[str] | None = None, label_key: str | None = None,
                 n_top_genes: int | None = None) -> tuple[DataSpec, Prepared, list[str]]:
    """`geovae.data.setup_data` for a backed AnnData: the checks in one streaming pass."""
    from geovae.data.spec import MIN_CELLS, MIN_FEATURES, DataSpec, obs_setup

    if adata.n_obs < MIN_CELLS or adata.n_vars < MIN_FEATURES:
        raise InputError(f"need at least {MIN_CELLS} cells and {MIN_FEATURES} features to fit a "
                         f"model, got {adata.n_obs} x {adata.n_vars}: give more data")
    if n_top_genes is not None:
        raise OptionError("{opt} is not supported with --backed yet: select the features "
                          "first (e.g. scanpy's highly_variable_genes on a subsample, then "
                          "write adata[:, genes]) or drop --backed", param="n_top_genes")
    check_unique_features(adata)
    if likelihood != "auto":
        choose_likelihood(np.zeros(0, np.float32), adata.obs_names, adata.var_names, likelihood)
    batch_keys, categories, labels = obs_setup(adata, batch_keys, label_key)
    m = H5Matrix(backed_path(adata), layer)
    if m.shape != (adata.n_obs, adata.n_vars):
        raise InputError(f"{m.key} of '{m.path}' is {m.shape}, not cells x features "
                         f"({adata.n_obs} x {adata.n_vars}): re-save the file with anndata")
    found = scan(m, adata.obs_names, adata.var_names, likelihood.lower(), stats=True)
    chosen = found["likelihood"]
    notes = []
    if likelihood == "auto":
        notes.append(f"likelihood auto → {chosen} ("
                     + ("non-negative integer counts" if chosen == "nb" else "non-count values")
                     + ")")
    if found["empty_cells"] == adata.n_obs:
        raise InputError("every value of the data is zero: check the layer (--layer) or the "
                         "file")
    if found["empty_cells"]:
        notes.append(f"{found['empty_cells']} cells have no non-zero value (kept)")
    if (found["nnz_feature"] == 0).any():
        notes.append(f"{int((found['nnz_feature'] == 0).sum())} features are zero in every "
                     "cell (kept)")
    notes.append(f"backed: {m.key} read from disk in chunks, never loaded whole")
    center = scale = None
    if chosen == "gaussian":
        std = found["std"]
        center, scale = found["mean"].tolist(), np.where(std > 1e-8, std, 1.0).tolist()
    spec = DataSpec(features=list(map(str, adata.var_names)), likelihood=chosen, layer=layer,
                    batch_keys=batch_keys, batch_categories=categories, label_key=label_key,
                    label_categories=labels, center=center, scale=scale)
    out = prepare_aligned(adata, spec, np.zeros((0, 0), np.float32))
    return spec, BackedPrepared(X=m, batch=out.batch, labels=out.labels,
                                 n_features=adata.n_vars), notes


def prepare_backed(adata: ad.AnnData, spec: DataSpec, *, new_data: bool = False) -> Prepared:
    """`geovae.data.prepare` for a backed AnnData: columns matched by name, checked in one
    streaming pass; the matrix stays on disk."""
    check_unique_features(adata)
    m = H5Matrix(backed_path(adata), spec.layer)
    idx, missing = match_features(adata, spec, new_data)
    columns = np.full(adata.n_vars, -1, dtype=np.int64)
    columns[idx[idx >= 0]] = np.flatnonzero(idx >= 0)
    if np.array_equal(columns, np.arange(adata.n_vars)):
        columns = None
    scan(m, adata.obs_names, pd.Index(spec.features), spec.likelihood, columns)
    out = prepare_aligned(adata, spec, np.zeros((0, 0), np.float32))
    return BackedPrepared(X=m, batch=out.batch, labels=out.labels, columns=columns,
                          n_features=len(spec.features),
                          n_missing_features=len(missing), missing_features=missing,
                          n_extra_features=int(adata.n_vars - (len(spec.features)
                                                               - len(missing))))


class BackedPrepared(Prepared):
    """`Prepared` whose ``X`` is an `H5Matrix` on disk (with a column map to the features)."""

    def __init__(self, X: H5Matrix, batch: np.ndarray, labels: np.ndarray, n_features: int,
                 columns: np.ndarray | None = None, **facts: Any):
        super().__init__(X=X, batch=batch, labels=labels, **facts)  # type: ignore[arg-type]
        self.n_features, self.columns = n_features, columns
