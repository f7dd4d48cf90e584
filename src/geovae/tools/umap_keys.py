"""Where geovae's UMAP goes: one policy for `geovae.cluster` and every command.

geovae's UMAP always goes to ``obsm['X_geovae_umap']`` (parameters ``uns['geovae_umap']``)
and is copied to scanpy's default ``obsm['X_umap']`` / ``uns['umap']`` only when the input
holds no UMAP of its own there; an ``X_umap`` that is geovae's own copy (equal to the input's
``X_geovae_umap``) is geovae's to replace. A user's keys are never changed. geovae's earlier
UMAP is dropped by every run (it was made from another graph), also by one that makes none.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np

from geovae import _keys as K


def set_aside(adata: ad.AnnData) -> dict[str, Any]:
    """Before a UMAP is made: take the user's ``X_umap`` / ``uns['umap']`` out of the way (to
    be put back by `put_back`), and drop geovae's own earlier UMAP."""
    obsm, uns = adata.obsm, adata.uns
    saved: dict[str, Any] = {}
    own = K.UMAP in obsm and K.UMAP_GEOVAE in obsm and _same(obsm[K.UMAP], obsm[K.UMAP_GEOVAE])
    if own:
        del obsm[K.UMAP]
        uns.pop("umap", None)
    else:
        if K.UMAP in obsm:
            saved["obsm"] = obsm[K.UMAP]
            del obsm[K.UMAP]
        if "umap" in uns:
            saved["uns"] = uns.pop("umap")
    if K.UMAP_GEOVAE in obsm:
        del obsm[K.UMAP_GEOVAE]
    uns.pop(K.UMAP_PARAMS, None)
    return saved


def put_back(adata: ad.AnnData, saved: dict[str, Any], computed: bool) -> dict[str, Any]:
    """After the UMAP (scanpy's, in ``X_umap`` / ``uns['umap']``) was made, or none:
    geovae's UMAP to its own keys (and to ``X_umap`` where that is free), the user's keys back
    in place. Returns the record's ``umap`` field: ``computed`` and the keys written."""
    obsm, uns = adata.obsm, adata.uns
    where: dict[str, Any] = {"computed": computed, "obsm": [], "uns": []}
    if computed and K.UMAP in obsm:
        coords, params = obsm[K.UMAP], uns.pop("umap", None)
        del obsm[K.UMAP]
        obsm[K.UMAP_GEOVAE] = coords
        where["obsm"].append(K.UMAP_GEOVAE)
        if params is not None:
            uns[K.UMAP_PARAMS] = params
            where["uns"].append(K.UMAP_PARAMS)
        if not saved:
            obsm[K.UMAP] = coords
            where["obsm"].append(K.UMAP)
            if params is not None:
                uns["umap"] = dict(params)
                where["uns"].append("umap")
    if "obsm" in saved:
        obsm[K.UMAP] = saved["obsm"]
    if "uns" in saved:
        uns["umap"] = saved["uns"]
    return where


def place(adata: ad.AnnData, coords: Any) -> dict[str, Any]:
    """Given UMAP coordinates (transfer: placed on the reference's axes) under the same keys
    as a computed UMAP; returns the record's ``umap`` field."""
    saved = set_aside(adata)
    adata.obsm[K.UMAP] = np.asarray(coords)
    return put_back(adata, saved, computed=True)


def users_umap_kept(adata: ad.AnnData, where: dict[str, Any]) -> bool:
    """geovae made a UMAP but left ``X_umap`` to the user's own (it is only in
    ``X_geovae_umap``)."""
    return bool(where.get("computed")) and K.UMAP_GEOVAE in list(where.get("obsm", [])) \
        and K.UMAP not in list(where.get("obsm", [])) and K.UMAP in adata.obsm


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.array_equal(a, b))
