"""`CGMVAE`: the c*GMΔVAE as an AnnData-facing model — mixture probabilities, cluster calls,
predicted labels and component usage live here, not in the torch module."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd
import torch

from geovae import _keys as K
from geovae.data import InMemorySource, map_batches
from geovae.models.base import GeoVAE
from geovae.models.registry import register
from geovae.modules.cgmvae import TERMS, CGMVAEModule

#: a component is "used" when it is the argmax of at least this share of cells (and >= 1 cell)
USED_SHARE = 0.005


def component_usage(assignments: np.ndarray, n_clusters: int) -> tuple[list[int], list[int]]:
    """(used, empty) components: used = argmax of >= max(1, USED_SHARE * n) cells."""
    counts = np.bincount(assignments, minlength=n_clusters)
    need = max(1, int(np.ceil(USED_SHARE * len(assignments))))
    used = [int(k) for k in np.flatnonzero(counts >= need)]
    return used, [int(k) for k in np.flatnonzero(counts < need)]


@register
class CGMVAE(GeoVAE):
    """The conditional Gaussian-mixture VAE with a Dirichlet prior (c*GMΔVAE).

    Takes every `GeoVAE` parameter. ``model_options``: ``n_clusters`` (K, an upper bound;
    default the number of labels, else 20), ``w_dim``, ``dirichlet_alpha``,
    ``classifier_weight``, ``condition_prior``. With ``label_key`` it is (semi-)supervised:
    component k is label k, cells labelled NaN/""/"unknown" are unlabelled.
    """

    name: ClassVar[str] = "cgmvae"
    module_class: ClassVar[type[CGMVAEModule]] = CGMVAEModule

    def complete_config(self) -> None:
        opts = self.config.model_options
        n_labels = len(self.spec.label_categories)
        opts.setdefault("n_labels", n_labels)
        opts.setdefault("n_clusters", n_labels or 20)
        opts.setdefault("w_dim", self.config.latent_dim)

    @torch.no_grad()
    def cluster_probs_of(self, source: InMemorySource) -> np.ndarray:
        """q(y|z) at the posterior mean of z, (cells, K)."""
        self.module.eval()
        probs = map_batches(source, lambda b: self.module.cluster_probs(b.x, b.c))
        return probs.numpy().astype(np.float32)

    def get_cluster_probs(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Mixture-component probabilities of each cell, (cells, K)."""
        return self.cluster_probs_of(self.source(adata))

    def get_label_probs(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Probabilities of the label categories (``spec.label_categories`` order)."""
        probs = self.get_cluster_probs(adata)[:, : len(self.spec.label_categories)]
        return probs / probs.sum(1, keepdims=True).clip(1e-12)

    def write_outputs(self, adata: ad.AnnData, source: InMemorySource) -> dict[str, Any]:
        info = super().write_outputs(adata, source)
        probs = self.cluster_probs_of(source)
        adata.obsm[K.CLUSTER_PROBS] = probs
        labels = list(self.spec.label_categories)
        if labels:
            pred = probs[:, : len(labels)].argmax(1)
            adata.obs[K.LABEL] = pd.Categorical(np.asarray(labels)[pred], categories=labels)
        n_clusters = self.module.n_clusters
        used, empty = component_usage(probs.argmax(1), n_clusters)
        info.update(n_clusters=int(n_clusters), n_components_used=len(used),
                    empty_components=np.asarray(empty, dtype=np.int64),
                    dirichlet_alpha=float(self.module.alpha[0]))
        history = self.history
        if history is not None and all(t in history.terms for t in TERMS):
            info["elbo_terms"] = {t: float(history.terms[t][-1]) for t in TERMS}
        if empty:
            warnings.warn(f"c*GMΔVAE: {len(empty)} of {n_clusters} mixture components are "
                          f"empty or collapsed (argmax for < {USED_SHARE:.1%} of cells): "
                          f"{empty}", stacklevel=2)
        return info
