"""The run record ``uns['geovae']``: one writer, registered fields only, h5ad-safe values."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np

from geovae import _keys as K


def h5ad_safe(value: Any) -> Any:
    """Drop None values and make lists storable in .h5ad (recursively)."""
    if isinstance(value, dict):
        return {str(k): h5ad_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
               for v in value) and value:
            return np.asarray(value)
        return np.asarray([str(v) for v in value]) if value else np.asarray([], dtype=str)
    return value


def update_record(adata: ad.AnnData, *, fresh: bool = False, **fields: Any) -> dict[str, Any]:
    """Set fields of ``uns['geovae']`` (a new record with ``fresh``); every field must be one
    of `geovae._keys.RECORD_FIELDS`."""
    unknown = sorted(set(fields) - set(K.RECORD_FIELDS))
    if unknown:
        raise ValueError(f"unregistered run-record field(s) {unknown}: add them to "
                         "geovae._keys.RECORD_FIELDS")
    info = adata.uns.get(K.UNS)
    if fresh or not isinstance(info, dict):
        info = {}
    info.update(h5ad_safe({k: v for k, v in fields.items() if v is not None}))
    adata.uns[K.UNS] = info
    return info


def drop_fields(adata: ad.AnnData, *names: str) -> None:
    """Remove fields of ``uns['geovae']`` that an earlier run wrote and this run replaces
    with nothing (e.g. the label agreement of earlier clusters)."""
    info = adata.uns.get(K.UNS)
    if isinstance(info, dict):
        for name in names:
            info.pop(name, None)


def command_chain(info: dict[str, Any] | None) -> list[str]:
    """The commands that made a file so far (``commands``; a file from before they were
    recorded: its last ``command``)."""
    if not isinstance(info, dict):
        return []
    chain = [str(c) for c in np.atleast_1d(info.get("commands", [])) if str(c)]
    if not chain and info.get("command"):
        chain = [str(info["command"])]
    return chain
