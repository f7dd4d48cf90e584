"""The UMAP figure written beside a run's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anndata as ad

from geovae import _keys as K

#: file suffix -> matplotlib format
PLOT_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def umap_figure(adata: ad.AnnData, extra_colors: list[str]) -> Any:
    """A UMAP coloured by cluster, the given obs columns and predicted labels."""
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    colors = [K.CLUSTER, *[c for c in extra_colors if c in adata.obs.columns]]
    if K.LABEL in adata.obs.columns:
        colors.append(K.LABEL)
    return sc.pl.umap(adata, color=colors, show=False, return_fig=True, ncols=len(colors))


def save_figure(fig: Any, tmp: Path, final: Path) -> None:
    """Write ``fig`` to ``tmp`` in the format ``final``'s suffix names, and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(tmp, dpi=150, bbox_inches="tight", format=PLOT_FORMATS[final.suffix.lower()])
    plt.close(fig)
