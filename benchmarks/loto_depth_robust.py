"""Other lines for the depth-free step (issue 23 item 1), rescored from `loto_fit_arrays.py`
folders; record: results/loto_depth_robust_2026-12-07b.md.

`geovae.tools.depth_free.query_depth_free` removes, within each predicted label, the Theil-Sen
line of the p-value's normal score in log library size, fitted on the query's own cells; on
Kang -> pbmc68k the known cells stay tilted (partial r -0.19). Each candidate is a line of the
same normal score fitted another way and removed around the label's median depth:

* ``before``: the default before the step (rebuilt from its parts); ``ts``: the shipped step.
* ``qr<tau>``: the tau-quantile regression line (a low tau: cells above it, as unseen ones,
  do not move it however far up they are).
* ``trim<s>``: Theil-Sen refitted 5 times on the cells whose residual from the last line is
  below its (1 - s) quantile; ``irls``: least squares, each cell weighted by
  min(1, 2 P(Z > its residual / 1.4826 MAD)) (cells far above count less), 10 rounds.
* ``ols``: least squares; ``spearman``: the slope that leaves Spearman r 0 (Theil-Sen leaves
  Kendall's tau 0).
* ``oracle`` / ``oracle_ols`` / ``oracle_sp``: Theil-Sen / least squares / Spearman slope on
  the label's KNOWN-type cells only (unavailable in use: does the unseen type tilt the line?).

Choosing: the development split only (``loto_fit_arrays.py --dev``: the bundled Kang subset,
both directions, every type left out, seeds 0-2; ``--thin-unseen``: the same fits, the
unseen type's query cells alone thinned)::

    python benchmarks/loto_depth_robust.py DEV_FOLDER --out dev.jsonl
    python benchmarks/loto_depth_robust.py --table dev.jsonl  # the tables again
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import optimize, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loto_depth import final  # noqa: E402
from loto_query import saved_run, score_metrics  # noqa: E402
from paired_stats import fmt_p, paired  # noqa: E402

from geovae.tools.depth_free import query_depth_free  # noqa: E402

TAUS = (0.1, 0.25, 0.5)
TRIMS = (0.2, 0.35, 0.5)


def quantile_slope(x: np.ndarray, y: np.ndarray, tau: float) -> float:
    """The slope of the tau-quantile regression line of y on x (linear programme, HiGHS)."""
    n = len(x)
    xc = x - np.median(x)
    # variables: a, b (free), u+ (n), u- (n) >= 0; y = a + b xc + u+ - u-
    c = np.r_[0.0, 0.0, np.full(n, tau), np.full(n, 1.0 - tau)]
    a_eq = sp.hstack([sp.csr_matrix(np.c_[np.ones(n), xc]), sp.eye(n), -sp.eye(n)], "csr")
    bounds = [(None, None), (None, None)] + [(0, None)] * (2 * n)
    res = optimize.linprog(c, A_eq=a_eq, b_eq=y, bounds=bounds, method="highs")
    return float(res.x[1]) if res.success else float(stats.theilslopes(y, x)[0])


def trimmed_slope(x: np.ndarray, y: np.ndarray, share: float, rounds: int = 5) -> float:
    slope = stats.theilslopes(y, x)[0]
    for _ in range(rounds):
        res = y - slope * x
        keep = res <= np.quantile(res, 1.0 - share)
        slope = stats.theilslopes(y[keep], x[keep])[0]
    return float(slope)


def irls_slope(x: np.ndarray, y: np.ndarray, rounds: int = 10) -> float:
    """Weighted least squares, each cell weighted by 2 P(Z > its residual above the line,
    in units of the residuals' MAD), 1 at or below it: cells far above do not count."""
    slope = stats.theilslopes(y, x)[0]
    for _ in range(rounds):
        res = y - slope * x
        res = res - np.median(res)
        scale = 1.4826 * np.median(np.abs(res)) or 1.0
        w = np.minimum(1.0, 2.0 * stats.norm.sf(res / scale))
        xm, ym = np.average(x, weights=w), np.average(y, weights=w)
        slope = float(np.sum(w * (x - xm) * (y - ym)) / np.sum(w * (x - xm) ** 2))
    return slope


def spearman_slope(x: np.ndarray, y: np.ndarray, iters: int = 60) -> float:
    """The slope b at which y - b x has Spearman r 0 with x: bisection, the rank sum falling
    from + to - as b rises (b = +-10 (range y / range x + 1) bracket it). Theil-Sen zeroes
    Kendall's tau instead, where every pair counts alike."""
    rx = stats.rankdata(x)
    rx = rx - rx.mean()
    lo = -10.0 * (np.ptp(y) / np.ptp(x) + 1.0)
    hi = -lo
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if np.dot(rx, stats.rankdata(y - mid * x)) > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def line_free(p: np.ndarray, depth: np.ndarray, pred: np.ndarray, how: str,
              known: np.ndarray | None = None) -> np.ndarray:
    z = stats.norm.isf(np.clip(p, 1e-300, 1.0 - 1e-12))
    out = p.copy()
    for g in np.unique(pred):
        rows = np.flatnonzero(pred == g)
        if len(rows) < 20 or np.ptp(depth[rows]) == 0:
            continue
        x, y = depth[rows], z[rows]
        if how == "ts":
            slope = stats.theilslopes(y, x)[0]
        elif how.startswith("qr"):
            slope = quantile_slope(x, y, float(how[2:]))
        elif how.startswith("trim"):
            slope = trimmed_slope(x, y, float(how[4:]))
        elif how.startswith("oracle"):
            k = known[rows]
            slope = (0.0 if k.sum() < 20 else stats.theilslopes(y[k], x[k])[0]
                     if how == "oracle" else spearman_slope(x[k], y[k])
                     if how == "oracle_sp" else np.polyfit(x[k], y[k], 1)[0])
        elif how == "ols":
            slope = np.polyfit(x, y, 1)[0]
        elif how == "spearman":
            slope = spearman_slope(x, y)
        elif how == "irls":
            slope = irls_slope(x, y)
        out[rows] = stats.norm.sf(y - slope * (x - np.median(x)))
    return out


def score_folder(folder: Path) -> pd.DataFrame:
    rows = []
    for f in sorted(folder.glob("*.npz")):
        a, novel, run = saved_run(f)
        depth, pred = a["depth"].astype(float), a["pred_code"]
        before = final(a, (0.0,))["before"]
        scores = {"before": before, "ts": line_free(before, depth, pred, "ts")}
        for tau in TAUS:
            scores[f"qr{tau:g}"] = line_free(before, depth, pred, f"qr{tau:g}")
        for s in TRIMS:
            scores[f"trim{s:g}"] = line_free(before, depth, pred, f"trim{s:g}")
        for how in ("ols", "irls", "spearman"):
            scores[how] = line_free(before, depth, pred, how)
        # ts is the shipped step (`query_depth_free`)
        assert np.allclose(query_depth_free(before, depth, pred), scores["ts"])
        scores["oracle"] = line_free(before, depth, pred, "oracle", ~novel)
        scores["oracle_ols"] = line_free(before, depth, pred, "oracle_ols", ~novel)
        scores["oracle_sp"] = line_free(before, depth, pred, "oracle_sp", ~novel)
        row = {**run, "novel_share_of_labels": float(np.mean([
            novel[pred == g].mean() for g in np.unique(pred[novel])])) if novel.any() else 0}
        row.update(score_metrics(scores, a, novel))
        rows.append(row)
        print(f.stem, {k[2:]: round(v, 3) for k, v in row.items() if k.startswith("r:")},
              flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame, base: str = "ts") -> str:
    names = [c.split(":", 1)[1] for c in df.columns if c.startswith("auroc:")]
    pairs = sorted(df["pair"].unique())
    out = []
    for q in pairs + ["all"]:
        d = df if q == "all" else df[df["pair"] == q]
        out += [f"### {q}: {len(d)} runs, library size alone {d['auroc_library'].mean():.3f}", "",
                f"| score | AUROC | − {base}: diff, p (runs) | − {base}: p (seed means) | "
                "mean r | max abs r | runs abs r >= 0.1 | unseen / known p < 0.05 |",
                "|---" * 8 + "|"]
        for n in names:
            t = paired(d[f"auroc:{n}"].to_numpy(), d[f"auroc:{base}"].to_numpy())
            sm = d.groupby(["pair", "seed"])[[f"auroc:{n}", f"auroc:{base}"]].mean()
            ts = (paired(sm[f"auroc:{n}"].to_numpy(), sm[f"auroc:{base}"].to_numpy())
                  if len(sm) > 1 else {"p_t": float("nan")})
            r = d[f"r:{n}"]
            out.append(f"| {n} | {d[f'auroc:{n}'].mean():.3f} | {t['diff']:+.3f}, "
                       f"{fmt_p(t['p_t'])} | {fmt_p(ts['p_t'])} | {r.mean():+.3f} | "
                       f"{r.abs().max():.3f} | {int((r.abs() >= 0.1).sum())}/{len(r)} | "
                       f"{d[f'tpr:{n}'].mean():.2f} / {d[f'fpr:{n}'].mean():.2f} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, nargs="?")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--table", type=Path, default=None)
    p.add_argument("--base", default="ts")
    args = p.parse_args()
    df = (pd.read_json(args.table, lines=True) if args.table is not None
          else score_folder(args.folder))
    if args.out is not None and args.table is None:
        df.to_json(args.out, orient="records", lines=True)
    print(table(df, args.base))


if __name__ == "__main__":
    main()
