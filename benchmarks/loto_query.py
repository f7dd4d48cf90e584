"""Query-aware novelty candidates for `bench_loto.py` (issue 23; development split only: the
bundled Kang subset, ``bench_loto.py --dev``, CTRL -> STIM and STIM -> CTRL, every type left
out, seeds 0-2: 60 saved runs). They chose `geovae.tools.query_share` and its constants.

Every earlier score (`loto_scores.py`, `loto_latent.py`) asks whether a query cell is typical
of the REFERENCE. A type the reference lacks shows up otherwise too: as a region of the joint
latent (reference + query) dense in QUERY cells and poor in reference cells. Candidates, each
a p-value per query cell (high: typical), from one run's saved arrays (``--save-arrays``):

* ``share_k{k}``: the log-odds of query cells among the cell's k nearest in the joint latent
  (itself left out; +0.5 pseudo-counts), minus the log-odds of the query's share of the other
  cells; ranked among the reference cells' mirror image (reference cells among theirs, minus
  the reference's share) after one query-wide shift (`novelty.shifted_pvalues`: a query that
  sits a little apart from the reference as a whole raises both sides alike).
* ``..._s{m}x{t}``: region level: the own-side share averaged over the cell and its m nearest
  cells of its own side (query over query, the mirror over reference), t times.
* ``..._d``: then the residual of a line in log library size within the (predicted) label
  (`query_share.depth_residuals`); ``..._label``: ranked within the predicted label;
  ``..._labelbase``: log-odds against the (predicted) label's base rate
  (`query_share.label_base_rates`); ``max(...)``: the larger p-value of the two.
* ``cauchy(before,<share>)``: the Cauchy combination with the default before
  (`novelty_pvalues`' three reference-only parts; half the weight each);
  ``cauchy(parts,<share>)``: with the three parts (a quarter each). ``shipped``: today's
  default `novelty.novelty_pvalues` (``check="query"``:
  ``cauchy(before,max(share_k150_s15x3_d,share_k150_s15x3_d_labelbase))``); ``reference``
  its ``check="reference"`` (``before``); ``query-overall``: ``cauchy(before,
  share_k150_s15x3_d)``, the opt-in before (`geovae transfer --novelty query-overall`);
  since issue 23 item 1 each of these three then goes through
  `depth_free.query_depth_free` (`loto_depth.py`), the candidates named do not.

``--composition``: each run's query resampled so that one known label (the one most unseen
cells are predicted as, and a random other) is 1.5x and 3x as common as in the reference
(other known cells dropped at random; with and without the unseen cells): the share of that
label's known cells below p = 0.05 (no unseen cells) and the AUROC (with them), for
``reference``, ``shipped`` and ``query-overall`` (`composition`).

Paired over the runs against the default before (`paired_stats.paired`), per pair and all::

    python benchmarks/loto_query.py dev/ dev_cp10k/ --out loto_query_dev.jsonl
    python benchmarks/loto_query.py dev/ --composition --out loto_query_composition_dev.jsonl
    python benchmarks/loto_query.py rep/ --names reported --shipped-only --out loto_query.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loto import partial_spearman  # noqa: E402
from paired_stats import fmt_p, paired  # noqa: E402

from geovae.graph.neighbors import knn  # noqa: E402
from geovae.models.reference import ReferenceCells  # noqa: E402
from geovae.tools.novelty import (  # noqa: E402
    NOVELTY_CHECKS,
    best_label_pvalues,
    combine_pvalues,
    label_depth_pvalues,
    novelty_pvalues,
    shifted_pvalues,
)
from geovae.tools.query_share import depth_residuals, label_base_rates  # noqa: E402

#: the default's neighbours (transfer's n_neighbors default)
K = 15
#: joint-latent neighbours tried (development split: the 60 bundled-Kang runs)
KS = (15, 30, 50, 100, 150, 200)
#: own-side smoothing (m neighbours, t steps) tried (same development split)
SMOOTH = ((0, 0), (15, 1), (30, 1), (15, 3))


def own_share(z: np.ndarray, ref_z: np.ndarray, k: int, geometry: str = "euclidean",
              joint_idx: np.ndarray | None = None) -> np.ndarray:
    """Per cell of (reference, then query): the share of its k nearest others in the joint
    latent that are of its own side (``joint_idx``: precomputed neighbours, nearest first,
    at least k columns)."""
    n_ref = len(ref_z)
    is_query = np.r_[np.zeros(n_ref, bool), np.ones(len(z), bool)]
    if joint_idx is None:
        both = np.vstack([ref_z, z])
        _, joint_idx = knn(both, both, k, geometry, exclude_self=True)
    same = is_query[joint_idx[:, :k]] == is_query[:, None]
    return same.mean(1)


def smooth_own_side(values: np.ndarray, n_ref: int, side_idx: tuple[np.ndarray, np.ndarray],
                    m: int, steps: int) -> np.ndarray:
    """``values`` averaged over each cell and its m nearest of its own side (``side_idx``:
    (reference within reference, query within query) neighbours, nearest first), ``steps``
    times."""
    out = np.asarray(values, np.float64).copy()
    if m == 0 or steps == 0:
        return out
    for _ in range(steps):
        new = out.copy()
        for offset, idx in ((0, side_idx[0]), (n_ref, side_idx[1])):
            part = out[offset:offset + len(idx)]
            mm = min(m, idx.shape[1])
            new[offset:offset + len(idx)] = (part + part[idx[:, :mm]].sum(1)) / (mm + 1)
        out = new
    return out


def share_stats(share: np.ndarray, n_ref: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(query, reference) log-odds of the own-side share (+0.5 pseudo-counts on k) minus the
    log-odds of the own side's share of the other cells."""
    n = len(share)
    frac = (share * k + 0.5) / (k + 1.0)
    logit = np.log(frac / (1 - frac))
    base_q = (n - n_ref - 1) / (n - 1)
    base_r = (n_ref - 1) / (n - 1)
    return (logit[n_ref:] - np.log(base_q / (1 - base_q)),
            logit[:n_ref] - np.log(base_r / (1 - base_r)))


def label_base_p(z: np.ndarray, ref_z: np.ndarray, joint: np.ndarray, side, k: int, m: int,
                 steps: int, depths: tuple) -> np.ndarray:
    """``share_k{k}_s{m}x{steps}_d_labelbase``: as ``_d``, each cell's log-odds taken
    against its label's base rate (`label_base_rates`) instead of its side's overall one
    (conditions on composition: a known type commoner in the query is not query-dense)."""
    kk = min(k, joint.shape[1])
    share = smooth_own_side(own_share(z, ref_z, kk, joint_idx=joint), len(ref_z), side, m,
                            steps)
    frac = (share * kk + 0.5) / (kk + 1.0)
    logit = np.log(frac / (1 - frac))
    base_q, base_r = label_base_rates(depths[2], depths[3], kk)
    q = logit[len(ref_z):] - np.log(base_q / (1 - base_q))
    r = logit[:len(ref_z)] - np.log(base_r / (1 - base_r))
    return shifted_pvalues(depth_residuals(q, depths[0], depths[2]),
                           depth_residuals(r, depths[1], depths[3]))


def share_pvalues(z: np.ndarray, ref_z: np.ndarray, k: int, m: int = 0, steps: int = 0,
                  predicted: np.ndarray | None = None, ref_labels: np.ndarray | None = None,
                  geometry: str = "euclidean") -> np.ndarray:
    """``share_k{k}[_s{m}x{steps}][_label]`` (module docstring) of one query."""
    z, ref_z = np.asarray(z, np.float64), np.asarray(ref_z, np.float64)
    both = np.vstack([ref_z, z])
    _, joint = knn(both, both, k, geometry, exclude_self=True)
    side = (knn(ref_z, ref_z, m, geometry, exclude_self=True)[1],
            knn(z, z, m, geometry, exclude_self=True)[1]) if m and steps else None
    return _share_p(z, ref_z, joint, side, k, m, steps, predicted, ref_labels)


def _share_p(z: np.ndarray, ref_z: np.ndarray, joint: np.ndarray, side, k: int, m: int,
             steps: int, predicted: np.ndarray | None, ref_labels: np.ndarray | None,
             depths: tuple | None = None) -> np.ndarray:
    """One candidate from precomputed neighbours; ``depths``: (query depth, reference depth,
    predicted, reference labels) for the depth line (``_d``)."""
    kk = min(k, joint.shape[1])
    share = own_share(z, ref_z, kk, joint_idx=joint)
    if side is not None:
        share = smooth_own_side(share, len(ref_z), side, m, steps)
    q, r = share_stats(share, len(ref_z), kk)
    if depths is not None:
        q, r = depth_residuals(q, depths[0], depths[2]), depth_residuals(r, depths[1], depths[3])
    return shifted_pvalues(q, r, predicted, ref_labels)


def shipped(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`novelty.novelty_pvalues` of one saved run: the default (``shipped``) and each check."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    cells = ReferenceCells(rz, a["ref_labels"], None, a["ref_nelbo"], a["ref_depth"])
    out = {"shipped": novelty_pvalues(z, a["nelbo"], a["depth"], cells, a["pred_code"], K,
                                      "euclidean")}
    for check in NOVELTY_CHECKS:
        out[check] = novelty_pvalues(z, a["nelbo"], a["depth"], cells, a["pred_code"], K,
                                     "euclidean", check)
    return out


def composition(folder: Path, rng_seed: int = 0) -> pd.DataFrame:
    """``--composition`` (module docstring) over the saved runs of ``folder``."""
    rows = []
    for f in sorted(folder.glob("*.npz")):
        with np.load(f) as d:
            a = dict(d)
        pair, seed, held_out = f.stem.rsplit("_", 2)
        novel, pred, labels = a["novel"].astype(bool), a["pred_code"], a["ref_labels"]
        rng = np.random.default_rng([rng_seed, int(seed), len(f.stem)])
        known = [c for c in np.unique(labels) if (pred[~novel] == c).sum() >= 50]
        near = int(np.argmax(np.bincount(pred[novel], minlength=labels.max() + 1)))
        picks = {"near": near, "random": int(rng.choice([c for c in known if c != near]))}
        for kind, label in picks.items():
            is_label, others = ~novel & (pred == label), np.flatnonzero(~novel & (pred != label))
            for ratio in (1.5, 3.0):
                target = min(0.9, ratio * np.mean(labels == label))
                n_other = int(round(is_label.sum() * (1 - target) / target))
                if n_other > len(others):
                    continue
                kept = rng.choice(others, n_other, replace=False)
                for with_novel in (False, True):
                    rows_kept = np.sort(np.r_[np.flatnonzero(is_label), kept,
                                              np.flatnonzero(novel) if with_novel else []])
                    b = {**a, **{key: a[key][rows_kept.astype(int)] for key in
                                 ("z", "nelbo", "depth", "pred_code", "novel")}}
                    nv = b["novel"].astype(bool)
                    row = {"pair": pair, "seed": int(seed), "held_out": held_out, "kind": kind,
                           "ratio": ratio, "unseen": with_novel}
                    for name, p in shipped(b).items():
                        row[f"calls:{name}"] = float(np.mean(p[~nv & (b["pred_code"] == label)]
                                                             < 0.05))
                        if with_novel:
                            row[f"auroc:{name}"] = float(roc_auc_score(nv, -p))
                    rows.append(row)
        print("composition", f.stem, flush=True)
    return pd.DataFrame(rows)


def composition_table(df: pd.DataFrame) -> str:
    """Per check: the commoner label's known cells below p = 0.05 (mean, share of runs above
    20 %) per pick and ratio, and the AUROC with the unseen cells kept."""
    checks = [c.split(":", 1)[1] for c in df.columns if c.startswith("calls:")]
    alone, mixed = df[~df["unseen"]], df[df["unseen"]]
    groups = sorted(alone.groupby(["kind", "ratio"]).groups)
    out = ["| check | " + " | ".join(f"{k} {r}x: below 0.05 (runs > 20 %)" for k, r in groups)
           + " | AUROC 1.5x / 3x |", "|---" * (len(groups) + 2) + "|"]
    for c in checks:
        cells = []
        for k, r in groups:
            x = alone.loc[(alone["kind"] == k) & (alone["ratio"] == r), f"calls:{c}"]
            cells.append(f"{x.mean():.3f} ({(x > 0.2).mean():.2f}, n {len(x)})")
        au = " / ".join(f"{mixed.loc[mixed['ratio'] == r, f'auroc:{c}'].mean():.3f}"
                        for r in (1.5, 3.0))
        out.append(f"| {c} | {' | '.join(cells)} | {au} |")
    return "\n".join(out)


def candidates(a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> query p-values of one saved run."""
    z, rz = a["z"].astype(np.float64), a["ref_z"].astype(np.float64)
    pred, labels = a["pred_code"], a["ref_labels"]
    parts = [best_label_pvalues(z, rz, labels, K, "euclidean", "neighbours"),
             label_depth_pvalues(a["nelbo"], a["depth"], a["ref_nelbo"], a["ref_depth"],
                                 pred, labels),
             best_label_pvalues(z, rz, labels, K, "euclidean")]
    out = {"before": combine_pvalues(parts), **shipped(a)}
    both = np.vstack([rz, z])
    _, joint = knn(both, both, max(KS), "euclidean", exclude_self=True)
    m_max = max(m for m, _ in SMOOTH)
    side = (knn(rz, rz, m_max, "euclidean", exclude_self=True)[1],
            knn(z, z, m_max, "euclidean", exclude_self=True)[1])
    depths = (a["depth"], a["ref_depth"], pred, labels)
    for k in KS:
        for m, t in SMOOTH:
            for d in ("", "_d"):
                name = f"share_k{k}" + (f"_s{m}x{t}" if m else "") + d
                out[name] = _share_p(z, rz, joint, side if m else None, k, m, t, None, None,
                                     depths if d else None)
                out[f"cauchy(before,{name})"] = combine_pvalues([out["before"], out[name]])
                out[f"cauchy(parts,{name})"] = combine_pvalues([*parts, out[name]])
            if (k, m, t) == (150, 15, 3):
                name = "share_k150_s15x3_d_labelbase"
                out[name] = label_base_p(z, rz, joint, side, k, m, t, depths)
                out[f"cauchy(before,{name})"] = combine_pvalues([out["before"], out[name]])
                both = np.maximum(out[name], out["share_k150_s15x3_d"])
                name = "max(share_k150_s15x3_d,share_k150_s15x3_d_labelbase)"
                out[name] = both
                out[f"cauchy(before,{name})"] = combine_pvalues([out["before"], both])
            if k == 50:
                out[name[:-2] + "_label"] = _share_p(z, rz, joint, side if m else None, k, m,
                                                     t, pred, labels)
    return out


def saved_run(f: Path) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, object]]:
    """A saved run's arrays, its unseen-cell mask and its identity from the file name
    (``PAIR_SEED_HELDOUT.npz``) with library size's AUROC alone (the better direction)."""
    with np.load(f) as d:
        a = dict(d)
    novel = a["novel"].astype(bool)
    pair, seed, held_out = f.stem.rsplit("_", 2)
    lib = roc_auc_score(novel, a["depth"])
    return a, novel, {"pair": pair, "seed": int(seed), "held_out": held_out,
                      "auroc_library": max(lib, 1 - lib)}


def score_metrics(scores: dict[str, np.ndarray], a: dict[str, np.ndarray],
                  novel: np.ndarray) -> dict[str, float]:
    """Per candidate p-value in ``scores``: AUROC (unseen vs known, low p = unseen), partial
    r with depth given the predicted label (known cells), shares below p = 0.05."""
    known, out = ~novel, {}
    for name, p in scores.items():
        out[f"auroc:{name}"] = float(roc_auc_score(novel, -p))
        out[f"r:{name}"] = partial_spearman(p[known], a["depth"][known], a["pred_code"][known])
        out[f"tpr:{name}"] = float(np.mean(p[novel] < 0.05))
        out[f"fpr:{name}"] = float(np.mean(p[known] < 0.05))
    return out


def score_runs(folder: Path, setting: str, shipped_only: bool = False) -> pd.DataFrame:
    """Per saved run and candidate (``shipped_only``: the shipped checks, `shipped`, with
    ``before`` as ``reference``): AUROC (unseen vs known), partial r with depth, and the
    shares of unseen / known cells below p = 0.05."""
    rows = []
    for f in sorted(folder.glob("*.npz")):
        a, novel, run = saved_run(f)
        row = {"setting": setting, **run}
        scores = ({"before": (sh := shipped(a))["reference"], **sh} if shipped_only
                  else candidates(a))
        row.update(score_metrics(scores, a, novel))
        rows.append(row)
        print(setting, f.stem, round(row["auroc:before"], 3), round(row["auroc:shipped"], 3),
              flush=True)
    return pd.DataFrame(rows)


def table(df: pd.DataFrame) -> str:
    """Per setting and candidate: mean AUROC per pair and over all runs, AUROC minus the
    setting's default before (paired over runs: all, and per pair), runs with |partial r| >=
    0.1, shares of unseen / known cells below p = 0.05."""
    names = [c.split(":", 1)[1] for c in df.columns if c.startswith("auroc:")]
    pairs = sorted(df["pair"].unique())
    out = []
    for setting, s in df.groupby("setting", sort=False):
        s = s.sort_values(["pair", "seed", "held_out"])
        lib = " / ".join(f"{s.loc[s['pair'] == q, 'auroc_library'].mean():.3f}" for q in pairs)
        out += ["", f"{setting}: {len(s)} runs; library size alone ({' / '.join(pairs)}) {lib}",
                "", f"| score | {' | '.join(pairs)} | all | − before: all, p | "
                + " | ".join(f"− before: {q}, p" for q in pairs)
                + " | runs abs r >= 0.1 | unseen / known p < 0.05 |", "|---" * (2 * len(pairs)
                                                                             + 6) + "|"]
        for n in names:
            per = " | ".join(f"{s.loc[s['pair'] == q, f'auroc:{n}'].mean():.3f}" for q in pairs)
            diffs = []
            for sub in [s] + [s[s["pair"] == q] for q in pairs]:
                t = paired(sub[f"auroc:{n}"].to_numpy(), sub["auroc:before"].to_numpy())
                diffs.append("–" if n == "before" else f"{t['diff']:+.3f}, {fmt_p(t['p_t'])}")
            r = s[f"r:{n}"].abs()
            out.append(f"| {n} | {per} | {s[f'auroc:{n}'].mean():.3f} | {' | '.join(diffs)} | "
                       f"{int((r >= 0.1).sum())}/{len(r)} | {s[f'tpr:{n}'].mean():.2f} / "
                       f"{s[f'fpr:{n}'].mean():.2f} |")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", type=Path, nargs="*", help="saved-array folders (--save-arrays)")
    p.add_argument("--names", default="log1p,log1p_cp10k", help="the folders' setting names")
    p.add_argument("--out", type=Path, default=None, help="per-run metrics (JSON lines)")
    p.add_argument("--table", type=Path, default=None, help="print the table of a record")
    p.add_argument("--shipped-only", action="store_true", help="score the shipped checks "
                   "only (the reported pairs: no candidate is chosen there)")
    p.add_argument("--composition", action="store_true", help="the composition test "
                   "(module docstring) on the first folder; --table: of such a record")
    args = p.parse_args()
    if args.composition:
        df = (pd.read_json(args.table, lines=True) if args.table is not None
              else composition(args.folders[0]))
        if args.out is not None and args.table is None:
            df.to_json(args.out, orient="records", lines=True)
        print(composition_table(df))
        return
    if args.table is not None:
        df = pd.read_json(args.table, lines=True)
    elif not args.folders:
        p.error("give saved-array folders or --table RECORD")
    else:
        names = args.names.split(",")
        df = pd.concat([score_runs(f, names[i] if i < len(names) else f.name,
                                   args.shipped_only)
                        for i, f in enumerate(args.folders)])
        if args.out is not None:
            df.to_json(args.out, orient="records", lines=True)
    print(table(df))


if __name__ == "__main__":
    main()
