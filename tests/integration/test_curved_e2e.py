"""End to end on the bundled PBMC counts with curved latents: training, constraints, clusters
against the known labels, save/load/embed, extreme dimensions, volume, flows, geodesic kNN.

ARI margins were measured first (40 epochs, latent_dim 10, seeds 0 and 1, one thread): Euclidean
0.46/0.46, sphere-vMF 0.36/0.36, sphere-Power-Spherical 0.34/0.26, hyperbolic 0.50/0.46. A curved
model must reach >= 0.5 x the Euclidean ARI and >= 0.2 absolute; a model whose latent carries no
cell-type signal (ARI ~ 0) fails both.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from helpers import PBMC, run_cli
from sklearn.metrics import adjusted_rand_score

import geovae

EPOCHS = 40
MODELS = {
    "euclidean": {"latent": "euclidean"},
    "sphere-vmf": {"latent": "sphere", "latent_options": {"posterior": "vmf"}},
    "sphere-power-spherical": {"latent": "sphere",
                               "latent_options": {"posterior": "power-spherical"}},
    "hyperbolic": {"latent": "hyperbolic"},
}
CURVED = [k for k in MODELS if k != "euclidean"]


@pytest.fixture(scope="module")
def fits() -> dict[str, tuple[ad.AnnData, geovae.GeoVAE]]:
    """Each geometry fitted at the same settings, then clustered (no UMAP)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, kw in MODELS.items():
            a = ad.read_h5ad(PBMC)
            model = geovae.fit(a, latent_dim=10, epochs=EPOCHS, progress=False, seed=0, **kw)
            geovae.cluster(a, umap=False)
            out[name] = (a, model)
    return out


def ari(a: ad.AnnData) -> float:
    return float(adjusted_rand_score(a.obs["bulk_labels"], a.obs["geovae_cluster"]))


@pytest.mark.parametrize("name", list(MODELS))
def test_trains_without_nan_and_uses_geodesic_knn(fits, name: str) -> None:
    a, model = fits[name]
    assert np.isfinite(a.obsm["X_geovae"]).all()
    assert all(np.isfinite(v) for v in model.history.train)
    geometry = MODELS[name]["latent"]
    assert a.uns["geovae"]["latent"]["geometry"] == geometry
    assert a.uns["geovae"]["cluster"]["metric"] == geometry


@pytest.mark.parametrize("name", ["sphere-vmf", "sphere-power-spherical"])
def test_sphere_rows_unit_norm(fits, name: str) -> None:
    z = fits[name][0].obsm["X_geovae"].astype(np.float64)
    assert z.shape == (700, 11)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)


def test_hyperbolic_rows_on_hyperboloid(fits) -> None:
    a = fits["hyperbolic"][0]
    z = a.obsm["X_geovae"].astype(np.float64)
    assert z.shape == (700, 11) and (z[:, 0] > 0).all()
    lorentz = -z[:, 0] ** 2 + (z[:, 1:] ** 2).sum(1)
    assert (np.abs(lorentz + 1) <= 1e-4 * z[:, 0] ** 2).all()
    ball = a.obsm["X_geovae_poincare"].astype(np.float64)
    assert ball.shape == (700, 10) and (np.linalg.norm(ball, axis=1) < 1).all()


@pytest.mark.parametrize("name", CURVED)
def test_curved_ari_close_to_euclidean(fits, name: str) -> None:
    base, curved = ari(fits["euclidean"][0]), ari(fits[name][0])
    assert base > 0.3, base  # the reference itself learnt the cell types
    assert curved >= 0.5 * base and curved >= 0.2, (name, curved, base)


def test_save_load_and_cli_embed_reproduce_latent(fits, tmp_path: Path) -> None:
    a, model = fits["sphere-vmf"]
    model.save(tmp_path / "model")
    loaded = geovae.GeoVAE.load(tmp_path / "model")
    z = loaded.get_latent(ad.read_h5ad(PBMC))
    np.testing.assert_allclose(z, a.obsm["X_geovae"], rtol=0, atol=1e-5)
    res = run_cli("embed", tmp_path / "model", PBMC, "--out", tmp_path / "emb.h5ad", "--quiet")
    assert res.exit_code == 0, res.output
    emb = ad.read_h5ad(tmp_path / "emb.h5ad")
    np.testing.assert_allclose(emb.obsm["X_geovae"], a.obsm["X_geovae"], rtol=0, atol=1e-5)
    assert emb.uns["geovae"]["cluster"]["metric"] == "sphere"


def test_sphere_knn_is_great_circle(fits) -> None:
    """On 200 cells the graph's neighbour sets and distances equal brute-force arc lengths."""
    src = fits["sphere-vmf"][0]
    a = ad.AnnData(np.zeros((200, 1), dtype=np.float32),
                   obsm={"X_geovae": src.obsm["X_geovae"][:200]},
                   uns={"geovae": {"latent": dict(src.uns["geovae"]["latent"])}})
    geovae.cluster(a, n_neighbors=15, umap=False)
    assert a.uns["geovae"]["cluster"]["metric"] == "sphere"
    graph = a.obsp["geovae_neighbors_distances"].tocsr()
    z = a.obsm["X_geovae"].astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    arc = np.arccos(np.clip(z @ z.T, -1, 1))
    np.fill_diagonal(arc, np.inf)
    for i in range(200):
        row = graph.getrow(i)
        others = row.indices != i  # scanpy may keep the cell itself at distance ~0
        idx, dist = row.indices[others], row.data[others]
        assert len(idx) >= 10
        assert set(idx) == set(np.argsort(arc[i])[:len(idx)]), i
        np.testing.assert_allclose(dist, arc[i, idx], atol=1e-6)


@pytest.mark.parametrize("dim,coords", [(1, 2), (64, 65)])
def test_cli_sphere_extreme_dims(tmp_path: Path, dim: int, coords: int) -> None:
    extra = ["--volume"] if dim == 1 else []
    res = run_cli("fit", PBMC, "--out", tmp_path / "s.h5ad", "--latent", "sphere",
                  "--latent-dim", str(dim), "--epochs", "4", "--quiet", *extra)
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "s.h5ad")
    z = a.obsm["X_geovae"]
    assert z.shape == (700, coords) and np.isfinite(z).all()
    assert np.isfinite(a.uns["geovae"]["final_losses"]["train_loss"])
    np.testing.assert_allclose(np.linalg.norm(z.astype(np.float64), axis=1), 1.0, atol=1e-5)
    if dim == 1:  # --volume on a curved latent: finite log volume for every cell
        vol = a.obs["geovae_volume"].to_numpy()
        assert vol.shape == (700,) and np.isfinite(vol).all()


def test_cli_flow_end_to_end(tmp_path: Path) -> None:
    res = run_cli("fit", PBMC, "--out", tmp_path / "f.h5ad", "--model-dir", tmp_path / "m",
                  "--flow", "2", "--latent-dim", "4", "--epochs", "4", "--quiet")
    assert res.exit_code == 0, res.output
    a = ad.read_h5ad(tmp_path / "f.h5ad")
    assert a.obsm["X_geovae"].shape == (700, 4) and np.isfinite(a.obsm["X_geovae"]).all()
    assert a.uns["geovae"]["latent"]["flow_layers"] == 2
    assert a.uns["geovae"]["cluster"]["metric"] == "euclidean"
    res = run_cli("embed", tmp_path / "m", PBMC, "--out", tmp_path / "e.h5ad", "--quiet")
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(ad.read_h5ad(tmp_path / "e.h5ad").obsm["X_geovae"],
                               a.obsm["X_geovae"], rtol=0, atol=1e-5)
