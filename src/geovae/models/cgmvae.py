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
from geovae.errors import OptionError
from geovae.models.base import GeoVAE
from geovae.models.calibration import LabelTemperature, fit_temperature, temper
from geovae.models.registry import register
from geovae.modules.cgmvae import TERMS, CGMVAEModule
from geovae.modules.mixture_start import START_RESOLUTIONS
from geovae.nn.likelihoods import COUNT_LIKELIHOODS

#: a component is "used" when it is the argmax of at least this share of cells (and >= 1 cell)
USED_SHARE = 0.005
#: what a model saved without these options (geovae 0.1.0 and early 0.2 dev) was
LEGACY_OPTIONS = {"condition_prior": True, "mixture_weights": "per_cell",
                  "dirichlet_alpha": 1.0, "cluster_samples": 0, "delete_moves": False,
                  "warm_start": 0.0, "hold": 0.0, "y_temper": 0.0,
                  "prior_lr": 1.0, "merge_moves": False, "hold_weights": False,
                  "plateau_start": False, "merge_rule": "elbo", "mixture_start": "gmm"}
#: bins of the expected calibration error
ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray,
                               n_bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): sum over equal-width confidence bins of
    |accuracy - mean confidence| weighted by the bin's share of cells."""
    conf = probs.max(1)
    correct = probs.argmax(1) == truth
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        rows = bins == b
        ece += rows.mean() * abs(correct[rows].mean() - conf[rows].mean())
    return float(ece)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats of each row of ``probs``."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(p)).sum(1)


def label_columns(probs: np.ndarray, n_labels: int) -> np.ndarray:
    """The label components' columns of the mixture's ``probs`` (the first ``n_labels``),
    renormalised to sum to 1 per cell."""
    p = probs[:, :n_labels]
    return p / p.sum(1, keepdims=True).clip(1e-12)


def bound_note(n_used: int, n_clusters: int, labelled: bool) -> str | None:
    """The note of an unsupervised fit whose every component ended in use (issue 24 item 7):
    then K did not act as an upper bound, and the data may hold more clusters than K. None
    where some component stayed empty, or with labels (there K is the number of labels)."""
    if labelled or n_clusters < 2 or n_used < n_clusters:
        return None
    return (f"c*GMΔVAE bound reached: all {n_clusters} components are in use, so the data may "
            f"hold more clusters than --n-clusters {n_clusters}; refit with a larger bound "
            f"(e.g. --n-clusters {2 * n_clusters}) and compare the components in use")


def component_usage(assignments: np.ndarray, n_clusters: int) -> tuple[list[int], list[int]]:
    """(used, empty) components: used = argmax of >= max(1, USED_SHARE * n) cells."""
    counts = np.bincount(assignments, minlength=n_clusters)
    need = max(1, int(np.ceil(USED_SHARE * len(assignments))))
    used = [int(k) for k in np.flatnonzero(counts >= need)]
    return used, [int(k) for k in np.flatnonzero(counts < need)]


def not_unsupervised_global(opts: dict[str, Any], latent: str, geometry: str) -> list[str]:
    """Why ``opts`` on the ``latent`` are no unsupervised mixture with global weights on a
    Euclidean latent (what the merge moves and the warm start act on; ``geometry``: why the
    latent must be Euclidean), one reason each; [] where they are one."""
    return [reason for off, reason in (
        (latent != "euclidean", f"the {latent} latent: {geometry}, "
                                "{latent='euclidean'} only"),
        (bool(opts.get("n_labels")), "labels: each labelled component is its label's"),
        (opts.get("mixture_weights") != "global",
         "per-cell weights: {mixture_weights='global'} only")) if off]


def check_merge_rule_applies(opts: dict[str, Any], latent: str, given: set[str]) -> None:
    """A one-line `OptionError` when ``merge_rule`` is among the options ``given`` (the
    default's value too, as for `check_warm_start_applies`) where no merge moves run
    (`geovae.modules.merging.mergeable`), instead of dropping it."""
    if "merge_rule" not in given:
        return
    rule = opts["merge_rule"]
    why = not_unsupervised_global(opts, latent, "a merge refits a Gaussian's moments") + [
        reason for off, reason in (
            (not opts.get("delete_moves", True), "{delete_moves=False} turns merging off too"),
            (not opts.get("merge_moves", True), "{merge_moves=False}")) if off]
    if why:
        raise OptionError(f"{{opt}} {rule} would have no effect: merge moves run for an "
                          f"unsupervised mixture only ({'; '.join(why)})", param="merge_rule")


def check_warm_start_applies(opts: dict[str, Any], latent: str, given: set[str]) -> None:
    """A one-line `OptionError` when ``warm_start`` or ``hold`` above 0, or ``mixture_start``,
    is among the options ``given`` where the warm start does not run
    (`geovae.modules.mixture_start.warm_starts`: it clusters z's Euclidean coordinates, and
    sets the global weights and free components), instead of dropping it. 0 (the mixture
    trained end to end: what runs there) is accepted; so is the default, which applies where
    it can."""
    asked = [name for name in ("warm_start", "hold", "mixture_start")
             if name in given and opts.get(name)]
    why = not_unsupervised_global(opts, latent, "the start clusters z's coordinates")
    if asked and why:
        raise OptionError(f"{{opt}} {opts[asked[0]]} would have no effect: the warm start "
                          "runs for an unsupervised mixture with global weights on a "
                          f"Euclidean latent only ({'; '.join(why)}); leave it out",
                          param=asked[0])


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
    #: the temperature of the label probabilities (`geovae.models.calibration`): fitted by
    #: `train` on the labelled validation cells, saved with the model; 1 without labels, for
    #: a model saved before it existed, and for a query-mapped model keeps the reference's
    label_temperature: LabelTemperature = LabelTemperature()

    @classmethod
    def check_keys(cls, batch_keys: list[str], label_key: str | None) -> None:
        """The labels are what the model predicts (q(y|x)): they cannot also be a covariate
        it is given."""
        if label_key is not None and label_key in batch_keys:
            raise OptionError(f"{{opt}} '{label_key}' is also the label column: the c*GMΔVAE "
                              "predicts the labels, so giving them as a covariate as well "
                              "would hand it the answer; drop that batch key (or use another "
                              "label column)", param="batch_key")

    def complete_config(self) -> None:
        opts = self.config.model_options
        given = set(opts)  # what the caller passed (a saved model's are all there: not checked)
        super().complete_config()
        n_labels = len(self.spec.label_categories)
        opts.setdefault("n_labels", n_labels)
        opts.setdefault("n_clusters", n_labels or 20)
        opts.setdefault("w_dim", self.config.latent_dim)
        opts.setdefault("mixture_weights", "global")
        opts.setdefault("dirichlet_alpha", 1.0 / opts["n_clusters"]
                        if opts["mixture_weights"] == "global" else 1.0)
        opts.setdefault("condition_prior", False)
        # counts: the gap rule with its vetoes, which folds a type's depth lobes and keeps the
        # types the graph joins apart (fresh draws, RESULTS.md "Delete moves": issue-type
        # K = 20 ARI +0.085 over `elbo`, p 0.041, 5/5 within one of the truth; no set worse);
        # other data keep `elbo`: there is no expression veto without counts
        if self.config.likelihood in COUNT_LIKELIHOODS:
            opts.setdefault("merge_rule", "graph")
        for name in ("classifier_weight", "cluster_samples", "delete_moves", "warm_start",
                     "hold", "y_temper", "prior_lr", "merge_moves", "hold_weights",
                     "plateau_start", "merge_rule", "mixture_start"):
            opts.setdefault(name, self.module_options()[name])
        if self.adata is not None:  # a new fit (a saved model keeps its options)
            check_merge_rule_applies(opts, self.config.latent, given)
            check_warm_start_applies(opts, self.config.latent, given)

    @classmethod
    def from_saved(cls, config: Any, spec: Any) -> CGMVAE:
        """As `GeoVAE.from_saved`; options a model was saved without get the values of the
        geovae that wrote it (`LEGACY_OPTIONS`), so old model directories give the same
        numbers."""
        for name, old in LEGACY_OPTIONS.items():
            config.model_options.setdefault(name, old)
        return super().from_saved(config, spec)

    def train(self, *args: Any, **kwargs: Any) -> Any:
        """`GeoVAE.train`, after telling the module N and the labelled share (a query-mapped
        model keeps the reference's: its global mixture weights are the reference's). A
        fitted model (trained before, or loaded) trains on from its mixture: the warm start
        (pretraining, the mixture's start from a GMM, the hold) belongs to the first fit."""
        labels = self.prepared.labels
        if self.query_mapping is None:
            self.module.set_data_facts(len(labels), float((labels >= 0).mean()) if len(labels)
                                       else 1.0)
        warm_start = self.module.warm_start
        if self.history is not None:
            self.module.warm_start = 0.0
        try:
            history = super().train(*args, **kwargs)
        finally:
            self.module.warm_start = warm_start
        if self.query_mapping is None:
            self.label_temperature = self.fit_label_temperature()
        return history

    def fit_label_temperature(self) -> LabelTemperature:
        """The temperature of the label probabilities, fitted (`fit_temperature`) on the
        validation split's labelled cells (the test split stays for `label_calibration`);
        T = 1 without labels or validation cells."""
        h, n = self.history, len(self.spec.label_categories)
        if not n or h is None or h.validation_indices is None:
            return LabelTemperature()
        source = self.source()
        idx = h.validation_indices.cpu().numpy().astype(np.int64)
        truth = source.labels.cpu().numpy()[idx]
        idx, truth = idx[truth >= 0], truth[truth >= 0]
        if not len(idx):
            return LabelTemperature()
        p = label_columns(self._probs_at(source, idx, None), n)
        return LabelTemperature(fit_temperature(p, truth), int(len(idx)))

    @torch.no_grad()
    def cluster_probs_of(self, source: InMemorySource, n_samples: int | None = None,
                         tempered: bool = True) -> np.ndarray:
        """The predictive q(y|x) = E_q(z|x) q(y|z), (cells, K): ``n_samples`` draws of z per
        cell (default the ``cluster_samples`` option; 0 = at the posterior mean), seeded with
        the model's seed; ``tempered``: scaled by `label_temperature` (1 without labels; the
        argmax is the same)."""
        self.module.eval()
        with self.seeded(3):
            probs = map_batches(source, lambda b: self.module.cluster_probs(b.x, b.c,
                                                                            n_samples))
        probs = probs.numpy().astype(np.float32, copy=False)
        return temper(probs, self.label_temperature.value) if tempered else probs

    def label_calibration(self, source: InMemorySource, probs: np.ndarray
                          ) -> dict[str, Any] | None:
        """Expected calibration error and accuracy of the predicted labels on held-out
        labelled cells, for the predictive ``probs`` (`cluster_probs_of` of ``source``, the
        probabilities written out) and, for comparison, q(y|z) at the posterior mean: the
        test cells of the training data (fit; neither training nor early stopping saw them;
        the validation cells when the data were too small for a test split), or every
        labelled cell of new data (embed, and a query-mapped model's query); None without
        such cells. With the `label_temperature` (and the cells it was fitted on) and the ECE
        the predictive had without it."""
        labels = source.labels.cpu().numpy()
        if source is self._source and self.query_mapping is None:
            if self.history is None or self.history.validation_indices is None:
                return None
            idx, which = self.heldout_indices(max_cells=len(labels))
        else:
            idx, which = np.arange(len(labels)), "all labelled"
        truth = labels[idx]
        idx, truth = idx[truth >= 0], truth[truth >= 0]
        if len(idx) == 0:
            return None
        n, scaling = len(self.spec.label_categories), self.label_temperature
        out: dict[str, Any] = {"n_cells": int(len(idx)), "cells": which,
                               "n_bins": ECE_BINS, "temperature": scaling.value,
                               "temperature_cells": scaling.n_cells}
        for name, p in (("", probs[idx]), ("_posterior_mean", self._probs_at(source, idx, 0)),
                        ("_untempered", temper(probs[idx], 1.0 / scaling.value))):
            p = label_columns(p, n)
            out[f"ece{name}"] = expected_calibration_error(p, truth)
            if name != "_untempered":  # its argmax is the tempered one's
                out[f"accuracy{name}"] = float((p.argmax(1) == truth).mean())
        return out

    @torch.no_grad()
    def _probs_at(self, source: InMemorySource, idx: np.ndarray, n_samples: int | None
                  ) -> np.ndarray:
        """`cluster_probs_of` for the cells ``idx`` only."""
        self.module.eval()
        cells = torch.as_tensor(idx, dtype=torch.long, device=source.device)
        with self.seeded(3):
            out = [self.module.cluster_probs(b.x, b.c, n_samples).cpu()
                   for b in source.batches(cells, 512)]
        return torch.cat(out).numpy()

    def get_cluster_probs(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Mixture-component probabilities of each cell, (cells, K)."""
        return self.cluster_probs_of(self.source(adata))

    def get_label_probs(self, adata: ad.AnnData | None = None) -> np.ndarray:
        """Probabilities of the label categories (``spec.label_categories`` order)."""
        return label_columns(self.get_cluster_probs(adata), len(self.spec.label_categories))

    def write_outputs(self, adata: ad.AnnData, source: InMemorySource) -> dict[str, Any]:
        info = super().write_outputs(adata, source)
        raw = self.cluster_probs_of(source, tempered=False)
        probs = temper(raw, self.label_temperature.value)
        adata.obsm[K.CLUSTER_PROBS] = probs
        labels = list(self.spec.label_categories)
        if labels:
            pred = probs[:, : len(labels)].argmax(1)
            adata.obs[K.LABEL] = pd.Categorical(np.asarray(labels)[pred], categories=labels)
        adata.obs[K.CLUSTER_ENTROPY] = entropy(probs).astype(np.float32)
        n_clusters = self.module.n_clusters
        module = self.module
        weights = module.mixture_weight_means()
        weights = raw.mean(0) if weights is None else weights.cpu().numpy()
        used_argmax, _ = component_usage(probs.argmax(1), n_clusters)
        empty = [int(k) for k in np.flatnonzero(weights < USED_SHARE)]
        samples = int(module.cluster_samples)
        info.update(n_clusters=int(n_clusters), n_components_used=n_clusters - len(empty),
                    n_components_argmax=len(used_argmax),
                    empty_components=np.asarray(empty, dtype=np.int64),
                    deleted_components=np.flatnonzero(~module.active.cpu().numpy()),
                    dirichlet_alpha=float(module.alpha[0]),
                    weights_model=module.mixture_weights,
                    mixture_weights=np.asarray(weights, dtype=np.float32),
                    cluster_probs={"method": "predictive" if samples else "posterior_mean",
                                   "n_samples": samples, "seed": int(self.config.seed) + 3})
        used = (f"c*GMΔVAE: {len(used_argmax)} of {n_clusters} mixture components in use (the "
                f"most probable component of >= {USED_SHARE:.1%} of the cells; "
                f"{n_clusters - len(empty)} by weight)")
        resolution, candidates = module.start_resolution, module.start_candidates
        if resolution is not None:  # the start's Leiden resolution, chosen by ICL
            info["start_resolution"] = resolution
            used += (f"; started from Leiden's clusters at resolution {resolution:g}, the best "
                     "integrated classification likelihood (ICL) of "
                     f"{', '.join(f'{r:g}' for r in START_RESOLUTIONS)}")
            if candidates:  # and what each resolution cut and scored
                info["start_candidates"] = candidates
                used += " (" + "; ".join(f"{r}: {c['clusters']} clusters, ICL {c['icl']:.1f}"
                                         for r, c in candidates.items()) + ")"
        bound = bound_note(len(used_argmax), n_clusters, bool(labels))
        scaling = self.label_temperature
        tempered = [f"c*GMΔVAE labels: probabilities scaled by temperature {scaling.value:.2f} "
                    f"(fitted on {scaling.n_cells} labelled validation cells; the most "
                    "probable label is unchanged)"] if labels and scaling.n_cells else []
        self.notes = [n for n in self.notes if not n.startswith("c*GMΔVAE")] + [used] + (
            [bound] if bound else []) + tempered
        calibration = self.label_calibration(source, probs) if labels else None
        if calibration:
            info["calibration"] = calibration
        history = self.history
        if history is not None and all(t in history.terms for t in TERMS):
            info["elbo_terms"] = {t: float(history.terms[t][-1]) for t in TERMS}
        if empty and module.mixture_weights == "per_cell":
            warnings.warn(f"c*GMΔVAE: {len(empty)} of {n_clusters} mixture components are "
                          f"empty or collapsed (weight < {USED_SHARE:.1%}): {empty}",
                          stacklevel=2)
        return info
