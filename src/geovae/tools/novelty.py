"""How typical a query cell is of the reference cells: the "unknown"-type check of
`geovae.tools.transfer`.

A cell's score (its -ELBO under the query-mapped model: how badly the model explains it; or,
without one, the log mean distance to its k nearest reference cells of its predicted label)
is ranked among the reference cells' own scores, as a one-sided empirical p-value. A query
from a new condition scores a little worse overall, so the query's scores are first shifted
down by their median excess over the reference's: one shift for the whole query, since a
shift per label would also absorb a cell type the reference lacks wherever it makes up much
of a label (on the full Kang data a shift per label lowered the unseen-type AUROC from 0.91 to
0.85, benchmarks/RESULTS.md). The p-value scales the classifier's confidence through
`soft_factor`, which keeps the p-values' order (no saturation).
"""

from __future__ import annotations

import numpy as np

from geovae.models.reference import ReferenceCells
from geovae.tools.neighbors import knn

#: a label with fewer reference cells than this is ranked among all reference cells
MIN_LABEL_CELLS = 20
#: label confidence is scaled by `soft_factor(p, UNKNOWN_TAIL)` (about 1/2 at p = UNKNOWN_TAIL),
#: p the cell's shifted -ELBO p-value among the reference cells; on the full Kang data
#: (control -> stimulated, DC held out, freeze all, 20 + 15 epochs, six runs) 0.01 called 64%
#: of the DC and 6% of known-type cells unknown (0.02: 74% and 8%)
UNKNOWN_TAIL = 0.01
#: the same for the check by distance, used when the reference cells have no -ELBO
NEIGHBOUR_TAIL = 0.05


def typicality(z: np.ndarray, nelbo: np.ndarray, cells: ReferenceCells,
               predicted: np.ndarray | None, k: int, geometry: str) -> np.ndarray:
    """The factor a query cell's label confidence is scaled by: `soft_factor` of its
    `shifted_pvalues` -ELBO among the reference cells', or, when they have no -ELBO, of its
    `neighbour_pvalues` distance (to the reference cells of its ``predicted`` label codes,
    when given)."""
    if cells.nelbo is not None:
        return soft_factor(shifted_pvalues(nelbo, cells.nelbo), UNKNOWN_TAIL)
    labels = cells.labels if predicted is not None else None
    p = neighbour_pvalues(z, cells.latent, k, geometry, predicted, labels)
    return soft_factor(p, NEIGHBOUR_TAIL)


def empirical_pvalue(score: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The share of reference scores at least as high as each score, (1 + count) / (1 + n):
    1 for a score below every reference cell, 1 / (n + 1) above all of them."""
    ref_sorted = np.sort(np.asarray(reference, dtype=np.float64))
    above = len(ref_sorted) - np.searchsorted(ref_sorted, score, side="left")
    return (1 + above) / (1 + len(ref_sorted))


def soft_factor(p: np.ndarray, tail: float) -> np.ndarray:
    """p (1 + tail) / (p + tail): 1 at p = 1, about 1/2 at p = tail, towards 0 with p, and
    strictly increasing, so the confidence it scales keeps the p-values' order."""
    p = np.asarray(p, dtype=np.float64)
    return p * (1.0 + tail) / (p + tail)


def _groups(predicted: np.ndarray | None, ref_labels: np.ndarray | None, n_query: int,
            n_ref: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(query rows, reference rows) per predicted label; one group without labels."""
    if predicted is None or ref_labels is None:
        return [(np.arange(n_query), np.arange(n_ref))]
    out = []
    for c in np.unique(predicted):
        r_idx = np.flatnonzero(ref_labels == c)
        out.append((np.flatnonzero(predicted == c),
                    r_idx if len(r_idx) >= MIN_LABEL_CELLS else np.arange(n_ref)))
    return out


def _shifted(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]], n_query: int
             ) -> np.ndarray:
    """p-values from (query rows, their scores, the reference scores they are ranked among),
    all query scores shifted down by one median excess."""
    excess = np.zeros(n_query)
    for q_idx, q_score, r_score in groups:
        excess[q_idx] = q_score - np.median(r_score)
    shift = max(float(np.median(excess)), 0.0) if n_query else 0.0
    out = np.ones(n_query)
    for q_idx, q_score, r_score in groups:
        out[q_idx] = empirical_pvalue(q_score - shift, r_score)
    return out


def shifted_pvalues(query: np.ndarray, reference: np.ndarray,
                    predicted: np.ndarray | None = None,
                    ref_labels: np.ndarray | None = None) -> np.ndarray:
    """`empirical_pvalue` of each query score (high: atypical) among the reference scores
    (of its predicted label, when labels are given), after subtracting the query's median
    excess over the reference (when positive: a query that fits better is not shifted up)."""
    query = np.asarray(query, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    groups = [(q_idx, query[q_idx], reference[r_idx])
              for q_idx, r_idx in _groups(predicted, ref_labels, len(query), len(reference))]
    return _shifted(groups, len(query))


def neighbour_pvalues(z: np.ndarray, reference: np.ndarray, k: int, geometry: str,
                      predicted: np.ndarray | None = None,
                      ref_labels: np.ndarray | None = None) -> np.ndarray:
    """`shifted_pvalues` of the log mean distance to the k nearest reference cells of the
    (predicted) label, ranked among the reference cells' own (themselves left out): the check
    used when the reference cells have no -ELBO."""
    groups = []
    for q_idx, r_idx in _groups(predicted, ref_labels, len(z), len(reference)):
        ref = reference[r_idx]
        kk = min(k, len(r_idx) - 1)
        if kk < 1:
            continue
        r_d = knn(ref, ref, kk, geometry, exclude_self=True)[0].mean(1)
        q_d = knn(z[q_idx], ref, kk, geometry)[0].mean(1)
        groups.append((q_idx, np.log(q_d + 1e-12), np.log(r_d + 1e-12)))
    return _shifted(groups, len(z))
