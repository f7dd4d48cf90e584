"""The query-aware part of the unknown-type check (`geovae.tools.novelty.novelty_pvalues`,
issue 23). The other parts ask whether a query cell is typical of the REFERENCE; a type the
reference lacks also shows up as a region of the joint latent (the reference's cells and the
query's together) dense in QUERY cells and poor in reference cells, even where it sits right
beside a known label and every distance to the reference calls it typical.

Per cell of either side: the log-odds of its own side among its `SHARE_NEIGHBOURS` nearest
others, minus the log-odds of that side's share of the other cells, averaged over the cell and
its `SMOOTH_NEIGHBOURS` nearest cells of its own side, `SMOOTH_STEPS` times (a region, not one
cell's noisy neighbourhood), then taken as the residual of a least-squares line in log library
size within its (predicted) label (shallow cells sit apart in the latent; where query and
reference differ in depth that alone makes query-dense regions). The query's values are ranked
among the reference cells' (the mirror image: what a query drawn like the reference gives) by
`novelty.shifted_pvalues`, whose one query-wide shift absorbs a query that sits a little apart
from the reference as a whole.

Against the query's OVERALL share alone (``bases=("overall",)``, `geovae transfer --novelty
query-overall`) a known type commoner in the query than in the reference reads as query-dense
too. So the default (``bases=BASES``, `--novelty query`) also takes the log-odds against the
side's share of the cell's (predicted) LABEL (`label_base_rates`: composition) and keeps the
larger p-value of the two (`novelty.novelty_pvalues`: a cell is query-dense only if it is so
against both): a commoner known type passes the label test; an unseen type, with almost no
reference cells nearby, fails both (its cells swell the label they are predicted as, which
weakens the label test). Development split as `SHARE_NEIGHBOURS`: mean unseen AUROC of the
default check 0.743 (overall alone 0.765, label alone 0.724); a known label 1.5x / 3x commoner
in the query (`benchmarks/loto_query.py --composition`): 2-5 % of its cells below p = 0.05
(overall alone 6-9 / 40 %).
"""

from __future__ import annotations

import numpy as np

from geovae.graph.neighbors import knn
from geovae.tools._lines import least_squares_line

#: neighbours in the joint latent whose sides are counted. Development split: the bundled
#: Kang subset (benchmarks/bench_loto.py --dev: CTRL -> STIM and STIM -> CTRL, every type
#: left out, seeds 0-2, 60 runs; benchmarks/loto_query.py): 15 / 30 / 50 / 100 / 150 / 200
#: tried; mean unseen AUROC of the default 0.765 at 150, 0.783 at 200 (still rising): 150
#: kept for memory ((cells, k) neighbours) and rarer types than the split's (>= 120 cells)
SHARE_NEIGHBOURS = 150
#: own-side cells each cell's value is averaged over (0: none), `SMOOTH_STEPS` times.
#: Development split: as SHARE_NEIGHBOURS; 0 / 15 / 30 cells once, 15 three times tried
SMOOTH_NEIGHBOURS = 15
#: development split: as SHARE_NEIGHBOURS (k = 150: 0.753 once, 0.765 three times)
SMOOTH_STEPS = 3


def own_side_share(z: np.ndarray, reference: np.ndarray, k: int, geometry: str
                   ) -> np.ndarray:
    """Per cell of (reference, then query): the share of its k nearest others in the joint
    latent that are of its own side."""
    both = np.vstack([np.asarray(reference, np.float64), np.asarray(z, np.float64)])
    is_query = np.r_[np.zeros(len(reference), bool), np.ones(len(z), bool)]
    _, idx = knn(both, both, k, geometry, exclude_self=True)
    return (is_query[idx] == is_query[:, None]).mean(1)


def smooth_by_side(values: np.ndarray, z: np.ndarray, reference: np.ndarray, m: int,
                   geometry: str, steps: int = 1) -> np.ndarray:
    """``values`` (reference cells, then query cells) averaged over each cell and its m
    nearest cells of its own side, ``steps`` times."""
    out = np.asarray(values, np.float64).copy()
    n_ref = len(reference)
    for part, points in ((slice(0, n_ref), reference), (slice(n_ref, len(out)), z)):
        if m and len(points) > 1:
            nb = knn(np.asarray(points, np.float64), np.asarray(points, np.float64), m,
                     geometry, exclude_self=True)[1]
            for _ in range(steps):
                v = out[part]
                out[part] = (v + v[nb].sum(1)) / (nb.shape[1] + 1)
    return out


def depth_residuals(stat: np.ndarray, depth: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``stat`` minus a least-squares line in ``depth`` fitted within each group (groups of
    fewer than 3 cells kept as they are)."""
    out = np.asarray(stat, np.float64).copy()
    depth = np.asarray(depth, np.float64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) < 3:
            continue
        x_mean, _, slope = least_squares_line(depth[rows], out[rows])
        out[rows] = out[rows] - slope * (depth[rows] - x_mean)
    return out


#: the base rates the own-side log-odds are taken against (`query_share_stats`); the
#: default check keeps the larger p-value (module docstring; development split as
#: `SHARE_NEIGHBOURS`: overall alone / label alone / both 0.765 / 0.724 / 0.743)
BASES = ("overall", "label")


def label_base_rates(predicted: np.ndarray, ref_labels: np.ndarray, k: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per query cell the query's share of its predicted label's cells (query cells predicted
    so + reference cells labelled so), per reference cell the reference's, clipped to what k
    neighbours can show; unlabelled reference cells (label < 0): the overall share."""
    n_q, n_r = len(predicted), len(ref_labels)
    base_q, base_r = np.full(n_q, n_q / (n_q + n_r)), np.full(n_r, n_r / (n_q + n_r))
    for c in np.unique(np.r_[predicted, ref_labels]):
        in_q, in_r = predicted == c, ref_labels == c
        if c >= 0:
            base_q[in_q] = in_q.sum() / (in_q.sum() + in_r.sum())
            base_r[in_r] = in_r.sum() / (in_q.sum() + in_r.sum())
    lo, hi = 0.5 / (k + 1.0), (k + 0.5) / (k + 1.0)
    return np.clip(base_q, lo, hi), np.clip(base_r, lo, hi)


def query_share_stats(z: np.ndarray, reference: np.ndarray, geometry: str,
                      depth: np.ndarray, ref_depth: np.ndarray, predicted: np.ndarray,
                      ref_labels: np.ndarray, k: int = SHARE_NEIGHBOURS,
                      m: int = SMOOTH_NEIGHBOURS, steps: int = SMOOTH_STEPS,
                      bases: tuple[str, ...] = ("overall",)
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per base rate in ``bases`` (``overall``: the side's share of the other cells;
    ``label``: of its label's cells, `label_base_rates`): (query, reference) depth-adjusted
    excess log-odds of each cell's own side among its neighbours (module docstring; high: a
    region of its own side); rank the query's among the reference's
    (`novelty.shifted_pvalues`). The neighbours are found once for all bases."""
    n_ref, n = len(reference), len(reference) + len(z)
    if len(z) < 2 or n_ref < 2:
        return [(np.zeros(len(z)), np.zeros(n_ref)) for _ in bases]
    k = min(k, n - 1)
    share = smooth_by_side(own_side_share(z, reference, k, geometry), z, reference, m,
                           geometry, steps)
    frac = (share * k + 0.5) / (k + 1.0)  # +0.5 pseudo-counts: finite at 0 and 1
    log_odds = np.log(frac / (1.0 - frac))
    out = []
    for base in bases:
        if base == "overall":
            base_q, base_r = (len(z) - 1) / (n - 1), (n_ref - 1) / (n - 1)
        elif base == "label":
            base_q, base_r = label_base_rates(predicted, ref_labels, k)
        else:
            raise ValueError(f"unknown base {base!r}: use overall or label")
        query = log_odds[n_ref:] - np.log(base_q / (1.0 - base_q))
        ref = log_odds[:n_ref] - np.log(base_r / (1.0 - base_r))
        out.append((depth_residuals(query, depth, predicted),
                    depth_residuals(ref, ref_depth, ref_labels)))
    return out
