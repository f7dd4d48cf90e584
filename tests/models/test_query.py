"""Query mapping in the model layer: `GeoVAE.load_query` then the ordinary `train()` gives what
the ``transfer`` verb gives for the same seed, keeps the reference's weights under freeze all,
and `ReferenceCells` round-trip through a model directory."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import torch

import geovae
from geovae import _keys as K
from geovae.datasets import make_blobs
from geovae.models import CGMVAE, GeoVAE, persistence
from geovae.models.reference import ReferenceCells


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ad.AnnData, ad.AnnData]:
    """A c*GMΔVAE reference on conditions cond0/cond1 (saved), and the cond2 query."""
    d = tmp_path_factory.mktemp("query")
    a = make_blobs(n_cells=600, n_features=20, n_blobs=3, n_conditions=3, seed=2)
    ref = a[a.obs["condition"] != "cond2"].copy()
    query = a[a.obs["condition"] == "cond2"].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(ref, model="cgmvae", batch_key="condition", label_key="blob",
                           likelihood="gaussian", latent_dim=3, n_hidden=32, epochs=8,
                           progress=False, heldout_samples=0)
    ref.obsm[K.UMAP] = np.random.default_rng(0).normal(size=(ref.n_obs, 2)).astype(np.float32)
    model.save(d / "ref.model")
    return d, ref, query


@pytest.mark.parametrize("freeze", ["all", "covariates"])
def test_load_query_then_train_is_the_transfer_verb(blobs, freeze: str) -> None:
    """The same latent, cluster probabilities and weights, bit for bit, as `geovae.transfer`
    with the same seed: the verb trains through `GeoVAE.train`, nothing of its own."""
    d, ref, query = blobs
    model = GeoVAE.load_query(query, d / "ref.model", freeze=freeze)
    assert type(model) is CGMVAE and model.query_mapping.n_trainable > 0
    model.train(epochs=4, seed=3, progress=False)
    q = query.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verb = geovae.transfer(q, d / "ref.model", freeze=freeze, epochs=4, seed=3,
                               progress=False, reference=None if freeze == "all" else ref)
    np.testing.assert_array_equal(model.get_latent(), q.obsm[K.REP])
    np.testing.assert_array_equal(model.get_cluster_probs(), q.obsm[K.CLUSTER_PROBS])
    mine, theirs = model.module.state_dict(), verb.module.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert model.train_params["epochs_run"] == q.uns[K.UNS]["transfer"]["epochs_run"] == 4


def test_freeze_all_keeps_the_reference_weights_through_train(blobs) -> None:
    """Under freeze all `train()` changes only the new category's columns (no weight decay, no
    gamma update, no delete move), and afterwards every weight is trainable again."""
    d, _, query = blobs
    ref = GeoVAE.load(d / "ref.model")
    model = GeoVAE.load_query(query, ref, freeze="all")
    model.train(epochs=3, progress=False)
    masks = model.query_mapping.masks
    old, new = ref.module.state_dict(), model.module.state_dict()
    for name, value in new.items():
        if name in masks:  # the old columns in their order, the new one trained from zero
            assert torch.equal(value[~masks[name]], old[name].flatten()), name
            assert value[masks[name]].abs().sum() > 0, name
        else:
            assert torch.equal(value, old[name]), name
    assert all(p.requires_grad for p in model.module.parameters())
    assert model.train_params["weight_decay"] == 0.0
    assert model.config.model_options["delete_moves"] is False


def test_nothing_to_train_returns_the_history_it_has(blobs) -> None:
    """A query of known categories under freeze all trains nothing: `train()` leaves the
    weights and the history as they were."""
    d, ref, _ = blobs
    model = GeoVAE.load_query(ref[ref.obs["condition"] == "cond0"].copy(), d / "ref.model")
    assert model.query_mapping.n_trainable == 0
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    history = model.history
    assert model.train(epochs=2, progress=False) is history
    assert all(torch.equal(v, before[k]) for k, v in model.module.state_dict().items())


def test_reference_cells_round_trip_through_a_model_directory(blobs, tmp_path: Path) -> None:
    """Every field comes back exactly (values and dtypes), a query-mapped model saves the
    reference's cells followed by the query's, and more than `MAX_REFERENCE_CELLS` are
    subsampled with the model's seed."""
    d, ref, query = blobs
    loaded = GeoVAE.load(d / "ref.model")
    cells = loaded.reference_cells
    assert set(cells.arrays()) == {"latent", "labels", "umap", "nelbo"}
    np.testing.assert_array_equal(cells.umap, ref.obsm[K.UMAP])
    loaded.save(tmp_path / "again")
    back = GeoVAE.load(tmp_path / "again").reference_cells
    for name, value in cells.arrays().items():
        got = getattr(back, name)
        assert got.dtype == value.dtype and np.array_equal(got, value), name
    q = query.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mapped = geovae.transfer(q, loaded, epochs=2, progress=False)
    mapped.save(tmp_path / "mapped")
    both = GeoVAE.load(tmp_path / "mapped").reference_cells
    assert both.n_cells == ref.n_obs + query.n_obs
    np.testing.assert_array_equal(both.latent[ref.n_obs:], q.obsm[K.REP])
    np.testing.assert_array_equal(both.umap[ref.n_obs:], q.obsm[K.UMAP])
    np.testing.assert_array_equal(both.labels[:ref.n_obs], cells.labels)
    assert (both.labels[ref.n_obs:] == -1).all()  # the query's labels were not given


def test_reference_cells_are_subsampled_when_saved(monkeypatch, tmp_path: Path) -> None:
    cells = ReferenceCells(np.arange(20, dtype=np.float32)[:, None], np.arange(20),
                           nelbo=np.arange(20, dtype=np.float32) * 2)
    monkeypatch.setattr(persistence, "MAX_REFERENCE_CELLS", 8)
    persistence.write_reference_cells(tmp_path, cells, seed=1)
    back = persistence.read_reference_cells(tmp_path)
    assert back.n_cells == 8 and back.umap is None
    rows = back.labels
    assert (np.diff(rows) > 0).all()  # in their order
    np.testing.assert_array_equal(back.latent[:, 0], rows.astype(np.float32))
    np.testing.assert_array_equal(back.nelbo, rows * 2.0)
