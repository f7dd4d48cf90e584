"""Conditional c*GMΔVAE: with a batch key the latent is corrected for the condition (the
covariate enters the decoder, not the prior of z) and the types are still recovered; the
thesis' condition-specific prior stays reachable as ``condition_prior=True``."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors

import geovae
from geovae.datasets.blobs import make_blobs
from geovae.modules.cgmvae import CGMVAEModule
from geovae.nn.latents import make_latent


def same_condition_fraction(z: np.ndarray, cond: np.ndarray, k: int = 15) -> float:
    """Share of each cell's k nearest latent neighbours in its own condition (1 / n_conditions
    when the conditions are fully mixed, 1 when the latent is split by condition)."""
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)
    return float((cond[idx[:, 1:]] == cond[:, None]).mean())


def _fit(seed: int, **options: object) -> tuple[float, float]:
    adata = make_blobs(n_cells=2000, seed=seed)  # 5 blobs, 3 conditions (shift 2 > scale 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        geovae.fit(adata, model="cgmvae", latent_dim=4, likelihood="gaussian",
                   batch_key="condition", model_options={"n_clusters": 5, **options},
                   epochs=40, progress=False, seed=seed)
    cond = adata.obs["condition"].cat.codes.to_numpy()
    mixing = same_condition_fraction(adata.obsm["X_geovae"], cond)
    ari = adjusted_rand_score(adata.obs["blob"], adata.obsm["geovae_cluster_probs"].argmax(1))
    return mixing, ari


def test_latent_mixes_conditions_and_keeps_the_blobs() -> None:
    """Fully mixed = 1/3. geovae 0.1.0's default (c in the prior of z) gave 0.94 with ARI 1.0
    on this seed; the plain VAE with the same batch key 0.39. Now (seeds 0-2): see
    benchmarks/RESULTS.md, "Conditional c*GMΔVAE"."""
    mixing, ari = _fit(0)
    print(f"same-condition neighbour fraction {mixing:.3f} (chance 0.333), ARI {ari:.3f}")
    assert mixing < 0.45  # split by condition: ~0.94
    assert ari >= 0.9


def test_condition_prior_reachable_and_splits_the_latent() -> None:
    """The thesis' p(z|w,y,c) is kept as an option; it lets z move with c (documented)."""
    mixing, ari = _fit(0, condition_prior=True, encode_covariates=True)
    print(f"condition_prior: same-condition fraction {mixing:.3f}, ARI {ari:.3f}")
    assert mixing > 0.8 and ari >= 0.9


def _module(**options: object) -> CGMVAEModule:
    torch.manual_seed(0)
    return CGMVAEModule(6, make_latent("euclidean", 2, 16), "gaussian", 3, n_hidden=16,
                        dropout=0.0, n_clusters=3, **options).double().eval()


@torch.no_grad()
def test_covariates_enter_the_decoder_only_by_default() -> None:
    m = _module()
    x = torch.randn(5, 6, dtype=torch.float64)
    c0 = torch.eye(3, dtype=torch.float64)[[0] * 5]
    c1 = torch.eye(3, dtype=torch.float64)[[2] * 5]
    assert not m.condition_prior and not m.encode_covariates
    assert m.encoder[0].in_features == 6 and m.prior_net[0][0].in_features == 2
    assert torch.equal(m.latent_mean(x, c0), m.latent_mean(x, c1))  # q(z|x): no c
    w = torch.randn(5, 2, dtype=torch.float64)
    assert torch.equal(m.prior_z(w, c0).mean, m.prior_z(w, c1).mean)  # p(z|w,y): no c
    z = torch.randn(5, 2, dtype=torch.float64)
    assert not torch.allclose(m.decoder_mean(z, c0), m.decoder_mean(z, c1))  # p(x|z,c)
    assert [name for name, _ in m.covariate_layers()] == ["decoder.0"]
    old = _module(condition_prior=True, encode_covariates=True)
    assert old.encoder[0].in_features == 9 and old.prior_net[0][0].in_features == 5
    assert [name for name, _ in old.covariate_layers()] == ["encoder.0", "decoder.0",
                                                            "prior_net.0.0"]
    assert not torch.equal(old.latent_mean(x, c0), old.latent_mean(x, c1))
