"""Inputs users have: 10x Genomics .h5 files and Matrix Market folders (Cell Ranger's layouts,
gunzipped copies, GEO-style prefixes), counts in a layer or in .raw while X is normalised."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from helpers import run_cli, sha256

from geovae.errors import InputError, OptionError
from geovae.io.read import read

N_CELLS, GENES = 30, ["GA", "GB", "GC", "GA", "GD", "GE"]  # GA twice: symbols are not unique
TYPES = ["Gene Expression"] * 6 + ["Antibody Capture"]


@pytest.fixture(scope="module")
def counts() -> sp.csr_matrix:
    rng = np.random.default_rng(0)
    return sp.csr_matrix(rng.poisson(2.0, (N_CELLS, len(TYPES))).astype(np.float32))


def _features() -> list[tuple[str, str, str]]:
    names = [*GENES, "CD3_TotalSeqB"]
    return [(f"ENSG{i:05d}", n, t) for i, (n, t) in enumerate(zip(names, TYPES, strict=True))]


def _write(path: Path, text: str, gz: bool) -> None:
    if gz:
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)


def write_mtx(folder: Path, X: sp.csr_matrix, gz: bool = True, legacy: bool = False,
              prefix: str = "") -> Path:
    """A Matrix Market folder as Cell Ranger writes it (v3: gzipped, features.tsv with a
    feature-type column; legacy v2: plain, genes.tsv with two columns)."""
    folder.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    plain = folder / f"{prefix}matrix.mtx"
    scipy.io.mmwrite(plain, sp.coo_matrix(X.T.astype(np.int64)))  # features x cells
    if gz:
        with open(plain, "rb") as src, gzip.open(f"{plain}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        plain.unlink()
    rows = _features()[:X.shape[1]]
    if legacy:
        text = "".join(f"{i}\t{n}\n" for i, n, _ in rows)
        _write(folder / f"{prefix}genes.tsv{ext}", text, gz)
    else:
        text = "".join(f"{i}\t{n}\t{t}\n" for i, n, t in rows)
        _write(folder / f"{prefix}features.tsv{ext}", text, gz)
    barcodes = "".join(f"AAAC{i:04d}-1\n" for i in range(X.shape[0]))
    _write(folder / f"{prefix}barcodes.tsv{ext}", barcodes, gz)
    return folder


def write_10x_h5(path: Path, X: sp.csr_matrix) -> Path:
    """Cell Ranger v3 HDF5 layout (as scanpy's reader expects it): /matrix with the CSC
    features x cells matrix (= CSR cells x features), barcodes and features/{id,name,...}."""
    rows = _features()
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([X.shape[1], X.shape[0]], dtype=np.int32)
        m["barcodes"] = np.array([f"AAAC{i:04d}-1" for i in range(X.shape[0])], dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array([r[0] for r in rows], dtype="S")
        feats["name"] = np.array([r[1] for r in rows], dtype="S")
        feats["feature_type"] = np.array([r[2] for r in rows], dtype="S")
        feats["genome"] = np.array(["GRCh38"] * len(rows), dtype="S")
        feats["_all_tag_keys"] = np.array([b"genome"])
    return path


def _check(a: ad.AnnData, X: sp.csr_matrix) -> None:
    """Cells by barcode, Gene Expression features only, unique symbols, the counts."""
    assert a.shape == (N_CELLS, len(GENES))
    assert list(a.var_names) == ["GA", "GB", "GC", "GA-1", "GD", "GE"]
    assert list(a.var["gene_ids"]) == [f"ENSG{i:05d}" for i in range(len(GENES))]
    assert a.obs_names[0] == "AAAC0000-1"
    assert sp.issparse(a.X) and a.X.dtype == np.float32
    np.testing.assert_array_equal(a.X.toarray(), X[:, : len(GENES)].toarray())


@pytest.mark.parametrize("layout", ["v3", "v3-gunzipped", "legacy", "legacy-gzipped",
                                    "prefix"])
def test_matrix_market_folders(tmp_path: Path, counts: sp.csr_matrix, layout: str) -> None:
    gz = layout in ("v3", "legacy-gzipped", "prefix")
    legacy = layout.startswith("legacy")
    X = counts[:, : len(GENES)] if legacy else counts  # v2 has no antibody features
    folder = write_mtx(tmp_path / "mtx", X, gz=gz, legacy=legacy,
                       prefix="GSM1_" if layout == "prefix" else "")
    with pytest.warns(UserWarning) as caught:
        a = read(folder)
    _check(a, counts)
    messages = " ".join(str(w.message) for w in caught)
    assert "1 duplicated gene symbols" in messages
    if not legacy:
        assert "dropped 1 others (Antibody Capture)" in messages
    if layout == "prefix":  # the matrix file itself names the folder and the prefix
        with pytest.warns(UserWarning):
            _check(read(folder / "GSM1_matrix.mtx.gz"), counts)


def test_10x_h5(tmp_path: Path, counts: sp.csr_matrix) -> None:
    with pytest.warns(UserWarning, match="Antibody Capture"):
        a = read(write_10x_h5(tmp_path / "filtered_feature_bc_matrix.h5", counts))
    _check(a, counts)


@pytest.mark.parametrize(("make", "mention"), [
    ("empty_folder", "folder without a matrix.mtx"),
    ("no_barcodes", "no barcodes.tsv(.gz)"),
    ("no_features", "no features.tsv(.gz) or genes.tsv(.gz)"),
    ("two_matrices", "holds several matrices"),
    ("wrong_lengths", "do not belong together"),
    ("h5ad_as_h5", "rename it to .h5ad"),
    ("not_10x_h5", "cannot read"),
    ("not_hdf5", "corrupt or truncated"),
])
def test_10x_errors_are_named(tmp_path: Path, counts: sp.csr_matrix, make: str,
                              mention: str) -> None:
    folder = tmp_path / "in"
    if make == "empty_folder":
        folder.mkdir()
        target = folder
    elif make in ("no_barcodes", "no_features", "two_matrices", "wrong_lengths"):
        target = write_mtx(folder, counts, gz=False)
        if make == "no_barcodes":
            (folder / "barcodes.tsv").unlink()
        elif make == "no_features":
            (folder / "features.tsv").unlink()
        elif make == "two_matrices":
            write_mtx(folder, counts, gz=False, prefix="other_")
        else:
            (folder / "barcodes.tsv").write_text("AAAC-1\nAAAG-1\n")
    elif make == "h5ad_as_h5":
        target = tmp_path / "x.h5"
        ad.AnnData(counts).write_h5ad(target)
    elif make == "not_10x_h5":
        target = tmp_path / "x.h5"
        with h5py.File(target, "w") as f:
            f["something"] = np.arange(3)
    else:
        target = tmp_path / "x.h5"
        target.write_bytes(b"not hdf5 at all")
    with pytest.raises(InputError, match=None) as info:
        read(target)
    assert mention in str(info.value), str(info.value)
    # the CLI: one line, exit 2, nothing written
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = run_cli("fit", target, "--out", tmp_path / "o.h5ad", "--quiet")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.output
    assert mention in res.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_fit_a_10x_folder_writes_beside_it(tmp_path: Path, counts: sp.csr_matrix) -> None:
    folder = write_mtx(tmp_path / "filtered_feature_bc_matrix", counts)
    digests = {p.name: sha256(p) for p in folder.iterdir()}
    res = run_cli("fit", folder, "--epochs", "1", "--no-umap")
    assert res.exit_code == 0, res.output
    assert "(10x-mtx): 30 cells × 6 features" in res.stderr
    out = tmp_path / "filtered_feature_bc_matrix.geovae.h5ad"
    assert out.is_file() and (tmp_path / "filtered_feature_bc_matrix.geovae.model").is_dir()
    assert {p.name: sha256(p) for p in folder.iterdir()} == digests  # input untouched
    assert ad.read_h5ad(out).uns["geovae"]["likelihood"] == "nb"


# ---------------------------------------------------------------- counts in a layer or .raw
def _lognorm(counts: sp.csr_matrix, extra_raw_genes: int = 0) -> ad.AnnData:
    """X log-normalised; the raw counts in .raw (with extra genes, as after HVG selection)."""
    full = counts.toarray()
    names = [f"g{j}" for j in range(full.shape[1])]
    raw = ad.AnnData(full.astype(np.float32))
    raw.var_names = names
    keep = full.shape[1] - extra_raw_genes
    a = ad.AnnData(np.log1p(full[:, :keep] / full.sum(1, keepdims=True) * 1e4)
                   .astype(np.float32))
    a.var_names = names[:keep]
    a.obs_names = [f"c{i}" for i in range(full.shape[0])]
    a.raw = raw
    return a


def test_counts_hint(counts: sp.csr_matrix) -> None:
    from geovae.cli._flags import message
    from geovae.runs.describe import counts_hint

    a = _lognorm(counts)
    assert "raw counts are in .raw: add --layer raw" in message(counts_hint(a, None, "auto"))
    assert "raw counts are in .raw: add layer='raw'" in counts_hint(a, None, "auto")
    a.layers["counts"] = counts.copy()
    assert message(counts_hint(a, None, "auto")) == (
        "X looks log-normalised; raw counts are in layers['counts']: add --layer counts to "
        "model the counts")
    assert counts_hint(a, "counts", "auto") is None  # already using the counts
    assert counts_hint(a, None, "gaussian") is None  # the user chose a continuous model
    a.X = a.X - 1.0
    assert "holds negative values" in counts_hint(a, None, "nb")
    plain = ad.AnnData(counts.copy())
    assert counts_hint(plain, None, "auto") is None  # X is counts
    no_counts = _lognorm(counts)
    no_counts.raw = None
    hint = counts_hint(no_counts, None, "auto")  # a Gaussian for want of counts: say so
    assert "no layer or .raw holds counts" in hint and "layers['counts']" in hint
    assert counts_hint(no_counts, None, "gaussian") is None  # the user chose it


def test_layer_raw(counts: sp.csr_matrix) -> None:
    from geovae.data.checks import get_matrix

    a = _lognorm(counts, extra_raw_genes=2)
    X = get_matrix(a, "raw")
    np.testing.assert_array_equal(np.asarray(X), counts.toarray()[:, : a.n_vars])
    a.layers["raw"] = np.zeros(a.shape, dtype=np.float32)  # a layer named raw comes first
    assert not np.asarray(get_matrix(a, "raw")).any()
    with pytest.raises(OptionError, match="no .raw and no layer named raw"):
        get_matrix(ad.AnnData(counts.copy()), "raw")
    with pytest.raises(OptionError, match=r"\.raw: layer='raw'"):
        get_matrix(_lognorm(counts), "counts")
    b = _lognorm(counts)
    b.var_names = [f"x{j}" for j in range(b.n_vars)]
    with pytest.raises(InputError, match="features of X are not in .raw"):
        get_matrix(b, "raw")


def test_fit_with_layer_raw(tmp_path: Path, counts: sp.csr_matrix) -> None:
    a = _lognorm(counts, extra_raw_genes=2)
    a.write_h5ad(tmp_path / "x.h5ad")
    res = run_cli("fit", tmp_path / "x.h5ad", "--out", tmp_path / "hint.h5ad", "--epochs", "1",
                  "--no-umap", "--likelihood", "NB")  # choices ignore case
    assert res.exit_code == 2, res.output  # non-integer X cannot be NB: the hint says why
    assert "raw counts are in .raw: add --layer raw" in res.stderr
    res = run_cli("fit", tmp_path / "x.h5ad", "--out", tmp_path / "o.h5ad", "--epochs", "1",
                  "--no-umap", "--layer", "raw", "--quiet")
    assert res.exit_code == 0, res.output
    out = ad.read_h5ad(tmp_path / "o.h5ad")
    assert out.uns["geovae"]["likelihood"] == "nb"
    assert out.uns["geovae"]["params"]["layer"] == "raw" and out.n_vars == a.n_vars
    res = run_cli("embed", tmp_path / "o.model", tmp_path / "x.h5ad", "--out",
                  tmp_path / "e.h5ad", "--no-umap", "--quiet")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "e.h5ad").obsm["X_geovae"],
                               out.obsm["X_geovae"], atol=1e-5)
