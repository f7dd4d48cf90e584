"""The last step of the default unknown-type check (`geovae.tools.novelty.novelty_pvalues`,
issue 23): its p-values made depth-free in the QUERY's own terms.

Each part of the check is ranked among the reference's cells, and its depth adjustments (the
-ELBO's line in log library size, the latent of shallow cells) are fitted on the reference. A
query from another lab or protocol has other depths and another -ELBO-vs-depth line, so the
p-values drift with depth within every predicted label (Kang -> pbmc68k: partial Spearman r
-0.56 with log library size). `query_depth_free` takes each p-value's normal score, fits a
Theil-Sen line in log library size on the query's own cells of each predicted label (robust to
the unseen cells among them: least squares, or Theil-Sen on the cells at p >= 0.05 only, left
more runs at |r| >= 0.1) and removes it around the label's median depth: what is left ranks a
cell against the label's query cells of its own depth, with the reference's calibration kept
at the median.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

#: a predicted label's query cells needed to fit its line (fewer: left as they are; as
#: `novelty.MIN_LABEL_CELLS`, not tuned)
MIN_LINE_CELLS = 20
#: at most this many of a label's query cells (a seeded random subset) fit its slope: Theil-Sen
#: sorts all n (n - 1) / 2 pairwise slopes (not tuned; the development runs have < 1,200)
MAX_LINE_CELLS = 2000


def query_depth_free(p: np.ndarray, log_library: np.ndarray, predicted: np.ndarray,
                     seed: int = 0) -> np.ndarray:
    """``p`` with its line in ``log_library`` removed within each ``predicted`` label of the
    query: z = Phi^-1(1 - p), minus the Theil-Sen slope of z on log library size among the
    label's query cells times the cell's depth minus the label's median depth, back to a
    p-value. Development split: the bundled Kang subset (benchmarks/loto_depth.py; chosen on
    30 of its 60 leave-one-type-out runs, confirmed on all 60, as they are, with the query
    thinned and with its -ELBO's depth line steepened)."""
    p = np.asarray(p, dtype=np.float64)
    depth = np.asarray(log_library, dtype=np.float64)
    z = stats.norm.isf(np.clip(p, 1e-300, 1.0 - 1e-12))
    out = p.copy()
    rng = np.random.default_rng(seed)
    for label in np.unique(predicted):
        rows = np.flatnonzero(predicted == label)
        if len(rows) < MIN_LINE_CELLS or np.ptp(depth[rows]) == 0:
            continue
        fit = rows if len(rows) <= MAX_LINE_CELLS else rng.choice(rows, MAX_LINE_CELLS,
                                                                   replace=False)
        slope = stats.theilslopes(z[fit], depth[fit])[0]
        out[rows] = stats.norm.sf(z[rows] - slope * (depth[rows] - np.median(depth[rows])))
    return out
