"""How well batches (conditions, studies, reference and query) mix in a latent while cell types
stay apart: the scIB integration scores (Luecken et al. 2022) as `scib-metrics` defines them,
on exact kNN graphs in the latent's own metric.

The scores are computed here with numpy, scipy and scikit-learn, following `scib-metrics`
0.5 line by line (LISI's perplexity search, kBET's chi-square test, the rescaled
silhouettes); `tests/tools/test_mixing.py` checks them against `scib-metrics` itself. Calling
`scib-metrics` directly would add jax to every transfer run: importing it and compiling its
kernels took 20-90 s on this project's (shared, loaded) 2-core machines, again for every new
array shape (each cell type's graph), against well under a second here.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from geovae.geometry.manifolds import get_manifold
from geovae.graph.neighbors import knn

log = logging.getLogger("geovae.tools")

#: neighbours of the kNN graphs (scIB's benchmark uses 90; LISI's perplexity is a third)
N_NEIGHBORS = 90
#: labels with fewer cells (or a single batch) are left out of the per-label scores
MIN_LABEL_CELLS = 10

SCORES = {
    "ilisi": "iLISI: median inverse Simpson's index of the batches among each cell's "
             "neighbours (perplexity-weighted), scaled by (LISI - 1) / (batches - 1): 1 when "
             "every neighbourhood holds equal shares of the batches, 0 for one batch only",
    "ilisi_per_label": "iLISI within each label's cells (graph of that label only), mean over "
                       "labels weighted by cells: the mixing of cells of the same type",
    "kbet": "kBET acceptance rate within each label (chi-square test of each cell's "
            "neighbourhood's batch counts against the label's batch shares, alpha 0.05), "
            "mean over labels weighted by cells",
    "batch_asw": "batch silhouette within each label, rescaled 1 - |s|, mean over labels: "
                 "1 well mixed",
    "label_asw": "cell-type silhouette rescaled (s + 1) / 2: 1 types well apart",
    "nmi": "normalised mutual information of k-means clusters (k = labels) and labels",
    "ari": "adjusted Rand index of the same k-means clusters and labels",
}


def lisi(dist: np.ndarray, neighbour_labels: np.ndarray, perplexity: float,
         tol: float = 1e-5, max_tries: int = 50) -> np.ndarray:
    """Per-cell LISI from its neighbours' distances (self excluded) and labels (codes): a
    Gaussian kernel whose width is searched (bisection on beta) until the neighbourhood's
    entropy is log(perplexity), then 1 / Simpson's index of the kernel-weighted label shares
    (Korsunsky et al. 2019; scib-metrics' ``lisi_knn``)."""
    d = np.asarray(dist, dtype=np.float64)
    n = len(d)

    def h_beta(beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.exp(-d * beta[:, None])
        s = p.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.where(s == 0, 0.0, np.log(s) + beta * (d * p).sum(1) / s)
            p = np.where(s[:, None] == 0, 0.0, p / s[:, None])
        return h, p

    beta, lo, hi = np.ones(n), np.full(n, -np.inf), np.full(n, np.inf)
    h, p = h_beta(beta)
    diff = h - np.log(perplexity)
    for _ in range(max_tries):
        active = np.abs(diff) >= tol
        if not active.any():
            break
        up = diff > 0
        new_lo, new_hi = np.where(up, beta, lo), np.where(up, hi, beta)
        new_beta = np.where(up, np.where(hi == np.inf, beta * 2, (beta + hi) / 2),
                            np.where(lo == -np.inf, beta / 2, (beta + lo) / 2))
        new_h, new_p = h_beta(new_beta)
        beta, lo, hi = (np.where(active, a, b) for a, b in
                        ((new_beta, beta), (new_lo, lo), (new_hi, hi)))
        h, p = np.where(active, new_h, h), np.where(active[:, None], new_p, p)
        diff = h - np.log(perplexity)
    codes = np.asarray(neighbour_labels)
    shares = np.stack([(p * (codes == c)).sum(1) for c in range(int(codes.max()) + 1)], 1)
    simpson = np.where(h == 0, -1.0, (shares**2).sum(1))
    return 1.0 / simpson


def kbet_acceptance(neighbour_batches: np.ndarray, batches: np.ndarray,
                    alpha: float = 0.05) -> float:
    """kBET acceptance rate (Büttner et al. 2019; scib-metrics' ``kbet``): the share of cells
    whose neighbourhood (self included) does not reject, at level ``alpha``, a chi-square test
    of its batch counts against the batches' overall shares."""
    from scipy.stats import chi2

    n_batches = int(batches.max()) + 1
    expected = np.bincount(batches, minlength=n_batches) / len(batches)
    expected = expected * neighbour_batches.shape[1]
    observed = np.stack([(neighbour_batches == b).sum(1) for b in range(n_batches)], 1)
    stat = ((observed - expected) ** 2 / expected).sum(1)
    return float(np.mean(chi2.sf(stat, n_batches - 1) >= alpha))


def _graph(latent: np.ndarray, k: int, geometry: str) -> tuple[np.ndarray, np.ndarray]:
    """(distances, indices) of each cell's k nearest other cells, exact, own metric."""
    return knn(latent, latent, k, geometry, exclude_self=True)


def _mixing(latent: np.ndarray, b: np.ndarray, k: int, geometry: str) -> tuple[float, float]:
    """(scaled iLISI, kBET acceptance) of batch codes ``b`` on the kNN graph of ``latent``."""
    b = np.unique(b, return_inverse=True)[1]
    k = max(2, min(k, len(latent) - 1))
    dist, idx = _graph(latent, k, geometry)
    perplexity = np.floor((k + 1) / 3)  # scib counts the cell itself among its neighbours
    n_b = len(np.unique(b))
    ilisi = (float(np.nanmedian(lisi(dist, b[idx], perplexity))) - 1) / (n_b - 1)
    with_self = np.concatenate([b[:, None], b[idx]], axis=1)
    return ilisi, kbet_acceptance(with_self, b)


def integration_scores(latent: np.ndarray, batch: Any, labels: Any, *,
                       n_neighbors: int = N_NEIGHBORS, geometry: str = "euclidean",
                       seed: int = 0) -> dict[str, float]:
    """scIB integration scores of ``latent`` (cells x coordinates) for each cell's ``batch``
    and ``labels``; `SCORES` defines each. Mixing scores (``ilisi``, ``ilisi_per_label``,
    ``kbet``, ``batch_asw``) are high when batches mix; conservation scores (``label_asw``,
    ``nmi``, ``ari``) when labels stay apart. ``geometry``: ``euclidean``, ``sphere`` or
    ``hyperbolic`` (the latent of ``X_geovae``): kNN graphs use its geodesic distance.
    Also returns ``n_cells``, ``n_batches``, ``n_labels``, ``n_neighbors``. Exact kNN and
    silhouettes are quadratic in the cells: subsample beyond ~20,000."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import (
        adjusted_rand_score,
        normalized_mutual_info_score,
        silhouette_samples,
    )

    z = np.asarray(latent, dtype=np.float64)
    b = np.asarray(pd.Categorical(np.asarray(batch).astype(str)).codes)
    y = np.asarray(pd.Categorical(np.asarray(labels).astype(str)).codes)
    if z.ndim != 2 or not len(z) == len(b) == len(y):
        raise ValueError(f"latent {z.shape}, batch ({len(b)}) and labels ({len(y)}) must "
                         "describe the same cells")
    if len(np.unique(b)) < 2 or len(z) <= 3:
        raise ValueError("integration scores need at least two batches and four cells")
    k = max(2, min(n_neighbors, len(z) - 1))
    out: dict[str, float] = {"n_cells": len(z), "n_batches": int(len(np.unique(b))),
                             "n_labels": int(len(np.unique(y))), "n_neighbors": int(k)}
    out["ilisi"] = _mixing(z, b, k, geometry)[0]
    coords, metric = get_manifold(geometry).flat_coordinates(z)
    per_label, asw_batch = [], []
    for label in np.unique(y):
        rows = np.flatnonzero(y == label)
        n_b = len(np.unique(b[rows]))
        if n_b < 2 or n_b == len(rows):
            continue
        s = silhouette_samples(coords[rows], b[rows], metric=metric)
        asw_batch.append(float(np.mean(1 - np.abs(s))))
        if len(rows) >= MIN_LABEL_CELLS:
            per_label.append((*_mixing(z[rows], b[rows], k, geometry), len(rows)))
    weights = [n for *_, n in per_label]
    out["ilisi_per_label"] = (float(np.average([v[0] for v in per_label], weights=weights))
                              if per_label else float("nan"))
    out["kbet"] = (float(np.average([v[1] for v in per_label], weights=weights))
                   if per_label else float("nan"))
    out["batch_asw"] = float(np.mean(asw_batch)) if asw_batch else float("nan")
    n_labels = len(np.unique(y))
    if 1 < n_labels < len(z):
        out["label_asw"] = float((np.mean(silhouette_samples(coords, y, metric=metric)) + 1) / 2)
        pred = KMeans(n_labels, n_init=10, random_state=seed).fit_predict(coords)
        out["nmi"] = float(normalized_mutual_info_score(y, pred, average_method="arithmetic"))
        out["ari"] = float(adjusted_rand_score(y, pred))
    else:
        out.update(label_asw=float("nan"), nmi=float("nan"), ari=float("nan"))
    return out


def query_mixing(ref_latent: np.ndarray, ref_labels: np.ndarray, query_latent: np.ndarray,
                 query_labels: np.ndarray, geometry: str, max_cells: int = 3000,
                 seed: int = 0) -> dict[str, float]:
    """`integration_scores` of reference and query cells (batch: the source) on labelled
    cells of labels both hold, at most ``max_cells`` from each source and the same number
    from each (seeded subsample), so that perfect mixing scores iLISI near 1."""
    ref_labels, query_labels = np.asarray(ref_labels), np.asarray(query_labels)
    shared = np.intersect1d(ref_labels, query_labels)
    r = np.flatnonzero(np.isin(ref_labels, shared))
    q = np.flatnonzero(np.isin(query_labels, shared))
    n = min(len(r), len(q), max_cells)
    if n < MIN_LABEL_CELLS:
        raise ValueError(f"too few cells of labels shared by reference and query ({n})")
    rng = np.random.default_rng(seed)
    r, q = np.sort(rng.choice(r, n, replace=False)), np.sort(rng.choice(q, n, replace=False))
    log.info(f"scoring the query's mixing with the reference (iLISI, kBET, silhouettes) on "
             f"{n:,} cells of each")
    latent = np.concatenate([ref_latent[r], query_latent[q]])
    source = np.repeat(["reference", "query"], n)
    labels = np.concatenate([ref_labels[r], query_labels[q]])
    return integration_scores(latent, source, labels, geometry=geometry)
