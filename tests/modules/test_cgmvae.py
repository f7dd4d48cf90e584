"""Tests for the c*GMΔVAE (`geovae.modules.cgmvae`, `geovae.models.CGMVAE`) and the blobs."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch
from helpers import PBMC
from sklearn.metrics import adjusted_rand_score

import geovae
from geovae.datasets.blobs import make_blobs
from geovae.modules.cgmvae import TERMS, CGMVAEModule, concentration
from geovae.nn.latents import make_latent

DATA = PBMC


# ---------------------------------------------------------------------- tiny model
def _tiny(seed: int = 0, n_cov: int = 2) -> CGMVAEModule:
    torch.manual_seed(seed)
    latent = make_latent("euclidean", 2, 16)
    m = CGMVAEModule(6, latent, "gaussian", n_cov, n_hidden=16, dropout=0.0, n_clusters=3,
                     w_dim=2, dirichlet_alpha=0.7)
    return m.double().eval()


def test_concentration_never_uses_exp(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _tiny()
    z = torch.randn(64, 2, dtype=torch.float64) * 100  # extreme inputs

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("exp used on the Dirichlet concentration path")

    monkeypatch.setattr(torch, "exp", boom)
    monkeypatch.setattr(torch.Tensor, "exp", boom)
    g = m.concentrations(z)
    raw = torch.tensor([-1e4, 0.0, 1e4], dtype=torch.float64)
    assert torch.isfinite(g).all() and (g > 0).all() and (g <= 1e3).all()
    assert torch.allclose(concentration(raw), torch.tensor([1e-3, np.log(2) + 1e-3, 1e3],
                                                           dtype=torch.float64))


# ---------------------------------------------------------------------- blobs, unsupervised
def _fit_blobs(batch_key: str | None, seed: int = 0
               ) -> tuple[float, float, ad.AnnData, geovae.GeoVAE]:
    adata = make_blobs(n_cells=2000, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                   batch_key=batch_key, model_options={"n_clusters": 5}, epochs=40,
                   progress=False, seed=seed)
    pred = adata.obsm["geovae_cluster_probs"].argmax(1)
    return (adjusted_rand_score(adata.obs["blob"], pred),
            adjusted_rand_score(adata.obs["condition"], pred), adata, model)


def test_blobs_recovered_only_with_condition(tmp_path: Path) -> None:
    ari, ari_cond, adata, model = _fit_blobs("condition")
    ari_nc, ari_cond_nc, _, _ = _fit_blobs(None)
    print(f"ARI blob: with condition {ari:.3f}, without {ari_nc:.3f}; "
          f"ARI condition: {ari_cond:.3f} vs {ari_cond_nc:.3f}")
    assert ari >= 0.9
    assert ari - ari_nc >= 0.3  # ignoring the condition mixes blobs (observed gap ~0.9)
    probs = adata.obsm["geovae_cluster_probs"]
    assert probs.dtype == np.float32 and probs.shape == (2000, 5)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    info = adata.uns["geovae"]
    assert info["n_clusters"] == 5 and info["n_components_used"] == 5
    assert set(info["elbo_terms"]) == set(TERMS)
    assert all(np.isfinite(v) for v in info["elbo_terms"].values())
    assert np.isfinite(adata.obsm["X_geovae"]).all()
    assert model.history is not None and np.isfinite(model.history.train).all()
    # a saved and reloaded model gives the same mixture probabilities on embed
    model.save(tmp_path / "m")
    again = adata.copy()
    geovae.embed(again, geovae.GeoVAE.load(tmp_path / "m"))
    np.testing.assert_allclose(again.obsm["geovae_cluster_probs"], probs, atol=1e-5)


def test_options_checked() -> None:
    adata = make_blobs(n_cells=100, seed=0)
    for latent in ("sphere", "hyperbolic"):  # mixture components on the manifold
        geovae.CGMVAE(adata, latent=latent, likelihood="gaussian")
    with pytest.raises(geovae.OptionError, match=r"unknown option\(s\) \['n_cluster'\]"):
        geovae.CGMVAE(adata, model_options={"n_cluster": 3})


def test_blobs_data() -> None:
    a, b = make_blobs(n_cells=300, seed=3), make_blobs(n_cells=300, seed=3)
    assert a.X.dtype == np.float32 and a.shape == (300, 50)
    assert np.array_equal(a.X, b.X)
    assert list(a.obs["blob"].cat.categories) == [f"blob{k}" for k in range(5)]
    assert a.obs["condition"].nunique() == 3


# ---------------------------------------------------------------------- labels
def _pca(adata: ad.AnnData) -> np.ndarray:
    import scanpy as sc

    tmp = adata.copy()
    sc.pp.normalize_total(tmp, target_sum=1e4)
    sc.pp.log1p(tmp)
    sc.pp.pca(tmp, n_comps=30, random_state=0)
    return tmp.obsm["X_pca"]


def _hide(adata: ad.AnnData, fraction: float, seed: int) -> tuple[ad.AnnData, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden = rng.random(adata.n_obs) < fraction
    part = adata.copy()
    col = part.obs["bulk_labels"].astype(object)
    col[hidden] = np.nan
    part.obs["bulk_labels"] = col
    return part, hidden


def _fit_labels(part: ad.AnnData, epochs: int, seed: int = 0) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(part, model="cgmvae", latent_dim=10, label_key="bulk_labels",
                   epochs=epochs, progress=False, seed=seed)
    return part.obs["geovae_label"].astype(str).to_numpy()


@pytest.fixture(scope="module")
def pbmc() -> ad.AnnData:
    return ad.read_h5ad(DATA)


def test_supervised_accuracy_vs_logistic_regression(pbmc: ad.AnnData) -> None:
    from sklearn.linear_model import LogisticRegression

    part, hidden = _hide(pbmc, 0.25, seed=0)
    truth = pbmc.obs["bulk_labels"].astype(str).to_numpy()
    pred = _fit_labels(part, epochs=80)
    acc = float((pred[hidden] == truth[hidden]).mean())
    pcs = _pca(pbmc)
    lr = LogisticRegression(max_iter=2000).fit(pcs[~hidden], truth[~hidden])
    acc_lr = float((lr.predict(pcs[hidden]) == truth[hidden]).mean())
    print(f"held-out accuracy: geovae {acc:.3f}, logistic regression on PCA {acc_lr:.3f}")
    assert acc >= acc_lr - 0.05  # 175 held-out cells: one binomial s.e. is ~0.035
    assert set(part.obs["geovae_label"].cat.categories) == set(truth)


def test_semi_supervised_vs_knn(pbmc: ad.AnnData) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    part, hidden = _hide(pbmc, 0.8, seed=1)
    truth = pbmc.obs["bulk_labels"].astype(str).to_numpy()
    pred = _fit_labels(part, epochs=50, seed=1)
    acc = float((pred[hidden] == truth[hidden]).mean())
    pcs = _pca(pbmc)
    knn = KNeighborsClassifier(n_neighbors=15).fit(pcs[~hidden], truth[~hidden])
    acc_knn = float((knn.predict(pcs[hidden]) == truth[hidden]).mean())
    print(f"80% hidden: geovae {acc:.3f}, kNN on PCA {acc_knn:.3f}")
    assert acc >= acc_knn - 0.03  # 560 hidden cells: one binomial s.e. is ~0.02


# ---------------------------------------------------------------------- empty components
def test_empty_components_reported_and_warned() -> None:
    adata = make_blobs(n_cells=1000, n_conditions=1, seed=0)
    with pytest.warns(UserWarning, match="empty or collapsed"):
        geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                   model_options={"n_clusters": 20, "dirichlet_alpha": 0.05}, epochs=30,
                   progress=False)
    info = adata.uns["geovae"]
    print("components used", info["n_components_used"], "empty", list(info["empty_components"]))
    # 5 true blobs; alpha < 1 empties the spare components (this run: 5 used, while the
    # same fit with alpha = 1 keeps 14 of the 20 in use)
    assert 5 <= info["n_components_used"] <= 8
    assert info["n_components_used"] + len(info["empty_components"]) == 20
    assert np.isfinite(adata.obsm["geovae_cluster_probs"]).all()
