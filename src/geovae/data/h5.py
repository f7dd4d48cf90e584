"""An on-disk ``.h5ad`` matrix read in row ranges (out-of-core mode: X is never loaded whole),
and how to tell that an AnnData stands for such a file.

`H5Matrix` reads ``X`` or ``layers/NAME`` of a file anndata wrote: CSR (``data``,
``indices``, ``indptr``) or dense. Columns are aligned to a `DataSpec`'s features by a column
map applied to each chunk (`align`); missing features stay zero. `geovae.data.setup` runs the
data checks over its chunks, the same checks as for a matrix in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.data.checks import did_you_mean
from geovae.errors import InputError, OptionError

#: stored values read per chunk in the streaming passes (about 8 MB of float32 + int32)
CHUNK_VALUES = 1 << 20
#: the in-memory path holds X several times (anndata's copy, float32 CSR, the source's
#: int64 index and float32 value tensors): about this many bytes per stored value
BYTES_PER_VALUE = 28
#: backed mode is automatic when the in-memory estimate exceeds this share of free memory
AUTO_SHARE = 0.5
#: the attribute naming the file of a matrix-less AnnData that stands for it
#: (`geovae.io.backed.read_backed`, `backed_view`)
BACKED_ATTR = "_geovae_backed_file"


def matrix_key(layer: str | None) -> str:
    """HDF5 path of the matrix a ``layer`` names in backed mode."""
    if layer in (None, "X"):
        return "X"
    if layer == "raw":
        raise OptionError("{layer='raw'} is not supported with {backed=True}: store the counts "
                          "as a layer (adata.layers['counts'] = ...) and use "
                          "{layer='counts'}, or {backed=False}", param="layer")
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
                              f"{avail or 'none'}); omit {{opt}} to use X"
                              + did_you_mean(str(layer), avail.split(", ") if avail else []),
                              param="layer")
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
                                 "write_h5ad, or {backed=False}")
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
    """Whether backed mode is automatic for ``path``: an ``.h5ad`` whose matrix, held in
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
