"""Latent-space novelty candidates for `bench_loto.py` and the encoder-input comparison
(issue 23; development split only: the bundled Kang subset, ``bench_loto.py --dev``).

The hypothesis: the unknown call tracks library size because the latent does (the encoder
reads log1p of the raw counts; the decoder already conditions on the library size). Refit
with ``--model-kw encoder_input=log1p_cp10k`` (log1p(1e4 x / library)) and a score read
from the latent alone could be depth-free. Candidates, each a p-value per query cell
(high: typical), from one run's saved arrays (``bench_loto.py --save-arrays``):

* ``lof``: scikit-learn's LocalOutlierFactor (``novelty=True``, ``K`` neighbours) fitted on
  the reference latents: the query cell's local outlier factor (its k-distance reachability
  density against its reference neighbours' own), ranked among the reference cells' own
  (themselves left out), after one query-wide shift (`novelty.shifted_pvalues`).
* ``lof_best``: the same per reference label, the best-fitting label's p-value (as
  `novelty.best_label_pvalues`: a cell between two sibling labels is not flagged).
* ``gauss_mix``: minus the log density of the latent under the reference labels' Gaussians
  (Ledoit-Wolf covariance, weights = label shares), ranked among the reference cells' own.
* ``knnB`` / ``mahaB`` / ``elboD``: the default's three parts (`novelty.novelty_pvalues`),
  ``latent``: the Cauchy combination of knnB and mahaB (the default without the -ELBO),
  ``cauchy(lof,mahaB)`` / ``cauchy(lof_best,mahaB)`` / ``cauchy(lof,knnB,mahaB)``.

Given two folders of saved runs of the same draws (A: the shipped encoder, B: a refit
setting), the table gives how much depth each reference latent holds beyond the label
(`latent_depth_r2`) and pairs every candidate over the runs (`paired_stats.paired`): AUROC and
|partial r| with log library size, against the default of A (what users get now) and of B::

    python benchmarks/loto_latent.py /tmp/log1p /tmp/cp10k --out loto_latent.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loto import partial_spearman  # noqa: E402
from paired_stats import fmt_p, paired  # noqa: E402

from geovae.tools.novelty import (  # noqa: E402
    MIN_LABEL_CELLS,
    best_label_pvalues,
    combine_pvalues,
    empirical_pvalue,
    label_depth_pvalues,
    shifted_pvalues,
)

#: neighbours of the LOF and kNN parts (transfer's n_neighbors default; not tuned)
K = 15


def lof_stats(z: np.ndarray, ref: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(query, reference) log local outlier factors against the reference latents ``ref``
    (scikit-learn; the reference cells' own leave themselves out)."""
    from sklearn.neighbors import LocalOutlierFactor

    lof = LocalOutlierFactor(n_neighbors=min(k, len(ref) - 1), novelty=True).fit(ref)
    return np.log(-lof.score_samples(z)), np.log(-lof.negative_outlier_factor_)


def lof_pvalues(z: np.ndarray, ref: np.ndarray, k: int = K) -> np.ndarray:
    """``lof`` (module docstring)."""
    q, r = lof_stats(np.asarray(z, np.float64), np.asarray(ref, np.float64), k)
    return shifted_pvalues(q, r)


def lof_best_pvalues(z: np.ndarray, ref: np.ndarray, labels: np.ndarray, k: int = K,
                     min_cells: int = MIN_LABEL_CELLS) -> np.ndarray:
    """``lof_best`` (module docstring): the largest over labels of the p-value of the
    query's log LOF against that label's reference cells, one query-wide shift first (the
    median excess over the nearest label's median, when positive)."""
    z, ref = np.asarray(z, np.float64), np.asarray(ref, np.float64)
    stats = [lof_stats(z, ref[labels == c], k) for c in np.unique(labels[labels >= 0])
             if (labels == c).sum() >= max(min_cells, 3)]
    if not stats:
        return lof_pvalues(z, ref, k)
    excess = np.min([q - np.median(r) for q, r in stats], axis=0)
    shift = max(float(np.median(excess)), 0.0)
    return np.max([empirical_pvalue(q - shift, r) for q, r in stats], axis=0)


def gauss_mix_pvalues(z: np.ndarray, ref: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``gauss_mix`` (module docstring)."""
    from scipy.stats import multivariate_normal
    from sklearn.covariance import LedoitWolf

    z, ref = np.asarray(z, np.float64), np.asarray(ref, np.float64)
    q_parts, r_parts = [], []
    for c in np.unique(labels[labels >= 0]):
        cells = ref[labels == c]
        if len(cells) < 2:
            continue
        fit = LedoitWolf().fit(cells)
        dist = multivariate_normal(fit.location_, fit.covariance_, allow_singular=True)
        w = np.log(len(cells) / len(ref))
        q_parts.append(w + dist.logpdf(z))
        r_parts.append(w + dist.logpdf(ref))
    return shifted_pvalues(-logsumexp(q_parts, axis=0), -logsumexp(r_parts, axis=0))


def candidates(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> query p-values of one saved run."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    pred, labels = a["pred_code"], a["ref_labels"]
    knn_b = best_label_pvalues(z, rz, labels, K, "euclidean", "neighbours")
    maha_b = best_label_pvalues(z, rz, labels, K, "euclidean")
    elbo_d = label_depth_pvalues(a["nelbo"], a["depth"], a["ref_nelbo"], a["ref_depth"],
                                 pred, labels)
    lof, lof_b = lof_pvalues(z, rz), lof_best_pvalues(z, rz, labels)
    return {"default": combine_pvalues([knn_b, elbo_d, maha_b]), "knnB": knn_b,
            "mahaB": maha_b, "elboD": elbo_d, "latent": combine_pvalues([knn_b, maha_b]),
            "lof": lof, "lof_best": lof_b, "gauss_mix": gauss_mix_pvalues(z, rz, labels),
            "cauchy(lof,mahaB)": combine_pvalues([lof, maha_b]),
            "cauchy(lof_best,mahaB)": combine_pvalues([lof_b, maha_b]),
            "cauchy(lof,knnB,mahaB)": combine_pvalues([lof, knn_b, maha_b])}


def latent_depth_r2(z: np.ndarray, depth: np.ndarray, labels: np.ndarray,
                    how: str = "linear") -> float:
    """How much of log library size the latent holds beyond the cell's label: 5-fold
    cross-validated R^2 of a regression (scikit-learn; ``linear``, or ``knn``: the mean of
    the K nearest latents) of the depth, each label's mean removed, on the latent (0:
    nothing; the reference cells of a run)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsRegressor

    y = np.asarray(depth, np.float64).copy()
    for c in np.unique(labels):
        y[labels == c] -= y[labels == c].mean()
    folds = KFold(5, shuffle=True, random_state=0)
    reg = LinearRegression() if how == "linear" else KNeighborsRegressor(K)
    return float(cross_val_score(reg, np.asarray(z, np.float64), y, cv=folds,
                                 scoring="r2").mean())


def score_runs(folder: Path, setting: str) -> pd.DataFrame:
    """Per saved run and candidate: AUROC (unseen vs known) and partial r with depth."""
    rows = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as d:
            a = dict(d)
        novel, known = a["novel"].astype(bool), ~a["novel"].astype(bool)
        pair, seed, held_out = f.stem.rsplit("_", 2)
        lib = roc_auc_score(novel, a["depth"])
        row = {"setting": setting, "pair": pair, "seed": int(seed), "held_out": held_out,
               "auroc_library": max(lib, 1 - lib),
               **{f"latent_depth_r2_{how}": latent_depth_r2(a["ref_z"], a["ref_depth"],
                                                            a["ref_labels"], how)
                  for how in ("linear", "knn")}}
        for name, p in candidates(a).items():
            row[f"auroc:{name}"] = float(roc_auc_score(novel, -p))
            row[f"r:{name}"] = partial_spearman(p[known], a["depth"][known],
                                                a["pred_code"][known])
        rows.append(row)
        print(setting, f.stem, round(row["auroc:default"], 3), round(row["r:default"], 3),
              flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame, base: str, new: str) -> str:
    """Per setting and candidate: mean AUROC per pair and overall, runs with |partial r| >=
    0.1, mean |r|; and paired over the runs both settings hold: AUROC and |r| minus the
    default of ``base`` and of the candidate's own setting."""
    key = ["pair", "seed", "held_out"]
    a, b = (df[df["setting"] == s].set_index(key) for s in (base, new))
    runs = a.index.intersection(b.index)
    a, b = a.loc[runs], b.loc[runs]
    names = [c.split(":", 1)[1] for c in df.columns if c.startswith("auroc:")]
    pairs = sorted({r[0] for r in runs})
    out = [f"{len(runs)} runs both settings hold; library size alone "
           f"{a['auroc_library'].mean():.3f}. Depth in the reference latent beyond the label "
           "(`latent_depth_r2`, mean over runs, linear / kNN): " + ", ".join(
               f"{name} {s['latent_depth_r2_linear'].mean():.3f} / "
               f"{s['latent_depth_r2_knn'].mean():.3f}" for name, s in ((base, a), (new, b)))
           + ".", "",
           f"| setting | score | {' | '.join(pairs)} | all | runs abs r >= 0.1 | mean abs r | "
           f"AUROC − default ({base}), p | abs r − default ({base}), p | AUROC − own default,"
           " p | abs r − own default, p |", "|---" * (len(pairs) + 9) + "|"]
    for setting, s in ((base, a), (new, b)):
        for n in names:
            r = s[f"r:{n}"].abs()
            per = " | ".join(f"{s.loc[q, f'auroc:{n}'].mean():.3f}" for q in pairs)
            cells = []
            for ref in (a, s):
                for fa, fb in ((s[f"auroc:{n}"], ref["auroc:default"]),
                               (r, ref["r:default"].abs())):
                    t = paired(fa.to_numpy(), fb.to_numpy())
                    cells.append("–" if ref is s and n == "default" or
                                 (setting == base and n == "default") else
                                 f"{t['diff']:+.3f}, {fmt_p(t['p_t'])}")
            out.append(f"| {setting} | {n} | {per} | {s[f'auroc:{n}'].mean():.3f} | "
                       f"{int((r >= 0.1).sum())}/{len(r)} | {r.mean():.3f} | "
                       f"{' | '.join(cells)} |")
    return "\n".join(out)


def parse_names(text: str) -> tuple[str, str]:
    """``--names``: the two settings' names, comma-separated; a one-line error (exit 2)
    otherwise."""
    names = [n.strip() for n in text.split(",")]
    if len(names) != 2 or not all(names):
        print(f"error: --names '{text}': give two names separated by one comma, e.g. "
              "log1p,log1p_cp10k", file=sys.stderr)
        sys.exit(2)
    return names[0], names[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", type=Path, nargs="?", help="saved runs of the shipped setting "
                   "(--save-arrays)")
    p.add_argument("new", type=Path, nargs="?", help="saved runs of the same draws, refit "
                   "setting")
    p.add_argument("--names", default="log1p,log1p_cp10k", help="the two settings' names")
    p.add_argument("--out", type=Path, default=None, help="per-run metrics (JSON lines)")
    p.add_argument("--table", type=Path, default=None, help="print the table of a record")
    args = p.parse_args()
    base, new = parse_names(args.names)
    if args.table is not None:
        df = pd.read_json(args.table, lines=True)
    elif args.base is None or args.new is None:
        p.error("give two saved-array folders (base, new) or --table RECORD")
    else:
        df = pd.concat([score_runs(args.base, base), score_runs(args.new, new)])
        if args.out is not None:
            df.to_json(args.out, orient="records", lines=True)
    print(table(df, base, new))


if __name__ == "__main__":
    main()
