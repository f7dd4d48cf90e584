"""Mean-tracking lines for the depth-free step fitted on the cells that are very likely known
(issue 23 item 1), rescored from `loto_fit_arrays.py` folders; record:
results/loto_depth_known_2026-12-07c.md.

`geovae.tools.depth_free.query_depth_free` removes, within each predicted label, the Theil-Sen
line of the p-value's normal score in log library size fitted on the query's cells; on Kang ->
pbmc68k the known cells keep a tilt (partial r -0.20) because their scores are two-humped and
Theil-Sen's median pairwise slope follows the flat pairs (`loto_depth_robust.py`). Least squares
on the known cells alone (``oracle_ols``) removes it; on all cells it is tilted by the unseen
ones. Each candidate here is a least-squares line of the same normal score fitted on a subset of
the label's query cells chosen by a signal OTHER than the p-value itself, removed around the
label's median depth:

* ``ts`` (shipped), ``ols`` (least squares, all cells), ``oracle_ols`` (known cells alone:
  unavailable in use, the bound).
* ``mp<c>``: cells whose label classifier's maximum probability is >= c (fewer than 20 such
  cells: all cells); ``mptop<q>``: the label's share q of cells with the highest maximum
  probability; ``mpw``: every cell, weighted by its maximum probability squared.
* ``lat<c>``: cells whose latent part (the Cauchy combination of the nearest-neighbour and
  Mahalanobis p-values, before the -ELBO and query-share parts join) is >= c; ``lattop<q>``
  the label's share q with the highest latent p.
* ``mplat<c>``: maximum probability >= c and latent p >= 0.05.
* ``mpbin<q>`` / ``latbin<q>``: the share q with the highest maximum probability / latent p
  within each of 5 equal-count depth bins of the label (both signals rise with depth, so a
  plain cut keeps mostly deep cells).
* ``bints<b>``: Theil-Sen over the mean scores of b equal-count depth bins (mean-tracking
  within a bin, robust across bins).

Development split only for any constant (``loto_fit_arrays.py --dev``: the bundled Kang subset,
both directions, every type left out, seeds 0-2; ``--thin-unseen``: the same fits, the unseen
type's query cells alone thinned). The parts are cached per run (``--cache``)::

    python benchmarks/loto_depth_known.py DEV_FOLDER --cache C/dev --out dev.jsonl
    python benchmarks/loto_depth_known.py --table dev.jsonl  # the tables again
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loto_depth import K  # noqa: E402
from loto_depth_robust import table  # noqa: E402
from loto_query import saved_run, score_metrics  # noqa: E402

from geovae.tools import novelty as nv  # noqa: E402
from geovae.tools.depth_free import query_depth_free  # noqa: E402
from geovae.tools.query_share import BASES, query_share_stats  # noqa: E402

MP_CUTS = (0.5, 0.8, 0.9, 0.95, 0.99)
MP_TOPS = (0.25, 0.5, 0.75)
LAT_CUTS = (0.05, 0.2, 0.5)
LAT_TOPS = (0.5, 0.75)
BIN_SHARES = (0.5, 0.75, 0.9)
DEPTH_BINS = 5
MEAN_BINS = (4, 6, 10)
MIN_CELLS = 20


def parts(a: dict) -> dict[str, np.ndarray]:
    """The default's parts of one saved run, and the default before the depth-free step."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    pred, lab, depth = a["pred_code"], a["ref_labels"], a["depth"].astype(float)
    knn = nv.best_label_pvalues(z, rz, lab, K, "euclidean", "neighbours")
    maha = nv.best_label_pvalues(z, rz, lab, K, "euclidean")
    elbo = nv.label_depth_pvalues(a["nelbo"].astype(float), depth, a["ref_nelbo"],
                                  a["ref_depth"], pred, lab)
    share = np.max([nv.shifted_pvalues(q, r) for q, r in query_share_stats(
        z, rz, "euclidean", depth, a["ref_depth"], pred, lab, bases=BASES)], axis=0)
    before = nv.combine_pvalues([nv.combine_pvalues([knn, elbo, maha]), share])
    return {"knn": knn, "maha": maha, "elbo": elbo, "share": share, "before": before,
            "latent": nv.combine_pvalues([knn, maha])}


def ls_slope(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    w = np.ones(len(x)) if w is None else w
    xm, ym = np.average(x, weights=w), np.average(y, weights=w)
    den = np.sum(w * (x - xm) ** 2)
    return float(np.sum(w * (x - xm) * (y - ym)) / den) if den > 0 else 0.0


def subset_line(p: np.ndarray, depth: np.ndarray, pred: np.ndarray, how: str,
                c: dict[str, np.ndarray]) -> np.ndarray:
    """``p`` minus, within each predicted label, the least-squares line (``ts``: Theil-Sen)
    of its normal score in depth fitted on the subset ``how`` names (see the docstring)."""
    z = stats.norm.isf(np.clip(p, 1e-300, 1.0 - 1e-12))
    out = p.copy()
    for g in np.unique(pred):
        rows = np.flatnonzero(pred == g)
        if len(rows) < MIN_CELLS or np.ptp(depth[rows]) == 0:
            continue
        x, y, w = depth[rows], z[rows], None
        mp, lat = c["maxprob"][rows], c["latent"][rows]
        if how == "ts":
            slope = stats.theilslopes(y, x)[0]
        elif how.startswith("bints"):
            slope = bin_mean_slope(x, y, int(how[5:]))
        else:
            if how == "ols":
                fit = np.ones(len(rows), bool)
            elif how == "oracle_ols":
                fit = c["known"][rows]
            elif how.startswith("mpbin"):
                fit = top_share_by_depth(mp, x, float(how[5:]))
            elif how.startswith("latbin"):
                fit = top_share_by_depth(lat, x, float(how[6:]))
            elif how.startswith("mptop"):
                fit = top_share(mp, float(how[5:]))
            elif how.startswith("mplat"):
                fit = (mp >= float(how[5:])) & (lat >= 0.05)
            elif how.startswith("mp") and how != "mpw":
                fit = mp >= float(how[2:])
            elif how.startswith("lattop"):
                fit = top_share(lat, float(how[6:]))
            elif how.startswith("lat"):
                fit = lat >= float(how[3:])
            elif how == "mpw":
                fit, w = np.ones(len(rows), bool), mp ** 2
            else:
                raise ValueError(how)
            if fit.sum() < MIN_CELLS or np.ptp(x[fit]) == 0:
                fit = np.ones(len(rows), bool)
            slope = ls_slope(x[fit], y[fit], None if w is None else w[fit])
        out[rows] = stats.norm.sf(y - slope * (x - np.median(x)))
    return out


def top_share(v: np.ndarray, q: float) -> np.ndarray:
    """The share q of cells with the highest v (ties by order)."""
    n = max(int(round(q * len(v))), 1)
    keep = np.zeros(len(v), bool)
    keep[np.argsort(-v, kind="stable")[:n]] = True
    return keep


def top_share_by_depth(v: np.ndarray, x: np.ndarray, q: float, bins: int = DEPTH_BINS
                       ) -> np.ndarray:
    """`top_share` within each of ``bins`` equal-count bins of depth ``x``: the subset keeps
    the label's depth spread (a cut on v alone keeps the deep cells, v rising with depth)."""
    keep = np.zeros(len(v), bool)
    for b in np.array_split(np.argsort(x, kind="stable"), bins):
        keep[b[top_share(v[b], q)]] = True
    return keep


def bin_mean_slope(x: np.ndarray, y: np.ndarray, bins: int) -> float:
    """Theil-Sen over the (median depth, mean score) of ``bins`` equal-count depth bins: the
    means follow the share of cells in each hump, the median of their pairwise slopes is not
    moved by one bin's unseen cells."""
    parts = np.array_split(np.argsort(x, kind="stable"), bins)
    bx = np.array([np.median(x[b]) for b in parts])
    by = np.array([np.mean(y[b]) for b in parts])
    return float(stats.theilslopes(by, bx)[0]) if np.ptp(bx) > 0 else 0.0


def names() -> list[str]:
    return (["before", "ts", "ols", "oracle_ols"] + [f"mp{c:g}" for c in MP_CUTS]
            + [f"mptop{q:g}" for q in MP_TOPS] + ["mpw"] + [f"lat{c:g}" for c in LAT_CUTS]
            + [f"lattop{q:g}" for q in LAT_TOPS] + ["mplat0.9", "mplat0.95"]
            + [f"mpbin{q:g}" for q in BIN_SHARES] + [f"latbin{q:g}" for q in BIN_SHARES]
            + [f"bints{b}" for b in MEAN_BINS])


def score_folder(folder: Path, cache: Path | None) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*.npz")):
        a, novel, run = saved_run(f)
        depth, pred = a["depth"].astype(float), a["pred_code"]
        cached = None if cache is None else cache / f.name
        if cached is not None and cached.exists():
            with np.load(cached) as d:
                pt = dict(d)
        else:
            pt = parts(a)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(cached, **pt)
        c = {"maxprob": a["maxprob"].astype(float), "latent": pt["latent"], "known": ~novel}
        before = pt["before"]
        scores = {n: before if n == "before" else subset_line(before, depth, pred, n, c)
                  for n in names()}
        assert np.allclose(query_depth_free(before, depth, pred), scores["ts"])
        row = dict(run)
        from sklearn.metrics import roc_auc_score
        row["auroc_maxprob"] = float(roc_auc_score(novel, -a["maxprob"]))
        row["auroc_latent"] = float(roc_auc_score(novel, -pt["latent"]))
        row["mp_known_median"] = float(np.median(a["maxprob"][~novel]))
        row.update(score_metrics(scores, a, novel))
        rows.append(row)
        print(f.stem, {k[2:]: round(v, 3) for k, v in row.items()
                       if k.startswith("r:") and k[2:] in ("ts", "oracle_ols", "mp0.9")},
              flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, nargs="?")
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None)
    p.add_argument("--base", default="ts")
    args = p.parse_args()
    df = (pd.read_json(args.table, lines=True) if args.table is not None
          else score_folder(args.folder, args.cache))
    if args.out is not None and args.table is None:
        df.to_json(args.out, orient="records", lines=True)
    print(table(df, args.base))


if __name__ == "__main__":
    main()
