"""How typical a query cell is of the reference cells: the "unknown"-type check of
`geovae.tools.transfer`.

The default (`novelty_pvalues`, issue 23; labelled reference cells with -ELBO and library
sizes) Cauchy-combines empirical p-values: how well the cell's latent fits its best-fitting
reference label, by Mahalanobis distance (a shrunk Gaussian per label) and by its mean
distance to the label's k nearest cells (`best_label_pvalues`: a cell between two sibling
labels is not flagged), its -ELBO among its predicted label's reference cells given log
library size (`label_depth_pvalues`), and whether it sits in a region of the joint latent
dense in query cells (`geovae.tools.query_share`; composition-robust). Each is ranked among
the reference cells' own after one shift for the whole query (a shift per label would absorb
a type the reference lacks wherever it makes up much of a label); the combined p-value's line
in log library size within each predicted label, fitted on the query's own cells, is removed
last (`geovae.tools.depth_free`: not a proxy for depth). Chosen on the development
split only (the bundled Kang subset; benchmarks/loto_scores.py, loto_query.py); elsewhere:
benchmarks/RESULTS.md. Older models and data use the earlier checks (`typicality`); the
p-value enters the confidence through `soft_factor`, which keeps its order.
"""

from __future__ import annotations

import numpy as np

from geovae.graph.neighbors import knn
from geovae.models.reference import ReferenceCells
from geovae.tools._lines import least_squares_line
from geovae.tools.depth_free import query_depth_free
from geovae.tools.query_share import BASES, query_share_stats

#: a label with fewer reference cells is ranked among all (by distance only; no dev split)
MIN_LABEL_CELLS = 20
#: without reference library sizes (models saved before issue 23), label confidence is scaled
#: by `soft_factor(p, UNKNOWN_TAIL)` (about 1/2 at p = UNKNOWN_TAIL), p the cell's shifted
#: -ELBO p-value among all the reference cells; on the full Kang data
#: (control -> stimulated, DC held out, freeze all, 20 + 15 epochs, six runs) 0.01 called 64%
#: of the DC and 6% of known-type cells unknown (0.02: 74% and 8%). Development split: the
#: FULL Kang data, which overlaps bench_loto.py's report cells; not used when both sides have
#: library sizes (every model saved since issue 23), so bench_loto.py never measures it
UNKNOWN_TAIL = 0.01
#: a query cell's -ELBO is ranked among this share of the reference cells nearest in log
#: library size (at least MIN_DEPTH_WINDOW), after a straight-line fit in that window
#: (`depth_pvalues`). Development split: bundled Kang subset, CTRL -> STIM, DC held out,
#: freeze all, seed 0, 100 epochs (bench_loto.py; its reported pairs exclude these cells)
DEPTH_WINDOW = 0.2
#: development split: as DEPTH_WINDOW (bundled Kang subset), one setting tried
MIN_DEPTH_WINDOW = 200
#: query cells are scored in chunks of about this many (cell, window cell) values (8 bytes each)
CHUNK_VALUES = 2_000_000
#: `soft_factor` tail for `depth_pvalues` (development split as above, one model: tails
#: 0.01 / 0.03 / 0.05 / 0.1 gave DC AUROC 0.68 / 0.79 / 0.83 / 0.87 with 6 / 11 / 15 / 20%
#: of known-type cells called unknown; 0.05 called 59% of DC unknown)
DEPTH_TAIL = 0.05
#: `soft_factor` tail of the default check ("unknown" below p = 0.05 at the 0.5 threshold with
#: VOTE_POWER 0). Development split: the bundled Kang subset (bench_loto.py --dev: both pairs,
#: every type left out, seeds 0-2, 60 runs); one setting tried: 7% of known, 22% of unseen
NOVELTY_TAIL = 0.05
#: with kNN votes as label probabilities (the default VAE) and the default check, confidence
#: = vote share ** VOTE_POWER x the novelty factor: 0 leaves the votes out (an unseen type's
#: cells get unanimous votes from the label beside them). Development split: as NOVELTY_TAIL:
#: unseen AUROC 0.657 / 0.641 / 0.622 at powers 0 / 0.5 / 1
VOTE_POWER = 0.0
#: the same for the check by distance (reference cells without -ELBO; no development split)
NEIGHBOUR_TAIL = 0.05
#: `novelty_pvalues`' checks (`query_share`; dev AUROC 0.743 / 0.657 / 0.765 before the
#: `depth_free` step, the default 0.742 with it; the last flags commoner known types)
NOVELTY_CHECKS = ("query", "reference", "query-overall")


def typicality(z: np.ndarray, nelbo: np.ndarray, cells: ReferenceCells,
               predicted: np.ndarray | None, k: int, geometry: str,
               log_library: np.ndarray | None = None, check: str = "query"
               ) -> tuple[np.ndarray, str]:
    """(the factor label confidence is scaled by, the check that ran): `soft_factor` of
    `novelty_pvalues` (``check``; `is_default_check`), else (``"earlier"``) of `depth_pvalues`,
    of the -ELBO among all reference cells or of `neighbour_pvalues`, as the data allow."""
    if is_default_check(cells, predicted, log_library):
        p = novelty_pvalues(z, nelbo, log_library, cells, predicted, k, geometry, check)
        return soft_factor(p, NOVELTY_TAIL), check
    if cells.nelbo is not None and _is_depth(cells.log_library) and _is_depth(log_library):
        return soft_factor(depth_pvalues(nelbo, log_library, cells.nelbo, cells.log_library),
                           DEPTH_TAIL), "earlier"
    if cells.nelbo is not None:
        return soft_factor(shifted_pvalues(nelbo, cells.nelbo), UNKNOWN_TAIL), "earlier"
    labels = cells.labels if predicted is not None else None
    p = neighbour_pvalues(z, cells.latent, k, geometry, predicted, labels)
    return soft_factor(p, NEIGHBOUR_TAIL), "earlier"


def novelty_pvalues(z: np.ndarray, nelbo: np.ndarray, log_library: np.ndarray,
                    cells: ReferenceCells, predicted: np.ndarray, k: int, geometry: str,
                    check: str = "query") -> np.ndarray:
    """The default unknown-type p-value (issue 23): the Cauchy combination of the cell's
    `best_label_pvalues` by Mahalanobis distance (Euclidean latents only) and by its k nearest
    neighbours and of its -ELBO among its predicted label's reference cells given depth
    (`label_depth_pvalues`) (``check="reference"``: these alone) and of its share of query
    cells in the joint latent (`query_share.query_share_stats`): the larger p-value against
    the overall and the label's share (``"query"``), or the overall one's (``"query-overall"``:
    flags commoner known types); then made depth-free in the query's own terms
    (`depth_free.query_depth_free`). Development split: `NOVELTY_TAIL`, `query_share`,
    `depth_free`."""
    if check not in NOVELTY_CHECKS:
        raise ValueError(f"check must be one of {NOVELTY_CHECKS}, not {check!r}")
    labels = cells.labels
    parts = [best_label_pvalues(z, cells.latent, labels, k, geometry, "neighbours"),
             label_depth_pvalues(nelbo, log_library, cells.nelbo, cells.log_library,
                                 predicted, labels)]
    if geometry == "euclidean":
        parts.append(best_label_pvalues(z, cells.latent, labels, k, geometry))
    p = combine_pvalues(parts, "cauchy")
    if check != "reference":
        bases = BASES if check == "query" else ("overall",)
        share = np.max([shifted_pvalues(q, r) for q, r in query_share_stats(
            z, cells.latent, geometry, log_library, cells.log_library, predicted, labels,
            bases=bases)], axis=0)
        p = combine_pvalues([p, share], "cauchy")
    return query_depth_free(p, log_library, predicted)


def is_default_check(cells: ReferenceCells, predicted: np.ndarray | None,
                     log_library: np.ndarray | None) -> bool:
    """Whether `typicality` runs the default check, `novelty_pvalues`: labelled reference
    cells with -ELBO, both sides with library sizes, predicted labels (where `VOTE_POWER`
    applies; the older checks keep the votes in the confidence)."""
    return (cells.nelbo is not None and _is_depth(cells.log_library) and _is_depth(log_library)
            and predicted is not None and cells.labels is not None
            and bool((cells.labels >= 0).any()))


def _is_depth(log_library: np.ndarray | None) -> bool:
    """Library sizes to condition on: given and finite (not data with negative sums)."""
    return log_library is not None and bool(np.isfinite(log_library).all())


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


def depth_pvalues(query: np.ndarray, query_depth: np.ndarray, reference: np.ndarray,
                  reference_depth: np.ndarray) -> np.ndarray:
    """How badly the reference explains each query cell *given* its depth (log library
    size; the total -ELBO grows with the counts): `empirical_pvalue` of its -ELBO among the
    `DEPTH_WINDOW` share of reference cells nearest in depth (at least `MIN_DEPTH_WINDOW`),
    both as residuals of a straight line fitted to that window's -ELBO against depth, in
    units of the window's median absolute residual; the query's median excess (when
    positive) is subtracted first, one shift for the whole query, as in `shifted_pvalues`."""
    query, query_depth = np.asarray(query, np.float64), np.asarray(query_depth, np.float64)
    reference_depth = np.asarray(reference_depth, np.float64)
    order = np.argsort(reference_depth, kind="stable")  # by depth, once for every chunk
    reference_depth, reference = reference_depth[order], np.asarray(reference, np.float64)[order]
    n = len(query)
    if not n:
        return np.ones(0)
    # query cells in chunks, so the (cells, window) arrays stay near CHUNK_VALUES values each
    window = _window_size(len(reference))
    step = max(1, CHUNK_VALUES // window)
    chunks = [slice(s, s + step) for s in range(0, n, step)]

    def residuals(part: slice) -> tuple[np.ndarray, np.ndarray]:
        return _window_residuals(query[part], query_depth[part], reference, reference_depth)

    excess = np.empty(n)
    for part in chunks:
        z_query, z_window = residuals(part)
        excess[part] = z_query - np.median(z_window, axis=1)
    shift = max(float(np.median(excess)), 0.0)
    above = np.empty(n, dtype=np.int64)
    for part in chunks:
        z_query, z_window = residuals(part)
        above[part] = (z_window >= (z_query - shift)[:, None]).sum(1)
    return (1 + above) / (1 + window)


def _window_size(n_ref: int) -> int:
    """Reference cells in each query cell's depth window."""
    return min(n_ref, max(MIN_DEPTH_WINDOW, int(round(DEPTH_WINDOW * n_ref))))


def _window_residuals(score: np.ndarray, depth: np.ndarray, ref_score: np.ndarray,
                      ref_depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query cell, its standardised residual and its window's (cells, window): the
    window's -ELBO and its absolute residual fitted by lines in the library size (the
    -ELBO is about linear in the counts, its spread grows with them). The reference cells
    come sorted by depth."""
    n_ref = len(ref_score)
    window = _window_size(n_ref)
    start = np.clip(np.searchsorted(ref_depth, depth) - window // 2, 0, n_ref - window)
    rows = start[:, None] + np.arange(window)
    x, y, xq = np.expm1(ref_depth[rows]), ref_score[rows], np.expm1(depth)[:, None]
    x_mean, y_mean, slope = least_squares_line(x, y)
    resid = y - y_mean - slope * (x - x_mean)
    resid_q = score[:, None] - y_mean - slope * (xq - x_mean)
    a_mean, s_mean, s_slope = least_squares_line(x, np.abs(resid))
    floor = 1e-3 * np.maximum(s_mean, 1e-12)
    scale = np.maximum(s_mean + s_slope * (x - a_mean), floor)
    scale_q = np.maximum(s_mean + s_slope * (xq - a_mean), floor)
    return (resid_q / scale_q)[:, 0], resid / scale


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


def mahalanobis_pvalues(z: np.ndarray, reference: np.ndarray,
                        predicted: np.ndarray | None = None,
                        ref_labels: np.ndarray | None = None) -> np.ndarray:
    """`shifted_pvalues` of the log Mahalanobis distance of each query cell's latent to the
    reference cells of its (predicted) label — one Gaussian per label, Ledoit-Wolf shrunk
    covariance (scikit-learn) — ranked among those reference cells' own distances."""
    from sklearn.covariance import LedoitWolf

    groups = []
    for q_idx, r_idx in _groups(predicted, ref_labels, len(z), len(reference)):
        ref = np.asarray(reference[r_idx], dtype=np.float64)
        if len(ref) < 2:
            continue
        fit = LedoitWolf().fit(ref)
        q_d = fit.mahalanobis(np.asarray(z[q_idx], dtype=np.float64))
        groups.append((q_idx, 0.5 * np.log(q_d + 1e-12),
                       0.5 * np.log(fit.mahalanobis(ref) + 1e-12)))
    return _shifted(groups, len(z))


def library_pvalues(log_library: np.ndarray, ref_log_library: np.ndarray,
                    predicted: np.ndarray | None = None,
                    ref_labels: np.ndarray | None = None) -> np.ndarray:
    """Two-sided empirical p-value of each query cell's log library size among the reference
    cells of its (predicted) label: a depth atypical *for the type it resembles* (not
    monotone in depth). The query is first shifted by its median excess over its labels'
    reference medians, up or down (another run or lab sequences deeper or shallower)."""
    log_library = np.asarray(log_library, dtype=np.float64)
    ref_log_library = np.asarray(ref_log_library, dtype=np.float64)
    groups = _groups(predicted, ref_labels, len(log_library), len(ref_log_library))
    excess = np.zeros(len(log_library))
    for q_idx, r_idx in groups:
        excess[q_idx] = log_library[q_idx] - np.median(ref_log_library[r_idx])
    shift = float(np.median(excess)) if len(excess) else 0.0
    out = np.ones(len(log_library))
    for q_idx, r_idx in groups:
        x, ref = log_library[q_idx] - shift, ref_log_library[r_idx]
        high, low = empirical_pvalue(x, ref), empirical_pvalue(-x, -ref)
        out[q_idx] = np.minimum(1.0, 2.0 * np.minimum(high, low))
    return out


def combine_pvalues(pvalues: list[np.ndarray], how: str = "cauchy") -> np.ndarray:
    """One p-value per cell from several: ``cauchy`` (the Cauchy combination test, valid
    under any dependence for small p; each p capped at 0.99), ``fisher`` (-2 sum log p
    against chi-square with 2m degrees of freedom: assumes independence) or ``min``
    (Bonferroni: m min p)."""
    p = np.clip(np.stack([np.asarray(x, dtype=np.float64) for x in pvalues]), 1e-300, 1.0)
    m = len(p)
    if how == "cauchy":  # p capped at 0.99: one p near 1 would outweigh any small one
        t = np.tan((0.5 - np.minimum(p, 0.99)) * np.pi).mean(0)
        return np.clip(0.5 - np.arctan(t) / np.pi, 0.0, 1.0)
    if how == "fisher":
        from scipy.stats import chi2

        return chi2.sf(-2.0 * np.log(p).sum(0), 2 * m)
    if how == "min":
        return np.minimum(1.0, m * p.min(0))
    raise ValueError(f"unknown combination {how!r}: use cauchy, fisher or min")


def label_depth_pvalues(query: np.ndarray, query_depth: np.ndarray, reference: np.ndarray,
                        reference_depth: np.ndarray, predicted: np.ndarray,
                        ref_labels: np.ndarray) -> np.ndarray:
    """How badly the reference explains each query cell given its depth *and* the label it
    resembles: `empirical_pvalue` of its score (the -ELBO) among the reference cells of its
    predicted label, both as residuals of a least-squares line in log library size fitted
    on those reference cells (log, not counts: on the development split of `NOVELTY_TAIL`
    a line in counts gave mean AUROC 0.646 against 0.657 and |partial r| >= 0.1 in 30
    runs of 60 against 4; all reference cells for a label with fewer than
    `MIN_LABEL_CELLS`), after one query-wide shift (the query's median excess over its
    labels' reference medians, when positive)."""
    query, query_depth = np.asarray(query, np.float64), np.asarray(query_depth, np.float64)
    reference = np.asarray(reference, np.float64)
    reference_depth = np.asarray(reference_depth, np.float64)
    groups = []
    for q_idx, r_idx in _groups(predicted, ref_labels, len(query), len(reference)):
        y_ref = reference[r_idx]
        x_mean, _, slope = least_squares_line(reference_depth[r_idx], y_ref)
        x_ref, x_query = reference_depth[r_idx] - x_mean, query_depth[q_idx] - x_mean
        groups.append((q_idx, query[q_idx] - slope * x_query, y_ref - slope * x_ref))
    return _shifted(groups, len(query))


def label_log_distances(z: np.ndarray, reference: np.ndarray, ref_labels: np.ndarray, k: int,
                        geometry: str, kind: str = "mahalanobis", min_cells: int = 0
                        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per label of >= ``min_cells`` cells: the query's and its own cells' log distances."""
    from sklearn.covariance import LedoitWolf

    z = np.asarray(z, np.float64)
    reference = np.asarray(reference, np.float64)
    dists, refs = [], []
    for c in np.unique(ref_labels[ref_labels >= 0]):
        ref = reference[ref_labels == c]
        if len(ref) < min_cells:
            continue
        if kind == "mahalanobis":
            fit = LedoitWolf().fit(ref)
            dists.append(0.5 * np.log(fit.mahalanobis(z) + 1e-12))
            refs.append(0.5 * np.log(fit.mahalanobis(ref) + 1e-12))
        else:
            kk = min(k, len(ref) - 1)
            dists.append(np.log(knn(z, ref, kk, geometry)[0].mean(1) + 1e-12))
            refs.append(np.log(knn(ref, ref, kk, geometry, exclude_self=True)[0].mean(1)
                               + 1e-12))
    return dists, refs


def best_label_pvalues(z: np.ndarray, reference: np.ndarray, ref_labels: np.ndarray,
                       k: int, geometry: str, kind: str = "mahalanobis",
                       min_cells: int = MIN_LABEL_CELLS) -> np.ndarray:
    """The largest over the reference labels (those with at least ``min_cells`` cells) of
    the `empirical_pvalue` of a query cell's log distance to that label — ``mahalanobis``
    (a Gaussian per label, Ledoit-Wolf shrunk covariance, scikit-learn) or ``neighbours``
    (mean distance to its k nearest cells in the latent's own metric) — among the label's
    reference cells' own (themselves left out of their neighbours): typical if it fits ANY
    label, so a known cell whose votes went to a sibling label is not flagged. The query's
    log distances are first shifted down by their median excess over their nearest label's
    reference median (when positive: a new condition sits a little farther from all)."""
    dists, refs = label_log_distances(z, reference, ref_labels, k, geometry, kind, min_cells)
    if not dists:  # no label large enough: all reference cells as one (or none: typical)
        if len(reference) < min_cells:
            return np.ones(len(z))
        return best_label_pvalues(z, reference, np.zeros(len(reference), np.int64), k,
                                  geometry, kind, min_cells)
    excess = np.min([d - np.median(r) for d, r in zip(dists, refs, strict=True)], axis=0)
    shift = max(float(np.median(excess)), 0.0)
    return np.max([empirical_pvalue(d - shift, r) for d, r in zip(dists, refs, strict=True)],
                  axis=0)
