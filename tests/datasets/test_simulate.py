"""Tests for the Splatter-like count simulator ``geovae.datasets.simulate``."""

from __future__ import annotations

import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score

from geovae.datasets.simulate import simulate_counts
from geovae.errors import OptionError


def _dense(adata: ad.AnnData) -> np.ndarray:
    """Return ``adata.X`` as a dense float64 array."""
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    return X.astype(np.float64)


def _type_ari(adata: ad.AnnData, seed: int = 0) -> float:
    """ARI of KMeans on PCA of log-normalised counts against the true cell types."""
    X = _dense(adata)
    X = np.log1p(X / np.maximum(X.sum(axis=1, keepdims=True), 1.0) * 1e4)
    Z = PCA(n_components=20, random_state=seed).fit_transform(X)
    k = adata.obs["cell_type"].cat.categories.size
    pred = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(Z)
    return float(adjusted_rand_score(adata.obs["cell_type"], pred))


def test_deterministic_for_seed() -> None:
    a = simulate_counts(n_cells=300, n_genes=100, seed=7)
    b = simulate_counts(n_cells=300, n_genes=100, seed=7)
    c = simulate_counts(n_cells=300, n_genes=100, seed=8)
    assert (a.X != b.X).nnz == 0
    pd.testing.assert_frame_equal(a.obs, b.obs)
    pd.testing.assert_frame_equal(a.var, b.var)
    assert (a.X != c.X).nnz > 0


def test_shapes_dtypes_and_metadata(tmp_path: Path) -> None:
    adata = simulate_counts(n_cells=400, n_genes=120, n_types=3, n_conditions=2, n_batches=2)
    assert adata.shape == (400, 120)
    assert sp.isspmatrix_csr(adata.X) or isinstance(adata.X, sp.csr_array)
    assert adata.X.dtype == np.float32
    assert list(adata.obs_names[:2]) == ["cell0", "cell1"]
    assert list(adata.var_names[:2]) == ["gene0", "gene1"]
    for key, n in (("cell_type", 3), ("condition", 2), ("batch", 2)):
        assert isinstance(adata.obs[key].dtype, pd.CategoricalDtype)
        assert adata.obs[key].cat.categories.size == n
    assert np.issubdtype(adata.obs["library_size"].dtype, np.floating)
    assert (adata.obs["library_size"] > 0).all()
    for col in (
        "base_mean",
        "dispersion",
        "theta",
        "de_factor_type0",
        "condition_factor_cond1",
        "batch_factor_batch1",
    ):
        assert col in adata.var
    params = adata.uns["simulation"]
    assert params["n_cells"] == 400 and params["seed"] == 0
    assert all(v is not None for v in params.values())

    # h5ad round trip (no None values, all types writable).
    path = tmp_path / "sim.h5ad"
    adata.write_h5ad(path)
    back = ad.read_h5ad(path)
    assert back.uns["simulation"]["n_batches"] == 2
    assert (back.X != adata.X).nnz == 0

    single = simulate_counts(n_cells=50, n_genes=20, n_batches=1)
    assert "batch" not in single.obs


def test_counts_are_nonnegative_integers() -> None:
    X = simulate_counts(n_cells=500, n_genes=200).X
    assert X.data.min() >= 0
    np.testing.assert_array_equal(X.data, np.round(X.data))
    assert X.nnz > 0


def test_rejects_bad_parameters() -> None:
    with pytest.raises(OptionError):
        simulate_counts(n_cells=0)
    with pytest.raises(OptionError):
        simulate_counts(de_prob=1.5)
    with pytest.raises(OptionError):
        simulate_counts(dispersion=-0.1)


def test_homogeneous_group_follows_negative_binomial() -> None:
    """One type, one condition, fixed library: each gene is NB(mu_g, phi_g) exactly.

    The tolerance is statistical: the standard error of the sample variance is
    sqrt((m4 - s^4) / n), estimated from the data, and every gene with mean >= 0.5 must lie
    within 5 standard errors of the NB variance mu + phi mu^2 (about 300 genes, so a false
    alarm has probability ~1e-4 even under the normal approximation).
    """
    n = 20000
    adata = simulate_counts(
        n_cells=n,
        n_genes=400,
        n_types=1,
        n_conditions=1,
        library_sd=0.0,
        library_mean=2000.0,
        dispersion=0.2,
        seed=3,
    )
    X = _dense(adata)
    lib = adata.uns["simulation"]["library_mean"]
    base = adata.var["base_mean"].to_numpy() * adata.var["de_factor_type0"].to_numpy()
    mu = lib * base / base.sum()
    phi = adata.var["dispersion"].to_numpy()
    var_nb = mu + phi * mu**2

    keep = mu >= 0.5
    assert keep.sum() > 100
    m = X.mean(axis=0)
    s2 = X.var(axis=0, ddof=1)
    m4 = ((X - m) ** 4).mean(axis=0)
    se_mean = np.sqrt(s2 / n)
    se_var = np.sqrt(np.maximum(m4 - s2**2, 1e-12) / n)

    z_mean = (m - mu)[keep] / se_mean[keep]
    z_var = (s2 - var_nb)[keep] / se_var[keep]
    assert np.abs(z_mean).max() < 5
    assert np.abs(z_var).max() < 5
    # Calibrated on the whole, not merely within bounds.
    assert abs(np.median(z_var)) < 0.5

    # Over-dispersed, not Poisson: where phi mu^2 dominates, the variance is far above mu.
    strong = keep & (phi * mu > 2)
    assert strong.sum() > 10
    assert np.all(s2[strong] > 1.5 * m[strong])

    # Method-of-moments dispersion recovers the truth.
    phi_hat = (s2 - m) / m**2
    ratio = np.median(phi_hat[strong] / phi[strong])
    assert 0.9 < ratio < 1.1


def test_cell_types_separable_at_defaults() -> None:
    for seed in (0, 1, 2):
        assert _type_ari(simulate_counts(seed=seed), seed=seed) > 0.8


def test_separability_controlled_by_parameters() -> None:
    # No differential expression: nothing to find.
    assert _type_ari(simulate_counts(de_prob=0.0)) < 0.05
    # Very shallow sequencing: clearly harder than the default.
    assert _type_ari(simulate_counts(library_mean=150.0)) < 0.7


def test_condition_shifts_every_type() -> None:
    effect = 0.5
    adata = simulate_counts(
        n_cells=6000, n_types=4, n_conditions=2, condition_effect=effect, seed=5
    )
    X = _dense(adata)
    norm = X / adata.obs["library_size"].to_numpy()[:, None]
    fac = adata.var["condition_factor_cond1"].to_numpy()
    shifted = np.flatnonzero(fac != 1.0)
    unshifted = np.flatnonzero(fac == 1.0)
    assert shifted.size > 10
    np.testing.assert_allclose(np.abs(np.log(fac[shifted])), effect)

    ctype = adata.obs["cell_type"].to_numpy()
    cond = adata.obs["condition"].to_numpy()
    mean_counts = X.mean(axis=0)
    for t in adata.obs["cell_type"].cat.categories:
        m0 = norm[(ctype == t) & (cond == "cond0")].mean(axis=0)
        m1 = norm[(ctype == t) & (cond == "cond1")].mean(axis=0)
        raw0 = X[(ctype == t) & (cond == "cond0")].mean(axis=0)
        # Well-expressed genes in this type (>= 3 counts/cell in both conditions).
        ok = (raw0 >= 3) & (mean_counts >= 3)
        genes = np.intersect1d(shifted, np.flatnonzero(ok))
        assert genes.size >= 3, t
        lfc = np.log(m1[genes] / m0[genes])
        # Direction always right; size close to the effect (up to proportion renormalisation).
        assert np.all(np.sign(lfc) == np.sign(np.log(fac[genes]))), t
        assert np.median(np.abs(lfc)) == pytest.approx(effect, abs=0.15), t
        # Unshifted, well-expressed genes barely move.
        flat = np.intersect1d(unshifted, np.flatnonzero(ok))
        assert np.median(np.abs(np.log(m1[flat] / m0[flat]))) < 0.15, t


def test_fast_enough() -> None:
    start = time.perf_counter()
    adata = simulate_counts(n_cells=20000, n_genes=500)
    elapsed = time.perf_counter() - start
    assert adata.shape == (20000, 500)
    assert elapsed < 20.0
