"""Every key a run writes is in the key registry, and docs/outputs.md's table is current."""

from __future__ import annotations

import warnings
from pathlib import Path

import geovae
from geovae import _keys as K
from geovae.datasets import make_blobs


def _new_keys(before: dict[str, set[str]], adata: object) -> dict[str, set[str]]:
    now = {slot: set(getattr(adata, slot).keys()) for slot in before}
    return {slot: now[slot] - before[slot] for slot in before}


def test_fit_embed_cluster_write_only_registered_keys() -> None:
    adata = make_blobs(n_cells=300, n_features=10, seed=0)
    slots = ("obs", "obsm", "obsp", "uns")
    before = {slot: set(getattr(adata, slot).keys()) for slot in slots}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = geovae.fit(adata, model="cgmvae", latent="hyperbolic", latent_dim=2,
                           likelihood="gaussian", label_key="blob", batch_key="condition",
                           epochs=2, volume=True, progress=False)
        geovae.cluster(adata)
        again = adata.copy()
        geovae.embed(again, model, volume=True)
    registered = {(k.slot, k.name) for k in K.KEYS}
    for slot, names in _new_keys(before, adata).items():
        for name in names:
            pattern = (slot, "<column>_colors") if name.endswith("_colors") else (slot, name)
            assert pattern in registered, f"{slot}['{name}'] is not in geovae._keys"
    assert set(adata.uns[K.UNS]) <= set(K.RECORD_FIELDS)
    assert set(again.uns[K.UNS]) <= set(K.RECORD_FIELDS)
    assert "geovae_mixture" not in adata.obs  # the duplicate of geovae_cluster is gone
    # and the registry is not padded: the cgmvae run wrote each obs/obsm key it lists
    for key in K.KEYS:
        if key.slot in ("obs", "obsm") and "fit" in key.written_by:
            assert key.name in getattr(adata, key.slot), key.name


def test_outputs_page_table_is_the_registry() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "outputs.md").read_text()
    assert K.keys_table() in page, "regenerate it: PYTHONPATH=src python docs/make_outputs.py"
