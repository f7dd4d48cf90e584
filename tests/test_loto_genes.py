"""benchmarks/loto_genes.py: the label-profile residual candidate scores the cell, not how
many query cells share its predicted label (a clip taken from the query's group size read
the benchmark's balanced composition: AUROC 0.74 that was not the cells'), and it ranks
cells drawn away from the profile below cells drawn from it."""

from __future__ import annotations

import numpy as np
from helpers import load_benchmark
from sklearn.metrics import roc_auc_score


def counts(rng: np.random.Generator, profile: np.ndarray, n: int) -> np.ndarray:
    """Poisson counts of ``n`` cells, library sizes 500-3,000, expression ``profile``."""
    lib = rng.uniform(500, 3000, n)
    return rng.poisson(lib[:, None] * profile[None, :]).astype(np.float64)


def data(seed: int = 0):
    """Two reference labels (60 cells each), a query of 40 label-0 cells and 40 cells of a
    third profile (label 0's, with 10 genes it barely expresses raised to about a typical
    gene's level), all predicted 0."""
    rng = np.random.default_rng(seed)
    genes = 200
    p0, p1 = rng.gamma(0.5, size=genes), rng.gamma(0.5, size=genes)
    p0[:10] = 1e-4
    new = p0.copy()
    new[:10] = 0.05
    profiles = [p / p.sum() for p in (p0, p1, new)]
    r_x = np.vstack([counts(rng, profiles[0], 60), counts(rng, profiles[1], 60)])
    q_x = np.vstack([counts(rng, profiles[0], 40), counts(rng, profiles[2], 40)])
    labels = np.repeat([0, 1], 60)
    return r_x, q_x, labels, np.zeros(80, dtype=np.int64), np.r_[np.zeros(40), np.ones(40)]


def test_gene_score_does_not_read_the_query_group_size() -> None:
    genes = load_benchmark("loto_genes")
    r_x, q_x, labels, pred, _ = data()
    doubled = np.vstack([q_x, q_x])  # every group twice as large, the same median excess
    p = genes.gene_pvalues(r_x, q_x, labels, pred)
    p2 = genes.gene_pvalues(r_x, doubled, labels, np.r_[pred, pred])
    np.testing.assert_allclose(p2[:80], p)
    # the clip from the query's group size (the leak) does change them on these data
    leak = genes.gene_pvalues(r_x, q_x, labels, pred, leak=True)
    leak2 = genes.gene_pvalues(r_x, doubled, labels, np.r_[pred, pred], leak=True)
    assert np.abs(leak2[:80] - leak).max() > 0.05


def test_gene_score_finds_cells_away_from_the_profile() -> None:
    genes = load_benchmark("loto_genes")
    r_x, q_x, labels, pred, novel = data(1)
    p = genes.gene_pvalues(r_x, q_x, labels, pred)
    assert roc_auc_score(novel, -p) > 0.95
    assert np.median(p[novel == 0]) > 0.2  # cells of the profile look like its reference
