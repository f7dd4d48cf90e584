"""10x Genomics inputs: Cell Ranger's HDF5 file (``filtered_feature_bc_matrix.h5``) and Matrix
Market folders (``matrix.mtx(.gz)``, ``features.tsv(.gz)`` or ``genes.tsv(.gz)``,
``barcodes.tsv(.gz)``, optionally with a common prefix such as ``GSM123_``), read with
scanpy's readers where the folder has Cell Ranger's own layout (all gzipped with
features.tsv.gz, or all plain with genes.tsv) and with the same conventions otherwise.

Either way: cells are named by barcode, features by gene symbol (made unique, with a warning;
the IDs are in ``var['gene_ids']``), and only 'Gene Expression' features are kept when the
file has others (antibody capture, CRISPR guides), with a warning naming what was dropped.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geovae.errors import InputError

MTX = "matrix.mtx"
LAYOUT = ("a 10x Matrix Market folder holds matrix.mtx(.gz), features.tsv(.gz) (or "
          "genes.tsv(.gz)) and barcodes.tsv(.gz)")


def is_mtx_name(name: str) -> bool:
    return name.lower().endswith((MTX, MTX + ".gz"))


def mtx_files(path: Path) -> dict[str, Path]:
    """The matrix, features and barcodes files of a 10x folder (or of its matrix file)."""
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and is_mtx_name(p.name))
        if not found:
            raise InputError(f"input '{path}' is a folder without a matrix.mtx(.gz): give a "
                             ".h5ad, .csv/.tsv or 10x .h5 file, or a folder of 10x files ("
                             f"{LAYOUT})")
        prefixes = sorted({_prefix(p) for p in found})
        if len(prefixes) > 1:
            raise InputError(f"folder '{path}' holds several matrices ("
                             + ", ".join(p.name for p in found[:4])
                             + "): give one matrix file as INPUT")
        matrix = next((p for p in found if p.name.lower().endswith(".gz")), found[0])
    else:
        matrix = path
    prefix, folder = _prefix(matrix), matrix.parent
    files = {"matrix": matrix}
    for role, names in (("features", ("features.tsv", "genes.tsv")),
                        ("barcodes", ("barcodes.tsv",))):
        candidates = [folder / f"{prefix}{n}{gz}" for n in names for gz in (".gz", "")]
        present = [c for c in candidates if c.is_file()]
        if not present:
            raise InputError(f"'{matrix}' has no {prefix}{names[0]}(.gz)"
                             + (f" or {prefix}genes.tsv(.gz)" if role == "features" else "")
                             + f" beside it: {LAYOUT}")
        files[role] = present[0]
    return files


def _prefix(matrix: Path) -> str:
    name = matrix.name
    return name[: name.lower().rindex(MTX)]


def _standard(files: dict[str, Path]) -> bool:
    """Cell Ranger's layouts, the two scanpy's ``read_10x_mtx`` reads."""
    gz = {role: p.name.lower().endswith(".gz") for role, p in files.items()}
    legacy = files["features"].name.lower().startswith(_prefix(files["matrix"]).lower() + "genes")
    return (all(gz.values()) and not legacy) or (not any(gz.values()) and legacy)


def read_mtx(path: Path) -> ad.AnnData:
    """A 10x Matrix Market folder (or its matrix file) as cells x features."""
    files = mtx_files(path)
    where = files["matrix"]
    try:
        with _quiet_names():
            if _standard(files):
                import scanpy as sc

                prefix = _prefix(files["matrix"])
                adata = sc.read_10x_mtx(files["matrix"].parent, var_names="gene_symbols",
                                        make_unique=False, gex_only=False,
                                        prefix=prefix or None)
            else:
                adata = _read_parts(files)
    except InputError:
        raise
    except Exception as exc:  # scipy, pandas and anndata raise many types for bad files
        raise InputError(f"cannot read the 10x files of '{where}': {_reason(exc)}; "
                         f"{LAYOUT}, as Cell Ranger writes them") from exc
    return _conventions(adata, where)


def _read_parts(files: dict[str, Path]) -> ad.AnnData:
    """scanpy's conventions for folders its reader does not take (e.g. gunzipped files)."""
    import scipy.io
    import scipy.sparse as sp

    X = sp.csr_matrix(scipy.io.mmread(files["matrix"]).T, dtype=np.float32)
    genes = pd.read_csv(files["features"], sep="\t", header=None, dtype=str)
    barcodes = pd.read_csv(files["barcodes"], sep="\t", header=None, dtype=str)
    if X.shape != (len(barcodes), len(genes)):
        raise InputError(f"'{files['matrix'].name}' is {X.shape[1]} features x {X.shape[0]} "
                         f"cells but '{files['features'].name}' lists {len(genes)} features "
                         f"and '{files['barcodes'].name}' {len(barcodes)} barcodes: the files "
                         "do not belong together")
    var = pd.DataFrame({"gene_ids": genes[0].to_numpy()},
                       index=pd.Index(genes[1 if genes.shape[1] > 1 else 0].to_numpy()))
    if genes.shape[1] > 2:
        var["feature_types"] = genes[2].to_numpy()
    return ad.AnnData(X=X, obs=pd.DataFrame(index=barcodes[0].to_numpy()), var=var)


def read_h5(path: Path) -> ad.AnnData:
    """Cell Ranger's HDF5 matrix (v3 layout, or the legacy one with a single genome)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            top = set(f.keys())
    except OSError as exc:
        raise InputError(f"cannot read '{path}' as HDF5 (corrupt or truncated file?): "
                         f"{_reason(exc)}") from exc
    if {"X", "obs", "var"} <= top:
        raise InputError(f"'{path}' is an AnnData file, not a 10x .h5: rename it to .h5ad")
    if not top:
        raise InputError(f"'{path}' is an empty HDF5 file: give Cell Ranger's "
                         "filtered_feature_bc_matrix.h5")
    try:
        import scanpy as sc

        with _quiet_names():
            adata = sc.read_10x_h5(path, gex_only=False)
    except Exception as exc:  # scanpy raises bare Exceptions for missing datasets
        raise InputError(f"cannot read '{path}' as a 10x Genomics .h5 (Cell Ranger's "
                         f"filtered_feature_bc_matrix.h5): {_reason(exc)}") from exc
    return _conventions(adata, path)


def _conventions(adata: ad.AnnData, where: Path) -> ad.AnnData:
    """Keep Gene Expression features (when there are others), float32 CSR, unique names."""
    import scipy.sparse as sp

    types = adata.var.get("feature_types")
    if types is not None and (types == "Gene Expression").any() and \
            (types != "Gene Expression").any():
        others = sorted(set(types[types != "Gene Expression"]))
        n_other = int((types != "Gene Expression").sum())
        adata = adata[:, (types == "Gene Expression").to_numpy()].copy()
        warnings.warn(f"'{where.name}': kept the {adata.n_vars} Gene Expression features, "
                      f"dropped {n_other} others ({', '.join(others)})", stacklevel=3)
    if not sp.issparse(adata.X) or adata.X.dtype != np.float32:
        adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.var_names = adata.var_names.astype(str)
    adata.obs_names = adata.obs_names.astype(str)
    if not adata.var_names.is_unique:
        n_dup = int(adata.var_names.duplicated().sum())
        adata.var_names_make_unique()
        warnings.warn(f"{n_dup} duplicated gene symbols in '{where.name}' were made unique "
                      "(suffixes -1, -2, ...); the gene IDs are in var['gene_ids']",
                      stacklevel=3)
    return adata


@contextlib.contextmanager
def _quiet_names() -> Iterator[None]:
    """anndata's advice to make names unique: geovae does it, and says so."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Variable names are not unique")
        warnings.filterwarnings("ignore", message="Observation names are not unique")
        yield


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc
    text = str(cause).splitlines()[0][:160] if str(cause) else type(cause).__name__
    return text
