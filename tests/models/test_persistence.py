"""Model directories: models saved by geovae 0.1.0 still load and give the same numbers; save
then load restores config, spec, weights and history; the model class comes back by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DIGITS

import geovae
from geovae.models import CGMVAE, GeoVAE

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy_0.1.0"
#: saved by geovae 0.2.0.dev0 before hyperbolic decoders read tangent coordinates
LEGACY_DEV = Path(__file__).resolve().parents[1] / "data" / "legacy_0.2.0.dev0"


@pytest.fixture(scope="module")
def digits50():
    return geovae.read(DIGITS)[:50].copy()


def test_vae_saved_by_0_1_0_loads_and_embeds_identically(digits50) -> None:
    model = GeoVAE.load(LEGACY / "vae_flow.model")
    assert type(model) is GeoVAE and model.config.latent_options == {"flow": 2}
    np.testing.assert_allclose(model.get_latent(digits50),
                               np.load(LEGACY / "vae_flow_latent.npy"), atol=1e-6)


def test_cgmvae_saved_by_0_1_0_loads_as_cgmvae(digits50) -> None:
    model = GeoVAE.load(LEGACY / "cgmvae_sphere.model")
    assert type(model) is CGMVAE and model.spec.label_categories[:2] == ["d0", "d1"]
    np.testing.assert_allclose(model.get_latent(digits50),
                               np.load(LEGACY / "cgmvae_sphere_latent.npy"), atol=1e-6)
    np.testing.assert_allclose(model.get_cluster_probs(digits50),
                               np.load(LEGACY / "cgmvae_sphere_probs.npy"), atol=1e-6)


def test_hyperbolic_cgmvae_saved_before_tangent_decoder_input_loads_identically() -> None:
    a = geovae.read(DIGITS)
    a.obs["batch"] = np.where(np.arange(a.n_obs) % 2, "b0", "b1")
    a = a[:50].copy()
    model = GeoVAE.load(LEGACY_DEV / "cgmvae_hyperbolic.model")
    assert model.module.latent.decoder_input == "lorentz" and model.module.condition_prior
    np.testing.assert_allclose(model.get_latent(a),
                               np.load(LEGACY_DEV / "cgmvae_hyperbolic_latent.npy"), atol=1e-6)
    np.testing.assert_allclose(model.get_cluster_probs(a),
                               np.load(LEGACY_DEV / "cgmvae_hyperbolic_probs.npy"), atol=1e-6)
    # ... and the decoder still reads the Lorentz coordinates: the same means of p(x|z, c)
    batch = model.source(a).take(torch.arange(50))
    with torch.no_grad():
        mean = model.module.decoder_mean(model.module.latent_mean(batch.x, batch.c), batch.c)
    np.testing.assert_allclose(mean.numpy(), np.load(LEGACY_DEV /
                                                     "cgmvae_hyperbolic_decoder_mean.npy"),
                               rtol=1e-5, atol=1e-7)


def test_save_load_round_trip(tmp_path: Path, digits50) -> None:
    a = geovae.read(DIGITS)[:300].copy()
    model = geovae.fit(a, model="cgmvae", latent="hyperbolic", latent_dim=2, label_key="label",
                       n_hidden=16, epochs=2, progress=False)
    model.save(tmp_path / "m")
    again = GeoVAE.load(tmp_path / "m")
    assert type(again) is CGMVAE
    assert again.config == model.config and again.spec == model.spec
    assert again.config.latent_options == {"decoder_input": "tangent"}
    assert again.history.train == model.history.train
    for k, v in model.module.state_dict().items():
        assert np.array_equal(v.numpy(), again.module.state_dict()[k].numpy()), k
    np.testing.assert_allclose(again.get_latent(digits50), model.get_latent(digits50),
                               atol=1e-6)


def test_misspelt_options_are_errors_that_name_them() -> None:
    a = geovae.read(DIGITS)[:100].copy()
    with pytest.raises(geovae.OptionError, match=r"unknown option\(s\) \['flw'\].*latent_options"):
        geovae.fit(a, latent_options={"flw": 2}, epochs=1, progress=False)
    with pytest.raises(geovae.OptionError, match=r"unknown `latent` 'spherical'"):
        geovae.fit(a, latent="spherical", epochs=1, progress=False)
    with pytest.raises(geovae.OptionError, match=r"`latent_options.flow` works with latent "
                                                 r"euclidean only"):
        geovae.fit(a, latent="sphere", latent_options={"flow": 2}, epochs=1, progress=False)
    with pytest.raises(geovae.OptionError, match=r"`model` 'gmvae'"):
        geovae.fit(a, model="gmvae", epochs=1, progress=False)
