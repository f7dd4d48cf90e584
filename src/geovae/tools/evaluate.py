"""How well a trained model fits the data: held-out marginal log-likelihood and posterior
predictive checks for counts. `fit` stores both in the run record
(``uns['geovae']['heldout_loglik']`` and ``['ppc']``); `geovae.tools.compare` compares latent
geometries over seeds with the first."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from geovae.models import GeoVAE
from geovae.nn.likelihoods import COUNT_LIKELIHOODS

log = logging.getLogger("geovae.tools")

#: importance samples per cell of the held-out log-likelihood by default (`fit`'s
#: ``heldout_samples``); 100 was the default up to 0.2.0 (benchmarks/RESULTS.md, "Fixed costs").
#: Chosen on simulated NB counts only (benchmarks/bench_fixed_costs.py: 20,000 cells x 2,000
#: genes, 10 epochs, seed 0): 3.8% of the fit's time, IWAE(20) - IWAE(10) = +0.14 nats, the
#: 100-sample estimate 0.13 nats away against a standard error of 9.9 over cells
HELDOUT_SAMPLES = 20
#: at most this many cells enter the held-out estimate and the predictive checks
MAX_CELLS = 2000
#: per-gene arrays are stored in the record up to this many features
PPC_ARRAY_FEATURES = 5000
ESTIMATOR = ("importance sampling (IWAE bound) with the encoder q(z|x,c) as proposal; "
             "count models condition on the observed library size")
#: what the number is, by `VAEModule.loglik_kind`
QUANTITY = {
    "marginal": "marginal log-likelihood log p(x|c), the latents integrated out",
    "predictive": "predictive log-likelihood log p(x|c, fitted mixture weights): z, w and y "
                  "integrated out, p(y) the fitted weights E_q[pi]",
}


def heldout_loglik(model: GeoVAE, n_samples: int = HELDOUT_SAMPLES,
                   max_cells: int = MAX_CELLS) -> dict[str, Any]:
    """Held-out log-likelihood of a trained model, for the run record.

    log p(x|c) per cell by importance sampling (`VAEModule.log_marginal`, ``n_samples``
    samples), on the test cells the trainer kept out of training and early stopping
    (`GeoVAE.heldout_indices`: min(5%, 2,000) cells drawn with the model's seed; at most
    ``max_cells`` of them; ``cells`` says which cells were used when there was no test split).
    For a c*GMΔVAE with global weights it is a predictive log-likelihood (``kind``): p(y) is
    the fitted weights' posterior mean. ``per_cell`` is the mean over cells in nats, ``se``
    its standard error over cells (the precision you got), ``per_feature`` = per_cell /
    n_features (comparable across datasets); ``gain_vs_half`` = mean of IWAE(S) - IWAE(S/2)
    per cell from the same draws, with its standard error ``gain_vs_half_se`` (the bound is
    still rising with S where it is well above its se: raise ``heldout_samples``).
    """
    from scipy.special import logsumexp

    idx, which = model.heldout_indices(max_cells)
    log_w = model.log_weights_of(model.source(), idx, n_samples)
    ll = logsumexp(log_w, axis=0) - np.log(n_samples) if log_w.size else np.zeros(0)
    n = len(ll)
    per_cell = float(ll.mean()) if n else float("nan")
    se = float(ll.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    gain = gain_se = float("nan")
    half = n_samples // 2
    if half >= 1 and n > 1:
        diff = ll - (logsumexp(log_w[:half], axis=0) - np.log(half))
        gain, gain_se = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(n))
    kind = model.module.loglik_kind()
    return {"per_cell": per_cell, "per_feature": per_cell / model.spec.n_features, "se": se,
            "n_samples": int(n_samples), "n_cells": int(n), "cells": which, "kind": kind,
            "quantity": QUANTITY[kind], "gain_vs_half": gain, "gain_vs_half_se": gain_se,
            "units": "nats", "estimator": ESTIMATOR}


def describe_heldout(held: dict[str, Any]) -> str:
    """One line for the log: the estimate, its standard error and how it was made."""
    name = "predictive" if held.get("kind") == "predictive" else "held-out"
    line = (f"{name} log-likelihood of {int(held['n_cells']):,} {held['cells']} cells: "
            f"{held['per_cell']:.2f} ± {held['se']:.2f} nats per cell (SE over cells; "
            f"{int(held['n_samples'])} importance samples")
    if np.isfinite(held.get("gain_vs_half", float("nan"))):
        line += f", {held['gain_vs_half']:+.2f} nats over half as many"
    return line + "; more: --heldout-samples, heldout_samples=)"


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def ppc_summary(moments: dict[str, np.ndarray]) -> dict[str, float]:
    """Observed vs model per-gene statistics, summarised (see `posterior_predictive_check`)."""
    om, mm = moments["observed_mean"], moments["model_mean"]
    ov, mv = moments["observed_var"], moments["model_var"]
    oz, mz = moments["observed_zero_frac"], moments["model_zero_frac"]
    keep = (om > 0) & (mm > 0) & (ov > 0) & (mv > 0)
    log_var_ratio = np.log(mv[keep] / ov[keep])
    return {
        "log_mean_corr": _corr(np.log(om[keep]), np.log(mm[keep])),
        "log_var_corr": _corr(np.log(ov[keep]), np.log(mv[keep])),
        "log_var_ratio_median": float(np.median(log_var_ratio)) if keep.any() else np.nan,
        "log_var_ratio_mae": float(np.abs(log_var_ratio).mean()) if keep.any() else np.nan,
        "zero_frac_mae": float(np.abs(mz - oz).mean()),
        "zero_frac_bias": float((mz - oz).mean()),
        "n_genes_compared": int(keep.sum()),
    }


def posterior_predictive_check(model: GeoVAE, max_cells: int = MAX_CELLS,
                               seed: int | None = None) -> dict[str, Any] | None:
    """Posterior predictive check of a count model (NB, ZINB); None for other likelihoods.

    On up to ``max_cells`` cells (a seeded random subset of all cells): one replicate
    x~ ~ p(x|z,c) per cell with z ~ q(z|x,c) and the cell's own library size; per gene the
    observed and replicated mean, variance and zero fraction. Summaries: Pearson correlation
    of log means and of log variances over genes, the median and mean absolute log variance
    ratio (model / observed; < 0: the model is under-dispersed), the mean absolute zero-fraction
    difference and its mean signed value (model - observed; < 0: too few zeros). The per-gene
    arrays are included up to `PPC_ARRAY_FEATURES` features.
    """
    if model.spec.likelihood not in COUNT_LIKELIHOODS:
        return None
    source = model.source()
    n = source.n_obs
    seed = model.config.seed if seed is None else seed
    idx = np.arange(n)
    if n > max_cells:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_cells, replace=False))
    moments = model.predictive_moments(source, idx)
    out: dict[str, Any] = {**ppc_summary(moments), "n_cells": int(len(idx)),
                           "replicates_per_cell": 1, "seed": int(seed)}
    if model.spec.n_features <= PPC_ARRAY_FEATURES:
        out["per_gene"] = {k: v.astype(np.float32) for k, v in moments.items()}
    return out


def model_checks(model: GeoVAE, n_samples: int = HELDOUT_SAMPLES,
                 max_cells: int = MAX_CELLS) -> tuple[dict[str, Any], list[str]]:
    """(record fields, notes) of `fit`: ``heldout_loglik`` (skipped with ``n_samples`` 0, or
    when the module has no marginal likelihood yet) and ``ppc`` (count models)."""
    fields: dict[str, Any] = {}
    notes: list[str] = []
    if n_samples > 0:
        log.info(f"held-out log-likelihood (IWAE): {n_samples} importance samples for each of "
                 f"up to {max_cells:,} test cells")
        try:
            fields["heldout_loglik"] = heldout_loglik(model, n_samples, max_cells)
        except NotImplementedError as err:
            notes.append(f"no held-out log-likelihood: {err}")
    if model.spec.likelihood in COUNT_LIKELIHOODS:
        log.info(f"posterior predictive check on up to {max_cells:,} cells")
    fields["ppc"] = posterior_predictive_check(model, max_cells)
    return fields, notes
