"""Reading inputs (.h5ad, CSV/TSV, optionally gzipped) and writing outputs atomically."""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from geovae.errors import InputError, OptionError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}


def _suffixes(path: Path) -> tuple[str, bool]:
    """Return the data suffix (lower case) and whether the file is gzipped."""
    suffixes = [s.lower() for s in path.suffixes]
    gz = bool(suffixes) and suffixes[-1] == ".gz"
    if gz:
        suffixes = suffixes[:-1]
    return (suffixes[-1] if suffixes else ""), gz


def input_stem(path: str | os.PathLike) -> str:
    """File name without its data suffixes: ``pbmc.csv.gz`` -> ``pbmc``."""
    name = Path(path).name
    for suffix in (".gz",):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    for suffix in (".h5ad", *TABLE_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def check_readable(path: str | os.PathLike) -> Path:
    """Fail with a clear message if ``path`` is missing, a directory or empty."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"input file '{p}' does not exist: check the path")
    if p.is_dir():
        raise InputError(f"input '{p}' is a directory: give a .h5ad or .csv/.tsv file")
    if p.stat().st_size == 0:
        raise InputError(f"input file '{p}' is empty (0 bytes): give a non-empty .h5ad or CSV file")
    return p


def read(path: str | os.PathLike) -> ad.AnnData:
    """Read a ``.h5ad`` or CSV/TSV (optionally ``.gz``) file into AnnData.

    Tables have one row per sample; numeric columns become features (``X``), named non-numeric
    columns become ``obs``. A first non-numeric column with unique values becomes ``obs_names``.
    """
    p = check_readable(path)
    suffix, gz = _suffixes(p)
    if suffix == ".h5ad" and not gz:
        return _read_h5ad(p)
    if suffix in TABLE_SUFFIXES:
        return _read_table(p, suffix, gz)
    raise InputError(
        f"unsupported input format '{''.join(p.suffixes) or p.name}': "
        "give a .h5ad file or a .csv/.tsv table (optionally .gz)"
    )


def _read_h5ad(p: Path) -> ad.AnnData:
    try:
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


def _read_table(p: Path, suffix: str, gz: bool) -> ad.AnnData:
    sep = TABLE_SUFFIXES[suffix]
    try:
        with _open_text(p, gz) as fh:
            head = fh.read(65536)
            if sep is None:
                sep = "\t" if head.count("\t") > head.count(",") else ","
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
    return table_to_anndata(df, source=str(p))


_MISSING = {"", "na", "nan", "null", "none"}


def table_to_anndata(df: pd.DataFrame, source: str = "table") -> ad.AnnData:
    """Split a string-typed table into numeric features and obs columns, with checks."""
    names = list(df.columns)
    first = names[0]
    index = None
    first_values = df[first]
    if not _mostly_numeric(first_values) and first_values.is_unique:
        index = first_values.astype(str).values
        names = names[1:]
    features: dict[str, np.ndarray] = {}
    obs: dict[str, pd.Series] = {}
    for name in names:
        col = df[name]
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
    X = np.column_stack(list(features.values())).astype(np.float32)
    obs_df = pd.DataFrame(obs)
    obs_df.index = pd.Index(index if index is not None else [str(i) for i in range(len(df))])
    adata = ad.AnnData(X=X, obs=obs_df, var=pd.DataFrame(index=[str(n) for n in features]))
    adata.obs_names_make_unique()
    return adata


def _mostly_numeric(col: pd.Series) -> bool:
    numeric = pd.to_numeric(col, errors="coerce")
    return bool(numeric.notna().mean() > 0.5)


def _tmp_sibling(path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def write_h5ad(adata: ad.AnnData, path: str | os.PathLike) -> Path:
    """Write ``adata`` to ``path`` through a temporary file and an atomic rename."""
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file beside ``path``; rename it onto ``path`` only on success."""
    final = Path(path)
    if not final.parent.exists():
        raise OptionError(f"output folder '{final.parent}' does not exist: create it first")
    tmp = _tmp_sibling(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; swap it in for ``path`` only on success."""
    final = Path(path)
    if not final.parent.exists():
        raise OptionError(f"output folder '{final.parent}' does not exist: create it first")
    if final.exists() and not final.is_dir():
        raise OptionError(f"'{final}' exists and is not a directory: choose another --model-dir")
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old",
                                        dir=final.parent))
            os.replace(final, old / "x")
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
