"""`ReferenceCells`: the cells a query is compared with when it is mapped onto a model — their
latent, label codes, UMAP coordinates and -ELBO. One declared object where earlier versions
spoke of an "atlas", "reference cells" and ``reference.npz``: a model keeps it
(``GeoVAE.reference_cells``), `geovae.models.persistence` saves it as ``reference.npz``,
loading and `geovae.models.query.load_query` set it, and `geovae.tools.transfer` reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import torch

from geovae import _keys as K
from geovae._rng import seeded
from geovae.data import DataSource, map_batches
from geovae.data.checks import category_strings, is_unlabelled
from geovae.errors import InputError


@dataclass
class ReferenceCells:
    """Reference cells, one row each; every field but ``latent`` may be missing (None)."""

    #: (cells, coordinates) posterior means in the model's latent
    latent: np.ndarray
    #: (cells,) codes into the model's ``spec.label_categories``, -1 where unlabelled
    labels: np.ndarray | None = None
    #: (cells, 2) UMAP coordinates (a query is placed on these axes)
    umap: np.ndarray | None = None
    #: (cells,) -ELBO: how well the model explains each cell (calibrates the novelty check)
    nelbo: np.ndarray | None = None
    #: (cells,) log(1 + total counts): the -ELBO is ranked among cells of similar depth
    log_library: np.ndarray | None = None

    @property
    def n_cells(self) -> int:
        return int(self.latent.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields that are there, by name (what ``reference.npz`` holds)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_arrays(cls, arrays: Any) -> ReferenceCells:
        """From named arrays (``reference.npz``); other names are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: arrays[k] for k in arrays if k in names})

    def subsample(self, max_cells: int, seed: int) -> ReferenceCells:
        """At most ``max_cells`` of the cells (a seeded random subset, in their order)."""
        keep = np.arange(self.n_cells)
        if self.n_cells > max_cells:
            keep = np.sort(np.random.default_rng(seed).choice(self.n_cells, max_cells,
                                                              replace=False))
        return ReferenceCells(**{k: np.asarray(v)[keep] for k, v in self.arrays().items()})

    def with_query(self, latent: np.ndarray, labels: np.ndarray, umap: np.ndarray | None,
                   nelbo: np.ndarray, log_library: np.ndarray | None = None
                   ) -> ReferenceCells:
        """These cells followed by a mapped query's (its known labels only); the UMAP, the
        -ELBO and the log library size only where both have them."""
        old_labels = np.full(self.n_cells, -1) if self.labels is None else self.labels
        return ReferenceCells(
            latent=np.concatenate([self.latent, latent.astype(np.float32)]),
            labels=np.concatenate([old_labels, labels.astype(np.int64)]),
            umap=None if umap is None or self.umap is None else np.concatenate([self.umap,
                                                                                umap]),
            nelbo=None if self.nelbo is None else np.concatenate([self.nelbo, nelbo]),
            log_library=None if self.log_library is None or log_library is None
            else np.concatenate([self.log_library, log_library]))


def query_cells(latent: np.ndarray, labels: np.ndarray, nelbo: np.ndarray,
                log_library: np.ndarray | None = None) -> ReferenceCells:
    """A mapped query's cells alone (a reference that kept no cells)."""
    return ReferenceCells(latent.astype(np.float32), labels.astype(np.int64), None, nelbo,
                          log_library)


def cells_of_output(adata: ad.AnnData, label_key: str | None,
                    label_categories: list[str]) -> ReferenceCells:
    """The reference cells in a fit output AnnData: ``obsm['X_geovae']``, the codes of the
    ``label_key`` column (when there is one) and ``obsm['X_umap']`` (when there is one)."""
    if K.REP not in adata.obsm:
        raise InputError(f"the reference AnnData has no obsm['{K.REP}']: give the output of "
                         "geovae fit for this model")
    cells = ReferenceCells(np.asarray(adata.obsm[K.REP], dtype=np.float32))
    if label_key is not None and label_key in adata.obs:
        col = adata.obs[label_key]
        codes = pd.Index(label_categories).get_indexer(category_strings(col))
        cells.labels = np.where(is_unlabelled(col), -1, codes)
    if K.UMAP in adata.obsm:
        cells.umap = np.asarray(adata.obsm[K.UMAP], dtype=np.float32)
    return cells


def training_cells(model: Any, latent: np.ndarray | None = None,
                   umap: np.ndarray | None = None) -> ReferenceCells | None:
    """A model's training cells as reference cells: ``latent`` (computed when not given or
    of another length), label codes, ``umap`` (dropped when of another length) and the
    -ELBO. None for a model without training data (loaded)."""
    if model.prepared is None:
        return None
    source = model.source()
    n = source.n_obs
    if latent is None or np.shape(latent)[0] != n:
        latent = model.latent_of(source)
    labels = model.prepared.labels if model.spec.label_key else None
    if umap is not None and np.shape(umap)[0] != n:
        umap = None
    return ReferenceCells(np.asarray(latent, dtype=np.float32), labels,
                          None if umap is None else np.asarray(umap, dtype=np.float32),
                          negative_elbo(model, source), log_library(source))


def negative_elbo(model: Any, source: DataSource) -> np.ndarray:
    """Per-cell -ELBO at full KL weight (fixed seed): how badly the model explains a cell.
    The reference cells' values calibrate the query's (`geovae.tools.novelty`)."""
    model.module.eval()
    with torch.no_grad(), seeded(0, source.device):
        return map_batches(source, lambda b: model.module.loss(b).negative_elbo).numpy()


def log_library(source: DataSource) -> np.ndarray | None:
    """Per-cell log(1 + total counts) of the raw matrix: the depth the novelty check
    conditions the -ELBO on (`geovae.tools.novelty.depth_pvalues`); None for data that are
    not counts (a row summing below 0: the check then ranks among all reference cells)."""
    total = map_batches(source, lambda b: b.x.float().sum(-1)).numpy()
    if not (np.isfinite(total).all() and (total >= 0).all()):
        return None
    return np.log1p(total)
