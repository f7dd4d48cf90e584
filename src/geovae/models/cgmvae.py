"""`CGMVAE`: the c*GMΔVAE as an AnnData-facing model — mixture probabilities, cluster calls,
predicted labels, their calibration and component usage live here, not in the torch module."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import anndata as ad
import numpy as np
import pandas as pd
import torch

from geovae import _keys as K
from geovae.data import DataSpec, InMemorySource, map_batches
from geovae.models.base import GeoVAE
from geovae.models.config import ModelConfig
from geovae.models.registry import register
from geovae.modules.cgmvae import TERMS, CGMVAEModule

#: a component is "used" when its mixture weight is at least this share (weights), or when it
#: is the argmax of at least this share of cells (and >= 1 cell; argmax usage)
USED_SHARE = 0.005
#: bins of the expected calibration error (equal width on [0, 1])
ECE_BINS = 15
#: options a config saved without them (geovae 0.1.0, or 0.2.0.dev0 before they existed) was
#: trained with; new fits write every option explicitly
LEGACY_OPTIONS: dict[str, Any] = {"mixture_weights": "per_cell", "dirichlet_alpha": 1.0,
                                  "linear_prior": False, "condition_prior": True,
                                  "encode_covariates": True, "cluster_samples": 0}


def component_usage(assignments: np.ndarray, n_clusters: int) -> tuple[list[int], list[int]]:
    """(used, empty) components by argmax: used = argmax of >= max(1, USED_SHARE * n) cells."""
    counts = np.bincount(assignments, minlength=n_clusters)
    need = max(1, int(np.ceil(USED_SHARE * len(assignments))))
    used = [int(k) for k in np.flatnonzero(counts >= need)]
    return used, [int(k) for k in np.flatnonzero(counts < need)]


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray,
                               n_bins: int = ECE_BINS) -> float:
    """Top-label ECE: sum over equal-width confidence bins of |bin| / n * |accuracy -
    mean confidence| (Guo et al. 2017); ``probs`` (cells, classes), ``truth`` class codes."""
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == truth).astype(np.float64)
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        rows = bins == b
        ece += rows.mean() * abs(correct[rows].mean() - conf[rows].mean())
    return float(ece)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = probs.astype(np.float64)
    return -(p * np.log(np.clip(p, 1e-30, None))).sum(1)


@register
class CGMVAE(GeoVAE):
    """The conditional Gaussian-mixture VAE with a Dirichlet prior (c*GMΔVAE).

    Takes every `GeoVAE` parameter. ``model_options`` (see `geovae.modules.cgmvae`):
    ``n_clusters`` (K, an upper bound; default the number of labels, else 20), ``w_dim``,
    ``dirichlet_alpha`` (default 1/K), ``mixture_weights`` (``global``: one π with
    q(π) = Dir(β), the default; ``per_cell``: the thesis' d per cell), ``weights_step``,
    ``classifier_weight``, ``condition_prior`` (covariates also in p(z|w,y,c); default False:
    they enter the decoder only, so the latent is corrected for them),
    ``encode_covariates`` (the encoder sees c; default False), ``cluster_samples`` (draws of z
    for the predictive q(y|x); default 32, 0 = at the posterior mean). With ``label_key`` it
    is (semi-)supervised: component k is label k, cells labelled NaN/""/"unknown" are
    unlabelled.
    """

    name: ClassVar[str] = "cgmvae"
    module_class: ClassVar[type[CGMVAEModule]] = CGMVAEModule

    def complete_config(self) -> None:
        """Every module option explicit in the config (so a saved model says what it is)."""
        opts = self.config.model_options
        n_labels = len(self.spec.label_categories)
        opts.setdefault("n_labels", n_labels)
        opts.setdefault("n_clusters", n_labels or 20)
        opts.setdefault("w_dim", self.config.latent_dim)
        for name, default in self.module_options().items():
            opts.setdefault(name, default)
        if opts["dirichlet_alpha"] is None:
            opts["dirichlet_alpha"] = (1.0 / opts["n_clusters"]
                                       if opts["mixture_weights"] == "global" else 1.0)

    @classmethod
    def from_saved(cls, config: ModelConfig, spec: DataSpec) -> GeoVAE:
        """A saved config without the newer options gets the values it was trained with."""
        for name, value in LEGACY_OPTIONS.items():
            config.model_options.setdefault(name, value)
        return super().from_saved(config, spec)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """As `GeoVAE.train`; global mixture weights count KL(q(π)||p(π)) once for the cells
        of the training data."""
        self.module.dataset_size = max(1, int(self.prepared.n_obs))
        return super().train(*args, **kwargs)

    # ------------------------------------------------------------------ probabilities
    @torch.no_grad()
    def cluster_probs_of(self, source: InMemorySource, n_samples: int | None = None,
                         seed: int | None = None) -> np.ndarray:
        """Mixture-component probabilities (cells, K): the predictive
        q(y|x) = E_q(z|x) q(y|z), a Monte Carlo mean over ``n_samples`` draws of z (default
        the ``cluster_samples`` option) with the global RNG forked and seeded by ``seed``
        (default the model's seed), so the numbers are deterministic for a seed; 0 samples
        gives q(y|z) at the posterior mean of z."""
        module = self.module.eval()
        n = module.cluster_samples if n_samples is None else int(n_samples)
        if n <= 0:
            probs = map_batches(source, lambda b: module.cluster_probs(b.x, b.c))
            return probs.numpy().astype(np.float32)

        def one_batch(b: Any) -> torch.Tensor:
            qz = module.posteriors(b.x, b.c)[0]
            total = torch.zeros(len(b), module.n_clusters, device=b.x.device,
                                dtype=torch.float64)
            for _ in range(n):
                z, _ = module.latent.rsample(qz)
                total += torch.softmax(module.classifier(z), dim=-1).double()
            return total / n

        devices = [source.device] if source.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed if seed is None else int(seed))
            probs = map_batches(source, one_batch)
        return probs.numpy().astype(np.float32)

    def get_cluster_probs(self, adata: ad.AnnData | None = None, n_samples: int | None = None,
                          seed: int | None = None) -> np.ndarray:
        """Mixture-component probabilities of each cell, (cells, K): the predictive q(y|x)
        (see `cluster_probs_of`)."""
        return self.cluster_probs_of(self.source(adata), n_samples, seed)

    def get_label_probs(self, adata: ad.AnnData | None = None, n_samples: int | None = None,
                        seed: int | None = None) -> np.ndarray:
        """Probabilities of the label categories (``spec.label_categories`` order)."""
        return self.label_probs(self.get_cluster_probs(adata, n_samples, seed))

    def label_probs(self, probs: np.ndarray) -> np.ndarray:
        probs = probs[:, : len(self.spec.label_categories)]
        return probs / probs.sum(1, keepdims=True).clip(1e-12)

    def mixture_weights(self, probs: np.ndarray) -> np.ndarray:
        """The mixture weights (K,): E_q[π] = β / Σβ for global weights; per-cell d has no
        global weights, so the mean of q(y|x) over the cells is reported."""
        if self.module.mixture_weights == "global":
            return self.module.weights().double().cpu().numpy()
        return probs.astype(np.float64).mean(0)

    # ------------------------------------------------------------------ outputs
    def heldout_cells(self, source: InMemorySource) -> tuple[np.ndarray, str]:
        """Cells whose labels the fit did not train on: the validation split for the training
        data (the trainer's split, same seed and fraction), every cell for other data."""
        n = source.n_obs
        if source is self._source and self.history is not None:
            from geovae.training import TrainSettings
            from geovae.training.parts import split_indices

            fraction = self.train_params.get("validation_fraction",
                                             TrainSettings.validation_fraction)
            gen = torch.Generator().manual_seed(self.config.seed)
            mask = np.zeros(n, dtype=bool)
            mask[split_indices(n, fraction, gen)[1].numpy()] = True
            return mask, "validation split"
        return np.ones(n, dtype=bool), "all cells"

    def calibration(self, probs: np.ndarray, source: InMemorySource) -> dict[str, Any] | None:
        """ECE of the predicted labels on labelled held-out cells (None without any)."""
        if not self.spec.label_categories:
            return None
        mask, which = self.heldout_cells(source)
        labels = source.labels.cpu().numpy()
        rows = mask & (labels >= 0)
        if not rows.any():
            return None
        at_mean = self.label_probs(self.cluster_probs_of(source, n_samples=0))
        pred = self.label_probs(probs)
        return {"ece": expected_calibration_error(pred[rows], labels[rows]),
                "ece_posterior_mean": expected_calibration_error(at_mean[rows], labels[rows]),
                "accuracy": float((pred[rows].argmax(1) == labels[rows]).mean()),
                "n_cells": int(rows.sum()), "cells": which, "n_bins": ECE_BINS}

    def write_outputs(self, adata: ad.AnnData, source: InMemorySource) -> dict[str, Any]:
        info = super().write_outputs(adata, source)
        module = self.module
        probs = self.cluster_probs_of(source)
        adata.obsm[K.CLUSTER_PROBS] = probs
        adata.obs[K.CLUSTER_ENTROPY] = entropy(probs).astype(np.float32)
        labels = list(self.spec.label_categories)
        if labels:
            pred = probs[:, : len(labels)].argmax(1)
            adata.obs[K.LABEL] = pd.Categorical(np.asarray(labels)[pred], categories=labels)
        n_clusters = module.n_clusters
        weights = self.mixture_weights(probs)
        used = np.flatnonzero(weights >= USED_SHARE)
        empty = np.flatnonzero(weights < USED_SHARE)
        used_argmax, _ = component_usage(probs.argmax(1), n_clusters)
        n = module.cluster_samples
        info.update(n_clusters=int(n_clusters), n_components_used=int(len(used)),
                    n_components_argmax=len(used_argmax),
                    empty_components=np.asarray(empty, dtype=np.int64),
                    mixture_weights=weights.astype(np.float32),
                    dirichlet_alpha=float(module.alpha[0]),
                    cluster_probs=(f"predictive q(y|x): mean of q(y|z) over {n} draws of z, "
                                   f"seed {self.config.seed}" if n > 0 else
                                   "q(y|z) at the posterior mean of z"),
                    calibration=self.calibration(probs, source))
        history = self.history
        if history is not None and all(t in history.terms for t in TERMS):
            info["elbo_terms"] = {t: float(history.terms[t][-1]) for t in TERMS}
        if module.mixture_weights == "per_cell" and len(used_argmax) < n_clusters:
            warnings.warn(f"c*GMΔVAE: {n_clusters - len(used_argmax)} of {n_clusters} mixture "
                          f"components are empty or collapsed (argmax for < {USED_SHARE:.1%} "
                          f"of cells)", stacklevel=2)
        elif (module.mixture_weights == "global" and len(empty) == 0
              and n_clusters > max(1, len(labels))):
            warnings.warn(f"c*GMΔVAE: all {n_clusters} mixture components carry weight "
                          f">= {USED_SHARE:.1%}: n_clusters may be too small", stacklevel=2)
        return info
