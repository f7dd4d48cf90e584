"""Reading inputs: .h5ad, CSV/TSV tables (optionally gzipped) and 10x Genomics files (.h5 and
Matrix Market folders, see `geovae.io.tenx`), with clear errors."""

from __future__ import annotations

import csv
import gzip
import io
import os
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geovae.errors import InputError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}


def _suffixes(path: Path) -> tuple[str, bool]:
    """Return the data suffix (lower case) and whether the file is gzipped."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), gz


def input_stem(path: str | os.PathLike) -> str:
    """File name without its data suffixes: ``pbmc.csv.gz`` -> ``pbmc``; a folder's name."""
    name = Path(path).name
    if Path(path).is_dir():
        return name
    for suffix in (".gz",):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    for suffix in (".h5ad", ".h5", *TABLE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def input_format(path: str | os.PathLike) -> str:
    """``h5ad``, ``table``, ``10x-h5`` or ``10x-mtx`` (what `read` reads ``path`` as)."""
    from geovae.io.tenx import is_mtx_name

    p = Path(path)
    suffix, gz = _suffixes(p)
    if p.is_dir() or is_mtx_name(p.name):
        return "10x-mtx"
    if suffix == ".h5" and not gz:
        return "10x-h5"
    return "h5ad" if suffix == ".h5ad" else "table"


def check_readable(path: str | os.PathLike) -> Path:
    """Fail with a clear message if ``path`` is missing, empty, or a folder that is not a 10x
    Matrix Market folder."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file '{p}' does not exist: check the path")
    if p.is_dir():
        from geovae.io.tenx import mtx_files

        mtx_files(p)
        return p
    if p.stat().st_size == 0:
        raise InputError(f"input file '{p}' is empty (0 bytes): give a non-empty .h5ad or CSV file")
    return p


def read(path: str | os.PathLike, obs_columns: list[str] | tuple[str, ...] = (),
         keys: list[str] | tuple[str, ...] = (), backed: bool = False) -> ad.AnnData:
    """Read a ``.h5ad``, a CSV/TSV (optionally ``.gz``) file, a 10x Genomics ``.h5`` or a 10x
    Matrix Market folder (or its ``matrix.mtx(.gz)``) into AnnData.

    Tables have one row per sample; numeric columns become features (``X``); non-numeric
    columns and the columns named in ``obs_columns`` (batch, labels, covariates: whatever their
    type) become ``obs``, and so do the columns in ``keys`` where present (the batch and label
    columns a run names). A first column with an empty header (R's ``write.csv``, pandas'
    ``to_csv``) or with unique non-numeric values becomes ``obs_names``. The separator is
    sniffed when it does not match the extension. Duplicated cell names are made unique, with
    a warning. ``backed``: an ``.h5ad`` only, its matrices left on disk
    (`geovae.io.backed.read_backed`).
    """
    from geovae.io import tenx

    p = check_readable(path)
    suffix, gz = _suffixes(p)
    fmt = input_format(p)
    if backed and (fmt != "h5ad" or gz):
        raise InputError(f"{{backed=True}} reads .h5ad files only, not '{p.name}' ({fmt}): "
                         "convert it once (geovae fit reads it in memory; or anndata's "
                         "write_h5ad) or use {backed=False}")
    if backed:
        from geovae.io.backed import read_backed

        adata = read_backed(p)
    elif fmt == "10x-mtx":
        adata = tenx.read_mtx(p)
    elif fmt == "10x-h5":
        adata = tenx.read_h5(p)
    elif suffix == ".h5ad" and not gz:
        adata = _read_h5ad(p)
    elif suffix in TABLE_SUFFIXES:
        adata = _read_table(p, suffix, gz, tuple(obs_columns), tuple(keys))
    else:
        raise InputError(
            f"unsupported input format '{''.join(p.suffixes) or p.name}': "
            "give a .h5ad file, a .csv/.tsv table (optionally .gz), a 10x .h5 file or a 10x "
            "Matrix Market folder"
        )
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"'{p}' holds no data ({adata.n_obs} cells x {adata.n_vars} features)")
    if not adata.obs_names.is_unique:
        n_dup = int(adata.obs_names.duplicated().sum())
        warnings.warn(f"{n_dup} duplicated cell names in '{p}' were made unique "
                      "(suffixes -1, -2, ...)", stacklevel=2)
        adata.obs_names_make_unique()
    return adata


def _read_h5ad(p: Path) -> ad.AnnData:
    try:
        with warnings.catch_warnings():  # geovae names duplicated names itself, in one line
            warnings.filterwarnings("ignore", message="Variable names are not unique")
            warnings.filterwarnings("ignore", message="Observation names are not unique")
            adata = ad.read_h5ad(p)
    except Exception as exc:  # h5py/anndata raise many types for corrupt files
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise InputError(
            f"cannot read '{p}' as .h5ad (corrupt or truncated file?): {reason}; "
            "re-export it with anndata's write_h5ad"
        ) from exc
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise InputError(f"'{p}' holds no data ({adata.n_obs} cells x {adata.n_vars} features)")
    return adata


def _open_text(p: Path, gz: bool) -> io.TextIOBase:
    if gz:
        return io.TextIOWrapper(gzip.open(p, "rb"), encoding="utf-8", newline="")
    return open(p, encoding="utf-8", newline="")


def _sniff_separator(head: str, expected: str | None, p: Path) -> str:
    """The separator of a table: the extension's, unless the header line says otherwise."""
    first = head.splitlines()[0] if head else ""
    counts = {sep: first.count(sep) for sep in (",", "\t", ";")}
    found = max(counts, key=counts.get)
    if expected is not None and (counts[expected] > 0 or counts[found] == 0):
        return expected
    if expected is not None:
        names = {",": "commas", "\t": "tabs", ";": "semicolons"}
        warnings.warn(f"'{p.name}' is separated by {names[found]}, not by {names[expected]} "
                      "as its extension says: read it with " + names[found], stacklevel=3)
    return found


def _read_table(p: Path, suffix: str, gz: bool, obs_columns: tuple[str, ...],
                keys: tuple[str, ...] = ()) -> ad.AnnData:
    sep = TABLE_SUFFIXES[suffix]
    try:
        with _open_text(p, gz) as fh:
            head = fh.read(65536)
            sep = _sniff_separator(head, sep, p)
        with _open_text(p, gz) as fh:
            reader = csv.reader(fh, delimiter=sep)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise InputError(f"'{p}' has no header line: the first line must name the columns")
            n_fields = len(header)
            n_rows = 0
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                n_rows += 1
                if len(row) != n_fields:
                    raise InputError(
                        f"ragged table '{p}': line {lineno} has {len(row)} fields but the header "
                        f"has {n_fields}; every row needs the same number of columns"
                    )
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise InputError(f"cannot read '{p}' as a text table: {exc}") from exc
    except csv.Error as exc:
        raise InputError(f"cannot parse '{p}' as a table: {exc}") from exc
    if n_rows == 0:
        raise InputError(f"table '{p}' has a header but no data rows")
    df = pd.read_csv(p, sep=sep, compression="gzip" if gz else None, dtype=str,
                     keep_default_na=False)
    present = tuple(k for k in keys if k in df.columns and k not in obs_columns)
    return table_to_anndata(df, source=str(p), obs_columns=obs_columns + present)


_MISSING = {"", "na", "nan", "null", "none"}


def table_to_anndata(df: pd.DataFrame, source: str = "table",
                     obs_columns: tuple[str, ...] = ()) -> ad.AnnData:
    """Split a string-typed table into numeric features and obs columns, with checks."""
    names = list(df.columns)
    missing = [c for c in obs_columns if c not in names]
    if missing:
        from geovae.errors import OptionError

        raise OptionError(f"column(s) {missing} of {{opt}} are not in {source} (columns: "
                          f"{', '.join(map(str, names[:10]))}...)", param="obs_columns")
    first = names[0]
    index = None
    first_values = df[first]
    unnamed = not str(first).strip() or str(first).startswith("Unnamed: 0")
    if first not in obs_columns and first_values.is_unique and (
            unnamed or not _mostly_numeric(first_values)):
        index = first_values.astype(str).values
        names = names[1:]
    features: dict[str, np.ndarray] = {}
    obs: dict[str, pd.Series] = {}
    for name in names:
        col = df[name]
        if name in obs_columns:
            obs[str(name)] = col.astype("category")
            continue
        numeric = pd.to_numeric(col.where(~col.str.strip().str.lower().isin(_MISSING)),
                                errors="coerce")
        present = ~col.str.strip().str.lower().isin(_MISSING)
        bad = present & numeric.isna()
        n_present = int(present.sum())
        if n_present and not bad.any():
            features[name] = numeric.to_numpy(dtype=np.float64)
        elif n_present and int(bad.sum()) <= max(1, n_present // 2) and (n_present - bad.sum()) > 0:
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"column '{name}' in {source} is numeric except for value "
                f"'{col.iloc[row]}' in data row {row + 1} (line {row + 2}); "
                "fix or remove that value"
            )
        else:
            obs[str(name) if str(name).strip() else f"column{len(obs)}"] = col.astype("category")
    if not features:
        raise InputError(f"{source} has no numeric feature columns: rows must be samples, "
                         "columns numeric features")
    if "_index" in obs:
        raise InputError(f"column '_index' in {source} is a name AnnData reserves (it cannot "
                         "be written to .h5ad): rename that column")
    X = np.column_stack(list(features.values())).astype(np.float32)
    obs_df = pd.DataFrame(obs)
    obs_df.index = pd.Index(index if index is not None else [str(i) for i in range(len(df))])
    adata = ad.AnnData(X=X, obs=obs_df, var=pd.DataFrame(index=[str(n) for n in features]))
    adata.obs_names_make_unique()
    return adata


def _mostly_numeric(col: pd.Series) -> bool:
    numeric = pd.to_numeric(col, errors="coerce")
    return bool(numeric.notna().mean() > 0.5)
