"""geovae: deep generative models with latent spaces of the right shape.

Notebook use mirrors the CLI::

    import geovae
    adata = geovae.read("data/pbmc68k_counts.h5ad")
    model = geovae.fit(adata, latent_dim=10)        # writes obsm["X_geovae"], uns["geovae"]
    geovae.cluster(adata)                           # obs["geovae_cluster"], obsm["X_umap"]
    model.save("pbmc.geovae.model")
"""

from __future__ import annotations

__version__ = "0.1.0"

from geovae.api import cluster, embed, fit  # noqa: E402
from geovae.errors import GeoVAEError, InputError, OptionError  # noqa: E402
from geovae.io import read  # noqa: E402
from geovae.model import GeoVAE  # noqa: E402

__all__ = [
    "GeoVAE",
    "GeoVAEError",
    "InputError",
    "OptionError",
    "__version__",
    "cluster",
    "embed",
    "fit",
    "read",
]
