"""Simulated single-cell counts with known truth, in the spirit of Splatter.

Generative process (all draws from one ``numpy.random.Generator`` seeded by ``seed``):

1. Gene base means ``m_g ~ Gamma(mean_shape, 1 / mean_rate)``.
2. Each cell type multiplies a random subset of genes (each gene with probability
   ``de_prob``) by a lognormal factor ``exp(N(0, de_scale))``.
3. Each condition other than the reference ``cond0`` multiplies a random subset of genes
   (probability ``condition_prob``) by ``exp(+-condition_effect)`` (random sign), in *every*
   cell type alike.
4. Optional batches do the same with lognormal factors ``exp(N(0, batch_scale))`` on a
   random subset (probability ``batch_prob``); ``batch0`` is the reference.
5. Per-cell library size ``L_c = library_mean * exp(N(0, library_sd))`` (so ``library_mean``
   is the median library size).
6. Counts ``x_cg ~ NB(mean = L_c * p_g(group of c), dispersion phi_g)`` drawn as gamma-Poisson,
   where ``p_g`` are the group's normalised gene proportions and
   ``phi_g = dispersion * exp(N(0, dispersion_sd))`` (variance ``mu + phi mu^2``,
   inverse dispersion ``theta = 1 / phi``).

The truth is stored on the returned AnnData: ``var`` holds ``base_mean``, ``dispersion``,
``theta`` and one ``de_factor_<type>``/``condition_factor_<cond>``/``batch_factor_<batch>``
column per group (1.0 where the gene is unaffected); ``uns["simulation"]`` holds the
parameters.
"""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from geovae.errors import OptionError

__all__ = ["simulate_counts"]


def _check(name: str, value: float, *, low: float, high: float | None = None) -> None:
    """Raise ValueError if ``value`` is outside ``[low, high]``."""
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise OptionError(f"{{opt}}={value!r} must be {bound}", param=name)


def simulate_counts(
    n_cells: int = 2000,
    n_genes: int = 500,
    n_types: int = 5,
    n_conditions: int = 2,
    n_batches: int = 1,
    de_prob: float = 0.1,
    de_scale: float = 1.0,
    condition_effect: float = 0.5,
    library_mean: float = 1000.0,
    library_sd: float = 0.4,
    dispersion: float = 0.2,
    seed: int = 0,
    *,
    condition_prob: float = 0.1,
    batch_prob: float = 0.1,
    batch_scale: float = 0.3,
    dispersion_sd: float = 0.3,
    mean_shape: float = 0.6,
    mean_rate: float = 0.3,
) -> ad.AnnData:
    """Simulate negative-binomial UMI counts for cell types x conditions (x batches).

    Parameters follow the module docstring. ``library_mean`` is the median library size,
    ``library_sd`` the standard deviation of its logarithm; ``dispersion`` is the mean NB
    dispersion ``phi`` (variance ``mu + phi mu^2``). Returns an AnnData whose ``X`` is a CSR
    matrix of integer counts (float32), with categorical ``obs["cell_type"]``,
    ``obs["condition"]`` (and ``obs["batch"]`` when ``n_batches > 1``) and numeric
    ``obs["library_size"]`` (the true library size ``L_c``).
    """
    for name, n in (
        ("n_cells", n_cells),
        ("n_genes", n_genes),
        ("n_types", n_types),
        ("n_conditions", n_conditions),
        ("n_batches", n_batches),
    ):
        if int(n) != n or n < 1:
            raise OptionError(f"{{opt}}={n!r} must be a positive integer", param=name)
    for name, p in (
        ("de_prob", de_prob),
        ("condition_prob", condition_prob),
        ("batch_prob", batch_prob),
    ):
        _check(name, p, low=0.0, high=1.0)
    for name, v in (
        ("de_scale", de_scale),
        ("condition_effect", condition_effect),
        ("library_sd", library_sd),
        ("dispersion", dispersion),
        ("batch_scale", batch_scale),
        ("dispersion_sd", dispersion_sd),
    ):
        _check(name, v, low=0.0)
    for name, v in (
        ("library_mean", library_mean),
        ("mean_shape", mean_shape),
        ("mean_rate", mean_rate),
    ):
        _check(name, v, low=1e-12)

    rng = np.random.default_rng(seed)

    # Gene-level truth.
    base_mean = rng.gamma(mean_shape, 1.0 / mean_rate, size=n_genes)
    base_mean = np.maximum(base_mean, 1e-6)
    phi = dispersion * np.exp(rng.normal(0.0, dispersion_sd, size=n_genes))

    def _lognormal_factors(n_groups: int, prob: float, scale: float) -> np.ndarray:
        hit = rng.random((n_groups, n_genes)) < prob
        return np.where(hit, np.exp(rng.normal(0.0, scale, size=(n_groups, n_genes))), 1.0)

    type_fac = _lognormal_factors(n_types, de_prob, de_scale)

    cond_fac = np.ones((n_conditions, n_genes))
    if n_conditions > 1:
        hit = rng.random((n_conditions - 1, n_genes)) < condition_prob
        sign = rng.choice(np.array([-1.0, 1.0]), size=(n_conditions - 1, n_genes))
        cond_fac[1:] = np.where(hit, np.exp(sign * condition_effect), 1.0)

    batch_fac = np.ones((n_batches, n_genes))
    if n_batches > 1:
        batch_fac[1:] = _lognormal_factors(n_batches - 1, batch_prob, batch_scale)

    # Cell-level assignments and library sizes.
    cell_type = rng.integers(0, n_types, size=n_cells)
    condition = rng.integers(0, n_conditions, size=n_cells)
    batch = rng.integers(0, n_batches, size=n_cells)
    library = library_mean * np.exp(rng.normal(0.0, library_sd, size=n_cells))

    # Normalised proportions per (type, condition, batch) group, then per-cell means.
    group_mean = (
        base_mean[None, None, None, :]
        * type_fac[:, None, None, :]
        * cond_fac[None, :, None, :]
        * batch_fac[None, None, :, :]
    )
    group_prop = group_mean / group_mean.sum(axis=-1, keepdims=True)
    mu = library[:, None] * group_prop[cell_type, condition, batch]

    # Gamma-Poisson: lambda ~ Gamma(theta, mu / theta), x ~ Poisson(lambda).
    theta = 1.0 / np.maximum(phi, 1e-12)
    lam = rng.gamma(shape=np.broadcast_to(theta, mu.shape), scale=mu / theta)
    counts = rng.poisson(lam)
    X = sp.csr_matrix(counts.astype(np.float32))

    type_names = [f"type{i}" for i in range(n_types)]
    cond_names = [f"cond{i}" for i in range(n_conditions)]
    batch_names = [f"batch{i}" for i in range(n_batches)]

    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(cell_type, categories=type_names),
            "condition": pd.Categorical.from_codes(condition, categories=cond_names),
        },
        index=pd.Index([f"cell{i}" for i in range(n_cells)]),
    )
    if n_batches > 1:
        obs["batch"] = pd.Categorical.from_codes(batch, categories=batch_names)
    obs["library_size"] = library.astype(np.float64)

    var_cols: dict[str, np.ndarray] = {
        "base_mean": base_mean,
        "dispersion": phi,
        "theta": theta,
    }
    for i, name in enumerate(type_names):
        var_cols[f"de_factor_{name}"] = type_fac[i]
    for i, name in enumerate(cond_names[1:], start=1):
        var_cols[f"condition_factor_{name}"] = cond_fac[i]
    for i, name in enumerate(batch_names[1:], start=1):
        var_cols[f"batch_factor_{name}"] = batch_fac[i]
    var = pd.DataFrame(var_cols, index=pd.Index([f"gene{i}" for i in range(n_genes)]))

    params: dict[str, Any] = {
        "n_cells": int(n_cells),
        "n_genes": int(n_genes),
        "n_types": int(n_types),
        "n_conditions": int(n_conditions),
        "n_batches": int(n_batches),
        "de_prob": float(de_prob),
        "de_scale": float(de_scale),
        "condition_effect": float(condition_effect),
        "condition_prob": float(condition_prob),
        "batch_prob": float(batch_prob),
        "batch_scale": float(batch_scale),
        "library_mean": float(library_mean),
        "library_sd": float(library_sd),
        "dispersion": float(dispersion),
        "dispersion_sd": float(dispersion_sd),
        "mean_shape": float(mean_shape),
        "mean_rate": float(mean_rate),
        "seed": int(seed),
        "reference_condition": cond_names[0],
        "reference_batch": batch_names[0],
    }
    adata = ad.AnnData(X=X, obs=obs, var=var)
    adata.uns["simulation"] = params
    return adata
