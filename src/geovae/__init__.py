"""geovae: deep generative models with latent spaces of the right shape.

Notebook use mirrors the CLI::

    import geovae
    adata = geovae.read("data/pbmc68k_counts.h5ad")
    model = geovae.fit(adata, latent="sphere")     # obsm["X_geovae"], uns["geovae"]
    geovae.cluster(adata)                          # obs["geovae_cluster"], obsm["X_umap"]
    model.save("pbmc.geovae.model")

Layers, bottom to top: ``geometry`` -> ``distributions`` -> ``nn`` -> ``data`` -> ``modules``
-> ``training`` -> ``models`` -> ``tools`` (verbs) -> ``runs`` (file jobs) -> ``cli``.
Heavy libraries (torch, scanpy) load on first use, so ``import geovae`` and ``geovae --help``
are fast.

``import geovae`` sets ``OMP_WAIT_POLICY=PASSIVE`` (unless set) before torch loads, so idle
OpenMP threads sleep instead of spinning on a shared machine (see `geovae._threads`); it warns
when torch was imported first. ``fit``, ``embed`` and ``transfer`` take ``threads=`` (the
command line's ``--threads``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from geovae._threads import set_wait_policy
from geovae.errors import GeoVAEError, InputError, OptionError

set_wait_policy()  # before anything loads torch and its OpenMP runtime

__version__ = "0.2.0.dev0"

_LAZY = {
    "fit": "geovae.tools", "embed": "geovae.tools", "cluster": "geovae.tools",
    "transfer": "geovae.tools", "report": "geovae",
    "read": "geovae.io", "GeoVAE": "geovae.models", "CGMVAE": "geovae.models",
    "datasets": "geovae", "compare_latents": "geovae.tools.compare",
}

__all__ = ["CGMVAE", "GeoVAE", "GeoVAEError", "InputError", "OptionError", "__version__",
           "cluster", "compare_latents", "datasets", "embed", "fit", "read", "report",
           "transfer"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'geovae' has no attribute {name!r}")
    if name in ("datasets", "report"):  # report: a callable package (geovae.report(...))
        return import_module(f"geovae.{name}")
    return getattr(import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
