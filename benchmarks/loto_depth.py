"""Depth-free novelty candidates (issue 23 item 1), rescored from `loto_fit_arrays.py` folders.

Development split only: the bundled Kang subset (``loto_fit_arrays.py --dev``: CTRL -> STIM
and STIM -> CTRL, every type left out, seeds 0-2, 60 runs; ``--thin``: the same fits with each
query cell's counts thinned). Per run and candidate: the AUROC of -p (unseen vs known-type
query cells) and the partial Spearman r of p with log library size given the predicted label
among known-type cells (`bench_loto.partial_spearman`; target |r| < 0.1 on every set).
``--stress s``: the query's -ELBO gets s x the reference's slope in log library size more (a
depth line that does not carry over, as from another lab; offline). Candidates (the list grew
during the exploration: the first records lack the later ones):

* ``shipped``: `novelty.novelty_pvalues` of this checkout; ``reference``: the three
  reference-only parts combined; ``noelbo``: the default without the -ELBO term.
* ``qline_*``: the -ELBO term with its line in log library size fitted on the QUERY's own
  cells of each predicted label (the reference's residuals keep the reference's line).
* ``z_<how>``: the default before the step as a normal score, minus its line in log library
  size fitted on the query's own cells of each predicted label: ``ols`` least squares, ``ts``
  Theil-Sen (what `geovae.tools.depth_free.query_depth_free` ships), ``trim`` least squares
  on the lower 80 % of scores, ``*_typ`` on the cells at p >= 0.05, ``ts_iter`` Theil-Sen
  refitted on the cells its last fit left at p >= 0.05; ``parts_z_*`` each part so, then
  combined; ``noelbo_z_*`` without the -ELBO term.

``--final 0,0.5,1.5``: only ``before`` (the default before the step, rebuilt from its parts),
``default`` (the shipped `novelty_pvalues`, checked equal to ``query_depth_free(before)``) and
``pooled`` (one Theil-Sen slope over all labels), at each stress::

    python benchmarks/loto_depth.py dev/ --final 0,0.5,1.5 --base before --out dev.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loto import partial_spearman  # noqa: E402
from loto_query import saved_run, score_metrics  # noqa: E402
from paired_stats import fmt_p, paired  # noqa: E402

from geovae.models.reference import ReferenceCells  # noqa: E402
from geovae.tools import novelty as nv  # noqa: E402
from geovae.tools.depth_free import query_depth_free  # noqa: E402
from geovae.tools.query_share import BASES, query_share_stats  # noqa: E402

K = 15
#: with --only: the candidates computed
ONLY: set[str] = set()
#: --final: score only `final` (before / the shipped default), at these --stress values
FINAL = False
STRESSES: tuple[float, ...] = (0.0,)


def z_line(p: np.ndarray, depth: np.ndarray, groups: np.ndarray, how: str) -> np.ndarray:
    """p as a normal score minus a line in ``depth`` fitted within each group of the query."""
    z = stats.norm.isf(np.clip(p, 1e-12, 1 - 1e-6))
    out = z.copy()
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        if len(rows) < 20:
            continue
        x, y = depth[rows], z[rows]
        if how == "ts_iter":  # Theil-Sen, refitted twice on the cells the last fit left >= 0.05
            fit = np.ones(len(rows), bool)
            for _ in range(3):
                slope = stats.theilslopes(y[fit], x[fit])[0]
                adj = stats.norm.sf(y - slope * (x - np.median(x)))
                if (adj >= 0.05).sum() < 20:
                    break
                fit = adj >= 0.05
        elif how.endswith("_typ"):  # the slope from the cells not called (p >= 0.05)
            fit = p[rows] >= 0.05
            if fit.sum() >= 20 and np.ptp(x[fit]) > 0:
                slope = (stats.theilslopes(y[fit], x[fit])[0] if how == "ts_typ"
                         else np.polyfit(x[fit], y[fit], 1)[0])
            else:
                slope = 0.0
        elif how == "ols":
            slope = np.polyfit(x, y, 1)[0] if np.ptp(x) > 0 else 0.0
        elif how == "ts":
            slope = stats.theilslopes(y, x)[0]
        elif how == "trim":  # least squares on the lower 80 % of scores (unseen cells sit high)
            keep = y <= np.quantile(y, 0.8)
            slope = np.polyfit(x[keep], y[keep], 1)[0]
        out[rows] = y - slope * (x - np.median(x))
    return stats.norm.sf(out)


def elbo_qline(a: dict, how: str = "ols") -> np.ndarray:
    """The -ELBO term with its slope in log library size fitted on the query's own cells of
    each predicted label; the reference's residuals keep the reference's slope."""
    q, qd, pred = a["nelbo"].astype(float), a["depth"].astype(float), a["pred_code"]
    r, rd, lab = a["ref_nelbo"].astype(float), a["ref_depth"].astype(float), a["ref_labels"]
    groups = []
    for q_idx, r_idx in nv._groups(pred, lab, len(q), len(r)):
        xr = rd[r_idx]
        slope_r = np.polyfit(xr, r[r_idx], 1)[0]
        xq, yq = qd[q_idx], q[q_idx]
        if len(q_idx) >= 20 and np.ptp(xq) > 0:
            slope_q = (stats.theilslopes(yq, xq)[0] if how == "ts"
                       else np.polyfit(xq, yq, 1)[0])
        else:
            slope_q = slope_r
        centre = xr.mean()
        groups.append((q_idx, yq - slope_q * (xq - centre), r[r_idx] - slope_r * (xr - centre)))
    return nv._shifted(groups, len(q))


def candidates(a: dict) -> dict[str, np.ndarray]:
    """name -> query p-values of one saved run (``ONLY``: those names, where given)."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    pred, lab, depth = a["pred_code"], a["ref_labels"], a["depth"].astype(float)
    nelbo = a["nelbo"].astype(float) + STRESS * SLOPE_OF(a) * (depth - depth.mean())
    cells = ReferenceCells(rz, lab, None, a["ref_nelbo"], a["ref_depth"])
    knn_p = nv.best_label_pvalues(z, rz, lab, K, "euclidean", "neighbours")
    maha_p = nv.best_label_pvalues(z, rz, lab, K, "euclidean")
    elbo_p = nv.label_depth_pvalues(nelbo, depth, a["ref_nelbo"], a["ref_depth"], pred, lab)
    share = np.max([nv.shifted_pvalues(q, r) for q, r in query_share_stats(
        z, rz, "euclidean", depth, a["ref_depth"], pred, lab, bases=BASES)], axis=0)
    out = {"shipped": nv.novelty_pvalues(z, nelbo, depth, cells, pred, K, "euclidean"),
           "knn": knn_p, "maha": maha_p, "elbo": elbo_p, "share": share}
    out["reference"] = nv.combine_pvalues([knn_p, elbo_p, maha_p])
    out["noelbo"] = nv.combine_pvalues([nv.combine_pvalues([knn_p, maha_p]), share])
    b = {**a, "nelbo": nelbo}
    for how in ("ols", "ts"):
        e = out[f"elbo_q{how}"] = elbo_qline(b, how)
        out[f"qline_{how}"] = nv.combine_pvalues([nv.combine_pvalues([knn_p, e, maha_p]),
                                                  share])
    for how in ("ols", "ts", "trim", "ols_typ", "ts_typ", "ts_iter"):
        out[f"z_{how}"] = z_line(out["shipped"], depth, pred, how)
        if how in ("ts", "ts_typ", "ts_iter"):
            out[f"noelbo_z_{how}"] = z_line(out["noelbo"], depth, pred, how)
            # each part made depth-free in the query's terms, then combined
            parts = [z_line(x, depth, pred, how) for x in (knn_p, maha_p, share)]
            out[f"parts_z_{how}"] = nv.combine_pvalues(
                [nv.combine_pvalues([parts[0], z_line(elbo_p, depth, pred, how), parts[1]]),
                 parts[2]])
    return {k: v for k, v in out.items() if not ONLY or k in ONLY}


def SLOPE_OF(a: dict) -> float:
    """The reference's least-squares slope of the -ELBO in log library size (``--stress``)."""
    return float(np.polyfit(a["ref_depth"].astype(float), a["ref_nelbo"].astype(float), 1)[0])


#: --stress: the query's -ELBO gets STRESS x the reference's slope in log library size more
#: (a line that does not carry to the query, as from another lab)
STRESS = 0.0


def final(a: dict, stresses: tuple[float, ...]) -> dict[str, np.ndarray]:
    """The default before (the parts rebuilt as `novelty_pvalues` combined them) and the
    shipped default (`novelty_pvalues`, whose last step is `depth_free.query_depth_free`),
    per ``--stress`` (only the -ELBO term changes: the other parts are computed once)."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    pred, lab, depth = a["pred_code"], a["ref_labels"], a["depth"].astype(float)
    cells = ReferenceCells(rz, lab, None, a["ref_nelbo"], a["ref_depth"])
    latent = [nv.best_label_pvalues(z, rz, lab, K, "euclidean", "neighbours"),
              nv.best_label_pvalues(z, rz, lab, K, "euclidean")]
    share = np.max([nv.shifted_pvalues(q, r) for q, r in query_share_stats(
        z, rz, "euclidean", depth, a["ref_depth"], pred, lab, bases=BASES)], axis=0)
    out = {}
    for stress in stresses:
        nelbo = a["nelbo"].astype(float) + stress * SLOPE_OF(a) * (depth - depth.mean())
        elbo = nv.label_depth_pvalues(nelbo, depth, a["ref_nelbo"], a["ref_depth"], pred, lab)
        before = nv.combine_pvalues([nv.combine_pvalues([latent[0], elbo, latent[1]]), share])
        tag = f"@{stress:g}" if stress else ""
        out["before" + tag] = before
        out["default" + tag] = query_depth_free(before, depth, pred)
        out["pooled" + tag] = pooled_depth_free(before, depth, pred)
        if not stress:  # the shipped function is what is scored
            shipped = nv.novelty_pvalues(z, nelbo, depth, cells, pred, K, "euclidean")
            assert np.allclose(shipped, out["default"]), "novelty_pvalues changed"
    return out


def pooled_depth_free(p: np.ndarray, depth: np.ndarray, pred: np.ndarray,
                      max_cells: int = 3000) -> np.ndarray:
    """As `query_depth_free`, one Theil-Sen slope for all labels (each label's cells centred
    on its median depth and median normal score; labels of >= 20 query cells)."""
    z = stats.norm.isf(np.clip(p, 1e-300, 1.0 - 1e-12))
    xc, yc, use = np.zeros(len(p)), np.zeros(len(p)), np.zeros(len(p), bool)
    for g in np.unique(pred):
        rows = np.flatnonzero(pred == g)
        if len(rows) >= 20:
            xc[rows] = depth[rows] - np.median(depth[rows])
            yc[rows] = z[rows] - np.median(z[rows])
            use[rows] = True
    if use.sum() < 20:
        return p.copy()
    fit = np.flatnonzero(use)
    if len(fit) > max_cells:
        fit = np.random.default_rng(0).choice(fit, max_cells, replace=False)
    slope = stats.theilslopes(yc[fit], xc[fit])[0]
    out = p.copy()
    out[use] = stats.norm.sf(z[use] - slope * xc[use])
    return out


def score_folder(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*.npz")):
        a, novel, run = saved_run(f)
        known = ~novel
        row = {**run,
               "auroc_maxprob": roc_auc_score(novel, -a["maxprob"]),
               "auroc_conf": roc_auc_score(novel, -a["conf"]),
               "r_conf": partial_spearman(a["conf"][known], a["depth"][known],
                                          a["pred_code"][known])}
        scores = final(a, STRESSES) if FINAL else candidates(a)
        row.update(score_metrics(scores, a, novel))
        rows.append(row)
        print(f.stem, {k[2:]: round(v, 3) for k, v in row.items() if k.startswith("r:")},
              flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame, base: str = "shipped") -> str:
    names = [c.split(":", 1)[1] for c in df.columns if c.startswith("auroc:")]
    pairs = sorted(df["pair"].unique())
    df = df.sort_values(["pair", "seed", "held_out"])
    lib = " / ".join(f"{df.loc[df['pair'] == q, 'auroc_library'].mean():.3f}" for q in pairs)
    out = [f"{len(df)} runs; library size alone ({' / '.join(pairs)}) {lib}; all "
           f"{df['auroc_library'].mean():.3f}", "",
           f"| score | {' | '.join(pairs)} | all | − {base}: diff, p | mean r | max abs r | "
           "runs abs r >= 0.1 | unseen / known p < 0.05 |", "|---" * (len(pairs) + 7) + "|"]
    for n in names:
        per = " | ".join(f"{df.loc[df['pair'] == q, f'auroc:{n}'].mean():.3f}" for q in pairs)
        tag = n[n.index("@"):] if "@" in n else ""  # a stressed score: its stressed base
        b = f"auroc:{base}{tag}" if f"auroc:{base}{tag}" in df else f"auroc:{base}"
        t = paired(df[f"auroc:{n}"].to_numpy(), df[b].to_numpy())
        r = df[f"r:{n}"]
        out.append(f"| {n} | {per} | {df[f'auroc:{n}'].mean():.3f} | "
                   f"{t['diff']:+.3f}, {fmt_p(t['p_t'])} | {r.mean():+.3f} | "
                   f"{r.abs().max():.3f} | {int((r.abs() >= 0.1).sum())}/{len(r)} | "
                   f"{df[f'tpr:{n}'].mean():.2f} / {df[f'fpr:{n}'].mean():.2f} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, nargs="?")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None)
    p.add_argument("--only", default="", help="comma-separated candidates")
    p.add_argument("--stress", type=float, default=0.0, help="candidates: the query's "
                   "-ELBO gets this x the reference's slope in log library size more")
    p.add_argument("--final", default=None, help="score only before / the shipped default "
                   "at these comma-separated --stress values (e.g. 0,1.5)")
    p.add_argument("--base", default="shipped", help="the table's paired comparison")
    args = p.parse_args()
    global STRESS, FINAL, STRESSES
    STRESS = args.stress
    if args.final is not None:
        FINAL, STRESSES = True, tuple(float(x) for x in args.final.split(","))
    ONLY.update(x for x in args.only.split(",") if x)
    df = (pd.read_json(args.table, lines=True) if args.table is not None
          else score_folder(args.folder))
    if args.out is not None and args.table is None:
        df.to_json(args.out, orient="records", lines=True)
    print(table(df, args.base))


if __name__ == "__main__":
    main()
