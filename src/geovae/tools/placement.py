"""A mapped query's place on the reference's UMAP axes."""

from __future__ import annotations

import numpy as np

from geovae.graph.neighbors import knn
from geovae.models.reference import ReferenceCells


def place_on_umap(z: np.ndarray, cells: ReferenceCells, k: int, geometry: str
                  ) -> np.ndarray | None:
    """Query UMAP coordinates on the reference's axes: the distance-weighted mean of the
    reference UMAP positions of each cell's k nearest reference cells (the initialisation
    scanpy's ingest and umap-learn's transform start from). None when the reference cells
    have no UMAP (a reference whose run made none)."""
    if cells.umap is None:
        return None
    dist, idx = knn(z, cells.latent, k, geometry)
    w = 1.0 / (dist + 1e-6)
    w /= w.sum(1, keepdims=True)
    return (cells.umap[idx] * w[..., None]).sum(1).astype(np.float32)
