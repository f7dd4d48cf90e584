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
from geovae.graph.neighbors import GeodesicKNN
from geovae.modules.cgmvae import TERMS, CGMVAEModule
from geovae.modules.components import concentration
from geovae.nn.latents import make_latent

DATA = PBMC


# ---------------------------------------------------------------------- tiny model
def _tiny(seed: int = 0, n_cov: int = 2) -> CGMVAEModule:
    torch.manual_seed(seed)
    latent = make_latent("euclidean", 2, 16)
    m = CGMVAEModule(6, latent, "gaussian", n_cov, n_hidden=16, dropout=0.0, n_clusters=3,
                     w_dim=2, dirichlet_alpha=0.7, mixture_weights="per_cell")
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


# ---------------------------------------------------------------------- blobs, conditional
def _same_condition(z: np.ndarray, cond: np.ndarray, k: int = 15,
                    geometry: str = "euclidean") -> float:
    """Share of each cell's k nearest neighbours in the latent from its own condition (1/n
    when the conditions are mixed, 1 when the latent is split by condition); geodesic
    neighbours on curved latents."""
    if geometry == "euclidean":
        from sklearn.neighbors import NearestNeighbors

        idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    else:
        graph = GeodesicKNN(geometry, n_neighbors=k).fit_transform(z).tocoo()
        idx = np.stack([graph.col[graph.row == i] for i in range(len(z))])
    return float((cond[idx[:, 1:]] == cond[:, None]).mean())


def _fit_blobs(seed: int = 0, latent: str = "euclidean", latent_options: dict | None = None,
               **options: object) -> tuple[float, float, ad.AnnData, geovae.GeoVAE]:
    """(blob ARI of the mixture's argmax, same-condition neighbour share, data, model) on
    conditional blobs: condition shift 2 > blob scale 1, so an uncorrected latent splits."""
    adata = make_blobs(n_cells=1500, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                           batch_key="condition", model_options={"n_clusters": 10, **options},
                           latent=latent, latent_options=latent_options or {},
                           epochs=40, progress=False, seed=seed)
    pred = adata.obsm["geovae_cluster_probs"].argmax(1)
    cond = adata.obs["condition"].cat.codes.to_numpy()
    return (adjusted_rand_score(adata.obs["blob"], pred),
            _same_condition(adata.obsm["X_geovae"], cond, geometry=latent), adata, model)


@pytest.mark.slow
def test_conditional_latent_is_corrected_and_keeps_the_types(tmp_path: Path) -> None:
    """Issue 9.1: with --batch-key the latent written to X_geovae mixes the conditions (the
    decoder explains them) and the mixture still finds the 5 blobs with K = 10 components.
    The 0.1.0 model (covariates in the prior) splits the latent by condition (measured 0.96 -
    0.99 here): the same assertion fails on it."""
    ari, same, adata, model = _fit_blobs()
    # 0.1.0's model: the condition in the prior, trained end to end (no warm start)
    _, same_old, _, _ = _fit_blobs(condition_prior=True, warm_start=0.0, hold=0.0)
    print(f"blob ARI {ari:.3f}; same-condition neighbours {same:.3f} (mixed 0.33), "
          f"with the condition in the prior {same_old:.3f}")
    assert ari >= 0.85  # measured 0.94 / 0.96 on seeds 0 / 1; 0.90 (seed 0) on 85% of cells
    assert same < 0.5  # measured 0.40 / 0.42; 0.48 (seed 0) since the 5% test split
    assert same_old > 0.8
    probs = adata.obsm["geovae_cluster_probs"]
    assert probs.dtype == np.float32 and probs.shape == (1500, 10)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5)
    info = adata.uns["geovae"]
    assert info["n_clusters"] == 10 and info["weights_model"] == "global"
    assert np.isclose(info["mixture_weights"].sum(), 1, atol=1e-4)
    assert set(info["elbo_terms"]) == set(TERMS)
    assert all(np.isfinite(v) for v in info["elbo_terms"].values())
    assert info["cluster_probs"]["method"] == "predictive"
    # the mixture model has a likelihood: held-out log p(x) is stored (IWAE), a predictive
    # one with global weights (p(y) the fitted weights), on the 75 test cells (5% of 1,500)
    held = info["heldout_loglik"]
    assert np.isfinite(held["per_cell"]) and held["kind"] == "predictive"
    assert held["cells"] == "test" and held["n_cells"] == 75
    assert model.module.loglik_kind() == "predictive"
    model.module.mixture_weights = "per_cell"  # p(y) = 1/K exactly: a marginal likelihood
    assert model.module.loglik_kind() == "marginal"
    model.module.mixture_weights = "global"
    ent = adata.obs["geovae_cluster_entropy"].to_numpy()
    assert (ent >= -1e-6).all() and (ent <= np.log(10) + 1e-5).all()
    assert model.history is not None and np.isfinite(model.history.train).all()
    # a saved and reloaded model gives the same mixture probabilities on embed (seeded draws)
    model.save(tmp_path / "m")
    again = adata.copy()
    geovae.embed(again, geovae.GeoVAE.load(tmp_path / "m"))
    np.testing.assert_allclose(again.obsm["geovae_cluster_probs"], probs, atol=1e-5)


@pytest.mark.slow
def test_hyperbolic_conditional_latent_is_corrected() -> None:
    """Issue 9.1 for the hyperboloid: the decoder reads z's tangent coordinates at the origin,
    and the latent mixes the conditions (geodesic neighbours) while the mixture finds the
    blobs. With the decoder reading the Lorentz coordinates (geovae <= 0.2.0 dev) the same
    model left the latent split by condition (measured 0.98 here)."""
    ari, same, adata, model = _fit_blobs(latent="hyperbolic")
    _, same_old, _, _ = _fit_blobs(latent="hyperbolic", latent_options={"decoder_input":
                                                                         "lorentz"})
    print(f"hyperbolic: blob ARI {ari:.3f}; same-condition neighbours {same:.3f} (mixed "
          f"0.33), Lorentz decoder input {same_old:.3f}")
    assert model.module.latent.decoder_input == "tangent"
    assert not model.module.condition_prior
    assert ari >= 0.85  # measured 1.0
    assert same < 0.5  # measured 0.36
    assert same_old > 0.8


@pytest.mark.slow
@pytest.mark.parametrize(("n_blobs", "low", "high", "ari_floor"), [(5, 4, 7, 0.9),
                                                                   (10, 8, 12, 0.85)])
def test_unneeded_components_empty_by_inference(n_blobs: int, low: int, high: int,
                                                ari_floor: float) -> None:
    """Issue 9.2: --n-clusters 15 is an upper bound. With global weights the components the
    data do not need lose their mass: 5 types keep 4-7 components, 10 keep about 10, counted
    both by weight (>= 0.5%) and by the cells' most probable component (measured on seed 0:
    5 / 5 components, ARI 1.0, and 9 / 9, ARI 0.91). Without the delete moves the spare
    components kept 0.1-14% each: 9 of 15 in use by weight for 5 blobs. The per-cell weights
    (0.1.0's default, alpha 1) kept all 15 in use on the conditional blobs."""
    adata = make_blobs(n_cells=1000, n_blobs=n_blobs, n_conditions=1, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                   model_options={"n_clusters": 15}, epochs=60, progress=False)
    info = adata.uns["geovae"]
    pred = adata.obsm["geovae_cluster_probs"].argmax(1)
    ari = adjusted_rand_score(adata.obs["blob"], pred)
    print(n_blobs, "blobs: components", info["n_components_argmax"], info["n_components_used"],
          "ARI", round(ari, 3), "weights", np.round(np.sort(info["mixture_weights"])[::-1], 3))
    assert low <= info["n_components_argmax"] <= high
    assert low <= info["n_components_used"] <= high
    assert ari >= ari_floor
    weights = info["mixture_weights"]
    assert np.isclose(weights.sum(), 1, atol=1e-4)
    # the spare components have lost their mass: each keeps only its prior share
    assert np.sort(weights)[: 15 - high].sum() < 0.005


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
    cal = part.uns["geovae"]["calibration"]  # test cells: not trained on, not early-stopped on
    assert cal["cells"] == "test" and cal["n_cells"] > 0
    assert cal["n_cells"] <= round(0.05 * part.n_obs)  # the 5% test split, labelled ones
    assert 0 <= cal["ece"] <= 1 and 0 <= cal["ece_posterior_mean"] <= 1
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
